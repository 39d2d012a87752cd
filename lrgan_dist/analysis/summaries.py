"""Summary tables of the cross-image study (pandas in, pandas out).

* :func:`summarize_transfer` — method × region × scoring region: self vs cross
  locality of the carrying directions, the generalization gap (self − cross), spread,
  realized locality and its rank agreement with the linearized one.
* :func:`realized_agreement` — Spearman correlation between linearized and realized
  locality per strength α (pooled and per group).
* :func:`matched_comparison` — LowRankGAN's carrying directions against the *same
  number* of top directions of other methods (e.g. ``jacobian_svd``, the top
  eigenvectors of M_R) on the same pairs.
* :func:`lambda_sweep` — rank, empty share and cross-image locality and strength against
  λ for every LowRankGAN result group (each group's parameters read from its zarr
  attributes), to choose λ by held-out locality at a usable edit strength.
* :func:`box_vs_mask` — directions from a loose box vs from the ground-truth mask:
  per-sample subspace similarity (principal angles) and transfer locality.

"Cross" always excludes self pairs; locality means are over (pair, direction) rows of
carrying directions (:func:`lrgan_dist.core.subspaces.carrying`) that are not inert at
the target (see :mod:`lrgan_dist.core.scores`: a direction that changes ~nothing there
has no meaningful locality). Locality is the share of the first-order change inside the
region; every locality comes with its random-direction ``baseline`` (chance level) and
the median edit ``strength`` (‖J v‖² against a random direction's, whole image): a
method is local only where it beats the baseline, and useful only at a usable strength.
The headline means are :func:`lrgan_dist.core.scores.headline` (the submit summary uses
the same function). Pure numpy/pandas: importing this module does not import torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lrgan_dist.analysis.loaders import open_store
from lrgan_dist.core.scores import headline, spearman
from lrgan_dist.core.subspaces import orth_bases, paired_subspace_similarity, source_energy
from lrgan_dist.store.zarrstore import DONE, Store, read_rows

__all__ = ["summarize_transfer", "realized_agreement", "matched_comparison", "lambda_sweep",
           "box_mask_pairs", "box_vs_mask", "per_target_locality"]

_KEYS = ["region", "method", "scored_on"]


def _mean(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.mean()) if len(x) else float("nan")


def summarize_transfer(df: pd.DataFrame) -> pd.DataFrame:
    """Per (region, method, scored_on) from the transfer table (:func:`load_transfer`).

    Columns: method_name, sources, targets, carrying_per_source, inert_share (of carrying
    cross rows), self_locality, self_baseline (random direction's locality at the same
    rows), self_strength (median), cross_locality, cross_baseline, cross_strength (median),
    cross_locality_per_pixel (the per-pixel ratio, for comparison with stores before issue
    18), generalization_gap (self − cross), cross_std, cross_p10 (10th percentile over
    rows), worst_target (lowest per-target mean cross locality), realized_pairs,
    realized_cross_locality (smallest |α|), spearman (linearized vs realized over the
    rendered cross rows).
    """
    rows = []
    if df.empty:
        return pd.DataFrame(columns=[*_KEYS, "method_name"])
    for key, g in df.groupby(_KEYS, observed=True, sort=True):
        per_src = g[g["carrying"]].drop_duplicates(["source", "direction"]).groupby("source").size()
        c = g[g["carrying"] & ~g["inert"]]
        cross = c[~c["self_pair"]]
        per_target = cross.groupby("target")["locality"].mean()
        rc = cross[cross["realized"]]
        hl = headline(g["locality"].to_numpy(), g["carrying"].to_numpy(), g["inert"].to_numpy(),
                      g["self_pair"].to_numpy(), baseline=g["baseline"].to_numpy(), strength=g["strength"].to_numpy())
        rows.append({
            **dict(zip(_KEYS, key)),
            "method_name": str(g["method_name"].iloc[0]),
            "sources": int(g["source"].nunique()),
            "targets": int(g["target"].nunique()),
            "carrying_per_source": float(per_src.reindex(g["source"].unique(), fill_value=0).mean()),
            "inert_share": _mean(g.loc[g["carrying"] & ~g["self_pair"], "inert"].astype(float)),
            "self_locality": hl["self_locality"], "self_baseline": hl["self_baseline"],
            "self_strength": hl["self_strength"],
            "cross_locality": hl["cross_locality"], "cross_baseline": hl["cross_baseline"],
            "cross_strength": hl["cross_strength"],
            "cross_locality_per_pixel": _mean(cross["locality_per_pixel"]),
            "generalization_gap": hl["self_locality"] - hl["cross_locality"],
            "cross_std": float(cross["locality"].std()) if len(cross) > 1 else float("nan"),
            "cross_p10": float(cross["locality"].quantile(0.1)) if len(cross) else float("nan"),
            "worst_target": float(per_target.min()) if len(per_target) else float("nan"),
            "realized_pairs": int(rc[["source", "target"]].drop_duplicates().shape[0]),
            "realized_cross_locality": _mean(rc["realized_locality"]),
            "spearman": spearman(rc["locality"], rc["realized_locality"]) if len(rc) else float("nan"),
        })
    return pd.DataFrame(rows)


def per_target_locality(df: pd.DataFrame, region: str, method: str, scored_on: str | None = None,
                        carrying_only: bool = True) -> pd.DataFrame:
    """Source × target matrix of the mean locality over (carrying) directions."""
    sel = (df["region"] == region) & (df["method"] == method) & ~df["inert"]
    if scored_on is not None:
        sel &= df["scored_on"] == scored_on
    if carrying_only:
        sel &= df["carrying"]
    return df[sel].pivot_table(index="source", columns="target", values="locality", aggfunc="mean", observed=True)


def realized_agreement(realized: pd.DataFrame, carrying_only: bool = True, cross_only: bool = True) -> pd.DataFrame:
    """Spearman(linearized, realized locality) per strength, pooled over groups ("all") and per group.

    Columns: strength, region, method, scored_on ("all" when pooled), n, spearman,
    mean_abs_diff, linear_mean, realized_mean.
    """
    cols = ["strength", "region", "method", "scored_on", "n", "spearman", "mean_abs_diff", "linear_mean",
            "realized_mean"]
    if realized.empty:
        return pd.DataFrame(columns=cols)
    r = realized[~realized["inert"]]
    if carrying_only:
        r = r[r["carrying"]]
    if cross_only:
        r = r[~r["self_pair"]]
    rows = []

    def row(strength: float, keys: tuple[str, str, str], x: pd.DataFrame) -> dict[str, Any]:
        return {"strength": strength, "region": keys[0], "method": keys[1], "scored_on": keys[2], "n": len(x),
                "spearman": spearman(x["linear_locality"], x["locality"]),
                "mean_abs_diff": float((x["linear_locality"] - x["locality"]).abs().mean()) if len(x) else float("nan"),
                "linear_mean": _mean(x["linear_locality"]), "realized_mean": _mean(x["locality"])}

    for a, ga in r.groupby("strength", sort=True):
        rows.append(row(float(a), ("all", "all", "all"), ga))
        for key, g in ga.groupby(_KEYS, observed=True, sort=True):
            rows.append(row(float(a), tuple(str(k) for k in key), g))  # type: ignore[arg-type]
    return pd.DataFrame(rows, columns=cols)


def matched_comparison(df: pd.DataFrame, reference: str = "lowrankgan") -> pd.DataFrame:
    """Reference method's carrying directions vs the same number of top directions of others.

    ``reference`` is a method label or method name (the first label using it). For each
    (region, scored_on) and source, m = number of the reference's carrying directions;
    every other method contributes its directions 0..m−1 (its best m). Cross pairs only.
    Columns: region, scored_on, method, method_name, selection, rows, pairs,
    cross_locality, realized_pairs, realized_cross_locality.
    """
    cols = ["region", "scored_on", "method", "method_name", "selection", "rows", "pairs", "cross_locality",
            "realized_pairs", "realized_cross_locality"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    labels = list(df["method"].cat.categories if hasattr(df["method"], "cat") else df["method"].unique())
    if reference not in labels:
        names = df.drop_duplicates("method").set_index("method")["method_name"].astype(str)
        cand = [m for m in names.index if names[m] == reference]
        if not cand:
            return pd.DataFrame(columns=cols)
        reference = cand[0]
    rows = []
    for (region, scored), g in df.groupby(["region", "scored_on"], observed=True, sort=True):
        ref = g[g["method"] == reference]
        if ref.empty:
            continue
        m = ref[ref["carrying"]].drop_duplicates(["source", "direction"]).groupby("source").size()
        m = m.reindex(ref["source"].unique(), fill_value=0)
        for label, h in g.groupby("method", observed=True, sort=True):
            h = h[~h["self_pair"] & ~h["inert"]]
            if label == reference:
                sel = h[h["carrying"]]
                how = "carrying"
            else:
                sel = h[h["direction"] < h["source"].map(m).fillna(0).to_numpy()]
                how = f"top m (m = {reference} carrying count)"
            rs = sel[sel["realized"]]
            rows.append({"region": region, "scored_on": scored, "method": label,
                         "method_name": str(h["method_name"].iloc[0]) if len(h) else "", "selection": how,
                         "rows": len(sel), "pairs": int(sel[["source", "target"]].drop_duplicates().shape[0]),
                         "cross_locality": _mean(sel["locality"]),
                         "realized_pairs": int(rs[["source", "target"]].drop_duplicates().shape[0]),
                         "realized_cross_locality": _mean(rs["realized_locality"])})
    return pd.DataFrame(rows, columns=cols)


def lambda_sweep(df: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Every LowRankGAN result group against λ: ranks, empty share, locality and strength.

    ``groups`` from :func:`load_groups` (λ from each group's zarr attrs, default 1/√d
    resolved). One row per (group, scored_on) with transfer rows, and one row (scored_on
    empty) for a group without any — a λ that gave no directions is shown, never dropped
    (issue 18). Columns: region, method, lam, param_hash, mean_rank (directions per
    sample), mean_span (the dimension they span: LowRankGAN's projected rows can be
    dependent), empty_share (share of samples with no direction), mean_rank_R, mean_rank_B
    (RPCA ranks of L_R, L_B), rank_B_zero_share, degenerate (True when some sample has
    rank(L_B) = 0: there LowRankGAN is the unprojected principal directions of L_R, i.e.
    ``jacobian_svd``, not a local method), scored_on, carrying_per_source, self_locality,
    self_strength, cross_locality, cross_baseline, cross_strength,
    realized_cross_locality; sorted by region, λ, scored_on.
    """
    cols = ["region", "method", "lam", "param_hash", "mean_rank", "mean_span", "empty_share", "mean_rank_R", "mean_rank_B",
            "rank_B_zero_share", "degenerate", "scored_on", "carrying_per_source", "self_locality", "self_strength",
            "cross_locality", "cross_baseline", "cross_strength", "realized_cross_locality"]
    if groups.empty:
        return pd.DataFrame(columns=cols)
    lg = groups[np.isfinite(groups["lam"].astype(float))]
    if lg.empty:
        return pd.DataFrame(columns=cols)
    g2 = lg.astype({"region": str, "method": str})
    g2 = g2[[c for c in ("region", "method", "lam", "param_hash", "mean_rank", "mean_span", "empty_share", "mean_rank_R",
                         "mean_rank_B", "rank_B_zero_share") if c in g2.columns]].copy()
    g2["degenerate"] = g2["rank_B_zero_share"].fillna(0.0) > 0 if "rank_B_zero_share" in g2 else False
    summ = summarize_transfer(df[df["method"].isin(lg["method"].astype(str))]) if not df.empty else pd.DataFrame()
    if summ.empty:
        summ = pd.DataFrame(columns=["region", "method", "scored_on"])
    summ = summ.astype({"region": str, "method": str, "scored_on": str})
    out = g2.merge(summ, on=["region", "method"], how="left")
    out = out.reindex(columns=cols)
    return out.sort_values(["region", "lam", "scored_on"], na_position="last").reset_index(drop=True)


def box_mask_pairs(store: str | Path | Store) -> list[tuple[str, str]]:
    """(box region, mask region) pairs from the stored spec: a ``part: P`` region and a
    box/preset region named P or with ``truth: P``."""
    st = open_store(store)
    regions = dict((st.spec or {}).get("regions") or {})
    out = []
    for mname, m in regions.items():
        part = m.get("part")
        if part is None:
            continue
        for bname, b in regions.items():
            if bname == mname or ("box" not in b and "preset" not in b):
                continue
            if bname == part or b.get("truth") == part:
                out.append((bname, mname))
    return sorted(out)


def _carrying_bases(st: Store, region: str, label: str, samples: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
    path = f"directions/{region}/{label}"
    idx = np.asarray(samples, dtype=np.int64)
    V = read_rows(st.group[f"{path}/vectors"], idx).astype(np.float64)  # reads each chunk once
    M = read_rows(st.group[f"regions/{region}/gram_in"], idx).astype(np.float64)
    keep = source_energy(V, M, frac)["carrying"]
    return orth_bases(V, keep)


def box_vs_mask(store: str | Path | Store, df: pd.DataFrame | None = None, samples: Sequence[int] | None = None,
                max_samples: int = 64, frac: float = 0.01) -> pd.DataFrame:
    """Box vs ground-truth mask, per (box, mask, method label present for both).

    Columns: box, mask, method, samples, similarity_mean / similarity_median (per-sample
    Σcos²θ / max rank between the two carrying subspaces of the same sample),
    max_angle_median (degrees), box_rank, mask_rank (mean carrying dimension), and from
    the transfer table (when given): box_cross_on_mask (box directions scored on the
    targets' masks), mask_cross_on_mask, box_cross_on_box — mean cross locality of
    carrying directions.
    """
    st = open_store(store)
    cols = ["box", "mask", "method", "samples", "similarity_mean", "similarity_median", "max_angle_median",
            "box_rank", "mask_rank", "box_cross_on_mask", "mask_cross_on_mask", "box_cross_on_box"]
    pairs = box_mask_pairs(st)
    if not pairs:
        return pd.DataFrame(columns=cols)
    labels: dict[str, set[str]] = {}
    for region, label, _ in st.direction_groups():
        labels.setdefault(region, set()).add(label)
    rows = []
    for box, mask in pairs:
        common = sorted(labels.get(box, set()) & labels.get(mask, set()))
        for label in common:
            ok = st.status() == DONE
            for r in (box, mask):
                ok &= np.asarray(st.group[f"directions/{r}/{label}/status"][:]) == DONE
            idx = np.flatnonzero(ok) if samples is None else np.array([i for i in samples if ok[i]], dtype=np.int64)
            idx = idx[:max_samples]
            if idx.size == 0:
                continue
            Qb, rb = _carrying_bases(st, box, label, idx, frac)
            Qm, rm = _carrying_bases(st, mask, label, idx, frac)
            pair = paired_subspace_similarity(Qb, rb, Qm, rm)
            sim, ang = pair["similarity"], pair["max_angle"]
            row = {"box": box, "mask": mask, "method": label, "samples": int(idx.size),
                   "similarity_mean": float(np.nanmean(sim)), "similarity_median": float(np.nanmedian(sim)),
                   "max_angle_median": float(np.nanmedian(ang)), "box_rank": float(rb.mean()),
                   "mask_rank": float(rm.mean())}
            if df is not None and not df.empty:
                def cross(region: str, scored: str) -> float:
                    sel = df[(df["region"] == region) & (df["method"] == label) & (df["scored_on"] == scored)
                             & df["carrying"] & ~df["self_pair"] & ~df["inert"]]
                    return _mean(sel["locality"])

                row.update({"box_cross_on_mask": cross(box, mask), "mask_cross_on_mask": cross(mask, mask),
                            "box_cross_on_box": cross(box, box)})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)
