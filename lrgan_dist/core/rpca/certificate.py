"""Duality-gap certificate of Principal Component Pursuit (see :mod:`lrgan_dist.core.rpca`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


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
