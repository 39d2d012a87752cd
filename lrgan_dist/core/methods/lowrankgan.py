"""LowRankGAN (Zhu et al., NeurIPS 2021): RPCA of both Grams, principal directions of L_R projected onto null(L_B)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lrgan_dist.core.lowrankgan import (
    DROP_TOL,
    check_energy_tol,
    check_rank_tol,
    lowrankgan_directions,
    resolve_drop_tol,
)
from lrgan_dist.core.methods.registry import (
    DirectionResult,
    Method,
    _check_grams,
    _finalize,
    register_method,
)
from lrgan_dist.core.rpca import RPCAConfig
from lrgan_dist.core.subspaces import INERT_FRAC


@register_method("lowrankgan")
class LowRankGAN(Method):
    """LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021, §3.2).

    RPCA by PCP, ``min ‖L‖_* + λ‖S‖₁ s.t. M = L + S``, of both Grams; ``r_R = rank(L_R)``,
    ``r_B = rank(L_B)``; ``P`` = top r_R right singular vectors of L_R; ``N`` = right
    singular vectors of L_B from index ``r_B − relax``; directions
    ``D = normalize_rows(P N Nᵀ)``.  A row is kept when its projection is not rounding
    (``ν_k·σ_k/σ_1 ≥ drop_tol``: projected length times relative singular value; ``"auto"``:
    100·eps of the dtype the Grams are passed in, see
    :func:`lrgan_dist.core.lowrankgan.resolve_drop_tol`; pass the Grams in the precision
    they were computed in) **and** it changes the region: ``vᵀM_R v ≥ energy_tol · tr M_R / d``
    (default 1e-5 of a random direction's change, the sample's own Jacobian scale; issue 18).
    Kept rows are ordered by ``vᵀM_R v`` after projection, descending: row 0 is the strongest
    edit of the region.

    ``rank`` = number of valid rows (0 = no local direction); ``spectrum`` = the in-region
    energies ``vᵀM_R v`` of the stored rows (descending, NaN-padded; per-pixel mean squared
    change inside R per unit step²).  Diagnostics (:meth:`diagnostics_schema`, stored per
    sample by the factorize stage): rank_R, rank_B, null_start, sv_R and sv_B (singular values
    of L_R, L_B, descending), and per side the RPCA iterations / residual / gap / objective /
    ‖S‖₁ (l1) / converged flag.
    """

    hash_omit_default = ("gamma", "energy_tol")

    @dataclass(frozen=True)
    class Params:
        lam: float | None = None
        mu: Literal["reference", "candes"] = "reference"
        tol: float = 1e-7
        max_iter: int = 10_000
        solver: Literal["fast", "reference", "ialm"] = "fast"
        gap_tol: float = 1e-4
        eig: Literal["auto", "full", "partial"] = "auto"
        gamma: float = 1.0
        relax: int = 0
        rank_tol: str | float = "numpy"
        null_clamp: Literal["zero", "reference"] = "zero"
        drop_tol: float | str = DROP_TOL
        energy_tol: float = INERT_FRAC

        def __post_init__(self) -> None:
            self.rpca_config()  # validates the RPCA fields
            check_rank_tol(self.rank_tol, "lowrankgan.rank_tol")
            if isinstance(self.relax, bool) or not isinstance(self.relax, int) or self.relax < 0:
                raise ValueError(f"lowrankgan.relax: expected an integer ≥ 0, received {self.relax!r}")
            if self.null_clamp not in ("zero", "reference"):
                raise ValueError(f"lowrankgan.null_clamp: expected 'zero' or 'reference', "
                                 f"received {self.null_clamp!r}")
            try:
                check_energy_tol(self.energy_tol)
                resolve_drop_tol(self.drop_tol, torch.float32)
            except ValueError as e:
                raise ValueError(f"lowrankgan.{e}") from None

        def rpca_config(self) -> RPCAConfig:
            return RPCAConfig(lam=self.lam, mu=self.mu, tol=self.tol, max_iter=self.max_iter,
                              solver=self.solver, gap_tol=self.gap_tol, eig=self.eig,
                              gamma=self.gamma)

    params: "LowRankGAN.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def diagnostics_schema(self, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        out: dict[str, tuple[str, tuple[int, ...]]] = {
            "rank_R": ("i4", ()), "rank_B": ("i4", ()), "null_start": ("i4", ()), "sv_R": ("f4", (d,)),
            "sv_B": ("f4", (d,))}
        for side in ("R", "B"):
            out.update({f"iterations_{side}": ("i4", ()), f"residual_{side}": ("f4", ()),
                        f"gap_{side}": ("f4", ()), f"converged_{side}": ("u1", ()),
                        f"objective_{side}": ("f4", ()), f"l1_{side}": ("f4", ())})
        return out

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        # the precision the Grams arrive in (the store's Gram dtype) sets drop_tol="auto"
        precision = gram_in.dtype if isinstance(gram_in, Tensor) else None
        gram_in, gram_out = _check_grams(gram_in, gram_out)
        return self._compute(gram_in, gram_out, precision)

    def _compute(self, gram_in: Tensor, gram_out: Tensor,
                 precision: torch.dtype | None = None) -> DirectionResult:
        p = self.params
        res = lowrankgan_directions(gram_in, gram_out, p.rpca_config(), relax=p.relax,
                                    rank_tol=p.rank_tol, null_clamp=p.null_clamp, drop_tol=p.drop_tol,
                                    energy_tol=p.energy_tol, precision=precision)
        diag = {
            "rank_R": res.rank_R.to(torch.int32), "rank_B": res.rank_B.to(torch.int32),
            "null_start": res.null_start.to(torch.int32),
            "sv_R": res.sv_R.to(torch.float32), "sv_B": res.sv_B.to(torch.float32),
        }
        for side, r in (("R", res.rpca_R), ("B", res.rpca_B)):
            diag[f"iterations_{side}"] = r.iterations.to(torch.int32)
            diag[f"residual_{side}"] = r.residual.to(torch.float32)
            diag[f"gap_{side}"] = r.gap.to(torch.float32)
            diag[f"converged_{side}"] = r.converged
            diag[f"objective_{side}"] = r.objective.to(torch.float32)
            diag[f"l1_{side}"] = r.l1.to(torch.float32)
        return _finalize(res.vectors, res.n_directions, res.energy, diag)
