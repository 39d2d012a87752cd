"""Cross-image generalization of local editing directions: the numerics (no Ray, no zarr).

LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021: low-rank
factorization of the region Jacobian and null-space projection, DESIGN.md §1) finds,
at one sample x_i, directions v that change a region R and (to first order) leave the
rest B = 1 − R unchanged, and claims that they keep doing so at *other* samples x_j,
even when the region moves. This module scores such transfers.

Per-pixel normalization (used throughout and by the stored Grams, DESIGN.md §1)::

    M_R = Jᵀ diag(R) J / ΣR           M_B = Jᵀ diag(B) J / ΣB

so ``vᵀM_R v`` is the first-order *mean squared change per pixel inside R* of a unit
step along v (squared image units per unit² of latent step; channels summed for
``channels: rgb``), and ``vᵀM_B v`` the same outside. The *total* energies are these
times ΣR resp. ΣB of the target's mask (sums of squared changes over the grid).

Linearized scores, for a source direction v (found at sample i) and a target j, with
the target's own Grams of the scoring region (its own per-sample mask when masks move):

    e_in  = vᵀ M_R^{(j)} v         e_out = vᵀ M_B^{(j)} v          (per pixel)
    E_in  = e_in · ΣR^{(j)}        E_out = e_out · ΣB^{(j)}        (total)
    locality = e_in / (e_in + e_out)       ∈ [0, 1], 1 = perfectly local

Realized scores (:func:`masked_energy`): render ``x_j ± α v``, pool both images to the
analysis grid exactly like the Jacobian (:func:`lrgan_dist.core.jacobian.pool_image`),
δ = pooled(edit) − pooled(x_j), and

    r_in = Σ_p R_p Σ_c δ_{c,p}² / (ΣR · α²)     r_out = Σ_p B_p Σ_c δ_{c,p}² / (ΣB · α²)

(masked MSE inside/outside per pixel, divided by α² so that r_in → e_in as α → 0:
the first-order term of δ is α·J v). The ± pair is averaged, which cancels the
third-order cross term. Realized locality = r_in / (r_in + r_out).

A direction is *inert* at a target when its first-order energy there,
``e_in + e_out``, is below ``INERT_FRAC`` (1e-5) of the target's mean energy per unit
direction ``(tr M_R + tr M_B)/d`` (the expected energy of a random unit direction): it
changes (almost) nothing, so its locality is a ratio of rounding noise and is left out of
locality statistics (flagged, not dropped). On the synthetic generator ~6 % of carrying
(source, target, direction) rows are inert, all below 1e-6, with nothing between 1e-6
and 6e-3.

The *carrying* directions of a source are those whose region energy at the source
``vᵀM_R^{(i)} v`` is at least ``frac`` (1 %) of the source's largest
(:func:`lrgan_dist.core.subspaces.carrying`, the acceptance-criteria rule).

Subspace similarity (:func:`subspace_similarity`) between two samples' carrying
subspaces with orthonormal bases Q_a [r_a, d], Q_b [r_b, d]: the cosines of the
principal angles are the singular values of Q_a Q_bᵀ (Björck & Golub 1973);
``Σ cos²θ = ‖Q_a Q_bᵀ‖_F²``; the projection distance is
``‖Q_aᵀQ_a − Q_bᵀQ_b‖_F / √2 = sqrt((r_a + r_b)/2 − Σ cos²θ)``; the *similarity*
``Σ cos²θ / max(r_a, r_b)`` is 1 for equal subspaces and 0 for orthogonal ones.

Cost model (S sources × k directions, T targets, d latent size, M similarity samples):

* linearized: a quadratic form vᵀMv = ⟨vvᵀ, M⟩ is linear in the d(d+1)/2 upper-
  triangle entries of the symmetric M, so all S·k·T forms of one Gram kind are ONE
  matrix product ``W [S·k, d(d+1)/2] @ triu(M) [d(d+1)/2, T]``: ≈ S·k·T·d² flops per
  Gram kind (half of the naive per-pair ``v @ M @ v``, and at GEMM speed rather than
  Python-loop speed), memory ``8·d²/2·(S·k + T_block)`` bytes (float64; targets are
  processed in blocks);
* sources' energy shares: S batched quadratic forms over all d stored directions,
  O(S·d³);
* realized: 1 + 2·A·Σ_groups k_g generator forward passes per pair (A strengths),
  plus O(c·h·w) per rendered image for pooling and masking;
* subspace similarity: M² products of [r, d]×[d, r] and M² batched SVDs of r×r,
  O(M²·r²·d); the display order (average-linkage agglomeration) O(M³).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "INERT_FRAC",
    "mean_energy",
    "inert",
    "quadratic_features",
    "gram_triu",
    "quadratic_forms",
    "quadratic_forms_loop",
    "linearized_transfer",
    "source_energy",
    "masked_energy",
    "realized_locality",
    "orth_bases",
    "subspace_similarity",
    "cluster_order",
    "sample_pairs",
    "rankdata",
    "spearman",
]


#: A direction is inert at a target below this fraction of the target's mean energy.
INERT_FRAC = 1e-5


def _as_f64(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float64)


def _check(a: np.ndarray, shape: Sequence[int | None], name: str) -> None:
    got = tuple(a.shape)
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, received {list(got)}")


# ----------------------------------------------------------------------------- quadratic forms


def _triu_index(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(d)


def quadratic_features(V: np.ndarray) -> np.ndarray:
    """W [n, d(d+1)/2] with ``W @ triu(M) = vᵀ M v`` for symmetric M (v the rows of V [n, d]).

    Entry (a, b), a ≤ b, of the upper triangle carries ``v_a v_b`` times 1 on the
    diagonal and 2 off it.
    """
    V = _as_f64(V)
    _check(V, (None, None), "V")
    iu, ju = _triu_index(V.shape[1])
    w = np.where(iu == ju, 1.0, 2.0)
    return V[:, iu] * V[:, ju] * w


def gram_triu(M: np.ndarray) -> np.ndarray:
    """[T, d, d] symmetric → [T, d(d+1)/2] upper triangles (row-major)."""
    M = np.asarray(M)
    _check(M, (None, None, None), "M")
    iu, ju = _triu_index(M.shape[1])
    return M[:, iu, ju]


def quadratic_forms(V: np.ndarray, M: np.ndarray, block: int = 256, dtype: Any = np.float64,
                    budget_bytes: int = 1 << 28) -> np.ndarray:
    """All quadratic forms ``out[t, n] = V[n] · M[t] · V[n]`` as blocked GEMMs.

    V [n, d] (NaN rows give NaN columns), M [T, d, d] symmetric (a non-finite M[t] gives
    a NaN row). ``dtype`` float64 (default) or float32 for the product. Targets are
    processed ``block`` at a time and rows of V in blocks, both capped so that a
    block's triangle features stay within ``budget_bytes``.
    """
    V = _as_f64(V)
    M = np.asarray(M)
    _check(V, (None, None), "V")
    d = V.shape[1]
    _check(M, (None, d, d), "M")
    n, T = V.shape[0], M.shape[0]
    out = np.full((T, n), np.nan, dtype=np.float64)
    if n == 0 or T == 0:
        return out
    q = d * (d + 1) // 2
    item = np.dtype(dtype).itemsize
    nb = max(1, min(n, budget_bytes // (q * item)))
    tb = max(1, min(block, budget_bytes // (q * item)))
    vfin = np.isfinite(V).all(axis=1)
    V0 = np.where(vfin[:, None], V, 0.0)
    feats = [torch.from_numpy(np.ascontiguousarray(quadratic_features(V0[a:a + nb]).astype(dtype).T))
             for a in range(0, n, nb)]  # each [q, nb]
    for t0 in range(0, T, tb):
        t1 = min(T, t0 + tb)
        Mb = gram_triu(M[t0:t1]).astype(dtype)  # [tb, q]
        mfin = np.isfinite(Mb).all(axis=1)
        Mt = torch.from_numpy(np.ascontiguousarray(np.where(mfin[:, None], Mb, 0.0)))
        for j, Wt in enumerate(feats):
            a = j * nb
            out[t0:t1, a:a + Wt.shape[1]] = (Mt @ Wt).numpy()
        out[t0:t1][~mfin] = np.nan
    out[:, ~vfin] = np.nan
    return out


def quadratic_forms_loop(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Reference: the same forms by a plain per-pair Python loop (tests and benchmark only)."""
    V = _as_f64(V)
    M = np.asarray(M, dtype=np.float64)
    out = np.empty((M.shape[0], V.shape[0]))
    for t in range(M.shape[0]):
        Mt = M[t]
        for i in range(V.shape[0]):
            v = V[i]
            out[t, i] = v @ Mt @ v
    return out


def linearized_transfer(V: np.ndarray, gram_in: np.ndarray, gram_out: np.ndarray,
                        area_in: np.ndarray | None = None, area_out: np.ndarray | None = None,
                        block: int = 256, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """First-order transfer scores of source directions at targets.

    V [S, k, d] unit rows (NaN-padded), gram_in/gram_out [T, d, d] the targets' per-pixel
    normalized Grams of the scoring region, area_in/area_out [T] ΣR, ΣB of the targets'
    masks (optional). Returns float64 arrays [S, T, k]: ``energy_in``, ``energy_out``,
    ``locality`` and, with areas, ``total_in``, ``total_out``.
    """
    V = _as_f64(V)
    _check(V, (None, None, None), "V")
    S, k, d = V.shape
    _check(np.asarray(gram_in), (None, d, d), "gram_in")
    T = np.asarray(gram_in).shape[0]
    _check(np.asarray(gram_out), (T, d, d), "gram_out")
    flat = V.reshape(S * k, d)
    e_in = quadratic_forms(flat, gram_in, block, dtype).reshape(T, S, k).transpose(1, 0, 2)
    e_out = quadratic_forms(flat, gram_out, block, dtype).reshape(T, S, k).transpose(1, 0, 2)
    # Rounding can leave a tiny negative form for a direction in a Gram's null space.
    e_in = np.maximum(e_in, 0.0, where=np.isfinite(e_in), out=e_in)
    e_out = np.maximum(e_out, 0.0, where=np.isfinite(e_out), out=e_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        loc = e_in / (e_in + e_out)
    out = {"energy_in": e_in, "energy_out": e_out, "locality": loc}
    if area_in is not None:
        a_in = np.asarray(area_in, dtype=np.float64)
        _check(a_in, (T,), "area_in")
        out["total_in"] = e_in * a_in[None, :, None]
    if area_out is not None:
        a_out = np.asarray(area_out, dtype=np.float64)
        _check(a_out, (T,), "area_out")
        out["total_out"] = e_out * a_out[None, :, None]
    return out


def mean_energy(gram_in: np.ndarray, gram_out: np.ndarray) -> np.ndarray:
    """[T] mean first-order energy of a random unit direction, ``(tr M_R + tr M_B) / d``."""
    gi, go = np.asarray(gram_in, dtype=np.float64), np.asarray(gram_out, dtype=np.float64)
    _check(gi, (None, None, gi.shape[-1] if gi.ndim == 3 else None), "gram_in")
    _check(go, tuple(gi.shape), "gram_out")
    return (np.trace(gi, axis1=1, axis2=2) + np.trace(go, axis1=1, axis2=2)) / gi.shape[-1]


def inert(energy_in: np.ndarray, energy_out: np.ndarray, mean: np.ndarray, frac: float = INERT_FRAC) -> np.ndarray:
    """Bool, same shape: ``e_in + e_out < frac · mean`` (``mean`` broadcast against them)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(energy_in) + np.asarray(energy_out) < frac * np.asarray(mean)


def source_energy(V: np.ndarray, gram_in: np.ndarray, frac: float = 0.01) -> dict[str, np.ndarray]:
    """Each source's own region energy per direction and the carrying rule.

    V [S, k, d] (all of a source's stored directions, so that the maximum is over
    them), gram_in [S, d, d] the source's own M_R. Returns [S, k]: ``energy``
    (vᵀM_R v), ``share`` (energy / the source's largest), ``carrying`` (bool,
    share ≥ frac).
    """
    V = _as_f64(V)
    M = _as_f64(gram_in)
    _check(V, (None, None, None), "V")
    _check(M, (V.shape[0], V.shape[2], V.shape[2]), "gram_in")
    with np.errstate(invalid="ignore"):
        e = ((V @ M) * V).sum(axis=-1)  # = region_energy(V, M), as one batched matmul
    finite = np.isfinite(e)
    top = np.max(np.where(finite, e, -np.inf), axis=-1, keepdims=True) if e.shape[-1] else np.zeros((e.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(finite & (top > 0), e / np.where(top > 0, top, 1.0), np.nan)
    # the rule of lrgan_dist.core.subspaces.carrying
    carry = finite & (e >= frac * top) & (top > 0)
    return {"energy": e, "share": share, "carrying": carry}


# ----------------------------------------------------------------------------- realized edits


def masked_energy(delta: torch.Tensor, mask: torch.Tensor, alpha: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel masked energies of pooled image changes (realized counterpart of vᵀM v).

    delta [n, c, h, w] = pooled(G(x + αv)) − pooled(G(x)); mask [n, h, w] or [h, w] in
    [0, 1]; alpha scalar or [n]. Returns (r_in [n], r_out [n]):
    ``Σ_p R_p Σ_c δ² / (ΣR α²)`` and the same with B = 1 − R. Channels are summed,
    like the Gram's ``diag(R)`` broadcast over channels; areas are sums over the grid.
    """
    if delta.ndim != 4:
        raise ValueError(f"delta: expected [n, c, h, w], received {list(delta.shape)}")
    n, _, h, w = delta.shape
    m = torch.as_tensor(mask, dtype=delta.dtype, device=delta.device)
    if m.ndim == 2:
        m = m.expand(n, h, w)
    if tuple(m.shape) != (n, h, w):
        raise ValueError(f"mask: expected [{n}, {h}, {w}] or [{h}, {w}], received {list(m.shape)}")
    sq = (delta * delta).sum(dim=1)  # [n, h, w]
    a_in = m.sum(dim=(1, 2))
    a_out = (1.0 - m).sum(dim=(1, 2))
    al = torch.as_tensor(alpha, dtype=delta.dtype, device=delta.device)
    al2 = (al * al).reshape(-1) if al.ndim else al * al
    r_in = (sq * m).sum(dim=(1, 2)) / a_in / al2
    r_out = (sq * (1.0 - m)).sum(dim=(1, 2)) / a_out / al2
    return r_in, r_out


def realized_locality(r_in: np.ndarray, r_out: np.ndarray, axis: int | None = -1) -> np.ndarray:
    """Locality from realized energies; with ``axis`` the ± pair along it is averaged first."""
    r_in = np.asarray(r_in, dtype=np.float64)
    r_out = np.asarray(r_out, dtype=np.float64)
    if axis is not None:
        r_in = r_in.mean(axis=axis)
        r_out = r_out.mean(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r_in / (r_in + r_out)


# ----------------------------------------------------------------------------- subspaces


def orth_bases(V: np.ndarray, keep: np.ndarray | None = None, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases of per-sample direction sets, zero-padded.

    V [M, k, d] (NaN rows ignored), keep [M, k] bool (e.g. the carrying mask).
    Returns (Q [M, r, d] with zero rows beyond each sample's rank, rank [M]).
    """
    V = _as_f64(V)
    _check(V, (None, None, None), "V")
    M_, k, d = V.shape
    ok = np.isfinite(V).all(axis=2)
    if keep is not None:
        ok &= np.asarray(keep, dtype=bool)
    # Kept rows first, then only as many rows as the largest kept set: LAPACK's SVD is
    # very slow on stacks of mostly-zero rows (the NaN padding of [N, d, d] results).
    kmax = max(1, int(ok.sum(axis=1).max())) if M_ else 1
    first = np.argsort(~ok, axis=1, kind="stable")[:, :kmax]
    rows = np.take_along_axis(np.where(ok[..., None], V, 0.0), first[..., None], axis=1)
    X = torch.from_numpy(np.ascontiguousarray(rows))  # [M, kmax, d]
    # Row space through the SVD; tolerance relative to unit rows.
    _, s, vh = torch.linalg.svd(X, full_matrices=False)  # s [M, min(kmax,d)], vh [M, min(kmax,d), d]
    s = s.numpy()
    rank = (s > tol).sum(axis=1).astype(np.int64)
    r = int(rank.max()) if M_ else 0
    Q = vh.numpy()[:, :r, :].copy()
    for i in range(M_):
        Q[i, rank[i]:] = 0.0
    return Q, rank


def subspace_similarity(Qa: np.ndarray, ra: np.ndarray, Qb: np.ndarray | None = None,
                        rb: np.ndarray | None = None, block: int = 64) -> dict[str, np.ndarray]:
    """Principal-angle statistics between every pair of zero-padded bases.

    Qa [Ma, r, d] with ranks ra [Ma]; Qb/rb default to Qa/ra (a square matrix).
    Returns [Ma, Mb] arrays: ``similarity`` = Σcos²θ / max(r_a, r_b), ``projection_distance``
    = sqrt((r_a + r_b)/2 − Σcos²θ), ``max_angle`` / ``min_angle`` (degrees; the largest
    angle counts the unmatched dimensions of the larger subspace as 90°). A pair with an
    empty subspace gets NaN.
    """
    Qa = _as_f64(Qa)
    ra = np.asarray(ra, dtype=np.int64)
    if Qb is None:
        Qb, rb = Qa, ra
    Qb = _as_f64(Qb)
    rb = np.asarray(rb, dtype=np.int64)
    Ma, Mb = Qa.shape[0], Qb.shape[0]
    ssq = np.zeros((Ma, Mb))
    cos_max = np.zeros((Ma, Mb))
    cos_min = np.zeros((Ma, Mb))
    tb = torch.from_numpy(Qb)
    for a0 in range(0, Ma, block):
        a1 = min(Ma, a0 + block)
        C = torch.einsum("ard,bsd->abrs", torch.from_numpy(Qa[a0:a1]), tb)  # [a, Mb, r, s]
        sv = torch.linalg.svdvals(C).clamp(0.0, 1.0).numpy() if C.numel() else np.zeros((a1 - a0, Mb, 0))
        ssq[a0:a1] = (sv ** 2).sum(axis=-1)
        cos_max[a0:a1] = sv.max(axis=-1) if sv.shape[-1] else 0.0
        # smallest cosine over the min(r_a, r_b) matched pairs
        m = np.minimum(ra[a0:a1, None], rb[None, :])
        idx = np.clip(m - 1, 0, None)
        cos_min[a0:a1] = np.take_along_axis(sv, idx[..., None], axis=-1)[..., 0] if sv.shape[-1] else 0.0
    rmax = np.maximum(ra[:, None], rb[None, :]).astype(np.float64)
    rmin = np.minimum(ra[:, None], rb[None, :])
    empty = (ra[:, None] == 0) | (rb[None, :] == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(empty, np.nan, ssq / np.where(rmax > 0, rmax, 1.0))
        pdist = np.where(empty, np.nan, np.sqrt(np.maximum((ra[:, None] + rb[None, :]) / 2.0 - ssq, 0.0)))
    max_ang = np.degrees(np.arccos(np.clip(np.where(rmin < rmax, 0.0, cos_min), 0.0, 1.0)))
    min_ang = np.degrees(np.arccos(np.clip(cos_max, 0.0, 1.0)))
    max_ang = np.where(empty, np.nan, max_ang)
    min_ang = np.where(empty, np.nan, min_ang)
    return {"similarity": sim, "projection_distance": pdist, "max_angle": max_ang, "min_angle": min_ang}


def cluster_order(D: np.ndarray) -> np.ndarray:
    """Display order of a symmetric distance matrix: leaves of average-linkage clustering.

    D [M, M] (NaN treated as the largest finite distance). Clusters are merged by
    smallest average distance (Lance–Williams update); the merged cluster lists the
    left child's leaves then the right child's, the left being the one holding the
    lower original index — so the result is deterministic. O(M³) time, O(M²) memory.
    """
    D = np.array(D, dtype=np.float64)
    _check(D, (None, D.shape[0]), "D")
    M = D.shape[0]
    if M <= 2:
        return np.arange(M)
    fin = np.isfinite(D)
    big = D[fin].max() if fin.any() else 1.0
    D = np.where(fin, D, big)
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, np.inf)
    members: list[list[int] | None] = [[i] for i in range(M)]
    size = np.ones(M)
    alive = np.ones(M, dtype=bool)
    for _ in range(M - 1):
        flat = int(np.argmin(D))
        a, b = divmod(flat, M)
        if a > b:
            a, b = b, a
        ma, mb = members[a], members[b]
        assert ma is not None and mb is not None
        first, second = (ma, mb) if min(ma) < min(mb) else (mb, ma)
        members[a] = first + second
        members[b] = None
        na, nb = size[a], size[b]
        row = (na * D[a] + nb * D[b]) / (na + nb)
        D[a, :] = row
        D[:, a] = row
        D[a, a] = np.inf
        D[b, :] = np.inf
        D[:, b] = np.inf
        size[a] = na + nb
        alive[b] = False
    root = members[int(np.flatnonzero(alive)[0])]
    assert root is not None
    return np.asarray(root, dtype=np.int64)


# ----------------------------------------------------------------------------- sampling, stats


def sample_pairs(sources: Sequence[int], targets: Sequence[int], count: int, seed: int) -> np.ndarray:
    """Deterministic sample of (source, target) pairs [P, 2], P = min(count, |S|·|T|).

    Depends only on the sorted source and target sets, ``count`` and ``seed``; the pairs
    are returned sorted by (target, source) so that consecutive pairs share targets.
    """
    s = np.unique(np.asarray(list(sources), dtype=np.int64))
    t = np.unique(np.asarray(list(targets), dtype=np.int64))
    total = s.size * t.size
    count = int(min(max(count, 0), total))
    if count == 0:
        return np.zeros((0, 2), dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A5F]))
    flat = np.sort(rng.choice(total, size=count, replace=False)) if count < total else np.arange(total)
    si, ti = np.divmod(flat, t.size)
    pairs = np.stack([s[si], t[ti]], axis=1)
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    return pairs[order]


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties averaged (scipy.stats.rankdata 'average')."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sa = a[order]
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    ends = np.r_[starts[1:], sa.size]
    for s0, e0 in zip(starts, ends):
        ranks[order[s0:e0]] = 0.5 * (s0 + e0 - 1) + 1.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation over the pairs where both are finite (NaN if < 3)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")
