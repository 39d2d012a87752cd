"""LowRankGAN steps 2–5 (Zhu et al., NeurIPS 2021, §3.2; README "Concepts"): ranks, null space, projection.

Given the Robust PCA of both Grams (:mod:`lrgan_dist.core.rpca`, step 1)::

    r_R = rank(L_R),  r_B = rank(L_B)                                   (step 2)
    P   = top r_R right singular vectors of L_R                         (step 3)
    N   = right singular vectors of L_B from index r_B − relax on       (step 4)
    D   = normalize_rows(P N Nᵀ)                                        (step 5)

Moving ``x' = x + α·D_k`` changes the region and, to first order, leaves the rest alone.
Rows whose projection is round-off (:func:`resolve_drop_tol`) or that change the region
less than 1e-5 of a random direction (inert) are dropped; the rest are ordered by their
in-region energy ``vᵀM_R v`` after projection, strongest first (:func:`project_directions`).  Cost: two
RPCA problems per sample (batched) plus O(d³) for the projection."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lrgan_dist.core.rpca.config import RPCAConfig, RPCAResult
from lrgan_dist.core.rpca.solve import rpca
from lrgan_dist.core.shapes import assert_shape
from lrgan_dist.core.subspaces import INERT_FRAC

#: default of ``drop_tol``: 100·eps of the precision the Grams were computed in (see
#: :func:`resolve_drop_tol`)
DROP_TOL = "auto"


def check_rank_tol(tol: Any, where: str = "rank_tol") -> None:
    """The one validator of a ``rank_tol`` (every method's and :func:`numerical_rank`'s):
    ``"numpy"`` or a positive number; ``where`` names the field in the message."""
    if isinstance(tol, str):
        ok = tol == "numpy"
    else:
        ok = not isinstance(tol, bool) and isinstance(tol, (int, float)) and tol > 0
    if not ok:
        raise ValueError(f"{where}: expected 'numpy' or a positive float, received {tol!r}")


def numerical_rank(sv: Tensor, tol: str | float = "numpy", n: int | None = None) -> Tensor:
    """Numerical rank from singular values sv [B, k] (or [k]) → [B] (or []) int64.

    ``tol="numpy"``: ``#{σ > σ_max · max(n₁, n₂) · eps}``, numpy's ``matrix_rank`` default
    as the paper's code uses (``n`` = max(n₁, n₂), default k; eps of sv's dtype).  A float
    ``tol`` is relative: ``#{σ > tol · σ_max}``.  All-zero (or NaN) spectra have rank 0.
    """
    check_rank_tol(tol)
    if isinstance(tol, str):
        rel = (n if n is not None else sv.shape[-1]) * torch.finfo(sv.dtype).eps
    else:
        rel = float(tol)
    s = torch.nan_to_num(sv, nan=0.0)
    smax = s.amax(-1, keepdim=True)
    return ((s > rel * smax) & (smax > 0)).sum(-1)


def null_space_start(rank_B: Tensor, d: int, relax: int = 0, clamp: str = "zero") -> Tensor:
    """Index of the first null-space vector of L_B: ``r_B − relax``.

    ``clamp="zero"`` clips it to [0, d] (an empty null space when L_B has full rank);
    ``clamp="reference"`` clips it to [1, d − 1] like ``compute_directions.py``
    (``min(max(1, r_B − relax), d − 1)``: always drops the top direction and keeps at
    least the last one).
    """
    if isinstance(relax, bool) or not isinstance(relax, int) or relax < 0:
        raise ValueError(f"relax: expected an integer ≥ 0, received {relax!r}")
    if clamp == "zero":
        return torch.clamp(rank_B - relax, 0, d)
    if clamp == "reference":
        return torch.clamp(rank_B - relax, 1, d - 1)
    raise ValueError(f"clamp: expected 'zero' or 'reference', received {clamp!r}")


def _sign_fix(V: Tensor) -> Tensor:
    """Deterministic signs: the largest-magnitude entry of each row is positive."""
    i = V.abs().argmax(-1, keepdim=True)
    s = torch.sign(torch.gather(V, -1, i))
    return V * torch.where(s == 0, 1.0, s).to(V.dtype)


def check_energy_tol(energy_tol: Any) -> float:
    """Validate ``energy_tol`` (a number ≥ 0; 0 keeps every non-rounding row) and return it."""
    if isinstance(energy_tol, bool) or not isinstance(energy_tol, (int, float)) or not energy_tol >= 0:
        raise ValueError(f"energy_tol: expected a number ≥ 0, received {energy_tol!r}")
    return float(energy_tol)


def resolve_drop_tol(drop_tol: float | str, dtype: torch.dtype) -> float:
    """Threshold of the signal ``ν_k·σ_k/σ_1`` below which a LowRankGAN direction is dropped.

    Row k of P (eigenvector of L_R with singular value σ_k) projects onto the null space
    of L_B with length ``ν_k = ‖p_k N Nᵀ‖``, and the direction is that projection divided
    by ν_k.  Rounding in the Grams (relative size ε, the eps of the precision J and the
    Grams were computed in) tilts p_k towards the null space of M_R by about ε·σ_1/σ_k
    (first-order perturbation of an eigenvector by ε‖M_R‖ across the gap σ_k to the zero
    eigenvalues), and the projection keeps that tilt whenever the null space of M_R meets
    the null space of L_B (latent dimensions that change nothing at all).  After
    normalisation the rounding is ≈ ε·σ_1/(σ_k ν_k) of the direction, so a row is kept only
    when ``ν_k·σ_k/σ_1 ≥ drop_tol``; ``"auto"`` is ``100·ε`` (rounding ≤ 1 % of a kept row):
    1.2e-5 for float32 Grams (the default), 2.2e-14 for float64.

    Measured on the synthetic generator (float32 Grams, eye regions): the 8th principal
    direction has σ_8/σ_1 = 2e-5 … 7e-3 and projects to ν_8 = 1e-4 … 2e-3; normalised, it
    had 5-80 % of its length in latent dimensions the generator does not use (a carrying
    direction, max sine to the eye subspace up to 0.79), and with float64 Grams the same row
    is clean.  A number is used as given.
    """
    if isinstance(drop_tol, str):
        if drop_tol != "auto":
            raise ValueError(f"drop_tol: expected 'auto' or a positive number, received {drop_tol!r}")
        return 100.0 * torch.finfo(dtype).eps
    if isinstance(drop_tol, bool) or not isinstance(drop_tol, (int, float)) or not drop_tol > 0:
        raise ValueError(f"drop_tol: expected 'auto' or a positive number, received {drop_tol!r}")
    return float(drop_tol)


def project_directions(P: Tensor, n_principal: Tensor, Vb: Tensor, start: Tensor,
                       drop_tol: float = 1e-6, sv: Tensor | None = None, M_R: Tensor | None = None,
                       energy_tol: float = INERT_FRAC) -> tuple[Tensor, Tensor, Tensor]:
    """D = normalize_rows(P N Nᵀ) with NaN padding (LowRankGAN step 5), strongest edit first.

    P  [B, d, d]  principal directions (rows); rows ≥ n_principal are unused.
    Vb [B, d, d]  right singular vectors of L_B (rows, by descending σ); N = Vb[start:]ᵀ.
    sv [B, d]     singular values of L_R in the order of P's rows (optional).
    M_R [B, d, d] the region Gram the directions are scored with (optional).

    A row is kept when both hold:

    * its projection is not rounding: the projected length ν (of a unit row of P) is at
      least ``drop_tol`` — or, given ``sv``, ``ν·σ_k/σ_1`` is (:func:`resolve_drop_tol`);
    * (given ``M_R``) it changes the region: the unit direction v has
      ``vᵀ M_R v ≥ energy_tol · tr M_R / d``, i.e. at least ``energy_tol`` (default
      :data:`~lrgan_dist.core.subspaces.INERT_FRAC` = 1e-5) of the first-order change of a
      random direction (``E[vᵀM_R v] = tr M_R / d``) — absolute, on the sample's own
      Jacobian scale. When J is rank-deficient, L_B spans J's row space and P N Nᵀ is
      round-off that the first rule can pass; such a direction changes nothing (issue 18).

    Kept rows are ordered by their in-region energy ``vᵀ M_R v`` after projection,
    descending (given ``M_R``; otherwise in P's order), so row 0 is the strongest edit
    of R. Returns (D [B, d, d] NaN-padded, count [B] int64, energy [B, d]: ``vᵀ M_R v`` of
    the rows of D, NaN beyond count — all NaN without ``M_R``).
    """
    B, d, _ = P.shape
    ar = torch.arange(d, device=P.device)
    Pm = P * (ar[None, :, None] < n_principal[:, None, None]).to(P.dtype)
    Nc = Vb * (ar[None, :, None] < start[:, None, None]).to(P.dtype)  # complement of N
    D = Pm - (Pm @ Nc.mT) @ Nc  # P N Nᵀ = P (I − N_cᵀ N_c)
    norm = torch.linalg.vector_norm(D, dim=-1)
    signal = norm
    if sv is not None:
        assert_shape(sv, [B, d], "sv")
        signal = norm * sv / torch.clamp(sv[:, :1], min=torch.finfo(sv.dtype).tiny)
    keep = (ar[None, :] < n_principal[:, None]) & (signal >= drop_tol)
    D = D / torch.clamp(norm, min=torch.finfo(P.dtype).tiny)[..., None]
    if M_R is not None:
        assert_shape(M_R, [B, d, d], "M_R")
        Mr = M_R.to(D.dtype)
        energy = ((D @ Mr) * D).sum(-1)  # [B, d] vᵀ M_R v (Zhu et al. 2021, Eq. 2: ‖J_R v‖² / ΣR)
        rnd = torch.diagonal(Mr, dim1=-2, dim2=-1).sum(-1) / d  # tr M_R / d
        keep = keep & (rnd[:, None] > 0) & (energy >= energy_tol * rnd[:, None])
        key = torch.where(keep, -energy, torch.inf)
        order = torch.argsort(key, dim=-1, stable=True)
    else:
        energy = torch.full((B, d), float("nan"), dtype=D.dtype, device=D.device)
        order = torch.argsort((~keep).to(torch.int64) * d + ar[None, :], dim=-1, stable=True)
    D = torch.gather(D, 1, order[..., None].expand(B, d, d))
    energy = torch.gather(energy, 1, order)
    count = keep.sum(-1)
    valid = ar[None, :] < count[:, None]
    D = torch.where(valid[..., None], D, float("nan"))
    energy = torch.where(valid, energy, float("nan"))
    return D, count, energy


@dataclass
class LowRankGANResult:
    """Output of :func:`lowrankgan_directions` (B problems, latent size d).

    vectors       [B, d, d]  projected directions D (unit rows, NaN-padded), by in-region
                             energy after projection, descending (strongest edit first)
    n_directions  [B] int64  number of valid rows of ``vectors`` (0: no local direction)
    energy        [B, d]     vᵀ M_R v of the rows of ``vectors`` (NaN-padded)
    principal     [B, d, d]  unprojected principal directions P (NaN-padded beyond r_R)
    rank_R/rank_B [B] int64  numerical ranks of L_R and L_B
    sv_R/sv_B     [B, d]     singular values of L_R and L_B, descending
    null_start    [B] int64  index of the first null-space vector of L_B
    rpca_R/rpca_B            the full RPCA results (iterations, residual, gap, ...)
    """

    vectors: Tensor
    n_directions: Tensor
    energy: Tensor
    principal: Tensor
    rank_R: Tensor
    rank_B: Tensor
    sv_R: Tensor
    sv_B: Tensor
    null_start: Tensor
    rpca_R: RPCAResult
    rpca_B: RPCAResult


def lowrankgan_directions(M_R: Tensor, M_B: Tensor, cfg: RPCAConfig = RPCAConfig(), relax: int = 0,
                          rank_tol: str | float = "numpy", null_clamp: str = "zero",
                          drop_tol: float | str = DROP_TOL, energy_tol: float = INERT_FRAC,
                          precision: torch.dtype | None = None) -> LowRankGANResult:
    """LowRankGAN (Zhu et al. 2021, §3.2, README "Concepts" steps 1-5) for a batch of regions.

    M_R, M_B: [B, d, d] (or [d, d]) Grams of the region and of the rest.  Both are factorised
    in one batched :func:`rpca` call; then ``r_R = rank(L_R)``, ``r_B = rank(L_B)``
    (``rank_tol``, see :func:`numerical_rank`), ``P`` = top r_R right singular vectors of
    L_R, ``N`` = right singular vectors of L_B from index ``r_B − relax`` on
    (:func:`null_space_start`), ``D = normalize_rows(P N Nᵀ)`` (:func:`project_directions`).
    Signs are fixed so that each row's largest-magnitude entry is positive.

    Ranks: ``rank_tol="numpy"`` reproduces the paper (``np.linalg.matrix_rank``), but it
    counts every singular value above ~d·eps·σ_max, so it depends on how far the solver
    drove the smallest ones to zero; a relative tolerance (e.g. ``1e-3``) placed in a gap of
    the spectrum (``sv_R``/``sv_B`` are returned for that) is much more stable across
    solvers.  ``null_clamp="reference"`` reproduces compute_directions.py's clamp.

    ``drop_tol`` (:func:`resolve_drop_tol`): rows with ``ν_k·σ_k/σ_1`` below it are dropped;
    ``"auto"`` = 100·eps of ``precision``, the dtype the Grams were computed in (default:
    M_R's dtype as passed). ``energy_tol``: rows whose region energy ``vᵀM_R v`` is below
    ``energy_tol · tr M_R / d`` (a random direction's) are dropped as inert, and the kept
    rows are ordered by ``vᵀM_R v``, descending (:func:`project_directions`). A sample whose
    every row is inert has ``n_directions = 0`` ("no local direction").
    """
    if M_R.ndim == 2:
        M_R = M_R[None]
    if M_B.ndim == 2:
        M_B = M_B[None]
    assert_shape(M_R, [None, None, None], "M_R")
    B, d, _ = M_R.shape
    assert_shape(M_R, [B, d, d], "M_R")
    assert_shape(M_B, [B, d, d], "M_B")
    check_rank_tol(rank_tol)  # validate early
    drop = resolve_drop_tol(drop_tol, precision if precision is not None else M_R.dtype)
    res = rpca(torch.cat([M_R, M_B.to(M_R.dtype)]), cfg)
    rR, rB = _split(res, B)
    rank_R = numerical_rank(rR.sv, rank_tol, d)
    rank_B = numerical_rank(rB.sv, rank_tol, d)
    start = null_space_start(rank_B, d, relax, null_clamp)
    P = _sign_fix(rR.vh)
    check_energy_tol(energy_tol)
    D, count, energy = project_directions(P, rank_R, rB.vh, start, drop, sv=rR.sv, M_R=M_R, energy_tol=energy_tol)
    D = _sign_fix(D)
    ar = torch.arange(d, device=D.device)
    principal = torch.where((ar[None, :] < rank_R[:, None])[..., None], P, float("nan"))
    return LowRankGANResult(vectors=D, n_directions=count, energy=energy, principal=principal, rank_R=rank_R,
                            rank_B=rank_B, sv_R=rR.sv, sv_B=rB.sv, null_start=start,
                            rpca_R=rR, rpca_B=rB)


def _split(res: RPCAResult, B: int) -> tuple[RPCAResult, RPCAResult]:
    def part(sl: slice) -> RPCAResult:
        kw = {f: getattr(res, f)[sl] for f in ("L", "S", "iterations", "residual", "converged", "sv",
                                                 "vh", "l1", "objective", "gap", "lam", "mu")}
        return RPCAResult(**kw, config=res.config)

    return part(slice(0, B)), part(slice(B, 2 * B))
