"""Metrics of *realized* edits (rendered image pairs) and of per-sample subspaces.

Used by the faces study (analysis/faces_study.py, docs/results.md) to compare direction
methods at matched edit strength.  Pure numpy (torch tensors are accepted via
``np.asarray``).  Images are ``[..., C, H, W]`` (any leading batch axes), masks ``[..., H,
W]`` with values in [0, 1] on the same pixel grid (broadcast against the images' leading
axes).  The per-pixel change of an edit ``x0 → x1`` is ``δ_p = mean_c (x1 - x0)²_{c,p}``.

* :func:`masked_mse` -- LinkGAN's metric (Zhu et al., "LinkGAN: Linking GAN Latents to
  Pixels for Controllable Image Synthesis", ICCV 2023, §4.1: MSE inside and outside the
  region): ``MSE_in = Σ_p R_p δ_p / Σ_p R_p``, ``MSE_out = Σ_p (1-R_p) δ_p / Σ_p (1-R_p)``.
* :func:`precision_at_n` -- LELSD's precision (Pajouheshgar et al., "Optimizing Latent
  Space Directions for GAN-based Local Image Editing", ICASSP 2022): the share of the N
  most-changed pixels that lie inside R, N = |R| = Σ_p R_p for a hard mask.  For a soft
  mask, N = round(Σ_p R_p) and a pixel counts with its membership R_p, so the score is
  ``Σ_{p ∈ top-N(δ)} R_p / N`` (equal to the hard definition when R ∈ {0, 1}).  Ties in δ
  are broken by pixel index (stable sort), so the result is deterministic.
* :func:`in_region_change` -- the root-mean-square change inside R, ``sqrt(MSE_in)``
  (in image-range units: what the edit does to the region).
* :func:`realized_locality` -- the share of the total change inside R,
  ``Σ_p R_p δ_p / Σ_p δ_p`` (the locality share of README "Concepts", measured on the rendered edit
  instead of to first order; 1 = the whole change is in R).
* :func:`grassmann_distance` -- Local Basis (Choi et al., "Do Not Escape From the
  Manifold: Discovering the Local Coordinates on the Latent Space of GANs", ICLR 2022,
  §4.2, eq. 7): ``d_geo(A, B) = sqrt(Σ_i θ_i²)`` over the principal angles θ_i between the
  row spaces of A [k1, d] and B [k2, d] (min(k1, k2) angles; the rows are
  orthonormalised first, by :func:`lrgan_dist.core.subspaces.orth`, the one basis
  policy).  0 for equal subspaces, ``(π/2)·sqrt(k)`` for orthogonal ones.

All functions return NaN where a quantity is undefined (an empty mask, no change at all).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lrgan_dist.core.subspaces import orth

__all__ = [
    "grassmann_distance",
    "in_region_change",
    "masked_mse",
    "pixel_change",
    "precision_at_n",
    "realized_locality",
]


def pixel_change(x0: Any, x1: Any) -> np.ndarray:
    """Per-pixel change δ = mean over channels of (x1 - x0)²: [..., C, H, W] → [..., H, W] float64."""
    a = np.asarray(x0, dtype=np.float64)
    b = np.asarray(x1, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"images: expected two arrays [..., C, H, W] of one shape, received "
                         f"{list(a.shape)} and {list(b.shape)}")
    return ((b - a) ** 2).mean(axis=-3)


def _mask(mask: Any, delta: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float64)
    if m.shape[-2:] != delta.shape[-2:]:
        raise ValueError(f"mask: expected [..., {delta.shape[-2]}, {delta.shape[-1]}] (the images' pixel grid), "
                         f"received {list(m.shape)}")
    if not np.isfinite(m).all() or m.min(initial=0) < 0 or m.max(initial=0) > 1:
        raise ValueError("mask: expected finite values in [0, 1]")
    return np.broadcast_to(m, np.broadcast_shapes(m.shape, delta.shape))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def masked_mse(x0: Any, x1: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """(MSE inside R, MSE outside R) of the edit x0 → x1, each [...] (LinkGAN's metric)."""
    d = pixel_change(x0, x1)
    m = _mask(mask, d)
    return (_ratio((m * d).sum((-2, -1)), m.sum((-2, -1))),
            _ratio(((1 - m) * d).sum((-2, -1)), (1 - m).sum((-2, -1))))


def in_region_change(x0: Any, x1: Any, mask: Any) -> np.ndarray:
    """RMS change inside R, sqrt(MSE_in) [...]."""
    return np.sqrt(masked_mse(x0, x1, mask)[0])


def realized_locality(x0: Any, x1: Any, mask: Any) -> np.ndarray:
    """Share of the total change inside R, Σ R δ / Σ δ [...] (NaN when nothing changed)."""
    d = pixel_change(x0, x1)
    m = _mask(mask, d)
    return _ratio((m * d).sum((-2, -1)), d.sum((-2, -1)))


def precision_at_n(x0: Any, x1: Any, mask: Any) -> np.ndarray:
    """LELSD precision@N [...]: Σ_{p in the N most-changed pixels} R_p / N, N = round(Σ R)."""
    d = pixel_change(x0, x1)
    m = _mask(mask, d)
    lead = d.shape[:-2]
    P = d.shape[-2] * d.shape[-1]
    dd = d.reshape(-1, P)
    mm = m.reshape(-1, P)
    out = np.full(dd.shape[0], np.nan)
    for i in range(dd.shape[0]):
        n = int(round(mm[i].sum()))
        if n < 1 or not np.isfinite(dd[i]).all():
            continue
        top = np.argsort(-dd[i], kind="stable")[:n]  # most-changed first; ties by pixel index
        out[i] = mm[i, top].sum() / n
    return out.reshape(lead)


def grassmann_distance(A: Any, B: Any) -> float:
    """Geodesic (Grassmannian) distance sqrt(Σ θ_i²) between the row spaces of A [k1, d] and
    B [k2, d] (NaN rows dropped; min(k1, k2) principal angles; NaN when either is empty)."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"subspaces: expected [k, d] row sets, received {list(A.shape)} and {list(B.shape)}")
    Qa, Qb = orth(A), orth(B)  # the one orthonormal-basis policy (lrgan_dist.core.subspaces)
    if Qa.shape[0] == 0 or Qb.shape[0] == 0:
        return float("nan")
    if Qa.shape[1] != Qb.shape[1]:
        raise ValueError(f"subspaces: expected rows of one dimension d, received {Qa.shape[1]} and {Qb.shape[1]}")
    cos = np.clip(np.linalg.svd(Qa @ Qb.T, compute_uv=False), 0.0, 1.0)
    theta = np.arccos(cos)
    return float(np.sqrt((theta ** 2).sum()))
