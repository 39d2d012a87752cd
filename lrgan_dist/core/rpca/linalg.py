"""Eigen-solvers of the SVT step: full ``eigh``/SVD and the warm-started partial subspace iteration."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lrgan_dist.core.rpca.config import RPCAConfig


# eig="auto": partial eigendecompositions from this latent size on (below, a full eigh is
# as cheap as the block steps; crossover measured at d ≈ 48, docs/benchmarks.md "The
# partial SVT's threshold")
_PARTIAL_MIN_D = 48


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
