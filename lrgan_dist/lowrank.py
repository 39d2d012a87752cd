"""Robust PCA (Principal Component Pursuit) and LowRankGAN directions, batched in torch.

Implements step 1-5 of DESIGN.md §1, from *Low-Rank Subspaces in GANs* (Zhu et al.,
NeurIPS 2021, "LowRankGAN", Alg. 1 and their ``RobustPCA.py``/``compute_directions.py``)
and *Robust Principal Component Analysis?* (Candès, Li, Ma & Wright, J. ACM 2011).

Principal Component Pursuit (Candès et al., eq. 1.1)::

    min_{L,S}  ‖L‖_* + λ‖S‖₁    s.t.  M = L + S                                   (PCP)

with ``λ = 1/√max(n₁, n₂)`` (Candès et al., Thm 1.1; ``lam=None``); ``lam=1/60`` is the
paper's setting for 512-d StyleGAN2 latents.

Notation: ``shrink(X, t) = sign(X)·max(|X| − t, 0)`` (entrywise soft threshold) and
``D_τ(X) = U shrink(Σ, τ) Vᵀ`` (singular-value thresholding, SVT).  For a *symmetric*
``X = V diag(e) Vᵀ``, ``D_τ(X) = V diag(sign(e)·max(|e| − τ, 0)) Vᵀ``: one ``eigh``
replaces the SVD, and every iterate of both solvers stays symmetric when ``M`` is.
Gram matrices (``M_R = JᵀRJ/ΣR``) are symmetric, so that is the main path; a general
(non-square or non-symmetric) ``M`` uses ``torch.linalg.svd`` (``structure`` in
:class:`RPCAConfig`).

Solvers
-------
``solver="reference"`` — the paper's ADMM exactly (Candès et al. Alg. 1, fixed μ, and
``RobustPCA.fit``), starting from ``S₀ = Y₀ = 0``::

    L_{k+1} = D_{1/μ}(M − S_k + Y_k/μ)
    S_{k+1} = shrink(M − L_{k+1} + Y_k/μ, λ/μ)
    Y_{k+1} = Y_k + μ(M − L_{k+1} − S_{k+1})
    stop when ‖M − L − S‖_F ≤ tol·‖M‖_F (tol = 1e-7) or after max_iter (10 000).

(L is updated before S, as in both the paper's code and Candès et al. Alg. 1; the paper's
``Lamb`` is ``−Y``.)  μ is fixed:

* ``mu="reference"`` (default): ``μ = n₁n₂ / (4‖M‖₁)`` with the *matrix* 1-norm
  (max absolute column sum, ``np.linalg.norm(M, ord=1)``), what ``RobustPCA.py`` computes;
* ``mu="candes"``: ``μ = n₁n₂ / (4 Σ|M_ij|)`` with the entrywise ℓ1 norm (Candès et al. §5).

``solver="fast"`` (default) — Douglas–Rachford splitting on ``min ‖L‖_* + λ‖M − L‖₁``
(the same convex problem) with type-II Anderson acceleration (Walker & Ni 2011; the
safeguarded scheme of Zhang, O'Donoghue & Boyd 2020, as used in SCS) and a certified stop.
With γ = 1/μ::

    L   = D_γ(z)                          (one eigh / SVD)
    S   = shrink(M − (2L − z), γλ)        (T = M − S is the prox of λ‖M − ·‖₁ at 2L − z)
    z⁺  = z + (M − S) − L                 (plain DR step; fixed-point residual g = M − L − S)
    z   ← Anderson(z⁺; last m = 5 pairs of Δz, Δg), safeguarded: a step that does not
          reduce ‖g‖ is replaced by the plain DR step and the memory is cleared.

``z₀ = M`` (so the first L equals the reference's first L) and γ = 1/μ from the μ rule.
The DR fixed point is the PCP optimum for every γ > 0; γ only sets the speed.  (Residual
balancing of γ, tried with both the cheap and the exact certificate, cost more iterations
than it saved on Gram matrices, so γ stays fixed.)

Certificate.  ``Y = (z − L)/γ`` satisfies ``‖Y‖₂ ≤ 1`` by construction (SVT), so a
rescaled or clipped Y is feasible for the PCP dual ``max ⟨Y, M⟩ s.t. ‖Y‖₂ ≤ 1,
‖Y‖_∞ ≤ λ`` and gives a lower bound on the optimum, while ``‖L‖_* + λ‖M − L‖₁`` (the
feasible pair (L, M − L)) is an upper bound; ``gap`` is their relative difference.  The
fast solver stops when **both** the primal residual ``‖M − L − S‖_F ≤ tol·‖M‖_F`` (the
reference's rule, 1e-7) **and** ``gap ≤ gap_tol`` (1e-4) hold, so its objective is provably
within ``gap_tol`` of the optimum; in practice it lands within ~1e-7 of it.  A problem stopped by
``max_iter`` returns the best feasible pair (L, M − L) it visited (lowest objective), not
the last iterate: on degenerate Grams (the synthetic generator at λ = 0.25) the last,
Anderson-extrapolated iterate could sit 1e-3–0.2 above the optimum, the best one 2e-6.  The
reference's primal-only rule proves nothing about optimality (its ``gap`` is reported too,
typically 1e-6–1e-3 at d = 64 and 1e-2–0.4 at d = 512: with the reference μ rule at
d = 512, μ‖M‖₂ ≈ 2·10⁴, the iteration freezes before its dual has converged).

``solver="ialm"`` — inexact ALM with increasing μ (Lin, Chen & Ma 2010, Alg. 5):
``μ₀ = 1.25/‖M‖₂``, ``μ ← ρμ`` (ρ = ``rho`` = 1.1, capped at 1e7·μ₀),
``Y₀ = M / max(‖M‖₂, ‖M‖_∞/λ)``, the reference's updates and stopping rule.  Its iteration
count is nearly fixed (log(μ_final/μ₀)/log ρ ≈ 130 at ρ = 1.1, ≈ 40 at 1.5) but it freezes
short of the optimum: objective 1e-6–1e-5 above it at ρ = 1.1 (1e-4–1e-3 at ρ = 1.5), and
the null space of L_B — hence the LowRankGAN directions — differs from a converged
solution's (smallest principal cosine 0.78–0.99 at d = 64).  It does not pass the parity
tests and is offered only as a quick approximation.  With ``eig="partial"`` its SVT uses a
warm-started block subspace iteration (O(d²p) per iteration, p ≈ rank + 16) instead of a
full ``eigh`` (O(d³)), falling back to a full ``eigh`` when the block fills: same
iterations (±2), objective within ~2e-7, ~5× faster at d = 512 (docs/benchmarks.md).

Cost model (d×d symmetric, per problem, float64):

* per iteration: one ``eigh`` (≈ 9d³ flops with vectors) + one ``V diag(e) Vᵀ`` (2d³)
  + O(m d²) for Anderson and the certificate, plus an ``eigvalsh`` (≈ 4d³/3) every 5th
  iteration once the residual is below tol; the reference costs one SVD per iteration in
  numpy (≈ 3× an eigh at d = 512) or one eigh here;
* iterations: 100–700 for typical Grams at d = 64, 2 000+ for hard (degenerate) ones
  (the reference: 300–10 000, often hitting the cap); all problems of a batch iterate
  together and leave the batch as soon as they converge;
* memory: ≈ (2m + 10)·d² numbers per problem still iterating (≈ 42 MB at d = 512, m = 5).

The iteration runs in ``float64`` by default (``dtype`` in :class:`RPCAConfig`); a float32
run cannot resolve a 1e-7 residual, so its ``tol`` is floored at ``10·eps(float32)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from lrgan_dist.generators.base import assert_shape

__all__ = [
    "RPCAConfig",
    "RPCAResult",
    "LowRankGANResult",
    "rpca",
    "mu_from_rule",
    "default_lam",
    "pcp_objective",
    "numerical_rank",
    "null_space_start",
    "project_directions",
    "lowrankgan_directions",
]

_MU_RULES = ("reference", "candes")
_SOLVERS = ("fast", "reference", "ialm")
_STRUCTURES = ("auto", "symmetric", "general")
_DTYPES = ("float64", "float32", "input")

#: relative row norm below which a projected direction is dropped (see ``project_directions``)
DROP_TOL = 1e-6
# fast solver: exact (eigvalsh) certificate every _EXACT_EVERY iterations for problems whose
# residual is below tol but whose cheap certificate is not yet below gap_tol
_EXACT_EVERY = 5


@dataclass(frozen=True)
class RPCAConfig:
    """Configuration of :func:`rpca` (frozen; saved with every result).

    lam:       λ of (PCP); ``None`` = Candès et al.'s ``1/√max(n₁, n₂)``; ``1/60`` = the
               paper's setting for 512-d StyleGAN2 latents.
    mu:        μ rule, ``"reference"`` (default, the paper's code: matrix 1-norm) or
               ``"candes"`` (entrywise ℓ1 norm).  Sets the reference's fixed μ and the
               fast solver's step γ = 1/μ.
    tol:       relative primal residual ``‖M − L − S‖_F / ‖M‖_F`` to stop at (1e-7).
    max_iter:  iteration cap (10 000, the paper's default).
    solver:    ``"fast"`` (default, Anderson-accelerated Douglas–Rachford with a duality-gap
               certificate), ``"reference"`` (the paper's ADMM, exactly) or ``"ialm"``
               (inexact ALM, quick but not at the optimum; see the module doc).
    rho:       ialm only: growth factor of μ (1.1).
    gap_tol:   fast solver only: relative duality gap to stop at (1e-4).
    anderson:  fast solver only: Anderson memory m (0 disables acceleration).
    structure: ``"auto"`` (symmetric path when M is square and ‖M − Mᵀ‖_F ≤ 1e-5‖M‖_F;
               it is then symmetrised), ``"symmetric"`` or ``"general"`` (SVD).
    dtype:     dtype of the iteration: ``"float64"`` (default), ``"float32"`` or ``"input"``.
    eig:       ialm on symmetric problems only: ``"full"`` (one eigh per iteration) or
               ``"partial"`` (warm-started subspace iteration on the eigenpairs above the
               threshold, see :class:`_PartialSVT`); other solvers ignore it.
    """

    lam: float | None = None
    mu: Literal["reference", "candes"] = "reference"
    tol: float = 1e-7
    max_iter: int = 10_000
    solver: Literal["fast", "reference", "ialm"] = "fast"
    rho: float = 1.1
    gap_tol: float = 1e-4
    anderson: int = 5
    structure: Literal["auto", "symmetric", "general"] = "auto"
    dtype: Literal["float64", "float32", "input"] = "float64"
    eig: Literal["full", "partial"] = "full"

    def __post_init__(self) -> None:
        if self.eig not in ("full", "partial"):
            raise ValueError(f"RPCAConfig.eig: expected 'full' or 'partial', received {self.eig!r}")
        if self.lam is not None and not (isinstance(self.lam, (int, float)) and self.lam > 0
                                         and math.isfinite(self.lam)):
            raise ValueError(f"RPCAConfig.lam: expected a positive number or None, received {self.lam!r}")
        if self.mu not in _MU_RULES:
            raise ValueError(f"RPCAConfig.mu: expected one of {list(_MU_RULES)}, received {self.mu!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"RPCAConfig.solver: expected one of {list(_SOLVERS)}, received {self.solver!r}")
        if self.structure not in _STRUCTURES:
            raise ValueError(
                f"RPCAConfig.structure: expected one of {list(_STRUCTURES)}, received {self.structure!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"RPCAConfig.dtype: expected one of {list(_DTYPES)}, received {self.dtype!r}")
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"RPCAConfig.tol: expected a positive number, received {self.tol!r}")
        if not (isinstance(self.rho, (int, float)) and self.rho > 1):
            raise ValueError(f"RPCAConfig.rho: expected a number > 1, received {self.rho!r}")
        if not (isinstance(self.gap_tol, (int, float)) and self.gap_tol > 0):
            raise ValueError(f"RPCAConfig.gap_tol: expected a positive number, received {self.gap_tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"RPCAConfig.max_iter: expected an integer ≥ 1, received {self.max_iter!r}")
        if isinstance(self.anderson, bool) or not isinstance(self.anderson, int) or self.anderson < 0:
            raise ValueError(f"RPCAConfig.anderson: expected an integer ≥ 0, received {self.anderson!r}")


@dataclass
class RPCAResult:
    """Per-problem output of :func:`rpca` (always batched, B ≥ 1; k = min(n₁, n₂)).

    L, S        [B, n₁, n₂]  low-rank and sparse parts
    iterations  [B] int64    iterations run (0 for an all-zero or non-finite M)
    residual    [B]          final ‖M − L − S‖_F / ‖M‖_F
    converged   [B] bool     stopping rule met before max_iter (False for non-finite M)
    sv          [B, k]       singular values of L, descending
    vh          [B, k, n₂]   right singular vectors of L (rows), in the order of ``sv``
    l1          [B]          ‖S‖₁ (entrywise)
    objective   [B]          ‖L‖_* + λ‖S‖₁
    gap         [B]          relative duality gap of (L, M − L), a certificate: the objective is
                             within ``gap`` (relative) of the optimum (see module doc)
    lam, mu     [B]          λ, and μ (reference: the fixed μ; fast: 1/γ; ialm: μ₀)
    """

    L: Tensor
    S: Tensor
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    sv: Tensor
    vh: Tensor
    l1: Tensor
    objective: Tensor
    gap: Tensor
    lam: Tensor
    mu: Tensor
    config: RPCAConfig = field(default_factory=RPCAConfig)


# ----------------------------------------------------------------------------- helpers


def default_lam(n1: int, n2: int) -> float:
    """Candès et al.'s λ = 1/√max(n₁, n₂)."""
    return 1.0 / math.sqrt(max(n1, n2))


def mu_from_rule(M: Tensor, rule: str = "reference") -> Tensor:
    """μ of the reference ADMM for each problem of M [B, n₁, n₂] → [B].

    ``"reference"``: n₁n₂ / (4‖M‖₁), matrix 1-norm (max absolute column sum), as
    ``RobustPCA.py``; ``"candes"``: n₁n₂ / (4Σ|M_ij|).  Zero matrices give +inf.
    """
    n1, n2 = M.shape[-2:]
    if rule == "reference":
        norm = M.abs().sum(-2).amax(-1)
    elif rule == "candes":
        norm = M.abs().sum((-2, -1))
    else:
        raise ValueError(f"mu: expected one of {list(_MU_RULES)}, received {rule!r}")
    return (n1 * n2) / (4.0 * norm)


def _shrink(X: Tensor, t: Tensor) -> Tensor:
    return torch.sign(X) * torch.clamp(X.abs() - t, min=0)


def _svt(X: Tensor, tau: Tensor, symmetric: bool) -> tuple[Tensor, Tensor, Tensor]:
    """D_τ(X) for a batch; returns (L, sv descending, vh rows in the order of sv)."""
    t = tau[:, None]
    if symmetric:
        e, V = torch.linalg.eigh(X)  # ascending e
        es = torch.sign(e) * torch.clamp(e.abs() - t, min=0)
        L = (V * es[:, None, :]) @ V.mT
        L = 0.5 * (L + L.mT)  # keep the iterate exactly symmetric
        sv, order = es.abs().sort(dim=-1, descending=True, stable=True)
        vh = torch.gather(V, 2, order[:, None, :].expand_as(V)).mT
        return L, sv, vh
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    ss = torch.clamp(s - t, min=0)
    L = (U * ss[:, None, :]) @ Vh
    return L, ss, Vh


def pcp_objective(L: Tensor, S: Tensor, lam: float | Tensor) -> Tensor:
    """‖L‖_* + λ‖S‖₁ per problem ([B, n₁, n₂] → [B])."""
    lam_t = torch.as_tensor(lam, dtype=L.dtype, device=L.device)
    return torch.linalg.matrix_norm(L, "nuc") + lam_t * S.abs().sum((-2, -1))


def _gap(M: Tensor, L: Tensor, sv: Tensor, Y: Tensor, lam: Tensor, exact: bool = False) -> Tensor:
    """Relative duality gap of the feasible pair (L, M − L), from a dual candidate Y with
    ‖Y‖₂ ≤ 1 (see module doc).  Y is made dual-feasible two ways and the better lower
    bound is kept: ``Y / max(1, ‖Y‖_∞/λ)``, and ``Y_c = clip(Y, ±λ)`` scaled by
    ``1 + ‖Y − Y_c‖_F`` (≥ ‖Y_c‖₂).  ``exact=True`` also scales Y_c by its exact spectral
    norm (one ``eigvalsh``), usually 5–10× tighter."""
    upper = sv.sum(-1) + lam * (M - L).abs().sum((-2, -1))
    l1 = lam[:, None, None]
    lo1 = (Y * M).sum((-2, -1)) / torch.clamp(Y.abs().amax((-2, -1)) / lam, min=1.0)
    Yc = torch.maximum(torch.minimum(Y, l1), -l1)
    inner = (Yc * M).sum((-2, -1))
    lo2 = inner / (1.0 + torch.linalg.matrix_norm(Y - Yc))
    lower = torch.maximum(lo1, lo2)
    if exact:
        if Y.shape[-1] == Y.shape[-2] and bool((Yc - Yc.mT).abs().amax() == 0):
            nrm = torch.linalg.eigvalsh(Yc).abs().amax(-1)
        else:
            nrm = torch.linalg.matrix_norm(Yc, 2)
        lower = torch.maximum(lower, inner / torch.clamp(nrm, min=1.0))
    return (upper - lower) / torch.clamp(upper.abs(), min=torch.finfo(M.dtype).tiny)


def _prepare(M: Tensor, cfg: RPCAConfig) -> tuple[Tensor, bool]:
    if not isinstance(M, Tensor):
        raise TypeError(f"rpca: M must be a torch.Tensor, received {type(M).__name__}")
    if M.ndim == 2:
        M = M[None]
    if M.ndim != 3:
        raise ValueError(f"rpca: M: expected shape [B, n1, n2] or [n1, n2], received {list(M.shape)}")
    if not M.is_floating_point():
        raise ValueError(f"rpca: M: expected a floating-point tensor, received {M.dtype}")
    dtype = {"float64": torch.float64, "float32": torch.float32, "input": M.dtype}[cfg.dtype]
    M = M.to(dtype)
    square = M.shape[-1] == M.shape[-2]
    if cfg.structure == "symmetric":
        if not square:
            raise ValueError(f"rpca: structure='symmetric' needs square matrices, received {list(M.shape)}")
        symmetric = True
    elif cfg.structure == "general":
        symmetric = False
    else:
        symmetric = False
        if square:
            finite = torch.isfinite(M).all((-2, -1))
            asym = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M - M.mT, 0))
            fro = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M, 0))
            symmetric = bool((asym <= 1e-5 * fro).all())
    if symmetric:
        M = 0.5 * (M + M.mT)
    return M, symmetric


# ----------------------------------------------------------------------------- solvers


def rpca(M: Tensor, cfg: RPCAConfig = RPCAConfig()) -> RPCAResult:
    """Solve (PCP) for every problem of a batch.

    M: [B, n₁, n₂] or [n₁, n₂] (treated as B = 1; the result is always batched).  The
    device follows M; the dtype of the iteration is ``cfg.dtype``.  Problems leave the
    batch as soon as they meet the stopping rule.  An all-zero M returns L = S = 0
    (converged, 0 iterations); a non-finite M returns NaN (not converged, 0 iterations).
    """
    if not isinstance(cfg, RPCAConfig):
        raise TypeError(f"rpca: cfg must be an RPCAConfig, received {type(cfg).__name__}")
    M, symmetric = _prepare(M, cfg)
    B, n1, n2 = M.shape
    k = min(n1, n2)
    dt, dev = M.dtype, M.device
    lam = cfg.lam if cfg.lam is not None else default_lam(n1, n2)
    tol = max(cfg.tol, 10 * torch.finfo(dt).eps) if dt != torch.float64 else cfg.tol

    out = RPCAResult(
        L=torch.zeros_like(M), S=torch.zeros_like(M),
        iterations=torch.zeros(B, dtype=torch.int64, device=dev),
        residual=torch.zeros(B, dtype=dt, device=dev),
        converged=torch.ones(B, dtype=torch.bool, device=dev),
        sv=torch.zeros(B, k, dtype=dt, device=dev),
        vh=torch.eye(k, n2, dtype=dt, device=dev).expand(B, k, n2).clone(),
        l1=torch.zeros(B, dtype=dt, device=dev),
        objective=torch.zeros(B, dtype=dt, device=dev),
        gap=torch.zeros(B, dtype=dt, device=dev),
        lam=torch.full((B,), lam, dtype=dt, device=dev),
        mu=mu_from_rule(M, cfg.mu),
        config=cfg,
    )
    finite = torch.isfinite(M).all((-2, -1))
    fro = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M, 0))
    bad = ~finite
    if bad.any():
        for t in (out.L, out.S, out.sv, out.vh):
            t[bad] = float("nan")
        for t in (out.residual, out.l1, out.objective, out.gap, out.mu):
            t[bad] = float("nan")
        out.converged[bad] = False
    active = torch.nonzero(finite & (fro > 0)).flatten()
    if active.numel() == 0:
        return out
    solve = {"reference": _solve_reference, "fast": _solve_fast, "ialm": _solve_ialm}[cfg.solver]
    solve(M, fro, out, active, lam, tol, cfg, symmetric)
    return out


def _finish(out: RPCAResult, idx: Tensor, M: Tensor, L: Tensor, S: Tensor, sv: Tensor,
            vh: Tensor, it: int, res: Tensor, conv: Tensor, gap: Tensor, lam: float) -> None:
    out.L[idx] = L
    out.S[idx] = S
    out.sv[idx] = sv
    out.vh[idx] = vh
    out.iterations[idx] = it
    out.residual[idx] = res
    out.converged[idx] = conv
    out.l1[idx] = S.abs().sum((-2, -1))
    out.objective[idx] = sv.sum(-1) + lam * out.l1[idx]
    out.gap[idx] = gap


def _solve_reference(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                     tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    M = M_all[idx]
    fro = fro_all[idx]
    mu = out.mu[idx]
    lam_t = out.lam[idx]
    S = torch.zeros_like(M)
    Y = torch.zeros_like(M)
    for it in range(1, cfg.max_iter + 1):
        mu3 = mu[:, None, None]
        X = M - S + Y / mu3
        L, sv, vh = _svt(X, 1.0 / mu, symmetric)
        Yl = mu3 * (X - L)  # ∈ ∂‖L‖_*: the dual candidate of the certificate
        S = _shrink(M - L + Y / mu3, (lam_t / mu)[:, None, None])
        R = M - L - S
        Y = Y + mu3 * R
        res = torch.linalg.matrix_norm(R) / fro
        conv = res <= tol
        done = conv | (it == cfg.max_iter)
        if bool(done.any()):
            d = done
            _finish(out, idx[d], M[d], L[d], S[d], sv[d], vh[d], it, res[d], conv[d],
                    _gap(M[d], L[d], sv[d], Yl[d], lam_t[d]), lam)
            keep = ~done
            if not bool(keep.any()):
                return
            idx, M, fro, mu, lam_t, S, Y = (t[keep] for t in (idx, M, fro, mu, lam_t, S, Y))


def _spectral_norm(M: Tensor, symmetric: bool) -> Tensor:
    if symmetric:
        return torch.linalg.eigvalsh(M).abs().amax(-1)
    return torch.linalg.matrix_norm(M, 2)


class _PartialSVT:
    """D_τ(X) for symmetric X from a warm-started block of p eigenvectors (p ≪ d).

    Each call does one block subspace-iteration step ``Q ← orth(X Q)`` and a
    Rayleigh–Ritz projection (``eigh`` of the p×p matrix QᵀXQ): cost O(d²p) instead of the
    O(d³) of a full ``eigh``.  Q carries over between iterations, and the iterates of the
    solver change slowly, so the block tracks the leading eigenpairs (those with |e| > τ).
    When more than ``p − over/2`` Ritz values exceed τ, the block may be missing some: that
    call falls back to a full ``eigh``, and p is reset to (count above τ) + ``over``.  Only
    the kept eigenpairs enter L, so sv / vh returned are padded (zeros / stale rows): the
    caller recomputes the full spectrum of the final L once (:func:`_full_spectrum`).
    """

    def __init__(self, over: int = 16) -> None:
        self.over = over
        self.Q: Tensor | None = None
        self.full_calls = 0

    def keep(self, mask: Tensor) -> None:
        if self.Q is not None:
            self.Q = self.Q[mask]

    def __call__(self, X: Tensor, tau: Tensor) -> Tensor:
        B, d, _ = X.shape
        t = tau[:, None]
        if self.Q is not None:
            Q, _ = torch.linalg.qr(X @ self.Q)
            th, W = torch.linalg.eigh(Q.mT @ X @ Q)
            p = Q.shape[-1]
            if int((th.abs() > t).sum(-1).max()) <= p - self.over // 2:
                V = Q @ W
                self.Q = V
                es = torch.sign(th) * torch.clamp(th.abs() - t, min=0)
                L = (V * es[:, None, :]) @ V.mT
                return 0.5 * (L + L.mT)
        self.full_calls += 1
        e, V = torch.linalg.eigh(X)
        p = min(d, int((e.abs() > t).sum(-1).max()) + self.over)
        order = e.abs().argsort(-1, descending=True)[:, :p]
        self.Q = torch.gather(V, 2, order[:, None, :].expand(B, d, p))
        es = torch.sign(e) * torch.clamp(e.abs() - t, min=0)
        L = (V * es[:, None, :]) @ V.mT
        return 0.5 * (L + L.mT)


def _full_spectrum(L: Tensor) -> tuple[Tensor, Tensor]:
    """(sv descending, vh rows) of symmetric L: one eigh."""
    e, V = torch.linalg.eigh(L)
    sv, order = e.abs().sort(dim=-1, descending=True, stable=True)
    return sv, torch.gather(V, 2, order[:, None, :].expand_as(V)).mT


def _solve_ialm(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    """Inexact ALM (Lin, Chen & Ma 2010, Alg. 5) with a slow μ increase (ρ = cfg.rho).

    ``cfg.eig = "partial"`` (symmetric problems): SVT by :class:`_PartialSVT`; the final
    L's spectrum is recomputed in full (one eigh per problem)."""
    M = M_all[idx]
    fro = fro_all[idx]
    lam_t = out.lam[idx]
    partial = _PartialSVT() if (cfg.eig == "partial" and symmetric) else None
    n2 = _spectral_norm(M, symmetric)
    Y = M / torch.maximum(n2, M.abs().amax((-2, -1)) / lam_t)[:, None, None]
    mu = 1.25 / n2
    mu_max = mu * 1e7
    out.mu[idx] = mu  # the initial μ (the schedule is μ₀ρᵏ)
    S = torch.zeros_like(M)
    for it in range(1, cfg.max_iter + 1):
        mu3 = mu[:, None, None]
        X = M - S + Y / mu3
        if partial is None:
            L, sv, vh = _svt(X, 1.0 / mu, symmetric)
        else:
            L = partial(X, 1.0 / mu)
        S = _shrink(M - L + Y / mu3, (lam_t / mu)[:, None, None])
        R = M - L - S
        res = torch.linalg.matrix_norm(R) / fro
        conv = res <= tol
        done = conv | (it == cfg.max_iter)
        if bool(done.any()):
            d = done
            if partial is not None:
                sv_d, vh_d = _full_spectrum(L[d])
            else:
                sv_d, vh_d = sv[d], vh[d]
            Yl = mu3[d] * (X[d] - L[d])  # ∈ ∂‖L‖_*, the dual candidate of the certificate
            _finish(out, idx[d], M[d], L[d], S[d], sv_d, vh_d, it, res[d], conv[d],
                    _gap(M[d], L[d], sv_d, Yl, lam_t[d], exact=True), lam)
            keep = ~done
            if not bool(keep.any()):
                return
            if partial is not None:
                partial.keep(keep)
            idx, M, fro, mu, mu_max, lam_t, S, Y, R = (
                t[keep] for t in (idx, M, fro, mu, mu_max, lam_t, S, Y, R))
            mu3 = mu[:, None, None]
        Y = Y + mu3 * R
        mu = torch.minimum(mu * cfg.rho, mu_max)


def _solve_fast(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    M = M_all[idx]
    fro = fro_all[idx]
    gam = 1.0 / out.mu[idx]
    lam_t = out.lam[idx]
    A, n1, n2 = M.shape
    n = n1 * n2
    m = cfg.anderson
    dt, dev = M.dtype, M.device
    z = M.clone()
    # Anderson state: ring buffers of differences (their order does not matter for the
    # least-squares fit) with a per-problem validity mask, the last accepted point and its
    # residual.
    dZ = torch.zeros(A, m, n, dtype=dt, device=dev) if m else None  # rows: Δz
    dG = torch.zeros(A, m, n, dtype=dt, device=dev) if m else None  # rows: Δg
    z_last = torch.zeros(A, n, dtype=dt, device=dev) if m else None
    g_last = torch.zeros(A, n, dtype=dt, device=dev) if m else None
    valid = torch.zeros(A, max(m, 1), dtype=torch.bool, device=dev)
    have_last = torch.zeros(A, dtype=torch.bool, device=dev)
    z_plain = z.clone()
    gn_prev = torch.full((A,), math.inf, dtype=dt, device=dev)
    eye_m = torch.eye(m, dtype=dt, device=dev) if m else None
    # Best feasible pair (L, M − L) seen so far, by its objective (the certificate's upper
    # bound): returned for problems that hit max_iter, instead of the last (possibly
    # extrapolated) iterate, whose objective can be far above the optimum.
    best_obj = torch.full((A,), math.inf, dtype=dt, device=dev)
    best_L, best_sv, best_vh = torch.zeros_like(M), torch.zeros(A, min(n1, n2), dtype=dt, device=dev), None
    best_gap = torch.full((A,), math.inf, dtype=dt, device=dev)
    for it in range(1, cfg.max_iter + 1):
        g3 = gam[:, None, None]
        L, sv, vh = _svt(z, gam, symmetric)
        S = _shrink(M - (2 * L - z), g3 * lam_t[:, None, None])
        g = M - S - L  # = z⁺ − z, and −(primal residual)
        gn = torch.linalg.matrix_norm(g)
        res = gn / fro
        Y = (z - L) / g3
        gap = _gap(M, L, sv, Y, lam_t)
        obj = sv.sum(-1) + lam_t * (M - L).abs().sum((-2, -1))
        better = obj < best_obj
        if best_vh is None:
            best_vh = vh.clone()
        if bool(better.any()):
            b3 = better[:, None, None]
            best_obj = torch.where(better, obj, best_obj)
            best_gap = torch.where(better, gap, best_gap)
            best_L = torch.where(b3, L, best_L)
            best_sv = torch.where(better[:, None], sv, best_sv)
            best_vh = torch.where(b3, vh, best_vh)
        # The cheap bounds are loose when many entries of Y sit just above λ: tighten with
        # the exact spectral norm, only for problems that otherwise qualify, every 5th step.
        cand = (res <= tol) & (gap > cfg.gap_tol)
        if it % _EXACT_EVERY == 0 and bool(cand.any()):
            gap = gap.clone()
            gap[cand] = torch.minimum(gap[cand], _gap(M[cand], L[cand], sv[cand], Y[cand],
                                                      lam_t[cand], exact=True))
        conv = (res <= tol) & (gap <= cfg.gap_tol)
        done = conv | (it == cfg.max_iter)
        if bool(done.any()):
            # converged: the current iterate; stopped by max_iter: the best pair seen, as
            # (L, S = M − L), which is exactly feasible
            c3 = conv[:, None, None]
            Lf = torch.where(c3, L, best_L)
            Sf = torch.where(c3, S, M - best_L)
            svf = torch.where(conv[:, None], sv, best_sv)
            vhf = torch.where(c3, vh, best_vh)
            gapf = torch.where(conv, gap, best_gap)
            resf = torch.where(conv, res, torch.linalg.matrix_norm(M - Lf - Sf) / fro)
            d = done
            _finish(out, idx[d], M[d], Lf[d], Sf[d], svf[d], vhf[d], it, resf[d], conv[d], gapf[d], lam)
            keep = ~done
            if not bool(keep.any()):
                return
            idx, M, fro, gam, lam_t, z, z_plain, g, gn, gn_prev, have_last, valid, L, Y, res, gap = (
                t[keep] for t in (idx, M, fro, gam, lam_t, z, z_plain, g, gn, gn_prev, have_last,
                                  valid, L, Y, res, gap))
            best_obj, best_gap, best_L, best_sv, best_vh = (
                t[keep] for t in (best_obj, best_gap, best_L, best_sv, best_vh))
            if m:
                dZ, dG, z_last, g_last = dZ[keep], dG[keep], z_last[keep], g_last[keep]
            A = idx.numel()
        if not m:
            z = z + g
            continue
        # Safeguard: an extrapolated point that did not reduce the residual is replaced by
        # the plain DR step from the last accepted point, and the memory is cleared.
        accept = gn <= gn_prev
        zf, gf = z.reshape(A, n), g.reshape(A, n)
        upd = accept & have_last
        col = (it - 1) % m
        dZ[:, col] = torch.where(upd[:, None], zf - z_last, dZ[:, col])
        dG[:, col] = torch.where(upd[:, None], gf - g_last, dG[:, col])
        valid[:, col] |= upd
        valid &= accept[:, None]
        z_last = torch.where(accept[:, None], zf, z_last)
        g_last = torch.where(accept[:, None], gf, g_last)
        have_last = accept
        gn_prev = torch.where(accept, gn, torch.full_like(gn, math.inf))
        z_new = torch.where(accept[:, None, None], z + g, z_plain)
        z_plain = z_new
        # Type-II Anderson: θ = argmin ‖g − ΔG θ‖, z ← z⁺ − (ΔZ + ΔG) θ (Tikhonov-regularised).
        use = accept & valid.any(-1)
        if bool(use.any()):
            # Stale (invalid) rows are masked in the small m×m system, not in the buffers.
            vm = valid.to(dt)
            H = (dG @ dG.mT) * (vm[:, :, None] * vm[:, None, :])
            reg = 1e-10 * H.diagonal(dim1=-2, dim2=-1).sum(-1) + torch.finfo(dt).tiny
            H = H + reg[:, None, None] * eye_m + torch.diag_embed(1.0 - vm)
            rhs = (dG @ gf[:, :, None]) * vm[:, :, None]
            theta, info = torch.linalg.solve_ex(H, rhs)
            ok = use & (info == 0) & torch.isfinite(theta).all((-2, -1))
            theta = torch.where(ok[:, None, None], theta, 0) * vm[:, :, None]  # [A, m, 1]
            step = dZ.mT @ theta + dG.mT @ theta
            z_new = z_new - step.reshape(A, n1, n2)
        z = 0.5 * (z_new + z_new.mT) if symmetric else z_new


# ----------------------------------------------------------------------------- ranks & projection


def numerical_rank(sv: Tensor, tol: str | float = "numpy", n: int | None = None) -> Tensor:
    """Numerical rank from singular values sv [B, k] (or [k]) → [B] (or []) int64.

    ``tol="numpy"``: ``#{σ > σ_max · max(n₁, n₂) · eps}``, numpy's ``matrix_rank`` default
    as the paper's code uses (``n`` = max(n₁, n₂), default k; eps of sv's dtype).  A float
    ``tol`` is relative: ``#{σ > tol · σ_max}``.  All-zero (or NaN) spectra have rank 0.
    """
    if isinstance(tol, str):
        if tol != "numpy":
            raise ValueError(f"rank_tol: expected 'numpy' or a positive float, received {tol!r}")
        rel = (n if n is not None else sv.shape[-1]) * torch.finfo(sv.dtype).eps
    else:
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise ValueError(f"rank_tol: expected 'numpy' or a positive float, received {tol!r}")
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


def project_directions(P: Tensor, n_principal: Tensor, Vb: Tensor, start: Tensor,
                       drop_tol: float = DROP_TOL) -> tuple[Tensor, Tensor]:
    """D = normalize_rows(P N Nᵀ) with NaN padding (LowRankGAN step 5).

    P  [B, d, d]  principal directions (rows, best first); rows ≥ n_principal are unused.
    Vb [B, d, d]  right singular vectors of L_B (rows, by descending σ); N = Vb[start:]ᵀ.
    Rows whose projected norm is < ``drop_tol`` (relative to the unit norm of a row of P,
    i.e. the direction lies almost entirely in the row space of L_B) are dropped instead
    of being normalised into noise; the remaining rows keep their order (by σ of L_R) and
    are moved to the front; the rest are NaN.  Returns (D [B, d, d], count [B] int64).
    """
    B, d, _ = P.shape
    ar = torch.arange(d, device=P.device)
    Pm = P * (ar[None, :, None] < n_principal[:, None, None]).to(P.dtype)
    Nc = Vb * (ar[None, :, None] < start[:, None, None]).to(P.dtype)  # complement of N
    D = Pm - (Pm @ Nc.mT) @ Nc  # P N Nᵀ = P (I − N_cᵀ N_c)
    norm = torch.linalg.vector_norm(D, dim=-1)
    keep = (ar[None, :] < n_principal[:, None]) & (norm >= drop_tol)
    order = torch.argsort((~keep).to(torch.int64) * d + ar[None, :], dim=-1, stable=True)
    D = torch.gather(D / torch.clamp(norm, min=torch.finfo(P.dtype).tiny)[..., None], 1,
                     order[..., None].expand(B, d, d))
    count = keep.sum(-1)
    D = torch.where((ar[None, :] < count[:, None])[..., None], D, float("nan"))
    return D, count


@dataclass
class LowRankGANResult:
    """Output of :func:`lowrankgan_directions` (B problems, latent size d).

    vectors       [B, d, d]  projected directions D (unit rows, paper's order, NaN-padded)
    n_directions  [B] int64  number of valid rows of ``vectors``
    principal     [B, d, d]  unprojected principal directions P (NaN-padded beyond r_R)
    rank_R/rank_B [B] int64  numerical ranks of L_R and L_B
    sv_R/sv_B     [B, d]     singular values of L_R and L_B, descending
    null_start    [B] int64  index of the first null-space vector of L_B
    rpca_R/rpca_B            the full RPCA results (iterations, residual, gap, ...)
    """

    vectors: Tensor
    n_directions: Tensor
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
                          drop_tol: float = DROP_TOL) -> LowRankGANResult:
    """LowRankGAN (Zhu et al. 2021, §3.2, DESIGN.md §1 steps 1-5) for a batch of regions.

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
    """
    if M_R.ndim == 2:
        M_R = M_R[None]
    if M_B.ndim == 2:
        M_B = M_B[None]
    assert_shape(M_R, [None, None, None], "M_R")
    B, d, _ = M_R.shape
    assert_shape(M_R, [B, d, d], "M_R")
    assert_shape(M_B, [B, d, d], "M_B")
    numerical_rank(torch.zeros(1), rank_tol)  # validate early
    res = rpca(torch.cat([M_R, M_B.to(M_R.dtype)]), cfg)
    rR, rB = _split(res, B)
    rank_R = numerical_rank(rR.sv, rank_tol, d)
    rank_B = numerical_rank(rB.sv, rank_tol, d)
    start = null_space_start(rank_B, d, relax, null_clamp)
    P = _sign_fix(rR.vh)
    D, count = project_directions(P, rank_R, rB.vh, start, drop_tol)
    D = _sign_fix(D)
    ar = torch.arange(d, device=D.device)
    principal = torch.where((ar[None, :] < rank_R[:, None])[..., None], P, float("nan"))
    return LowRankGANResult(vectors=D, n_directions=count, principal=principal, rank_R=rank_R,
                            rank_B=rank_B, sv_R=rR.sv, sv_B=rB.sv, null_start=start,
                            rpca_R=rR, rpca_B=rB)


def _split(res: RPCAResult, B: int) -> tuple[RPCAResult, RPCAResult]:
    def part(sl: slice) -> RPCAResult:
        kw = {f: getattr(res, f)[sl] for f in ("L", "S", "iterations", "residual", "converged", "sv",
                                                 "vh", "l1", "objective", "gap", "lam", "mu")}
        return RPCAResult(**kw, config=res.config)

    return part(slice(0, B)), part(slice(B, 2 * B))
