"""Faces study (issue 13, docs/results.md): realized edits at matched strength, per method and region.

    python analysis/faces_study.py runs/faces_dcgan.zarr runs/quickstart.zarr \
        --jobs jobs/faces_dcgan.yaml jobs/quickstart.yaml --out docs/results-data

For every store (paired in order with the USER's job spec, from which the generator is
rebuilt: a store's own spec is never used to build code), every (region, method) result
group and ``--samples`` done samples (samples without a face in a landmark region are
skipped for that region, and counted):

* **self**: the sample's own best direction v (row 0), edited at *matched strength*: the
  latent step α = ``--size`` / ||J v||_RMS, where ``||J v||²`` = ΣR·vᵀM_R v + ΣB·vᵀM_B v
  comes from the stored Grams (first order), so every method changes the analysis-grid
  image by the same RMS amount; the edit x → x + α v is rendered and pooled to the
  analysis grid and scored with :mod:`lrgan_dist.core.edit_metrics`: masked MSE inside
  and outside R (LinkGAN), precision@N (LELSD, N = |R|), in-region RMS change, realized
  locality share;
* **cross**: the source sample's direction applied to the next selected sample (a
  different face, at its own position), α matched on the target's Grams, scored with the
  *target's own* mask (for landmark regions: its own detected landmarks);
* **box → landmark**: for a box region ``<part>_box`` and a landmark region ``<part>``,
  the box's directions scored on the sample's landmark mask;
* **subspace distance**: mean Grassmannian distance (Local Basis, ICLR 2022) between the
  top-``--k`` subspaces of pairs of selected samples.

Outputs under ``--out``: ``metrics.csv`` (long table), ``tables.md`` (method × region ×
metric, per store and mode, with the winner per column and LowRankGAN's rank), and
``grid_<store>_<region>.png`` edit grids (methods side by side, same faces, same
strength).  Deterministic: sample choice is evenly spaced over the done samples.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lrgan_dist import analysis
from lrgan_dist.apply.build import make_generator
from lrgan_dist.core.edit_metrics import (
    grassmann_distance,
    in_region_change,
    masked_mse,
    precision_at_n,
    realized_locality,
)
from lrgan_dist.core.jacobian import pool_image, to_uint8_preview
from lrgan_dist.spec import load_spec

METRICS = ("mse_in", "mse_out", "precision_at_n", "change_in", "locality")
HIGHER_BETTER = {"mse_in": True, "mse_out": False, "precision_at_n": True, "change_in": True, "locality": True}


def _groups(store) -> list[tuple[str, str, str]]:
    return [(r, lab, p) for r, lab, p in store.direction_groups()]


def _step(store, region: str, i: int, v: np.ndarray, size: float) -> float:
    """α with first-order RMS image change ``size`` on the analysis grid (from stored Grams)."""
    gi = store.read(f"regions/{region}/gram_in", i, i + 1)[0].astype(np.float64)
    go = store.read(f"regions/{region}/gram_out", i, i + 1)[0].astype(np.float64)
    m = store.region_mask(region, i, i + 1)
    m = m[0] if m.ndim == 3 else m
    a_in, a_out = float(m.sum()), float((1 - m).sum())
    sq = (a_in * v @ gi @ v + a_out * v @ go @ v) / (a_in + a_out)
    return float(size / np.sqrt(sq)) if sq > 0 and np.isfinite(sq) else float("nan")


def _mask(store, region: str, i: int) -> np.ndarray:
    m = store.region_mask(region, i, i + 1)
    return m[0] if m.ndim == 3 else m


def study_store(uri: str, job: str, samples: int, size: float, k: int, out: Path) -> pd.DataFrame:
    store = analysis.open_store(uri)
    spec = load_spec(job)  # the user's spec: builds the generator
    if spec.generator.kind != store.spec.get("generator", {}).get("kind"):
        raise SystemExit(f"{job}: generator kind {spec.generator.kind!r} does not match the store {uri}")
    G = make_generator(spec, "cpu")
    L = store.layout
    status = store.status()
    rows = []
    name = Path(uri.rstrip("/")).stem
    grid_frames: dict[str, dict[str, list[np.ndarray]]] = {}
    rng_range = tuple(G.image_range)
    for region, label, path in _groups(store):
        fst = np.asarray(store.group[f"{path}/status"][:])
        found = store.region_found(region)
        cand = np.flatnonzero((status == 1) & (fst == 1) & found)
        no_face = int(((status == 1) & ~found).sum())
        if cand.size < 2:
            continue
        sel = cand[np.unique(np.round(np.linspace(0, cand.size - 1, min(samples, cand.size))).astype(int))]
        V = np.asarray(store.group[f"{path}/vectors"][:], dtype=np.float64)
        x = torch.as_tensor(store.read("latents"), dtype=torch.float32)
        box_pair = region.endswith("_box") and region[:-4] in L.regions
        scored = [("self", region)] + ([("box->landmark", region[:-4])] if box_pair else [])
        for pos, i in enumerate(sel):
            v = V[i, 0]
            if not np.isfinite(v).all():
                continue
            j = int(sel[(pos + 1) % len(sel)])
            for mode, tgt, on in [(m_, int(i), r_) for m_, r_ in scored] + [("cross", j, region)]:
                if not store.region_found(on, tgt, tgt + 1)[0]:
                    continue
                a = _step(store, region, tgt, v, size)
                if not np.isfinite(a):
                    continue
                with torch.no_grad():
                    xt = x[tgt:tgt + 1]
                    y = G.forward(torch.cat([xt, xt + a * torch.as_tensor(v, dtype=torch.float32)[None]]),
                                  torch.cat([xt, xt]))
                p = pool_image(y.double(), L.grid, spec.grid.channels).numpy()
                R = _mask(store, on, tgt)
                mi, mo = masked_mse(p[0], p[1], R)
                rows.append({"store": name, "region": region, "method": label, "mode": mode, "scored_on": on,
                             "source": int(i), "target": tgt, "alpha": a, "mse_in": float(mi), "mse_out": float(mo),
                             "precision_at_n": float(precision_at_n(p[0], p[1], R)),
                             "change_in": float(in_region_change(p[0], p[1], R)),
                             "locality": float(realized_locality(p[0], p[1], R)), "no_face": no_face})
                if mode == "self" and pos < 3:
                    fr = grid_frames.setdefault(region, {}).setdefault(label, [])
                    fr.append(to_uint8_preview(y, rng_range, max_size=128))
        # subspace distance between the selected samples' top-k subspaces
        dists = []
        for p_ in range(len(sel)):
            for q_ in range(p_ + 1, len(sel)):
                A, B = V[sel[p_], :k], V[sel[q_], :k]
                A, B = A[np.isfinite(A).all(1)], B[np.isfinite(B).all(1)]
                if len(A) and len(B):
                    dists.append(grassmann_distance(A, B))
        rows.append({"store": name, "region": region, "method": label, "mode": "subspace", "scored_on": region,
                     "grassmann": float(np.mean(dists)) if dists else float("nan"), "no_face": no_face})
    _grids(grid_frames, out, name)
    return pd.DataFrame(rows)


def _grids(frames: dict[str, dict[str, list[np.ndarray]]], out: Path, name: str) -> None:
    from PIL import Image, ImageDraw

    for region, by in frames.items():
        labels = sorted(by)
        n = min(len(v) for v in by.values())
        if n == 0:
            continue
        h, w = by[labels[0]][0].shape[1:3]
        pad = 14
        canvas = Image.new("RGB", ((n * 2) * w, len(labels) * (h + pad)), "white")
        draw = ImageDraw.Draw(canvas)
        for r, lab in enumerate(labels):
            draw.text((2, r * (h + pad)), lab, fill="black")
            for c in range(n):
                pair = by[lab][c]  # [2, h, w, 3]: original, edited
                for t in range(2):
                    canvas.paste(Image.fromarray(pair[t]), ((2 * c + t) * w, r * (h + pad) + pad))
        canvas.save(out / f"grid_{name}_{region}.png")


def tables(df: pd.DataFrame) -> str:
    out = []
    for (store, mode), d in df[df["mode"] != "subspace"].groupby(["store", "mode"]):
        t = d.groupby(["region", "method"])[list(METRICS)].mean().reset_index()
        n = d.groupby(["region", "method"]).size().rename("n").reset_index()
        t = t.merge(n, on=["region", "method"])
        out.append(f"### {store} — {mode}\n")
        out.append("| region | method | n | " + " | ".join(METRICS) + " | LowRankGAN loses on |")
        out.append("|---|---|---|" + "---|" * len(METRICS) + "---|")
        for region, tr in t.groupby("region"):
            best = {m: (tr[m].max() if HIGHER_BETTER[m] else tr[m].min()) for m in METRICS}
            lrg = tr[tr["method"] == "lowrankgan"]
            loses = [m for m in METRICS if len(lrg) and not np.isclose(float(lrg[m].iloc[0]), best[m], rtol=1e-3)]
            for _, row in tr.iterrows():
                cells = [(f"**{row[m]:.4g}**" if np.isclose(row[m], best[m], rtol=1e-3) else f"{row[m]:.4g}")
                         for m in METRICS]
                note = ", ".join(loses) if row["method"] == "lowrankgan" else ""
                out.append(f"| {region} | {row['method']} | {int(row['n'])} | " + " | ".join(cells) + f" | {note} |")
        out.append("")
    sub = df[df["mode"] == "subspace"]
    if len(sub):
        out.append("### Grassmannian distance between per-sample top-k subspaces (lower: more shared)\n")
        piv = sub.pivot_table(index=["store", "region"], columns="method", values="grassmann")
        out.append(analysis.markdown_table(piv.reset_index()) if hasattr(analysis, "markdown_table") else piv.to_string())
        out.append("")
    nf = df.groupby(["store", "region"])["no_face"].max().reset_index()
    nf = nf[nf["no_face"] > 0]
    if len(nf):
        out.append("No face detected (samples left out of that region): " +
                   ", ".join(f"{r.store}/{r.region}: {int(r.no_face)}" for r in nf.itertuples()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--jobs", nargs="+", required=True, help="the user's job specs, one per store, same order")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=24, help="samples per (region, method)")
    ap.add_argument("--size", type=float, default=0.05, help="matched RMS image change (image-range units)")
    ap.add_argument("--k", type=int, default=3, help="subspace dimension for the Grassmannian distance")
    a = ap.parse_args(argv)
    if len(a.jobs) != len(a.stores):
        ap.error(f"--jobs: expected {len(a.stores)} job specs (one per store), received {len(a.jobs)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    df = pd.concat([study_store(s, j, a.samples, a.size, a.k, out) for s, j in zip(a.stores, a.jobs)],
                   ignore_index=True)
    df.to_csv(out / "metrics.csv", index=False)
    (out / "tables.md").write_text(tables(df))
    print(out / "tables.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
