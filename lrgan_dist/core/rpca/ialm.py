"""Inexact ALM with increasing μ (Lin, Chen & Ma 2010, Alg. 5): the fast solver's phase 1."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lrgan_dist.core.rpca.certificate import _gap
from lrgan_dist.core.rpca.config import RPCAConfig, RPCAResult, _finish
from lrgan_dist.core.rpca.linalg import (
    _full_spectrum,
    _PartialSVT,
    _spectral_norm,
    _svt,
    _use_partial,
)


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
