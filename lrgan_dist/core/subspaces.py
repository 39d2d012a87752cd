"""Scoring directions: region energy, agreement with a known subspace, locality.

Pure numpy. Used by the submit summary, the transfer stage and the tests.

* region energy of a unit direction v at a sample: ``vᵀ M_R v`` (first-order change
  of the region per unit step, DESIGN.md §1);
* the *carrying* directions of a result: those with at least ``frac`` (1 %) of the
  largest region energy among its directions — the rule used by the acceptance
  criteria;
* sine of the angle between v and a subspace span(Q): ``‖v − Q Qᵀ v‖`` (Q orthonormal);
* coverage of span(Q) by span(V): ``‖Qᵀ orth(V)‖_F² / dim Q`` (1 = V contains Q);
* locality at a target: ``vᵀM_R v / (vᵀM_R v + vᵀM_B v)`` (per-pixel normalised Grams).
"""
from __future__ import annotations

import numpy as np

__all__ = ["region_energy", "carrying", "subspace_sines", "subspace_coverage", "locality", "orth"]


def region_energy(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """[..., k, d] directions, [..., d, d] Gram → [..., k] energies (NaN rows → NaN)."""
    return np.einsum("...kd,...de,...ke->...k", V, M, V)


def carrying(V: np.ndarray, M: np.ndarray, frac: float = 0.01) -> np.ndarray:
    """[..., k] bool: finite directions with energy ≥ frac · max energy."""
    e = region_energy(V, M)
    finite = np.isfinite(e)
    top = np.nanmax(np.where(finite, e, -np.inf), axis=-1, keepdims=True)
    return finite & (e >= frac * top) & (top > 0)


def orth(V: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis [r, d] of the row space of V [k, d]."""
    V = V[np.isfinite(V).all(axis=1)]
    if V.size == 0:
        return V.reshape(0, V.shape[-1] if V.ndim == 2 else 0)
    _, s, vt = np.linalg.svd(V, full_matrices=False)
    return vt[s > tol * max(s.max(), 1e-300)]


def subspace_sines(V: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """[k] sines of the angles between unit rows of V [k, d] and span(Q), Q [d, p] orthonormal."""
    Vn = V / np.linalg.norm(V, axis=1, keepdims=True)
    resid = Vn - (Vn @ Q) @ Q.T
    return np.linalg.norm(resid, axis=1)


def subspace_coverage(V: np.ndarray, Q: np.ndarray) -> float:
    """Fraction of span(Q) [d, p] contained in span of the rows of V [k, d]."""
    B = orth(V)
    if B.shape[0] == 0:
        return 0.0
    return float(np.linalg.norm(B @ Q) ** 2 / Q.shape[1])


def locality(V: np.ndarray, M_in: np.ndarray, M_out: np.ndarray) -> np.ndarray:
    """[..., k] first-order locality vᵀM_R v / (vᵀM_R v + vᵀM_B v)."""
    a = region_energy(V, M_in)
    b = region_energy(V, M_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / (a + b)
