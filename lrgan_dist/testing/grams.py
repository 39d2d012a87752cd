"""Gram builders and independent numpy references shared by tests and benchmarks.

Used by ``tests/core/test_rpca_lowrankgan.py`` and ``bench/bench_rpca.py`` (one copy; issue 12):

* :func:`np_pcp_reference` — the paper's ``RobustPCA.fit`` (Zhu et al. 2021 code; Candès et
  al. 2011, Alg. 1: principal component pursuit by ADMM with a fixed μ), one problem at a
  time in numpy;
* :func:`np_lowrankgan` — the paper's ``compute_directions.py`` steps 2-5 (ranks, principal
  directions, null space of L_B, projection) from given low-rank parts;
* :func:`structured_grams` — a Gram pair (M_R, M_B) of a structured Jacobian (like the synthetic generator, docs/spec.md);
* :func:`row_span`, :func:`min_principal_cos`, :func:`energetic` — comparing direction sets.

Pure numpy (plus the carrying rule of :mod:`lrgan_dist.core.subspaces`).
"""
from __future__ import annotations

import numpy as np

from lrgan_dist.core.subspaces import carrying

__all__ = ["np_pcp_reference", "np_lowrankgan", "structured_grams", "row_span", "min_principal_cos", "energetic"]


def np_pcp_reference(M, lam, mu_rule="reference", tol=1e-7, max_iter=10_000):
    """The paper's ADMM (RobustPCA.py, Candès et al. Alg. 1), straightforwardly in numpy."""
    n1, n2 = M.shape
    if mu_rule == "reference":
        mu = n1 * n2 / (4 * np.linalg.norm(M, ord=1))
    else:
        mu = n1 * n2 / (4 * np.abs(M).sum())
    S = np.zeros_like(M)
    Y = np.zeros_like(M)
    it = 0
    err = np.inf
    while err > tol * np.linalg.norm(M) and it < max_iter:
        U, s, Vh = np.linalg.svd(M - S + Y / mu, full_matrices=False)
        L = U @ np.diag(np.maximum(s - 1 / mu, 0)) @ Vh
        X = M - L + Y / mu
        S = np.sign(X) * np.maximum(np.abs(X) - lam / mu, 0)
        Y = Y + mu * (M - L - S)
        err = np.linalg.norm(M - L - S)
        it += 1
    return L, S, it


def np_lowrankgan(L_R, L_B, relax=0, clamp="zero"):
    """compute_directions.py steps 2-5 on given low-rank parts (rows of the result)."""
    d = L_R.shape[0]
    r_R = np.linalg.matrix_rank(L_R)
    r_B = np.linalg.matrix_rank(L_B)
    _, _, VHf = np.linalg.svd(L_R)
    _, _, VHb = np.linalg.svd(L_B)
    P = VHf[:r_R]
    start = min(max(1, r_B - relax), d - 1) if clamp == "reference" else min(max(0, r_B - relax), d)
    N = VHb[start:].T
    D = (N @ N.T @ P.T).T
    return D / np.linalg.norm(D, axis=1, keepdims=True), r_R, r_B


def structured_grams(d, seed, n_parts=5, h=24, w=24, diffuse=0.05, decay=1.0):
    """Gram pair (M_R, M_B) of a structured Jacobian J [h·w, d] (like the synthetic generator, docs/spec.md).

    Each part is a Gaussian blob on the image driven by its own block (3-6 dims) of a random
    orthonormal latent basis, with random per-pixel loadings; a weak diffuse term with a
    decaying spectrum (``diffuse · k^-decay``) touches every latent direction.  R is a box
    over the upper-left quadrant.  M_R = Jᵀ diag(R) J / ΣR, M_B = Jᵀ diag(1 − R) J / Σ(1 − R).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    J = np.zeros((h * w, d))
    k = 0
    for p in range(n_parts):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        r = rng.uniform(0.08, 0.18)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).ravel()
        kp = min(int(rng.integers(3, 7)), (d - k) // (n_parts - p))
        feats = rng.standard_normal((h * w, kp)) * blob[:, None] * (1.0 + p)
        J += feats @ Q[:, k:k + kp].T
        k += kp
    s = diffuse * np.arange(1, d + 1, dtype=float) ** -decay
    J += (rng.standard_normal((h * w, d)) * s) @ Q.T
    R = np.zeros((h, w))
    R[: h // 2, : w // 2] = 1
    R = R.ravel()
    M_R = (J.T * R) @ J / R.sum()
    M_B = (J.T * (1 - R)) @ J / (1 - R).sum()
    return M_R, M_B


def row_span(A, rel=1e-3):
    """Orthonormal basis [d, r] of the numerical row span of A [k, d] (σ > rel·σ_max).

    LowRankGAN's projected rows need not be independent: r_R principal directions projected
    into a smaller null space give rows whose span has a lower dimension (measured on the
    synthetic eye box: 7 rows spanning the 4-dim eye subspace, the other 3 singular values
    ~1e-5), so the span is the numerical one, not a QR of all rows."""
    _, s, Vh = np.linalg.svd(A, full_matrices=False)
    return Vh[: int((s > rel * s[0]).sum())].T


def min_principal_cos(A, B):
    """Smallest principal cosine between the numerical row spans of A [k, d] and B [k', d]
    (0 when their dimensions differ)."""
    qa, qb = row_span(A), row_span(B)
    if qa.shape[1] != qb.shape[1]:
        return 0.0
    return np.linalg.svd(qa.T @ qb, compute_uv=False).min()


def energetic(vectors: np.ndarray, M_R: np.ndarray, frac: float = 0.01) -> np.ndarray:
    """Rows of ``vectors`` [k, d] (NaN-padded) that carry the region of M_R [d, d]: the
    carrying rule of :func:`lrgan_dist.core.subspaces.carrying`."""
    V = np.asarray(vectors, dtype=np.float64)
    return V[carrying(V[None], np.asarray(M_R, dtype=np.float64)[None], frac)[0]]
