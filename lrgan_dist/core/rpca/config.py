"""Configuration and result types of the Robust PCA solvers (Candès et al. 2011; README "Concepts" step 1)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

_MU_RULES = ("reference", "candes")


_SOLVERS = ("fast", "reference", "ialm")


_STRUCTURES = ("auto", "symmetric", "general")


_DTYPES = ("float64", "float32", "input")


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
    eig:       ialm and fast on symmetric problems: ``"auto"`` (partial from d = 48 on),
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


def _finish(out: RPCAResult, idx: Tensor, M: Tensor, L: Tensor, S: Tensor, sv: Tensor,
            vh: Tensor, it: Tensor | int, res: Tensor, conv: Tensor, gap: Tensor, lam: float) -> None:
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
