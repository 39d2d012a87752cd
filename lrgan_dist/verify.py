"""``lrgan-dist inspect --verify``: consistency checks of a store.

Checks: the stored spec re-parses and reproduces the stored fingerprint; every array
has the shape the layout implies; every sample marked done has finite latents and
Grams; every sample marked failed has a reason; every per-sample result marked done
has a finite first direction or rank 0. Returns a list of problems (empty = OK).
Cost: reads every per-sample array once, one chunk at a time.
"""
from __future__ import annotations

import numpy as np

from .store import DONE, FAILED, Store

__all__ = ["verify_store"]


def verify_store(store: Store) -> list[str]:
    problems: list[str] = []
    L = store.layout
    g = store.group
    try:
        from .spec import parse_spec

        spec = parse_spec(store.spec, base_dir=g.attrs.get("spec_base_dir", "."))
        if spec.data_fingerprint() != store.fingerprint:
            problems.append("fingerprint: the stored spec does not reproduce the stored fingerprint")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"spec: stored spec does not parse ({exc})")
    expected = {"latents": (L.n, L.d), "images": (L.n, *L.preview_hw, 3), "status": (L.n,), "errors": (L.n,)}
    h, w = L.grid
    if L.keep_jacobians:
        expected["jacobians"] = (L.n, L.channels, h, w, L.d)
    for r in L.regions:
        expected[f"regions/{r}/gram_in"] = (L.n, L.d, L.d)
        expected[f"regions/{r}/gram_out"] = (L.n, L.d, L.d)
        expected[f"regions/{r}/mask"] = (L.n, h, w) if r in L.per_sample_masks else (h, w)
    for key, shape in expected.items():
        if key not in g:
            problems.append(f"{key}: array missing")
        elif tuple(g[key].shape) != shape:
            problems.append(f"{key}: shape {list(g[key].shape)}, expected {list(shape)}")
    if any(p.endswith("array missing") and p.startswith("status") for p in problems):
        return problems
    status = store.status()
    errors = np.asarray(g["errors"][:]) if "errors" in g else None
    for a, b in L.chunks():
        done = status[a:b] == DONE
        if not done.any():
            continue
        for key in ["latents", *[f"regions/{r}/{k}" for r in L.regions for k in ("gram_in", "gram_out")]]:
            if key not in g or tuple(g[key].shape) != expected[key]:
                continue
            x = np.asarray(g[key][a:b])[done]
            bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
            for i in np.flatnonzero(done)[bad]:
                problems.append(f"{key}[{a + i}]: sample marked done but holds NaN/Inf (missing or corrupt chunk?)")
    if errors is not None:
        for i in np.flatnonzero(status == FAILED):
            if not str(errors[i]):
                problems.append(f"errors[{i}]: sample marked failed without a reason")
    for region, label, path in store.direction_groups():
        st = np.asarray(g[f"{path}/status"][:])
        rank = np.asarray(g[f"{path}/rank"][:])
        for a, b in L.chunks():
            done = st[a:b] == DONE
            if not done.any():
                continue
            v = np.asarray(g[f"{path}/vectors"][a:b])[done][:, 0, :]
            ok = np.isfinite(v).all(axis=1) | (rank[a:b][done] == 0)
            for i in np.flatnonzero(done)[~ok]:
                problems.append(f"{path}/vectors[{a + i}]: marked done but the first direction is NaN")
        orphan = np.flatnonzero((st == DONE) & (status != DONE))
        if orphan.size:
            problems.append(f"{path}: {orphan.size} samples have directions but no finished Jacobian")
    return problems
