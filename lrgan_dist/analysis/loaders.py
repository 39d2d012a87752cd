"""Store → tidy pandas DataFrames (one row per observation, documented dtypes).

Every loader takes a store URI (local path or ``s3://``), a :class:`pathlib.Path` or an
open :class:`lrgan_dist.store.zarrstore.Store`, reads only what it needs, and returns a
``pandas.DataFrame`` with fixed columns and dtypes (strings as ``category``).

``load_transfer(store)`` — the long table of the linearized transfer study (written by
the report as ``transfer.parquet``), one row per (source, target, region, method,
scored_on, direction) with a defined direction and a scored target:

==================  ========  ==========================================================
column              dtype     meaning
==================  ========  ==========================================================
source              int32     sample index the direction was found on
target              int32     sample index it is applied to
region              category  region the direction was found for (``directions/<region>``)
method              category  result-group label (``lowrankgan``, ``lrg_a``, ``x@hash8``)
method_name         category  registry name of the method (``lowrankgan``, ``resefa``, …)
scored_on           category  region whose *target* Grams/masks score it (``transfer.score_on``)
direction           int16     k, 0 = the method's best direction
self_pair           bool      source == target
carrying            bool      source_share ≥ transfer.carry_frac (default 1 %)
inert               bool      energy_in + energy_out < 1e-5 · the target's mean energy per
                              direction (tr M_R + tr M_B)/d: the direction does ~nothing
                              there; its locality is noise and summaries leave it out
source_share        float32   vᵀM_R v at the source / the source's largest over its directions
energy_in           float32   vᵀM_R v at the target: mean squared change per pixel inside R
energy_out          float32   vᵀM_B v at the target: the same outside (B = 1 − R)
total_in            float32   energy_in · ΣR (sum over the region's pixels)
total_out           float32   energy_out · ΣB
locality            float32   total_in / (total_in + total_out): the SHARE of the first-order
                              change ‖J v‖² (summed over the grid) that falls inside R
locality_per_pixel  float32   energy_in / (energy_in + energy_out): the ratio of the mean
                              changes per pixel (overstates locality when ΣR < ΣB)
baseline            float32   locality (share) of a random unit direction at the target:
                              tr M_R ΣR / (tr M_R ΣR + tr M_B ΣB) — chance level
strength            float32   ‖J v‖² / E‖J u‖² for a random unit u (whole image):
                              (total_in + total_out) / ((tr M_R ΣR + tr M_B ΣB)/d)
realized            bool      the pair was rendered (realized edits exist)
realized_locality   float32   realized locality (share) at the smallest |α| (NaN if not rendered)
==================  ========  ==========================================================

Energies are per unit step² of the latent, in squared image units on the analysis
grid (channels summed with ``grid.channels: rgb``), per pixel because the stored Grams
are normalized by ΣR and ΣB (README "Concepts").

``load_realized(store)`` — one row per rendered (pair, group, scored_on, direction,
strength): the columns source … self_pair, carrying, inert as above plus ``strength``
(float32, α), ``energy_in``/``energy_out`` (float32, masked MSE / α² averaged over the
± edits), ``energy_in_minus``/``energy_in_plus``/``energy_out_minus``/``energy_out_plus``
(float32, each sign: x − αv and x + αv with v's sign aligned to the population directions,
issue 15; the transfer stage reads its sources through :func:`lrgan_dist.store.aligned.read_directions`),
``locality`` (float32, realized, the share with the target's ΣR, ΣB)
and ``linear_locality`` (float32, the linearized locality (share) of the same row).

Locality is always the share (:func:`lrgan_dist.core.scores.locality_share`), computed
here from the stored energies and areas, so stores written before issue 18 (whose stored
``locality`` arrays hold the per-pixel ratio) read the same as new ones. This module and
:mod:`lrgan_dist.analysis.summaries` import no torch.

Cost: the transfer table is built group by group from [S, N, k] arrays with numpy
boolean indexing, O(S·N·k) per (group, scored region); nothing is generated.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lrgan_dist.core.scores import baseline_share, edit_strength, inert, locality_per_pixel, locality_share
from lrgan_dist.core.subspaces import source_energy
from lrgan_dist.store.zarrstore import DONE, Store, attrs_of, subgroup

__all__ = [
    "TRANSFER_COLUMNS",
    "REALIZED_COLUMNS",
    "open_store",
    "load_samples",
    "load_groups",
    "load_directions",
    "load_transfer",
    "load_realized",
    "load_similarity",
    "transfer_groups",
    "has_transfer",
    "traces",
]

#: column → dtype of :func:`load_transfer` (and of ``transfer.parquet``).
TRANSFER_COLUMNS: dict[str, str] = {
    "source": "int32", "target": "int32", "region": "category", "method": "category",
    "method_name": "category", "scored_on": "category", "direction": "int16", "self_pair": "bool",
    "carrying": "bool", "inert": "bool", "source_share": "float32", "energy_in": "float32",
    "energy_out": "float32", "total_in": "float32", "total_out": "float32", "locality": "float32",
    "locality_per_pixel": "float32", "baseline": "float32", "strength": "float32",
    "realized": "bool", "realized_locality": "float32",
}
#: column → dtype of :func:`load_realized` (and of ``realized.parquet``).
REALIZED_COLUMNS: dict[str, str] = {
    "source": "int32", "target": "int32", "region": "category", "method": "category",
    "method_name": "category", "scored_on": "category", "direction": "int16", "self_pair": "bool",
    "carrying": "bool", "inert": "bool", "strength": "float32", "energy_in": "float32", "energy_out": "float32",
    "energy_in_minus": "float32", "energy_in_plus": "float32", "energy_out_minus": "float32",
    "energy_out_plus": "float32", "locality": "float32", "linear_locality": "float32",
}
_CATS = ("region", "method", "method_name", "scored_on")


def open_store(store: str | Path | Store) -> Store:
    """A read handle on a store (accepts a URI, a path or an open Store)."""
    return store if isinstance(store, Store) else Store.open(str(store), mode="r")


def has_transfer(store: str | Path | Store) -> bool:
    st = open_store(store)
    return "transfer" in st.group and "linear" in attrs_of(st.group["transfer"])


def _typed(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    df = df[list(columns)]
    return df.astype(columns)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return _typed(pd.DataFrame({c: pd.Series([], dtype="float64" if d == "category" else d)
                                for c, d in columns.items()}), columns)


# ----------------------------------------------------------------------------- samples, groups


def load_samples(store: str | Path | Store) -> pd.DataFrame:
    """One row per sample: sample (int32), status (uint8: 0 pending, 1 done, 2 failed),
    done (bool), error (str), and ``area_<region>`` (float32, ΣR of the sample's mask)."""
    st = open_store(store)
    status = st.status()
    n = status.size
    errs = [str(e) for e in np.asarray(st.group["errors"][:])] if "errors" in st.group else [""] * n
    df = pd.DataFrame({"sample": np.arange(n, dtype=np.int32), "status": status.astype(np.uint8),
                       "done": status == DONE, "error": pd.Series(errs, dtype=str)})
    for r in st.layout.regions:
        m = st.region_mask(r)
        area = m.sum(axis=(-2, -1))
        df[f"area_{r}"] = np.broadcast_to(area, (n,)).astype(np.float32)
    return df


def _resolved_lam(method: str, params: dict, d: int) -> float:
    lam = params.get("lam")
    if method != "lowrankgan":
        return float("nan")
    if lam is None:
        return 1.0 / math.sqrt(d)  # the documented default λ = 1/√d (Candès et al.)
    return float(lam)


def _mean_diag(g: Any, name: str, done: np.ndarray) -> float:
    if "diagnostics" not in g or name not in g["diagnostics"] or not done.any():
        return float("nan")
    return float(np.asarray(g[f"diagnostics/{name}"][:])[done].astype(np.float64).mean())


def _zero_share(g: Any, name: str, done: np.ndarray) -> float:
    if "diagnostics" not in g or name not in g["diagnostics"] or not done.any():
        return float("nan")
    return float((np.asarray(g[f"diagnostics/{name}"][:])[done] == 0).mean())


def stored_mean_span(g: Any, done: np.ndarray) -> float:
    """Mean of a result group's stored span dimension (``diagnostics/span``: the dimension
    the sample's direction rows span) over ``done`` samples; NaN when it is missing for
    some (a store written before it was stored)."""
    if "diagnostics" not in g or "span" not in g["diagnostics"] or not done.any():
        return float("nan")
    v = np.asarray(g["diagnostics/span"][:])[done]
    return float(v.mean()) if (v >= 0).all() else float("nan")


def load_groups(store: str | Path | Store) -> pd.DataFrame:
    """One row per per-sample result group ``directions/<region>/<label>``: region, method
    (label), method_name, param_hash, params (JSON text), lam (float64: λ for lowrankgan,
    the 1/√d default resolved; NaN for other methods), done (int64), mean_rank and
    median_rank (float64, over done samples: the number of directions), mean_span (float64: the
    dimension those directions span, :func:`stored_mean_span`), empty_share
    (float64: share of done samples with no direction at all — "no local direction"),
    mean_rank_R and mean_rank_B (float64: ranks of the RPCA low-rank parts L_R, L_B, from
    the group's stored diagnostics; NaN for methods without them), rank_B_zero_share
    (float64: share of done samples with rank(L_B) = 0, where LowRankGAN degenerates to the
    unprojected principal directions of L_R, i.e. to ``jacobian_svd`` on L_R; NaN without
    diagnostics)."""
    st = open_store(store)
    rows = []
    for region, label, path in st.direction_groups():
        g = st.group[path]
        a = attrs_of(g)
        fst = np.asarray(g["status"][:])
        rank = np.asarray(g["rank"][:])[fst == DONE].astype(np.float64)
        params = dict(a.get("params") or {})
        rows.append({"region": region, "method": label, "method_name": a.get("method", label),
                     "param_hash": a.get("param_hash", ""), "params": json.dumps(params, sort_keys=True),
                     "lam": _resolved_lam(a.get("method", label), params, st.layout.d),
                     "done": int(fst.__eq__(DONE).sum()),
                     "mean_rank": float(rank.mean()) if rank.size else float("nan"),
                     "median_rank": float(np.median(rank)) if rank.size else float("nan"),
                     "empty_share": float((rank == 0).mean()) if rank.size else float("nan"),
                     "mean_span": stored_mean_span(g, fst == DONE),
                     **{f"mean_rank_{side}": _mean_diag(g, f"rank_{side}", fst == DONE) for side in ("R", "B")},
                     "rank_B_zero_share": _zero_share(g, "rank_B", fst == DONE)})
    cols = ["region", "method", "method_name", "param_hash", "params", "lam", "done", "mean_rank", "median_rank",
            "empty_share", "mean_span", "mean_rank_R", "mean_rank_B", "rank_B_zero_share"]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({"region": "category", "method": "category", "method_name": "category"})


def load_directions(store: str | Path | Store, region: str | None = None, method: str | None = None,
                    samples: Sequence[int] | None = None, k: int = 8, frac: float = 0.01) -> pd.DataFrame:
    """Per (sample, region, method, direction ≤ k) with a defined direction: rank (int32),
    energy (float64, vᵀM_R v at the sample), share (float64, / the sample's largest over
    all its directions), relative (float64, / tr M_R / d, a random direction's), carrying
    (bool, :func:`lrgan_dist.core.subspaces.carrying`). Reads chunk by chunk."""
    st = open_store(store)
    status = st.status()
    want = np.zeros(st.layout.n, dtype=bool)
    if samples is None:
        want[:] = status == DONE
    else:
        want[np.asarray(list(samples), dtype=np.int64)] = True
    frames = []
    for reg, label, path in st.direction_groups():
        if (region is not None and reg != region) or (method is not None and label != method):
            continue
        g = st.group[path]
        mname = attrs_of(g).get("method", label)
        for a, b in st.layout.chunks():
            sel = want[a:b] & (np.asarray(g["status"][a:b]) == DONE)
            if not sel.any():
                continue
            V = np.asarray(g["vectors"][a:b])[sel].astype(np.float64)
            M = st.read(f"regions/{reg}/gram_in", a, b)[sel].astype(np.float64)
            se = source_energy(V, M, frac)  # the carrying rule of lrgan_dist.core.subspaces
            e, share, carry = se["energy"], se["share"], se["carrying"]
            fin = np.isfinite(e)
            kk = min(k, V.shape[1])
            idx = np.flatnonzero(sel) + a
            s_i, d_i = np.nonzero(fin[:, :kk])
            rank = np.asarray(g["rank"][a:b])[sel]
            frames.append(pd.DataFrame({
                "sample": idx[s_i].astype(np.int32), "region": reg, "method": label, "method_name": mname,
                "direction": d_i.astype(np.int16), "rank": rank[s_i].astype(np.int32),
                "energy": e[s_i, d_i], "share": share[s_i, d_i], "relative": se["relative"][s_i, d_i],
                "carrying": carry[s_i, d_i]}))
    cols = {"sample": "int32", "region": "category", "method": "category", "method_name": "category",
            "direction": "int16", "rank": "int32", "energy": "float64", "share": "float64", "relative": "float64",
            "carrying": "bool"}
    if not frames:
        return _empty(cols)
    return _typed(pd.concat(frames, ignore_index=True), cols)


# ----------------------------------------------------------------------------- transfer


def transfer_groups(store: str | Path | Store) -> list[dict[str, Any]]:
    """The transfer stage's result groups (region, label, method, params, param_hash, scored_on)."""
    st = open_store(store)
    if not has_transfer(st):
        return []
    return list(attrs_of(st.group["transfer"])["linear"]["config"]["groups"])


def _realized_arrays(st: Store) -> dict[str, Any] | None:
    root = subgroup(st.group, "transfer")
    real = attrs_of(root).get("realized")
    if not real or "realized" not in root or not real.get("pairs"):
        return None
    rst = np.asarray(root["realized/status"][:]) == DONE
    if not rst.any():
        return None
    return {"pairs": np.asarray(root["realized/pairs"][...]).astype(np.int64), "status": rst,
            "strengths": np.asarray(root["realized/strengths"][...]).astype(np.float64)}


def load_transfer(store: str | Path | Store, region: str | None = None, method: str | None = None,
                  scored_on: str | None = None, carrying_only: bool = False) -> pd.DataFrame:
    """The linearized transfer long table (columns and dtypes: :data:`TRANSFER_COLUMNS`)."""
    st = open_store(store)
    if not has_transfer(st):
        return _empty(TRANSFER_COLUMNS)
    root = st.group["transfer"]
    lin = attrs_of(root)["linear"]
    src = np.asarray(lin["sources"], dtype=np.int64)
    tmask = np.zeros(st.layout.n, dtype=bool)
    tmask[np.asarray(lin["targets"], dtype=np.int64)] = True
    tmask &= np.asarray(root["linear/status"][:]) == DONE
    targets = np.flatnonzero(tmask)
    real = _realized_arrays(st)
    frames = []
    for g in lin["config"]["groups"]:
        if (region is not None and g["region"] != region) or (method is not None and g["label"] != method):
            continue
        key = f"{g['region']}/{g['label']}"
        gg = root[f"linear/{key}"]
        share = np.asarray(gg["source_share"][...], dtype=np.float32)  # [S, k]
        carry = np.asarray(gg["carrying"][...], dtype=bool)
        defined = np.isfinite(np.asarray(gg["vectors"][...])).all(axis=2)  # [S, k]
        for s in g["scored_on"]:
            if scored_on is not None and s != scored_on:
                continue
            og = gg[f"on/{s}"]
            a_in_all, a_out_all = _areas(root, s)
            a_in, a_out = a_in_all[targets], a_out_all[targets]
            tr_in, tr_out = traces(st, s, targets)
            me = np.asarray(root[f"linear/targets/{s}/mean_energy"][:], dtype=np.float64)[targets]
            e_in = np.asarray(og["energy_in"][...])[:, targets]  # [S, T, k]
            e_out = np.asarray(og["energy_out"][...])[:, targets]
            ai, ao = a_in[None, :, None], a_out[None, :, None]
            loc = locality_share(e_in, e_out, ai, ao)
            lpp = locality_per_pixel(e_in, e_out)
            base = baseline_share(tr_in, tr_out, a_in, a_out)  # [T]
            strength = edit_strength(e_in, e_out, tr_in[None, :, None], tr_out[None, :, None], ai, ao,
                                     st.layout.d)
            dead = inert(e_in, e_out, me[None, :, None])
            keep = np.broadcast_to(defined[:, None, :], e_in.shape)
            if carrying_only:
                keep = keep & carry[:, None, :]
            si, ti, ki = np.nonzero(keep)
            rl = np.full(si.size, np.nan, dtype=np.float32)
            realized = np.zeros(si.size, dtype=bool)
            if real is not None:
                rl_full, rdone = _realized_locality_grid(root, key, s, real, src, targets, e_in.shape,
                                                         a_in_all, a_out_all)
                rl = rl_full[si, ti, ki]
                realized = rdone[si, ti]
            frames.append(pd.DataFrame({
                "source": src[si].astype(np.int32), "target": targets[ti].astype(np.int32),
                "region": g["region"], "method": g["label"], "method_name": g["method"], "scored_on": s,
                "direction": ki.astype(np.int16), "self_pair": src[si] == targets[ti],
                "carrying": carry[si, ki], "inert": dead[si, ti, ki], "source_share": share[si, ki],
                "energy_in": e_in[si, ti, ki], "energy_out": e_out[si, ti, ki],
                "total_in": e_in[si, ti, ki] * a_in[ti], "total_out": e_out[si, ti, ki] * a_out[ti],
                "locality": loc[si, ti, ki], "locality_per_pixel": lpp[si, ti, ki], "baseline": base[ti],
                "strength": strength[si, ti, ki], "realized": realized, "realized_locality": rl}))
    if not frames:
        return _empty(TRANSFER_COLUMNS)
    return _typed(pd.concat(frames, ignore_index=True), TRANSFER_COLUMNS)


def _areas(root: Any, scored: str) -> tuple[np.ndarray, np.ndarray]:
    """[N] ΣR, ΣB of every sample's mask of ``scored`` as the transfer stage recorded them."""
    return (np.asarray(root[f"linear/targets/{scored}/area_in"][:], dtype=np.float64),
            np.asarray(root[f"linear/targets/{scored}/area_out"][:], dtype=np.float64))


def traces(store: str | Path | Store, region: str, samples: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tr M_R, tr M_B [len(samples)] of ``region`` (float64), read chunk by chunk (NaN for
    samples without Grams). A random unit direction's energies are these / d."""
    st = open_store(store)
    idx = np.asarray(samples, dtype=np.int64)
    out_in = np.full(idx.size, np.nan)
    out_out = np.full(idx.size, np.nan)
    for a, b in st.layout.chunks():
        pos = np.flatnonzero((idx >= a) & (idx < b))
        if pos.size == 0:
            continue
        for name, out in (("gram_in", out_in), ("gram_out", out_out)):
            M = st.read(f"regions/{region}/{name}", a, b)[idx[pos] - a].astype(np.float64)
            out[pos] = np.trace(M, axis1=1, axis2=2)
    return out_in, out_out


def _realized_locality_grid(root: Any, key: str, scored: str, real: dict[str, Any], src: np.ndarray,
                            targets: np.ndarray, shape: tuple[int, int, int], area_in: np.ndarray,
                            area_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[S, T, k] realized locality (share) at the smallest |α| (NaN where not rendered), [S, T] rendered."""
    S, T, k = shape
    out = np.full((S, T, k), np.nan, dtype=np.float32)
    done = np.zeros((S, T), dtype=bool)
    a0 = int(np.argmin(np.abs(real["strengths"])))
    ein = np.asarray(root[f"realized/{key}/on/{scored}/energy_in"][...], dtype=np.float64)[:, :, a0].mean(-1)
    eout = np.asarray(root[f"realized/{key}/on/{scored}/energy_out"][...], dtype=np.float64)[:, :, a0].mean(-1)
    pt = real["pairs"][:, 1]
    loc = locality_share(ein, eout, area_in[pt, None], area_out[pt, None])  # [P, k]
    srow = {int(v): i for i, v in enumerate(src)}
    tcol = {int(v): i for i, v in enumerate(targets)}
    for p, (s, t) in enumerate(real["pairs"]):
        if not real["status"][p] or int(s) not in srow or int(t) not in tcol:
            continue
        out[srow[int(s)], tcol[int(t)]] = loc[p]
        done[srow[int(s)], tcol[int(t)]] = True
    return out, done


def load_realized(store: str | Path | Store, region: str | None = None, method: str | None = None) -> pd.DataFrame:
    """Realized edits, one row per (pair, group, scored_on, direction, strength):
    columns and dtypes :data:`REALIZED_COLUMNS`."""
    st = open_store(store)
    if not has_transfer(st):
        return _empty(REALIZED_COLUMNS)
    real = _realized_arrays(st)
    if real is None:
        return _empty(REALIZED_COLUMNS)
    root = st.group["transfer"]
    lin = attrs_of(root)["linear"]
    src = np.asarray(lin["sources"], dtype=np.int64)
    srow = {int(v): i for i, v in enumerate(src)}
    pairs, rdone, alphas = real["pairs"], real["status"], real["strengths"]
    pidx = np.flatnonzero(rdone)
    ps, pt = pairs[pidx, 0], pairs[pidx, 1]
    sr = np.array([srow[int(s)] for s in ps], dtype=np.int64)
    frames = []
    for g in lin["config"]["groups"]:
        if (region is not None and g["region"] != region) or (method is not None and g["label"] != method):
            continue
        key = f"{g['region']}/{g['label']}"
        carry = np.asarray(root[f"linear/{key}/carrying"][...], dtype=bool)  # [S, k]
        for s in g["scored_on"]:
            ein = np.asarray(root[f"realized/{key}/on/{s}/energy_in"][...], dtype=np.float64)[pidx]  # [P, k, A, 2]
            eout = np.asarray(root[f"realized/{key}/on/{s}/energy_out"][...], dtype=np.float64)[pidx]
            og = root[f"linear/{key}/on/{s}"]
            a_in, a_out = _areas(root, s)
            lloc = locality_share(np.asarray(og["energy_in"][...])[sr, pt], np.asarray(og["energy_out"][...])[sr, pt],
                                  a_in[pt, None], a_out[pt, None])  # [P, k]
            me = np.asarray(root[f"linear/targets/{s}/mean_energy"][:], dtype=np.float64)[pt]
            dead = inert(np.asarray(og["energy_in"][...])[sr, pt], np.asarray(og["energy_out"][...])[sr, pt],
                         me[:, None])  # [P, k]
            fin = np.isfinite(ein).all(axis=-1) & np.isfinite(eout).all(axis=-1)  # [P, k, A]
            pi, ki, ai = np.nonzero(fin)
            mi, mo = ein.mean(-1), eout.mean(-1)
            loc = locality_share(mi, mo, a_in[pt, None, None], a_out[pt, None, None])
            frames.append(pd.DataFrame({
                "source": ps[pi].astype(np.int32), "target": pt[pi].astype(np.int32), "region": g["region"],
                "method": g["label"], "method_name": g["method"], "scored_on": s, "direction": ki.astype(np.int16),
                "self_pair": ps[pi] == pt[pi], "carrying": carry[sr[pi], ki], "inert": dead[pi, ki],
                "strength": alphas[ai],
                "energy_in": mi[pi, ki, ai], "energy_out": mo[pi, ki, ai],
                "energy_in_minus": ein[pi, ki, ai, 0], "energy_in_plus": ein[pi, ki, ai, 1],
                "energy_out_minus": eout[pi, ki, ai, 0], "energy_out_plus": eout[pi, ki, ai, 1],
                "locality": loc[pi, ki, ai], "linear_locality": lloc[pi, ki]}))
    if not frames:
        return _empty(REALIZED_COLUMNS)
    return _typed(pd.concat(frames, ignore_index=True), REALIZED_COLUMNS)


def load_similarity(store: str | Path | Store, region: str, method: str) -> dict[str, Any]:
    """Sample×sample subspace similarity of one result group from the transfer stage.

    Returns {"samples": int array [M], "order": display order [M] (positions),
    "rank": [M], "similarity"/"projection_distance"/"max_angle": DataFrames [M, M]
    indexed by sample}. Raises KeyError when the stage did not compute it.
    """
    st = open_store(store)
    key = f"transfer/similarity/{region}/{method}"
    if key not in st.group or not st.group[key].attrs.get("complete"):
        raise KeyError(f"{st.uri}: no subspace similarity for {region}/{method}; run the transfer stage")
    samples = np.asarray(st.group["transfer/similarity/samples"][...]).astype(np.int64)
    g = st.group[key]
    out: dict[str, Any] = {"samples": samples, "order": np.asarray(g["order"][...]).astype(np.int64),
                           "rank": np.asarray(g["rank"][...]).astype(np.int64)}
    for name in ("similarity", "projection_distance", "max_angle"):
        out[name] = pd.DataFrame(np.asarray(g[name][...], dtype=np.float64), index=samples, columns=samples)
    return out

