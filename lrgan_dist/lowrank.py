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

``solver="fast"`` (default) — two phases on the same convex problem, stopped by a
certificate of optimality.

*Phase 1, warm start* (``warm_start=True``): the inexact ALM below until its primal
residual is below ``tol``, with a *slow band*: μ grows by ρ = ``warm_rho`` = 1.1 per
iteration, but by ``warm_slow_rho`` = 1.03 while μ lies in ``warm_band`` = [0.01, 1] × the
μ rule's μ (at the default ``gamma`` the DR step of phase 2 is its inverse).  Along the fast schedule the rank and
the sparse support of the iterates are settled while μ sweeps through the two decades
below the DR step, and settled too early: the iterate lands within ~1e-6 of the optimal
objective, yet its L is ~3e-4 (relative) away from the optimum (random StyleGAN2 rest
Gram, d = 512), and correcting that is most of phase 2 — from the optimal L with phase
1's multiplier the DR certifies in 70 steps, from phase 1's L with the optimal multiplier
it needs 630, as many as from phase 1's pair.  Growing μ slowly through that band costs
≈ 110 more (cheap) phase-1 iterations and cuts phase 2 from 640 to ≈ 50 steps there
(measured on seven d = 512 pairs, docs/benchmarks.md: 24.5 s → 10.5 s in total, the four
StyleGAN2 samples 2.7–3.8× faster, two structured pairs 0.78× and 2.3×, the synthetic
generator's pair 1.06×; slowing the whole schedule instead, or growing faster outside the
band, was worse).  Phase 1 takes ≈ 220–260 iterations; its certificate is still only
~5e-3: its multiplier has not converged.

*Phase 2, Douglas–Rachford* splitting on ``min ‖L‖_* + λ‖M − L‖₁`` with type-II Anderson
acceleration (Walker & Ni 2011; the safeguarded scheme of Zhang, O'Donoghue & Boyd 2020, as
used in SCS), from ``z₀ = L₁ + γY₁`` (phase 1's primal-dual pair: the DR fixed point is
``z* = L* + γY*``; without the warm start, ``z₀ = M``).  With γ = 1/μ from the μ rule::

    L   = D_γ(z)                          (one eigh / SVD, or a partial one, see eig)
    S   = shrink(M − (2L − z), γλ)        (T = M − S is the prox of λ‖M − ·‖₁ at 2L − z)
    z⁺  = z + (M − S) − L                 (plain DR step; fixed-point residual g = M − L − S)
    z   ← Anderson(z⁺; last m = 5 pairs of Δz, Δg), safeguarded: a step that does not
          reduce ‖g‖ is replaced by the plain DR step and the memory is cleared.

The DR fixed point is the PCP optimum for every γ > 0; γ only sets the speed.  The default
is γ = 1/μ (``gamma=1.0``; a number is a fixed multiple): after the slow-band warm start it
was the best of the multiples 0.3, 1 and 3 on the seven d = 512 pairs above (10.5 s against
12.3 s and 13.3 s in total), and a per-problem race of 0.3×, 3× and 30× (an earlier
option) was slower than it on every pair (16.4 s in total).  The warm start is what pays
(measured before the slow band): on the synthetic generator's eye-box Grams (λ = 0.25) the
cold DR ran into the 10 000-iteration cap uncertified (20 s for 6 problems), the warm one
certifies in 340–480 iterations in total (0.75 s); on the structured d = 512 pair,
18.1 s → 1.85 s (docs/benchmarks.md).

Certificate.  ``Y = (z − L)/γ`` satisfies ``‖Y‖₂ ≤ 1`` by construction (an exact SVT), so a
rescaled or clipped Y is feasible for the PCP dual ``max ⟨Y, M⟩ s.t. ‖Y‖₂ ≤ 1,
‖Y‖_∞ ≤ λ`` and gives a lower bound on the optimum, while ``‖L‖_* + λ‖M − L‖₁`` (the
feasible pair (L, M − L)) is an upper bound; ``gap`` is their relative difference.  Every
5th DR step the fast solver checks; it stops when **both** the primal residual
``‖M − L − S‖_F ≤ tol·‖M‖_F`` (the reference's rule, 1e-7) **and** ``gap ≤ gap_tol`` (1e-4)
hold, so its objective is provably within ``gap_tol`` of the optimum; in practice it lands
within ~1e-7 of it.  With a partial SVT the certificate uses the exact spectral norm of the
clipped Y only (``_gap(strict=True)``), which assumes nothing about the SVT.  A problem
stopped by ``max_iter`` (which bounds each phase) returns the best feasible pair
(L, M − L) seen at the checks (lowest objective), not the last iterate, which may be an
Anderson extrapolation far above the optimum.  The reference's primal-only rule proves
nothing about optimality (its ``gap`` is reported too, typically 1e-6–1e-3 at d = 64 and
1e-2–0.4 at d = 512: with the reference μ rule at d = 512, μ‖M‖₂ ≈ 2·10⁴, the iteration
freezes before its dual has converged).

``solver="ialm"`` — inexact ALM with increasing μ (Lin, Chen & Ma 2010, Alg. 5):
``μ₀ = 1.25/‖M‖₂``, ``μ ← ρμ`` (ρ = ``rho`` = 1.1, capped at 1e7·μ₀),
``Y₀ = M / max(‖M‖₂, ‖M‖_∞/λ)``, the reference's updates and stopping rule (written with
fewer passes over d²: for ``T = Y/μ`` and ``W = M − L + T``, ``S = W − clip(W, ±λ/μ)``,
the residual is ``clip(W, ±λ/μ) − T`` and the new multiplier ``μ·clip(W, ±λ/μ)``).  Its
iteration count is nearly fixed (log(μ_final/μ₀)/log ρ ≈ 130 at ρ = 1.1, ≈ 40 at 1.5) but
it freezes short of the optimum: objective 1e-6–1e-5 above it at ρ = 1.1 (1e-4–1e-3 at
ρ = 1.5), and the null space of L_B — hence the LowRankGAN directions — differs from a
converged solution's (smallest principal cosine 0.78–0.99 at d = 64).  It does not pass the
parity tests and is offered only as a quick approximation (it is the fast solver's phase 1).

Partial eigendecompositions (``eig``; ``"auto"`` = from d = 128 on, symmetric problems, in
ialm and both phases of fast): the SVT uses a warm-started block subspace iteration
(:class:`_PartialSVT`, O(d²p) per iteration, p ≈ rank + 16) instead of a full ``eigh``
(O(d³)), falling back to a full ``eigh`` when the block fills; the spectrum of the final L
is computed once in full.  Same iterations (±2), objective within ~2e-7, 3.3–4.2× faster
at d = 512 (docs/benchmarks.md, `fast` vs `fast-full`).

Cost model (d×d symmetric, per problem, float64):

* per iteration: one ``eigh`` (≈ 9d³ flops with vectors) + one ``V diag(e) Vᵀ`` (2d³), or
  with a partial SVT two d×d×p products and one d×d×k (k = the rank kept, ≈ 2d²(2p + k));
  plus ≈ 9 (ialm) / 7 (DR) elementwise passes over d² numbers, written in place into
  preallocated buffers (the iteration is memory-bound at d = 512 once the SVT is partial:
  ≈ 0.1 ms per pass per problem on 2 cores, a fresh allocation costs as much again), and
  for Anderson ≈ 3m·d² float32 reads (its difference buffers are float32: they only shape
  the extrapolation; the Gram of ΔG gains one row per step).  Measured at d = 512 on 2
  cores: ≈ 2.6 ms per ialm and ≈ 5 ms per DR iteration and problem (the latter 8.5 ms
  before the in-place rewrite).  An exact certificate (``eigvalsh``, ≈ 4d³/3) for problems
  whose residual is below tol, every 5th step while the gap is within 2× of gap_tol, backing
  off to every 40th while it is 8× above; the reference costs one SVD per iteration in
  numpy (≈ 3× an eigh at d = 512);
* iterations: phase 1 ≈ 130–150 without the slow band, ≈ 220–260 with it (d = 512);
  phase 2 15–90 (d = 512, with the band) and 200–5 000 at d = 64 on the structured test
  Grams; the reference: 300–10 000, often hitting the cap; all problems
  of a batch iterate together and leave the batch as soon as they converge;
* memory: ≈ 14·d² float64 + 2m·d² float32 numbers per problem still iterating (≈ 40 MB at
  d = 512, m = 5).

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
    "resolve_drop_tol",
    "lowrankgan_directions",
]

_MU_RULES = ("reference", "candes")
_SOLVERS = ("fast", "reference", "ialm")
_STRUCTURES = ("auto", "symmetric", "general")
_DTYPES = ("float64", "float32", "input")

#: default of ``drop_tol``: 100·eps of the precision the Grams were computed in (see
#: :func:`resolve_drop_tol`)
DROP_TOL = "auto"
# fast solver: exact (eigvalsh) certificate every _EXACT_EVERY iterations for problems whose
# residual is below tol but whose cheap certificate is not yet below gap_tol
_EXACT_EVERY = 5
# eig="auto": partial eigendecompositions from this latent size on (below, a full eigh is
# as cheap as the block steps)
_PARTIAL_MIN_D = 128


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
    solver:    ``"fast"`` (default: inexact-ALM warm start, then Anderson-accelerated
               Douglas–Rachford with a duality-gap certificate), ``"reference"`` (the
               paper's ADMM, exactly) or ``"ialm"`` (inexact ALM, quick but not at the
               optimum; see the module doc).
    rho:       ialm only: growth factor of μ (1.1).
    gap_tol:   fast solver only: relative duality gap to stop at (1e-4).
    anderson:  fast solver only: Anderson memory m (0 disables acceleration).
    structure: ``"auto"`` (symmetric path when M is square and ‖M − Mᵀ‖_F ≤ 1e-5‖M‖_F;
               it is then symmetrised), ``"symmetric"`` or ``"general"`` (SVD).
    dtype:     dtype of the iteration: ``"float64"`` (default), ``"float32"`` or ``"input"``.
    eig:       ialm and fast on symmetric problems: ``"auto"`` (partial from d = 128 on),
               ``"full"`` (one eigh per iteration) or ``"partial"`` (warm-started subspace
               iteration on the eigenpairs above the threshold, see :class:`_PartialSVT`);
               the reference solver always uses full eigendecompositions.
    warm_start: fast solver only: start the DR phase from an inexact-ALM solution (True).
    warm_rho:  fast solver only: ρ of that inexact-ALM phase (1.1).
    warm_slow_rho: fast solver only: the slower growth of μ in the warm start's band (1.03).
    warm_band: fast solver only: that band, as multiples (lo, hi) of the μ rule's μ
               ((0.01, 1.0); module doc).
    gamma:     fast solver only: the DR step as a multiple of 1/μ (1.0).
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
    eig: Literal["auto", "full", "partial"] = "auto"
    warm_start: bool = True
    warm_rho: float = 1.1
    warm_slow_rho: float = 1.03
    warm_band: tuple[float, float] = (0.01, 1.0)
    gamma: float = 1.0

    def __post_init__(self) -> None:
        g = self.gamma
        if not (isinstance(g, (int, float)) and not isinstance(g, bool) and g > 0 and math.isfinite(g)):
            raise ValueError(f"RPCAConfig.gamma: expected a positive number, received {g!r}")
        if self.eig not in ("auto", "full", "partial"):
            raise ValueError(f"RPCAConfig.eig: expected 'auto', 'full' or 'partial', received {self.eig!r}")
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"RPCAConfig.warm_start: expected a bool, received {self.warm_start!r}")
        if not (isinstance(self.warm_rho, (int, float)) and self.warm_rho > 1):
            raise ValueError(f"RPCAConfig.warm_rho: expected a number > 1, received {self.warm_rho!r}")
        if not (isinstance(self.warm_slow_rho, (int, float)) and self.warm_slow_rho > 1):
            raise ValueError(
                f"RPCAConfig.warm_slow_rho: expected a number > 1, received {self.warm_slow_rho!r}")
        wb = self.warm_band
        if not (isinstance(wb, tuple) and len(wb) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in wb)
                and 0 < wb[0] <= wb[1]):
            raise ValueError("RPCAConfig.warm_band: expected a pair (lo, hi) of finite numbers with "
                             f"0 < lo ≤ hi, received {wb!r}")
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


def _gap(M: Tensor, L: Tensor, sv: Tensor, Y: Tensor, lam: Tensor, exact: bool = False,
         strict: bool = False, symmetric: bool = False, upper: Tensor | None = None) -> Tensor:
    """Relative duality gap of the feasible pair (L, M − L), from a dual candidate Y with
    ‖Y‖₂ ≤ 1 (see module doc).  Y is made dual-feasible two ways and the better lower
    bound is kept: ``Y / max(1, ‖Y‖_∞/λ)``, and ``Y_c = clip(Y, ±λ)`` scaled by
    ``1 + ‖Y − Y_c‖_F`` (≥ ‖Y_c‖₂).  ``exact=True`` also scales Y_c by its exact spectral
    norm (one ``eigvalsh``), usually 5–10× tighter.  ``strict=True`` keeps only that exact
    bound, which assumes nothing about ‖Y‖₂ (a Y from a partial SVT, :class:`_PartialSVT`).
    ``symmetric=True`` (symmetric M): the exact bound uses the symmetric part of Y_c, which
    is as dual-feasible (its entries are averages of entries within ±λ), has the same inner
    product with a symmetric M, and whose spectral norm is one ``eigvalsh``; the iterates
    are symmetric only up to rounding.  ``upper``: the objective of (L, M − L) when the
    caller has it already."""
    if upper is None:
        upper = sv.sum(-1) + lam * (M - L).abs().sum((-2, -1))
    l1 = lam[:, None, None]
    Yc = torch.maximum(torch.minimum(Y, l1), -l1)
    inner = (Yc * M).sum((-2, -1))
    if strict:
        lower = torch.full_like(upper, -math.inf)
        exact = True
    else:
        lo1 = (Y * M).sum((-2, -1)) / torch.clamp(Y.abs().amax((-2, -1)) / lam, min=1.0)
        lo2 = inner / (1.0 + torch.linalg.matrix_norm(Y - Yc))
        lower = torch.maximum(lo1, lo2)
    if exact:
        if symmetric:
            Yc = 0.5 * (Yc + Yc.mT)
            inner = (Yc * M).sum((-2, -1))
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
    solvers change slowly, so the block tracks the leading eigenpairs (those with |e| > τ).
    When more than ``p − over/2`` Ritz values exceed τ, the block may be missing some: that
    call falls back to a full ``eigh``, and p is reset to (count above τ) + ``over``.
    Returns L and its singular values (descending, zero-padded to d); the eigenvectors of
    the final L are recomputed once by the caller (:func:`_full_spectrum`).  Because a
    block step can in principle miss an eigenvalue above τ, certificates computed from a
    partial iterate use the exact spectral norm of the dual candidate (``_gap(strict=True)``).
    """

    def __init__(self, over: int = 16) -> None:
        self.over = over
        self.Q: Tensor | None = None

    def keep(self, mask: Tensor) -> None:
        if self.Q is not None:
            self.Q = self.Q[mask]

    def __call__(self, X: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        B, d, _ = X.shape
        t = tau[:, None]
        if self.Q is not None:
            Q, _ = torch.linalg.qr(X @ self.Q)
            th, W = torch.linalg.eigh(Q.mT @ (X @ Q))
            p = Q.shape[-1]
            k = int((th.abs() > t).sum(-1).max())
            if k <= p - self.over // 2:
                V = Q @ W
                self.Q = V
                return self._assemble(V, th, t, d)
        e, V = torch.linalg.eigh(X)
        p = min(d, int((e.abs() > t).sum(-1).max()) + self.over)
        order = e.abs().argsort(-1, descending=True)[:, :p]
        self.Q = torch.gather(V, 2, order[:, None, :].expand(B, d, p))
        return self._assemble(V, e, t, d)

    @staticmethod
    def _assemble(V: Tensor, e: Tensor, t: Tensor, d: int) -> tuple[Tensor, Tensor]:
        """L = V diag(shrink(e, τ)) Vᵀ from the k columns whose shrunk value is non-zero
        (O(d²k)); symmetric up to rounding (the solvers do not re-symmetrise each
        iterate, which would cost two passes over d² with a transposed read).  Returns L and
        its singular values, descending, zero-padded to d."""
        B = V.shape[0]
        es = torch.sign(e) * torch.clamp(e.abs() - t, min=0)
        sv, order = es.abs().sort(dim=-1, descending=True)
        k = max(int((sv > 0).sum(-1).max()), 1)
        order = order[:, :k]
        Vk = torch.gather(V, 2, order[:, None, :].expand(B, d, k))
        ek = torch.gather(es, 1, order)
        L = (Vk * ek[:, None, :]) @ Vk.mT
        out = torch.zeros(B, d, dtype=V.dtype, device=V.device)
        out[:, :sv.shape[-1]] = sv
        return L, out


def _full_spectrum(L: Tensor, symmetric: bool = True) -> tuple[Tensor, Tensor]:
    """(sv descending, vh rows in the order of sv) of L: one eigh (symmetric) or SVD."""
    if not symmetric:
        _, s, Vh = torch.linalg.svd(L, full_matrices=False)
        return s, Vh
    e, V = torch.linalg.eigh(L)
    sv, order = e.abs().sort(dim=-1, descending=True, stable=True)
    return sv, torch.gather(V, 2, order[:, None, :].expand_as(V)).mT


def _use_partial(cfg: RPCAConfig, symmetric: bool, d: int) -> bool:
    if not symmetric or cfg.eig == "full":
        return False
    return cfg.eig == "partial" or d >= _PARTIAL_MIN_D


@dataclass
class _IALMState:
    """Per-problem end state of :func:`_ialm_core` (rows in the order of the input)."""

    L: Tensor
    S: Tensor
    Y: Tensor           # the multiplier after the last update (warm start of the DR phase)
    Yl: Tensor          # μ(X − L) ∈ ∂‖L‖_*, the dual candidate of the certificate
    iterations: Tensor
    residual: Tensor
    converged: Tensor


def _ialm_core(M: Tensor, fro: Tensor, lam_t: Tensor, tol: float, max_iter: int, rho: float,
               partial: bool, symmetric: bool,
               slow: tuple[float, Tensor, Tensor] | None = None) -> tuple[_IALMState, Tensor]:
    """Inexact ALM (Lin, Chen & Ma 2010, Alg. 5) on a batch; problems leave when converged.

    ``μ₀ = 1.25/‖M‖₂``, ``μ ← ρμ`` (capped at 1e7·μ₀), ``Y₀ = M / max(‖M‖₂, ‖M‖_∞/λ)``, the
    reference's updates (L, then S, then Y) and stopping rule.  ``slow = (ρ_s, lo, hi)``
    (per-problem μ bounds [A]): μ grows by ρ_s instead while ``lo ≤ μ < hi`` (the fast
    solver's slow band, module doc).  Returns the end state and μ₀.
    """
    A = M.shape[0]
    svt = _PartialSVT() if partial else None
    n2 = _spectral_norm(M, symmetric)
    Y = M / torch.maximum(n2, M.abs().amax((-2, -1)) / lam_t)[:, None, None]
    mu = 1.25 / n2
    mu0 = mu.clone()
    mu_max = mu * 1e7
    if slow is None:
        slow_rho, lo, hi = rho, mu_max, mu_max     # an empty band
    else:
        slow_rho, lo, hi = slow
    S = torch.zeros_like(M)
    st = _IALMState(L=torch.zeros_like(M), S=torch.zeros_like(M), Y=torch.zeros_like(M),
                    Yl=torch.zeros_like(M), iterations=torch.zeros(A, dtype=torch.int64, device=M.device),
                    residual=torch.zeros(A, dtype=M.dtype, device=M.device),
                    converged=torch.zeros(A, dtype=torch.bool, device=M.device))
    pos = torch.arange(A, device=M.device)
    # work buffers, updated in place (the iteration is memory-bound at large d)
    Ab, X, Wb, C = (torch.empty_like(M) for _ in range(4))
    for it in range(1, max_iter + 1):
        # The reference's updates with fewer passes over d²: with T = Y/μ and
        # W = M − L + T, S = shrink(W, λ/μ) = W − C for C = clip(W, ±λ/μ), so the residual
        # is R = M − L − S = C − T and the new multiplier Y + μR = μC.
        mu3 = mu[:, None, None]
        t3 = (lam_t / mu)[:, None, None]
        torch.addcdiv(M, Y, mu3, out=Ab)                 # M + T
        torch.sub(Ab, S, out=X)
        L = _svt(X, 1.0 / mu, symmetric)[0] if svt is None else svt(X, 1.0 / mu)[0]
        torch.sub(Ab, L, out=Wb)                         # W
        torch.clamp(Wb, min=-t3, max=t3, out=C)
        torch.sub(Wb, C, out=S)
        torch.addcdiv(C, Y, mu3, value=-1, out=Wb)       # R = C − T
        res = torch.linalg.vector_norm(Wb, dim=(-2, -1)) / fro
        torch.mul(C, mu3, out=Y)
        conv = res <= tol
        done = conv | (it == max_iter)
        if bool(done.any()):
            p = pos[done]
            st.L[p], st.S[p], st.Y[p] = L[done], S[done], Y[done]
            st.Yl[p] = mu3[done] * (X[done] - L[done])
            st.iterations[p], st.residual[p], st.converged[p] = it, res[done], conv[done]
            keep = ~done
            if not bool(keep.any()):
                break
            if svt is not None:
                svt.keep(keep)
            pos, M, fro, mu, mu_max, lo, hi, lam_t, S, Y, Ab, X, Wb, C = (
                t[keep] for t in (pos, M, fro, mu, mu_max, lo, hi, lam_t, S, Y, Ab, X, Wb, C))
        in_band = (mu >= lo) & (mu < hi)
        mu = torch.minimum(mu * torch.where(in_band, slow_rho, rho), mu_max)
    return st, mu0


def _solve_ialm(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    """``solver="ialm"``: :func:`_ialm_core` with ρ = ``cfg.rho``; the spectrum of the final L
    is computed once per problem."""
    M = M_all[idx]
    lam_t = out.lam[idx]
    partial = _use_partial(cfg, symmetric, M.shape[-1])
    st, mu0 = _ialm_core(M, fro_all[idx], lam_t, tol, cfg.max_iter, cfg.rho, partial, symmetric)
    out.mu[idx] = mu0  # the initial μ (the schedule is μ₀ρᵏ)
    sv, vh = _full_spectrum(st.L, symmetric)
    # a full SVT makes ‖Yl‖₂ ≤ 1, so the cheap bounds hold too; a partial one needs strict
    _finish(out, idx, M, st.L, st.S, sv, vh, st.iterations, st.residual, st.converged,
            _gap(M, st.L, sv, st.Yl, lam_t, exact=True, strict=partial, symmetric=symmetric), lam)


def _solve_fast(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    M = M_all[idx]
    fro = fro_all[idx]
    mu_rule = out.mu[idx]
    gam = float(cfg.gamma) / mu_rule
    lam_t = out.lam[idx]
    partial = _use_partial(cfg, symmetric, M.shape[-1])
    # Phase 1 (warm start): inexact ALM gets near the optimum in a nearly fixed number of
    # cheap iterations; the DR phase starts from its primal-dual pair, z₀ = L + γY (the DR
    # fixed point is z* = L* + γY*).  Without it, z₀ = M.
    if cfg.warm_start:
        lo_m, hi_m = cfg.warm_band
        slow = (cfg.warm_slow_rho, lo_m * mu_rule, hi_m * mu_rule)
        st, _ = _ialm_core(M, fro, lam_t, tol, cfg.max_iter, cfg.warm_rho, partial, symmetric, slow)
        z = st.L + gam[:, None, None] * st.Y
        its0 = st.iterations
    else:
        z = M.clone()
        its0 = torch.zeros(M.shape[0], dtype=torch.int64, device=M.device)
    _dr_phase(M, fro, lam_t, gam, z, its0, idx, out, lam, tol, cfg, symmetric, partial)


class _Anderson:
    """Safeguarded type-II Anderson acceleration of the DR map (Walker & Ni 2011; Zhang,
    O'Donoghue & Boyd 2020) for a batch, with memory m.

    Ring buffers hold the last m differences ΔG (of the residual g) and ΔZ + ΔG, stored in
    float32 (they only shape the extrapolation; the iterate stays in the working dtype),
    with a per-problem validity mask, and the Gram matrix ΔGΔGᵀ is updated one row per step
    (m·d² instead of m²·d²).  Step: θ = argmin ‖g − ΔG θ‖ (Tikhonov-regularised),
    z ← z + g − (ΔZ + ΔG)θ.  Safeguard: an extrapolated point whose residual is not below
    the last accepted one's is replaced by the plain DR step from that point and the memory
    of that problem is cleared.
    """

    def __init__(self, z: Tensor, m: int) -> None:
        A, n1, n2 = z.shape
        self.m, n = m, n1 * n2
        dt, dev = z.dtype, z.device
        adt = torch.float32 if dt == torch.float64 else dt
        self.dG = torch.zeros(A, m, n, dtype=adt, device=dev)
        self.dZG = torch.zeros(A, m, n, dtype=adt, device=dev)
        self.H = torch.zeros(A, m, m, dtype=dt, device=dev)
        self.valid = torch.zeros(A, m, dtype=torch.bool, device=dev)
        self.have_last = torch.zeros(A, dtype=torch.bool, device=dev)
        self.gn_prev = torch.full((A,), math.inf, dtype=dt, device=dev)
        # the plain DR step from the last accepted point is z_last + g_last
        self.z_last, self.g_last, self.tmp = (torch.zeros_like(z) for _ in range(3))
        self.eye = torch.eye(m, dtype=dt, device=dev)
        self.col = 0

    def keep(self, mask: Tensor) -> None:
        for name in ("dG", "dZG", "H", "valid", "have_last", "gn_prev", "z_last", "g_last", "tmp"):
            setattr(self, name, getattr(self, name)[mask])

    def step(self, z: Tensor, g: Tensor, gn: Tensor) -> Tensor:
        """The next iterate from z and its residual g (norm gn); z and g are overwritten."""
        A, n1, n2 = z.shape
        n = n1 * n2
        m, col = self.m, self.col
        self.col = (col + 1) % m
        accept = gn <= self.gn_prev
        all_ok = bool(accept.all())
        upd = accept & self.have_last
        # new difference columns; a problem without upd gets an invalid (unused) column
        tmp = self.tmp
        torch.sub(g, self.g_last, out=tmp)
        self.dG[:, col].copy_(tmp.view(A, n))
        tmp.add_(z).sub_(self.z_last)
        self.dZG[:, col].copy_(tmp.view(A, n))
        self.valid[:, col] = upd
        self.valid &= accept[:, None]
        h = (self.dG @ self.dG[:, col, :, None]).squeeze(-1).to(self.H.dtype)  # [A, m]
        self.H[:, col, :] = h
        self.H[:, :, col] = h
        if all_ok:
            self.z_last.copy_(z)
            self.g_last.copy_(g)
            self.gn_prev = gn
            z.add_(g)                                            # plain DR step
        else:
            a3 = accept[:, None, None]
            self.gn_prev = torch.where(accept, gn, torch.full_like(gn, math.inf))
            z_new = torch.where(a3, z + g, self.z_last + self.g_last)
            self.z_last = torch.where(a3, z, self.z_last)
            self.g_last = torch.where(a3, g, self.g_last)
            z = z_new
        self.have_last = accept
        use = accept & self.valid.any(-1)
        if bool(use.any()):
            vm = self.valid.to(self.H.dtype)
            H = self.H * (vm[:, :, None] * vm[:, None, :])
            reg = 1e-10 * H.diagonal(dim1=-2, dim2=-1).sum(-1) + torch.finfo(H.dtype).tiny
            H = H + reg[:, None, None] * self.eye + torch.diag_embed(1.0 - vm)
            rhs = (self.dG @ g.reshape(A, n).to(self.dG.dtype)[:, :, None]).to(H.dtype) * vm[:, :, None]
            theta, info = torch.linalg.solve_ex(H, rhs)
            ok = use & (info == 0) & torch.isfinite(theta).all((-2, -1))
            theta = torch.where(ok[:, None, None], theta, 0) * vm[:, :, None]  # [A, m, 1]
            z.sub_((self.dZG.mT @ theta.to(self.dZG.dtype)).view(A, n1, n2))
        return z


def _dr_step(M: Tensor, z: Tensor, gam: Tensor, lam_t: Tensor, svt: _PartialSVT | None,
             symmetric: bool, V: Tensor, C: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One DR evaluation at z (module doc): L = D_γ(z), V = M − 2L + z, C = clip(V, ±γλ)
    (so S = V − C) and the fixed-point residual g = L − z + C, written into the buffers
    V, C, g.  Returns (L, singular values of L, ‖g‖_F)."""
    t3 = (gam * lam_t)[:, None, None]
    L, sv = _svt(z, gam, symmetric)[:2] if svt is None else svt(z, gam)
    torch.add(M, z, out=V)
    V.sub_(L, alpha=2)
    torch.clamp(V, min=-t3, max=t3, out=C)
    torch.sub(L, z, out=g)
    g.add_(C)
    return L, sv, torch.linalg.vector_norm(g, dim=(-2, -1))


def _dr_phase(M: Tensor, fro: Tensor, lam_t: Tensor, gam: Tensor, z: Tensor, its0: Tensor,
              idx: Tensor, out: RPCAResult, lam: float, tol: float, cfg: RPCAConfig,
              symmetric: bool, partial: bool) -> None:
    """Phase 2 of the fast solver: certified Anderson-accelerated Douglas–Rachford (module
    doc) from z, until the primal residual and the certificate both meet their tolerance;
    results are written to ``out`` at ``idx``."""
    A = M.shape[0]
    m = cfg.anderson
    dt, dev = M.dtype, M.device
    out.mu[idx] = 1.0 / gam  # the DR step in use
    svt = _PartialSVT() if partial else None
    acc = _Anderson(z, m) if m else None
    pos = torch.arange(A, device=dev)
    V, C, g = (torch.empty_like(M) for _ in range(3))
    # Best feasible pair (L, M − L) seen at the checks, by its objective (the certificate's
    # upper bound): returned for problems that hit max_iter, instead of the last (possibly
    # extrapolated) iterate, whose objective can be far above the optimum.
    best_obj = torch.full((A,), math.inf, dtype=dt, device=dev)
    best_L = torch.zeros_like(M)
    best_Y = torch.zeros_like(M)
    best_gap = torch.full((A,), math.inf, dtype=dt, device=dev)
    no = torch.zeros(A, dtype=torch.bool, device=dev)
    # exact certificates (one eigvalsh each) back off while they are far from gap_tol
    next_exact = torch.zeros(A, dtype=torch.int64, device=dev)
    for it in range(1, cfg.max_iter + 1):
        g3 = gam[:, None, None]
        L, sv, gn = _dr_step(M, z, gam, lam_t, svt, symmetric, V, C, g)
        res = gn / fro
        # Checks (objective, best pair, certificate) every _EXACT_EVERY steps and at the cap.
        last = it == cfg.max_iter
        if it % _EXACT_EVERY == 0 or last:
            Y = (z - L) / g3
            # cheap bounds assume ‖Y‖₂ ≤ 1, true for a full SVT; a partial one needs strict
            obj = sv.sum(-1) + lam_t * (M - L).abs().sum((-2, -1))
            gap = _gap(M, L, sv, Y, lam_t, upper=obj)
            better = obj < best_obj
            if bool(better.any()):
                b3 = better[:, None, None]
                best_obj = torch.where(better, obj, best_obj)
                best_gap = torch.where(better, gap, best_gap)
                best_L = torch.where(b3, L, best_L)
                best_Y = torch.where(b3, Y, best_Y)
            cand = res <= tol
            certified = (gap <= cfg.gap_tol) & cand if svt is None else no[:A]
            cand = cand & ~certified & ((next_exact <= it) | last)
            if bool(cand.any()):  # the exact spectral norm (one eigvalsh) for the candidates
                exact = _gap(M[cand], L[cand], sv[cand], Y[cand], lam_t[cand], exact=True,
                             strict=svt is not None, symmetric=symmetric)
                gap = gap.clone()
                gap[cand] = exact if svt is not None else torch.minimum(gap[cand], exact)
                certified = certified | (cand & (gap <= cfg.gap_tol))
                # next exact check in 1-8 check intervals, by how far the gap is from gap_tol
                wait = torch.clamp(torch.nan_to_num(gap / cfg.gap_tol, nan=1.0), 1, 8).floor()
                next_exact = torch.where(cand, it + _EXACT_EVERY * wait.to(torch.int64), next_exact)
            conv = certified
            done = conv | last
            if bool(done.any()):
                # converged: the current iterate (S = V − C); stopped by max_iter: the best
                # pair seen, as (L, S = M − L), which is exactly feasible
                d = done
                c3 = conv[:, None, None]
                Lf = torch.where(c3, L, best_L)[d]
                Sf = torch.where(c3, V - C, M - best_L)[d]
                if symmetric:  # the iterates are symmetric up to rounding
                    Lf, Sf = 0.5 * (Lf + Lf.mT), 0.5 * (Sf + Sf.mT)
                Md = M[d]
                resf = torch.linalg.matrix_norm(Md - Lf - Sf) / fro[d]
                svf, vhf = _full_spectrum(Lf, symmetric)
                gapf = torch.where(conv, gap, best_gap)[d]
                if svt is not None and not bool(conv[d].all()):  # the strict certificate
                    nc = ~conv[d]
                    gapf[nc] = _gap(Md[nc], Lf[nc], svf[nc], best_Y[d][nc], lam_t[d][nc], strict=True,
                                    symmetric=symmetric)
                _finish(out, idx[d], Md, Lf, Sf, svf, vhf, its0[pos[d]] + it, resf, conv[d], gapf, lam)
                keep = ~done
                if not bool(keep.any()):
                    return
                if svt is not None:
                    svt.keep(keep)
                if acc is not None:
                    acc.keep(keep)
                pos, idx, M, fro, gam, lam_t, z, V, C, g, gn, next_exact = (
                    t[keep] for t in (pos, idx, M, fro, gam, lam_t, z, V, C, g, gn, next_exact))
                best_obj, best_gap, best_L, best_Y = (t[keep] for t in (best_obj, best_gap, best_L, best_Y))
                A = idx.numel()
        if acc is None:
            z.add_(g)
        else:
            z = acc.step(z, g, gn)


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
                       drop_tol: float = 1e-6, sv: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """D = normalize_rows(P N Nᵀ) with NaN padding (LowRankGAN step 5).

    P  [B, d, d]  principal directions (rows, best first); rows ≥ n_principal are unused.
    Vb [B, d, d]  right singular vectors of L_B (rows, by descending σ); N = Vb[start:]ᵀ.
    sv [B, d]     singular values of L_R in the order of P's rows (optional).
    A row whose projected length ν (of a unit row of P) is below ``drop_tol`` — or, given
    ``sv``, whose ``ν·σ_k/σ_1`` is (:func:`resolve_drop_tol`) — lies almost entirely in the
    row space of L_B and is dropped instead of being normalised into noise; the remaining
    rows keep their order (by σ of L_R) and are moved to the front; the rest are NaN.
    Returns (D [B, d, d], count [B] int64).
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
                          drop_tol: float | str = DROP_TOL,
                          precision: torch.dtype | None = None) -> LowRankGANResult:
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

    ``drop_tol`` (:func:`resolve_drop_tol`): rows with ``ν_k·σ_k/σ_1`` below it are dropped;
    ``"auto"`` = 100·eps of ``precision``, the dtype the Grams were computed in (default:
    M_R's dtype as passed).
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
    drop = resolve_drop_tol(drop_tol, precision if precision is not None else M_R.dtype)
    res = rpca(torch.cat([M_R, M_B.to(M_R.dtype)]), cfg)
    rR, rB = _split(res, B)
    rank_R = numerical_rank(rR.sv, rank_tol, d)
    rank_B = numerical_rank(rB.sv, rank_tol, d)
    start = null_space_start(rank_B, d, relax, null_clamp)
    P = _sign_fix(rR.vh)
    D, count = project_directions(P, rank_R, rB.vh, start, drop, sv=rR.sv)
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
