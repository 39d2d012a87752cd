"""ReSeFa (Zhu et al., ICML 2022): generalized eigenvectors of (M_R, M_B + τ·tr(M_B)·I)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lrgan_dist.core.lowrankgan import (
    check_rank_tol,
    numerical_rank,
)
from lrgan_dist.core.methods.registry import (
    DirectionResult,
    Method,
    _finalize,
    register_method,
)


@register_method("resefa")
class ReSeFa(Method):
    """ReSeFa (Zhu et al., "Region-Based Semantic Factorization in GANs", ICML 2022).

    Maximise the Rayleigh quotient ``vᵀ M_R v / vᵀ B v`` with the regularised rest
    ``B = M_B + ε I``, ``ε = τ · tr(M_B) / d`` (``scale="mean"``: τ times the mean
    eigenvalue of M_B, so τ does not depend on d) or ``ε = τ · tr(M_B)`` (``scale="trace"``,
    the original design note's literal form); τ = 1e-3.  If M_B is zero, ε falls back to τ times the same
    statistic of M_R (and to 1 if both are zero) so B stays definite.  The generalised
    eigenproblem ``M_R v = γ B v`` is solved as a symmetric-definite pencil: ``B = C Cᵀ``
    (Cholesky), ``eigh(C⁻¹ M_R C⁻ᵀ) = U diag(γ) Uᵀ``, ``v = C⁻ᵀ u`` (normalised to unit
    length), never through ``inv(B) M_R``.  ``spectrum`` = γ descending; ``rank`` =
    ``#{γ > rank_tol · γ_max}`` (directions with γ ≈ 0 do not change the region).
    """

    @dataclass(frozen=True)
    class Params:
        tau: float = 1e-3
        scale: Literal["mean", "trace"] = "mean"
        rank_tol: str | float = 1e-6

        def __post_init__(self) -> None:
            if not (isinstance(self.tau, (int, float)) and self.tau > 0):
                raise ValueError(f"resefa.tau: expected a positive number, received {self.tau!r}")
            if self.scale not in ("mean", "trace"):
                raise ValueError(f"resefa.scale: expected 'mean' or 'trace', received {self.scale!r}")
            check_rank_tol(self.rank_tol, "resefa.rank_tol")

    params: "ReSeFa.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        p = self.params
        B_, d, _ = gram_in.shape
        A = 0.5 * (gram_in + gram_in.mT)
        Bm = 0.5 * (gram_out + gram_out.mT)
        div = d if p.scale == "mean" else 1
        stat_B = torch.diagonal(Bm, dim1=-2, dim2=-1).sum(-1).clamp(min=0) / div
        stat_A = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1).clamp(min=0) / div
        stat = torch.where(stat_B > 0, stat_B, torch.where(stat_A > 0, stat_A, torch.ones_like(stat_A)))
        eps = p.tau * stat
        eye = torch.eye(d, dtype=A.dtype, device=A.device)
        C, info = torch.linalg.cholesky_ex(Bm + eps[:, None, None] * eye)
        # A Gram that is not PSD (round-off) can defeat Cholesky: add diagonal until it passes.
        for _ in range(8):
            if not bool((info > 0).any()):
                break
            eps = torch.where(info > 0, eps * 10, eps)
            C, info = torch.linalg.cholesky_ex(Bm + eps[:, None, None] * eye)
        finite = (info == 0) & torch.isfinite(A).all((-2, -1)) & torch.isfinite(Bm).all((-2, -1))
        C = torch.where(finite[:, None, None], C, eye)
        Ai = torch.where(finite[:, None, None], A, 0)
        X = torch.linalg.solve_triangular(C, Ai, upper=False)            # C⁻¹ A
        H = torch.linalg.solve_triangular(C, X.mT, upper=False)           # C⁻¹ A C⁻ᵀ
        gam, U = torch.linalg.eigh(0.5 * (H + H.mT))
        gam, U = gam.flip(-1), U.flip(-1)
        V = torch.linalg.solve_triangular(C.mT, U, upper=True)            # C⁻ᵀ U, columns
        V = V / torch.linalg.vector_norm(V, dim=-2, keepdim=True).clamp(min=torch.finfo(V.dtype).tiny)
        valid = numerical_rank(gam.clamp(min=0), p.rank_tol, d)
        valid = torch.where(finite, valid, 0)
        ar = torch.arange(d, device=A.device)
        spectrum = torch.where((ar[None, :] < valid[:, None]), gam, float("nan"))
        return _finalize(V.mT, valid, spectrum, {"ridge": eps.to(torch.float32)})
