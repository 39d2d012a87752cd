"""Subspaces of directions: the one orthonormal-basis policy, the carrying rule, principal angles.

Pure numpy (no torch, so that :mod:`lrgan_dist.analysis` loads stores without it). Every
module that needs "the subspace spanned by some directions" or "the directions that carry
a sample's region" calls this one (issue 12: one definition of each rule).

* **Region energy** of a unit direction v at a sample: ``vᵀ M_R v`` with the per-pixel
  normalised Gram ``M_R = Jᵀ diag(R) J / ΣR`` (README "Concepts"; Zhu et al. 2021, Eq. 2–3):
  the first-order mean squared change per pixel of R for a unit latent step.
* **Random-direction energy** ``tr M / d`` = ``E_v[vᵀ M v]`` for v uniform on the unit
  sphere (``E[vvᵀ] = I/d``): the sample's own Jacobian scale.
* **Carrying rule** (:func:`carrying`): a finite direction carries its sample's region when
  ``vᵀM_R v ≥ frac · max_k v_kᵀM_R v_k`` (``frac`` = 1 %, relative to the sample's strongest
  direction) **and** ``vᵀM_R v ≥ INERT_FRAC · tr M_R / d`` (absolute: a direction that
  changes the region less than 1e-5 of what a random direction does is inert, issue 18).
* **Inert rule** (:data:`INERT_FRAC`): the same 1e-5 of a random direction's energy is the
  floor of LowRankGAN's keep rule (:func:`lrgan_dist.core.lowrankgan.project_directions`)
  and of the transfer scores' ``inert`` flag at a target (:func:`lrgan_dist.core.scores.inert`).
* **Defined rows** (:func:`defined_rows`): a row of a direction array is a direction when it
  is finite and non-zero (NaN padding, a zeroed row are not); every rule here and the
  previews' matched step skip the other rows.
* **Orthonormal-basis policy** (:func:`orth_bases`, :func:`orth`): NaN rows are ignored,
  the remaining rows are scaled to unit length, and a singular value σ of the stack counts
  when ``σ > ORTH_TOL · σ_max`` with ``ORTH_TOL = 1e-6``. Stored directions are float32
  unit rows: their rounding (≈ √k·6e-8 ≤ 5e-7 for k ≤ 64) must not count as a dimension,
  while directions 0.1° apart (σ ≈ 1.7e-3) do.
* **Principal angles** (:func:`subspace_similarity`, Björck & Golub 1973): for orthonormal
  bases Q_a [r_a, d], Q_b [r_b, d] the cosines are the singular values of Q_a Q_bᵀ;
  ``Σcos²θ = ‖Q_a Q_bᵀ‖_F²``, projection distance ``‖Q_aᵀQ_a − Q_bᵀQ_b‖_F/√2 =
  sqrt((r_a + r_b)/2 − Σcos²θ)``, similarity ``Σcos²θ / max(r_a, r_b)``.
* Ground-truth agreement: sine of the angle between v and span(Q) ``‖v − QQᵀv‖``;
  coverage of span(Q) by span(V) ``‖Qᵀ orth(V)‖_F² / dim Q``.
* **Sign alignment** (:func:`align_signs`, issue 15): a direction v and −v span the same
  line, so each sample's directions come with an arbitrary sign (an eigenvector's). Each
  per-sample direction is matched to the population direction of the same (region, method)
  with the smallest angle, ``j* = argmax_j |u_jᵀ v|`` (unit u_j, the population's defined
  rows), and gets the sign ``s = sign(u_{j*}ᵀ v)``, so that ``s·v`` has a non-negative inner
  product with its match and edit grids of different samples move the same way. Where the
  population has no direction (e.g. LowRankGAN on the mean Grams of a box that moving faces
  leave: an empty null space), the reference is the consensus directions of the same
  (region, method) whose mean-projector eigenvalue exceeds :data:`CONSENSUS_MIN`. When
  ``|u_{j*}ᵀ v| ≤ ALIGN_TOL·‖v‖`` (v orthogonal to every population direction, or no
  population direction), ``s`` makes the largest-magnitude coordinate of v positive (the
  ``svd_flip`` convention). Both choices depend on v only through ±v, so flipping a stored
  direction leaves ``s·v`` unchanged. :func:`apply_signs` multiplies (0 = no sign: kept).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["INERT_FRAC", "ORTH_TOL", "CARRY_FRAC", "region_energy", "random_energy", "carrying", "source_energy",
           "orth", "orth_bases", "subspace_sines", "subspace_coverage", "subspace_similarity", "paired_subspace_similarity",
           "ALIGN_TOL", "CONSENSUS_MIN",
           "align_signs", "apply_signs", "defined_rows", "span_dimension"]

#: a direction is inert at a sample below this fraction of a random unit direction's energy
INERT_FRAC = 1e-5
#: the orthonormal-basis policy: singular values ≤ ORTH_TOL · σ_max of the unit-row stack are dropped
ORTH_TOL = 1e-6
#: default carrying fraction of the sample's strongest direction
CARRY_FRAC = 0.01
#: sign alignment: a match |u_{j*}ᵀ v| at or below ALIGN_TOL·‖v‖ falls back to the largest-coordinate convention
ALIGN_TOL = 1e-6
#: a consensus direction counts (previews render it; sign reference) when its mean-projector eigenvalue exceeds this
CONSENSUS_MIN = 1e-3


def _f64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def defined_rows(V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of V [..., k, d] that are directions: finite and non-zero (NaN padding and
    zero rows are not). Returns (ok [..., k] bool, V float64 with the other rows zeroed,
    norm [..., k] of the rows)."""
    V = _f64(V)
    norm = np.linalg.norm(np.nan_to_num(V), axis=-1)
    ok = np.isfinite(V).all(axis=-1) & (norm > 0)
    return ok, np.where(ok[..., None], np.nan_to_num(V), 0.0), norm


def region_energy(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """[..., k, d] directions, [..., d, d] Gram → [..., k] energies ``vᵀMv`` (NaN rows → NaN)."""
    V, M = _f64(V), _f64(M)
    with np.errstate(invalid="ignore"):
        return ((V @ M) * V).sum(axis=-1)


def random_energy(M: np.ndarray) -> np.ndarray:
    """[..., d, d] → [...]: ``tr M / d``, the expected ``vᵀMv`` of a random unit direction."""
    M = _f64(M)
    return np.trace(M, axis1=-2, axis2=-1) / M.shape[-1]


def source_energy(V: np.ndarray, M: np.ndarray, frac: float = CARRY_FRAC) -> dict[str, np.ndarray]:
    """The carrying rule with its ingredients, for V [..., k, d] at their own sample's M_R [..., d, d].

    Returns [..., k]: ``energy`` (vᵀM_R v), ``share`` (energy / the sample's largest; NaN
    where undefined), ``relative`` (energy / (tr M_R / d), the strength against a random
    direction) and ``carrying`` (bool: ``share ≥ frac`` and ``relative ≥ INERT_FRAC``).
    """
    V, M = _f64(V), _f64(M)
    if V.shape[:-2] != M.shape[:-2] or M.shape[-2:] != (V.shape[-1], V.shape[-1]):
        raise ValueError(f"M: expected shape {[*V.shape[:-2], V.shape[-1], V.shape[-1]]}, received {list(M.shape)}")
    e = region_energy(V, M)
    finite = np.isfinite(e)
    if e.shape[-1]:
        top = np.max(np.where(finite, e, -np.inf), axis=-1, keepdims=True)
    else:
        top = np.zeros((*e.shape[:-1], 1))
    rnd = random_energy(M)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(finite & (top > 0), e / np.where(top > 0, top, 1.0), np.nan)
        rel = np.where(finite & (rnd > 0), e / np.where(rnd > 0, rnd, 1.0), np.nan)
    carry = finite & (top > 0) & (e >= frac * top) & (e >= INERT_FRAC * rnd) & (rnd > 0)
    return {"energy": e, "share": share, "relative": rel, "carrying": carry}


def carrying(V: np.ndarray, M: np.ndarray, frac: float = CARRY_FRAC) -> np.ndarray:
    """[..., k] bool: the carrying rule (module docstring) for V [..., k, d] at M_R [..., d, d]."""
    return source_energy(V, M, frac)["carrying"]


def orth_bases(V: np.ndarray, keep: np.ndarray | None = None, tol: float = ORTH_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases of per-sample direction sets under the one policy, zero-padded.

    V [M, k, d] (NaN rows ignored), keep [M, k] bool (e.g. the carrying mask). Rows are
    scaled to unit length; σ counts when ``σ > tol · σ_max``. Returns (Q [M, r, d] with
    zero rows beyond each sample's rank, rank [M] int64).
    """
    V = _f64(V)
    if V.ndim != 3:
        raise ValueError(f"V: expected shape [*, *, *], received {list(V.shape)}")
    M_, k, d = V.shape
    ok, Vz, norm = defined_rows(V)
    if keep is not None:
        ok &= np.asarray(keep, dtype=bool)
    # Kept rows first, then only as many rows as the largest kept set (the NaN padding of
    # [N, d, d] results would otherwise make every SVD d×d).
    kmax = max(1, int(ok.sum(axis=1).max())) if M_ else 1
    first = np.argsort(~ok, axis=1, kind="stable")[:, :kmax]
    U = np.where(ok[..., None], Vz / np.where(norm > 0, norm, 1.0)[..., None], 0.0)
    rows = np.take_along_axis(U, first[..., None], axis=1)  # [M, kmax, d]
    if M_ == 0:
        return np.zeros((0, 0, d)), np.zeros(0, dtype=np.int64)
    _, s, vh = np.linalg.svd(rows, full_matrices=False)  # s [M, m], vh [M, m, d]
    smax = s.max(axis=1, keepdims=True) if s.shape[1] else np.zeros((M_, 1))
    rank = ((s > tol * smax) & (smax > 0)).sum(axis=1).astype(np.int64)
    r = int(rank.max())
    Q = vh[:, :r, :].copy()
    Q[np.arange(r)[None, :] >= rank[:, None]] = 0.0
    return Q, rank


def span_dimension(vectors: np.ndarray) -> np.ndarray:
    """[n] int32: the dimension of the span of each sample's direction rows, vectors [n, k, d]
    NaN-padded.  ``rank`` counts rows; LowRankGAN's rows ``normalize_rows(P N Nᵀ)`` (Zhu et
    al. 2021, §3.2) are r_R rows projected into the (d − r_B)-dimensional null space of L_B, so
    they span at most min(r_R, d − r_B) dimensions and can be dependent.  The rank of the
    unit-row stack under the one orthonormal-basis policy
    (:func:`orth_bases`, ``ORTH_TOL``: float32 rounding of stored
    rows never counts as a dimension, rows 0.1° apart do)."""
    if vectors.shape[0] == 0:
        return np.zeros(0, dtype=np.int32)
    return orth_bases(vectors)[1].astype(np.int32)


def orth(V: np.ndarray, tol: float = ORTH_TOL) -> np.ndarray:
    """Orthonormal basis [r, d] of the row space of V [k, d] (the policy of :func:`orth_bases`)."""
    V = _f64(V)
    if V.ndim != 2:
        raise ValueError(f"V: expected shape [*, *], received {list(V.shape)}")
    Q, rank = orth_bases(V[None], tol=tol)
    return Q[0, : int(rank[0])] if Q.shape[1] else np.zeros((0, V.shape[1]))


def subspace_sines(V: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """[k] sines of the angles between unit rows of V [k, d] and span(Q), Q [d, p] orthonormal."""
    V, Q = _f64(V), _f64(Q)
    Vn = V / np.linalg.norm(V, axis=1, keepdims=True)
    resid = Vn - (Vn @ Q) @ Q.T
    return np.linalg.norm(resid, axis=1)


def subspace_coverage(V: np.ndarray, Q: np.ndarray) -> float:
    """Fraction of span(Q) [d, p] contained in the span of the rows of V [k, d]."""
    B = orth(V)
    if B.shape[0] == 0:
        return 0.0
    return float(np.linalg.norm(B @ _f64(Q)) ** 2 / Q.shape[1])


def _angle_stats(sv: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of :func:`subspace_similarity` from the cosines of the principal angles
    sv [..., r] (singular values of Q_aQ_bᵀ, descending) and ranks ra, rb broadcast to sv's
    leading shape."""
    sv = np.clip(sv, 0.0, 1.0)
    ssq = (sv ** 2).sum(axis=-1)
    shape = sv.shape[:-1]
    if sv.shape[-1]:
        cos_max = sv.max(axis=-1)
        m = np.minimum(ra, rb)  # smallest cosine over the matched pairs
        idx = np.broadcast_to(np.clip(m - 1, 0, None), shape)
        cos_min = np.take_along_axis(sv, idx[..., None], axis=-1)[..., 0]
    else:
        cos_max = cos_min = np.zeros(shape)
    rmax = np.maximum(ra, rb).astype(np.float64)
    rmin = np.minimum(ra, rb)
    empty = (ra == 0) | (rb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(empty, np.nan, ssq / np.where(rmax > 0, rmax, 1.0))
        pdist = np.where(empty, np.nan, np.sqrt(np.maximum((ra + rb) / 2.0 - ssq, 0.0)))
    max_ang = np.degrees(np.arccos(np.clip(np.where(rmin < rmax, 0.0, cos_min), 0.0, 1.0)))
    min_ang = np.degrees(np.arccos(np.clip(cos_max, 0.0, 1.0)))
    return {"similarity": sim, "projection_distance": pdist,
            "max_angle": np.where(empty, np.nan, max_ang), "min_angle": np.where(empty, np.nan, min_ang)}


def subspace_similarity(Qa: np.ndarray, ra: np.ndarray, Qb: np.ndarray | None = None,
                        rb: np.ndarray | None = None, block: int = 64) -> dict[str, np.ndarray]:
    """Principal-angle statistics between every pair of zero-padded bases (:func:`orth_bases`).

    Qa [Ma, r, d] with ranks ra [Ma]; Qb/rb default to Qa/ra (a square matrix).
    Returns [Ma, Mb] arrays: ``similarity`` = Σcos²θ / max(r_a, r_b), ``projection_distance``
    = sqrt((r_a + r_b)/2 − Σcos²θ), ``max_angle`` / ``min_angle`` (degrees; the largest
    angle counts the unmatched dimensions of the larger subspace as 90°). A pair with an
    empty subspace gets NaN. Cost O(Ma·Mb·r²·d); :func:`paired_subspace_similarity` for
    the pairs (Qa[i], Qb[i]) only.
    """
    Qa = _f64(Qa)
    ra = np.asarray(ra, dtype=np.int64)
    if Qb is None:
        Qb, rb = Qa, ra
    Qb = _f64(Qb)
    rb = np.asarray(rb, dtype=np.int64)
    Ma, Mb = Qa.shape[0], Qb.shape[0]
    parts = []
    for a0 in range(0, max(Ma, 1), block):
        a1 = min(Ma, a0 + block)
        C = np.einsum("ard,bsd->abrs", Qa[a0:a1], Qb)  # [a, Mb, r, s]
        sv = np.linalg.svd(C, compute_uv=False) if C.size else np.zeros((a1 - a0, Mb, 0))
        parts.append(_angle_stats(sv, ra[a0:a1, None], rb[None, :]))
    return {k: np.concatenate([p[k] for p in parts], axis=0).reshape(Ma, Mb) for k in parts[0]}


def paired_subspace_similarity(Qa: np.ndarray, ra: np.ndarray, Qb: np.ndarray, rb: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`subspace_similarity` of the pairs (Qa[i], Qb[i]) only: [M] arrays (the diagonal
    of the [M, M] result, at O(M·r²·d) instead of O(M²·r²·d))."""
    Qa, Qb = _f64(Qa), _f64(Qb)
    ra, rb = np.asarray(ra, dtype=np.int64), np.asarray(rb, dtype=np.int64)
    if Qa.shape[0] != Qb.shape[0]:
        raise ValueError(f"paired_subspace_similarity: received {Qa.shape[0]} and {Qb.shape[0]} bases; expected as many")
    C = np.einsum("mrd,msd->mrs", Qa, Qb)
    sv = np.linalg.svd(C, compute_uv=False) if C.size else np.zeros((Qa.shape[0], 0))
    return _angle_stats(sv, ra, rb)


def align_signs(V: np.ndarray, U: np.ndarray, tol: float = ALIGN_TOL) -> np.ndarray:
    """Signs s ∈ {−1, +1} (int8 [..., k]) aligning directions V [..., k, d] with population directions U [p, d].

    The rule of the module docstring: ``s = sign(u_{j*}ᵀ v)`` with ``j* = argmax_j |u_jᵀ v|``
    over the finite, non-zero rows of U (scaled to unit length); the sign of v's largest
    coordinate when ``|u_{j*}ᵀ v| ≤ tol·‖v‖``. Undefined rows of V (NaN or zero) get 0.
    Cost O(k·p·d) per sample.
    """
    V, U = _f64(V), _f64(U)
    if U.ndim != 2 or U.shape[-1] != V.shape[-1]:
        raise ValueError(f"U: expected shape [*, {V.shape[-1]}], received {list(U.shape)}")
    ok, Vz, norm = defined_rows(V)
    u_ok, _, un = defined_rows(U)
    Uu = U[u_ok] / un[u_ok, None]
    top = np.take_along_axis(Vz, np.abs(Vz).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    s = np.where(top < 0, -1, 1)  # fallback: the largest coordinate positive
    if Uu.shape[0]:
        ip = Vz @ Uu.T  # [..., k, p]
        best = np.take_along_axis(ip, np.abs(ip).argmax(axis=-1)[..., None], axis=-1)[..., 0]
        s = np.where(np.abs(best) > tol * norm, np.where(best < 0, -1, 1), s)
    return np.where(ok, s, 0).astype(np.int8)


def apply_signs(V: np.ndarray, signs: np.ndarray | None) -> np.ndarray:
    """``s·v`` for V [..., k, d] and signs [..., k] (0 or None: the row as stored); keeps V's dtype."""
    V = np.asarray(V)
    if signs is None:
        return V
    s = np.asarray(signs)
    return V * np.where(s < 0, -1, 1).astype(V.dtype)[..., None]
