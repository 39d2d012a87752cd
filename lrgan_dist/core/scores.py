"""Cross-image generalization of local editing directions: the numerics (no Ray, no zarr).

LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021: low-rank
factorization of the region Jacobian and null-space projection, README "Concepts") finds,
at one sample x_i, directions v that change a region R and (to first order) leave the
rest B = 1 − R unchanged, and claims that they keep doing so at *other* samples x_j,
even when the region moves. This module scores such transfers.

Per-pixel normalization (used throughout and by the stored Grams, README "Concepts")::

    M_R = Jᵀ diag(R) J / ΣR           M_B = Jᵀ diag(B) J / ΣB

so ``vᵀM_R v`` is the first-order *mean squared change per pixel inside R* of a unit
step along v (squared image units per unit² of latent step; channels summed for
``channels: rgb``), and ``vᵀM_B v`` the same outside. The *total* energies are these
times ΣR resp. ΣB of the target's mask (sums of squared changes over the grid).

Linearized scores, for a source direction v (found at sample i) and a target j, with
the target's own Grams of the scoring region (its own per-sample mask when masks move):

    e_in  = vᵀ M_R^{(j)} v         e_out = vᵀ M_B^{(j)} v          (per pixel)
    E_in  = e_in · ΣR^{(j)}        E_out = e_out · ΣB^{(j)}        (total)
    locality           = E_in / (E_in + E_out)     the SHARE of the first-order change
                                                   (Σ over the grid of ‖J v‖²) inside R
    locality_per_pixel = e_in / (e_in + e_out)     the ratio of the mean changes per pixel
    baseline           = tr M_R ΣR / (tr M_R ΣR + tr M_B ΣB)
                                                   the locality (share) of a random unit
                                                   direction, E[vvᵀ] = I/d
    strength           = (E_in + E_out) / ((tr M_R ΣR + tr M_B ΣB)/d)
                                                   ‖J v‖² against a random direction's

(issue 18: the per-pixel ratio overstates locality whenever R is smaller than B — a
random direction on a centre box scores 0.784 per pixel but 0.571 as a share.)

Realized scores (:func:`masked_energy`): render ``x_j ± α v``, pool both images to the
analysis grid exactly like the Jacobian (:func:`lrgan_dist.core.jacobian.pool_image`),
δ = pooled(edit) − pooled(x_j), and

    r_in = Σ_p R_p Σ_c δ_{c,p}² / (ΣR · α²)     r_out = Σ_p B_p Σ_c δ_{c,p}² / (ΣB · α²)

(masked MSE inside/outside per pixel, divided by α² so that r_in → e_in as α → 0:
the first-order term of δ is α·J v). The ± pair is averaged, which cancels the
third-order cross term. Realized locality = the same share with r_in, r_out.

A direction is *inert* at a target when its first-order energy there,
``e_in + e_out``, is below ``INERT_FRAC`` (1e-5) of the target's mean energy per unit
direction ``(tr M_R + tr M_B)/d`` (the expected energy of a random unit direction): it
changes (almost) nothing, so its locality is a ratio of rounding noise and is left out of
locality statistics (flagged, not dropped). :data:`INERT_FRAC` is the constant of
:mod:`lrgan_dist.core.subspaces`, whose carrying rule (:func:`~lrgan_dist.core.subspaces.carrying`)
and LowRankGAN's keep rule use the same floor at the source.

The headline numbers of a study (:func:`headline`) — self and cross locality, their
random baselines and edit strengths over carrying, non-inert rows — are computed here
once, for the submit summary and for the report's pandas tables.

Orthonormal bases, the carrying rule and principal angles live in
:mod:`lrgan_dist.core.subspaces` (one policy).

Torch is imported lazily (only :func:`masked_energy` needs it), so that the report
library loads stores without it.

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
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lrgan_dist.core.shapes import assert_shape as _check
from lrgan_dist.core.subspaces import INERT_FRAC
from lrgan_dist.core.subspaces import _f64 as _as_f64

if TYPE_CHECKING:
    import torch

__all__ = [
    "INERT_FRAC",
    "mean_energy",
    "inert",
    "locality_share",
    "locality_per_pixel",
    "baseline_share",
    "edit_strength",
    "headline",
    "quadratic_features",
    "gram_triu",
    "quadratic_forms",
    "quadratic_forms_loop",
    "linearized_transfer",
    "masked_energy",
    "realized_locality",
    "cluster_order",
    "sample_pairs",
    "rankdata",
    "spearman",
]


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
    feats = [np.ascontiguousarray(quadratic_features(V0[a:a + nb]).astype(dtype).T)
             for a in range(0, n, nb)]  # each [q, nb]
    for t0 in range(0, T, tb):
        t1 = min(T, t0 + tb)
        Mb = gram_triu(M[t0:t1]).astype(dtype)  # [tb, q]
        mfin = np.isfinite(Mb).all(axis=1)
        Mt = np.ascontiguousarray(np.where(mfin[:, None], Mb, 0.0))
        for j, Wt in enumerate(feats):
            a = j * nb
            out[t0:t1, a:a + Wt.shape[1]] = Mt @ Wt
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


def locality_share(e_in: Any, e_out: Any, area_in: Any, area_out: Any) -> np.ndarray:
    """Share of the first-order change inside R: ``ΣR·e_in / (ΣR·e_in + ΣB·e_out)`` (broadcast).

    e_in, e_out per-pixel energies (``vᵀM_R v``, ``vᵀM_B v`` with the area-normalised Grams
    of README "Concepts"), area_in/area_out ΣR, ΣB. The sum over the grid of ‖J v‖² is
    ``ΣR·e_in + ΣB·e_out``, so this is the fraction of it that falls inside R.
    """
    E_in = np.asarray(e_in, dtype=np.float64) * np.asarray(area_in, dtype=np.float64)
    E_out = np.asarray(e_out, dtype=np.float64) * np.asarray(area_out, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return E_in / (E_in + E_out)


def locality_per_pixel(e_in: Any, e_out: Any) -> np.ndarray:
    """Ratio of the mean changes per pixel ``e_in / (e_in + e_out)`` (not a share; kept under this name)."""
    e_in, e_out = np.asarray(e_in, dtype=np.float64), np.asarray(e_out, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return e_in / (e_in + e_out)


def baseline_share(trace_in: Any, trace_out: Any, area_in: Any, area_out: Any) -> np.ndarray:
    """Locality (share) of a random unit direction: ``tr M_R ΣR / (tr M_R ΣR + tr M_B ΣB)``.

    ``E[vᵀMv] = tr M / d`` for v uniform on the sphere; d cancels in the share.
    """
    return locality_share(trace_in, trace_out, area_in, area_out)


def edit_strength(e_in: Any, e_out: Any, trace_in: Any, trace_out: Any, area_in: Any, area_out: Any,
                  d: int) -> np.ndarray:
    """Whole-image first-order change against a random direction's: ``vᵀMv / (tr M / d)``.

    M = Jᵀ J (whole grid) = ΣR·M_R + ΣB·M_B, so this is
    ``(ΣR e_in + ΣB e_out) / ((ΣR tr M_R + ΣB tr M_B)/d)`` (1 = as strong as a random direction).
    """
    a_in, a_out = np.asarray(area_in, dtype=np.float64), np.asarray(area_out, dtype=np.float64)
    num = np.asarray(e_in, dtype=np.float64) * a_in + np.asarray(e_out, dtype=np.float64) * a_out
    den = (np.asarray(trace_in, dtype=np.float64) * a_in + np.asarray(trace_out, dtype=np.float64) * a_out) / d
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def linearized_transfer(V: np.ndarray, gram_in: np.ndarray, gram_out: np.ndarray,
                        area_in: np.ndarray, area_out: np.ndarray,
                        block: int = 256, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """First-order transfer scores of source directions at targets.

    V [S, k, d] unit rows (NaN-padded), gram_in/gram_out [T, d, d] the targets' per-pixel
    normalized Grams of the scoring region, area_in/area_out [T] ΣR, ΣB of the targets'
    masks. Returns float64 arrays [S, T, k]: ``energy_in``, ``energy_out``, ``total_in``,
    ``total_out``, ``locality`` (the share, :func:`locality_share`), ``locality_per_pixel``,
    ``strength`` (:func:`edit_strength`); and [T]: ``baseline`` (:func:`baseline_share`).
    """
    V = _as_f64(V)
    _check(V, (None, None, None), "V")
    S, k, d = V.shape
    _check(np.asarray(gram_in), (None, d, d), "gram_in")
    T = np.asarray(gram_in).shape[0]
    _check(np.asarray(gram_out), (T, d, d), "gram_out")
    a_in = np.asarray(area_in, dtype=np.float64)
    a_out = np.asarray(area_out, dtype=np.float64)
    _check(a_in, (T,), "area_in")
    _check(a_out, (T,), "area_out")
    flat = V.reshape(S * k, d)
    e_in = quadratic_forms(flat, gram_in, block, dtype).reshape(T, S, k).transpose(1, 0, 2)
    e_out = quadratic_forms(flat, gram_out, block, dtype).reshape(T, S, k).transpose(1, 0, 2)
    # Rounding can leave a tiny negative form for a direction in a Gram's null space.
    e_in = np.maximum(e_in, 0.0, where=np.isfinite(e_in), out=e_in)
    e_out = np.maximum(e_out, 0.0, where=np.isfinite(e_out), out=e_out)
    tr_in = np.trace(np.asarray(gram_in, dtype=np.float64), axis1=1, axis2=2)
    tr_out = np.trace(np.asarray(gram_out, dtype=np.float64), axis1=1, axis2=2)
    ai, ao = a_in[None, :, None], a_out[None, :, None]
    return {"energy_in": e_in, "energy_out": e_out, "total_in": e_in * ai, "total_out": e_out * ao,
            "locality": locality_share(e_in, e_out, ai, ao), "locality_per_pixel": locality_per_pixel(e_in, e_out),
            "strength": edit_strength(e_in, e_out, tr_in[None, :, None], tr_out[None, :, None], ai, ao, d),
            "baseline": baseline_share(tr_in, tr_out, a_in, a_out)}


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


def headline(locality: Any, carrying: Any, inert_: Any, self_pair: Any, baseline: Any = None,
             strength: Any = None) -> dict[str, float]:
    """The headline numbers of a transfer study, one definition for the submit summary and the report.

    All arguments broadcast to one shape of rows (e.g. [S, T, k] arrays, or DataFrame
    columns). Over the rows that are carrying and not inert (NaN localities ignored):
    ``self_locality`` / ``cross_locality`` (means over self / cross pairs), the same means
    of the random-direction ``baseline`` (``self_baseline`` / ``cross_baseline``), and the
    medians of ``strength`` (``self_strength`` / ``cross_strength``). NaN where empty.
    """
    loc = np.asarray(locality, dtype=np.float64)
    arrs = [loc, np.asarray(carrying, dtype=bool), np.asarray(inert_, dtype=bool), np.asarray(self_pair, dtype=bool)]
    extra = {"baseline": baseline, "strength": strength}
    names = [n for n, v in extra.items() if v is not None]
    arrs += [np.asarray(extra[n], dtype=np.float64) for n in names]
    b = np.broadcast_arrays(*arrs)
    loc, carry, dead, selfp = b[:4]
    sel = carry & ~dead & np.isfinite(loc)
    out: dict[str, float] = {}

    def agg(x: np.ndarray, m: np.ndarray, fn: Any) -> float:
        x = x[m]
        x = x[np.isfinite(x)]
        return float(fn(x)) if x.size else float("nan")

    for tag, m in (("self", sel & selfp), ("cross", sel & ~selfp)):
        out[f"{tag}_locality"] = agg(loc, m, np.mean)
        for n, x in zip(names, b[4:]):
            out[f"{tag}_{n}"] = agg(x, m, np.mean if n == "baseline" else np.median)
    return out


# ----------------------------------------------------------------------------- realized edits


def masked_energy(delta: torch.Tensor, mask: torch.Tensor,
                  alpha: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel masked energies of pooled image changes (realized counterpart of vᵀM v).

    delta [n, c, h, w] = pooled(G(x + αv)) − pooled(G(x)); mask [n, h, w] or [h, w] in
    [0, 1]; alpha scalar or [n]. Returns (r_in [n], r_out [n]):
    ``Σ_p R_p Σ_c δ² / (ΣR α²)`` and the same with B = 1 − R. Channels are summed,
    like the Gram's ``diag(R)`` broadcast over channels; areas are sums over the grid.
    """
    import torch

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


def realized_locality(r_in: np.ndarray, r_out: np.ndarray, area_in: Any, area_out: Any,
                      axis: int | None = -1) -> np.ndarray:
    """Realized locality (share, :func:`locality_share`) from masked energies; with ``axis`` the
    ± pair along it is averaged first. ``area_in``/``area_out`` broadcast against the result."""
    r_in = np.asarray(r_in, dtype=np.float64)
    r_out = np.asarray(r_out, dtype=np.float64)
    if axis is not None:
        r_in = r_in.mean(axis=axis)
        r_out = r_out.mean(axis=axis)
    return locality_share(r_in, r_out, area_in, area_out)


# ----------------------------------------------------------------------------- display order


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


def sample_pairs(sources: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray, count: int,
                 seed: int) -> np.ndarray:
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
