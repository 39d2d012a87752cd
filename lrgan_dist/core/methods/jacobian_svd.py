"""jacobian_svd: top eigenvectors of M_R, no null-space projection (ablation)."""
from __future__ import annotations

from dataclasses import dataclass

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
    _sym_eig_desc,
    register_method,
)


@register_method("jacobian_svd")
class JacobianSVD(Method):
    """Top eigenvectors of the region Gram (ablation of LowRankGAN without RPCA or projection).

    ``M_R = Jᵀ diag(R) J / ΣR = V diag(σ²) Vᵀ``: the right singular vectors of the region
    Jacobian, ordered by eigenvalue (σ² descending); ``gram_out`` is ignored.  ``rank`` =
    ``#{σ² > rank_tol · σ²_max}`` (numpy's default tolerance with ``"numpy"``).
    """

    @dataclass(frozen=True)
    class Params:
        rank_tol: str | float = 1e-6

        def __post_init__(self) -> None:
            check_rank_tol(self.rank_tol, "jacobian_svd.rank_tol")

    params: "JacobianSVD.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        d = gram_in.shape[-1]
        finite = torch.isfinite(gram_in).all((-2, -1))
        w, V = _sym_eig_desc(torch.where(finite[:, None, None], gram_in, 0))
        valid = torch.where(finite, numerical_rank(w.clamp(min=0), self.params.rank_tol, d), 0)
        ar = torch.arange(d, device=w.device)
        spectrum = torch.where(ar[None, :] < valid[:, None], w, float("nan"))
        return _finalize(V, valid, spectrum, {})
