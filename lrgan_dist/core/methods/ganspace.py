"""GANSpace (Härkönen et al., NeurIPS 2020): PCA of sampled latents (population only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
from lrgan_dist.core.shapes import assert_shape


@register_method("ganspace")
class GANSpace(Method):
    """GANSpace (Härkönen, Hertzmann, Lehtinen & Paris, NeurIPS 2020): PCA of sampled latents.

    ``X`` [N, d] latents (or intermediate features), centred: ``X − x̄ = U Σ Vᵀ``; directions
    = rows of Vᵀ, spectrum = explained variance ``σ²/(N − 1)`` descending, ``rank`` =
    ``#{σ > rank_tol · σ_max}``.  Population only: call :meth:`from_latents` (B = 1); the
    per-sample ``__call__`` on Grams raises.
    """

    population_only: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params:
        rank_tol: str | float = "numpy"
        center: bool = True

        def __post_init__(self) -> None:
            check_rank_tol(self.rank_tol, "ganspace.rank_tol")
            if not isinstance(self.center, bool):
                raise ValueError(f"ganspace.center: expected a bool, received {self.center!r}")

    params: "GANSpace.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        raise TypeError("ganspace is population-only: call from_latents(latents [N, d]) instead")

    def from_latents(self, latents: Tensor) -> DirectionResult:
        if not isinstance(latents, Tensor):
            raise TypeError(f"latents: expected a torch.Tensor, received {type(latents).__name__}")
        assert_shape(latents, [None, None], "latents")  # [N, d]
        N, d = latents.shape
        if N < 2:
            raise ValueError(f"latents: expected at least 2 samples, received {N}")
        X = latents.to(torch.float64)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("latents: contains NaN or Inf")
        if self.params.center:
            X = X - X.mean(0, keepdim=True)
        _, s, Vh = torch.linalg.svd(X, full_matrices=False)  # s [min(N, d)]
        k = s.shape[0]
        sv = torch.zeros(d, dtype=X.dtype, device=X.device)
        sv[:k] = s
        V = torch.zeros(d, d, dtype=X.dtype, device=X.device)
        V[:k] = Vh
        valid = numerical_rank(sv[None], self.params.rank_tol, max(N, d))
        var = sv**2 / (N - 1)
        ar = torch.arange(d, device=X.device)
        spectrum = torch.where(ar[None, :] < valid[:, None], var[None], float("nan"))
        return _finalize(V[None], valid, spectrum, {"n_samples": torch.tensor([N], device=X.device)})
