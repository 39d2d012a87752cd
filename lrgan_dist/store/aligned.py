"""The one reader of per-sample directions with their signs aligned (issue 15).

Per-sample directions ``directions/<region>/<label>/vectors`` carry an arbitrary sign. The
population stage stores, per (region, method), the sign of every per-sample direction
under the rule of :func:`lrgan_dist.core.subspaces.align_signs` (match to the population
direction of smallest angle) as ``population/<region>/<label>/sign`` int8 [n, r]
(+1 kept, −1 flipped, 0 not defined). Directions are never rewritten: every reader that
shows or exports a direction's *sign* (previews, the transfer stage's source vectors,
``lrgan-dist export``, the analysis loaders) calls :func:`read_directions`, which applies
the stored signs. Without a sign array (population not run yet, a store written before
issue 15) the directions are returned as stored.

Cost: one extra read of ``rows × d`` int8 per call, beside the ``rows × k × d`` vectors.
"""
from __future__ import annotations

import numpy as np

from lrgan_dist.core.subspaces import apply_signs
from lrgan_dist.store.zarrstore import Store, read_rows

__all__ = ["sign_path", "read_signs", "read_directions"]

Rows = slice | np.ndarray | list[int] | tuple[int, ...]


def sign_path(store: Store, path: str) -> str | None:
    """``population/<region>/<label>/sign`` of the per-sample group at ``path`` (same
    region, label and parameters: the ``label@hash8`` rule of ``find_result_group``), or None."""
    if path not in store.group:
        return None
    a = dict(store.group[path].attrs)
    _, region, label = path.split("/", 2)
    base = str(a.get("label", label.split("@", 1)[0]))
    ph = a.get("param_hash")
    if "population" not in store.group or not ph:
        return None
    pop = store.find_result_group("population", str(a.get("region", region)), base, str(ph))
    if pop is None or f"{pop}/sign" not in store.group:
        return None
    return f"{pop}/sign"


def read_signs(store: Store, path: str, rows: Rows) -> np.ndarray | None:
    """int8 [rows, d] stored signs of the directions group at ``path``, or None (no sign array)."""
    sp = sign_path(store, path)
    return None if sp is None else read_rows(store.group[sp], rows)


def read_directions(store: Store, path: str, rows: Rows, k: int | None = None, aligned: bool = True) -> np.ndarray:
    """Directions ``[rows, k, d]`` (stored dtype, NaN-padded) of the per-sample group ``path``
    for ``rows`` (a slice or sample indices), signs applied (``aligned=False``: as stored)."""
    V = read_rows(store.group[f"{path}/vectors"], rows)
    if k is not None:
        V = V[:, :k]
    if not aligned:
        return V
    s = read_signs(store, path, rows)
    return V if s is None else apply_signs(V, s[:, : V.shape[1]])
