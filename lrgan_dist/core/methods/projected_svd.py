"""projected_svd: top eigenvectors of M_R projected off the top eigenvectors of M_B (no RPCA).

The rule LOCO-Edit (Chen et al., "Exploring Low-Dimensional Subspaces in Diffusion Models
for Controllable Image Editing", NeurIPS 2024, §3, Alg. 1) applies to diffusion models,
transplanted to the Grams of README "Concepts"; it is the ablation that tells whether
LowRankGAN's Principal Component Pursuit earns its cost.

With eigendecompositions ``M_R = V_R diag(a) V_Rᵀ`` and ``M_B = V_B diag(b) V_Bᵀ``
(eigenvalues descending):

1. ``k_R`` = the smallest k whose leading eigenvalues hold ``energy_in`` of ``tr M_R``
   (``Σ_{i<k} a_i ≥ energy_in · Σ a_i``), likewise ``k_B`` for ``M_B`` with
   ``energy_out``.  The energy (trace) threshold replaces the RPCA's rank decision: the
   top-k_B eigenvectors of M_B span the directions that change the rest by more than the
   discarded ``1 - energy_out`` share of its total change.
2. ``U = V_R[:, :k_R]`` (region directions), ``W = V_B[:, :k_B]`` (rest directions).
3. ``D = normalize_rows(Uᵀ (I - W Wᵀ))``: each region direction projected onto the
   orthogonal complement of the rest's top subspace (LOCO-Edit's null-space projection).
   Rows whose projection keeps less than ``1e-6`` of their norm lie in span(W) and are
   dropped, and so are inert rows, whose region energy ``vᵀM_R v`` is below
   :data:`~lrgan_dist.core.subspaces.INERT_FRAC` (1e-5) of a random direction's
   ``tr M_R / d`` (the floor of lowrankgan's keep rule and of the carrying rule; issue 18).
4. Rows are ordered by post-projection region energy ``vᵀ M_R v`` (descending), stored
   as the spectrum (as ``lowrankgan`` does).

``rank`` is the number of rows kept (0 when ``k_B = d`` or every region direction lies in
the rest's top subspace; on a full-rank M_B the energy threshold is what leaves a
complement).  Diagnostics: ``k_in`` (k_R) and ``k_out`` (k_B) per sample.  Non-finite
Grams give rank 0 (the factorize stage marks such samples failed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lrgan_dist.core.methods.registry import (
    DirectionResult,
    Method,
    _finalize,
    _sym_eig_desc,
    register_method,
)
from lrgan_dist.core.subspaces import INERT_FRAC

__all__ = ["ProjectedSVD", "energy_rank"]

#: a projected row shorter than this (the eigenvector has unit norm) lies in span(W): dropped
_KEEP = 1e-6


def energy_rank(w: Tensor, energy: float) -> Tensor:
    """Smallest k with ``Σ_{i<k} w_i ≥ energy · Σ w_i`` for eigenvalues w [B, d] descending
    (negative round-off clamped to 0) → [B] int64 in [1, d] (1 for an all-zero spectrum)."""
    w = w.clamp(min=0)
    total = w.sum(-1, keepdim=True)
    csum = torch.cumsum(w, -1)
    below = csum < energy * total * (1 - 1e-12)  # [B, d]: still short of the threshold
    return (below.sum(-1) + 1).clamp(max=w.shape[-1])


@register_method("projected_svd")
class ProjectedSVD(Method):
    """LOCO-Edit's rule on Grams: top-k_R eigenvectors of M_R projected onto the orthogonal
    complement of the top-k_B eigenvectors of M_B; k by energy thresholds (module docstring)."""

    @dataclass(frozen=True)
    class Params:
        energy_in: float = 0.95  # share of tr M_R held by the region directions kept
        energy_out: float = 0.95  # share of tr M_B held by the rest subspace projected away

        def __post_init__(self) -> None:
            for nm in ("energy_in", "energy_out"):
                v = getattr(self, nm)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                    raise ValueError(f"projected_svd.{nm}: expected a number in (0, 1], received {v!r}")

    params: "ProjectedSVD.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def diagnostics_schema(self, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {"k_in": ("int32", ()), "k_out": ("int32", ())}

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        p = self.params
        B, d, _ = gram_in.shape
        finite = torch.isfinite(gram_in).all((-2, -1)) & torch.isfinite(gram_out).all((-2, -1))
        A = torch.where(finite[:, None, None], gram_in, 0)
        Bm = torch.where(finite[:, None, None], gram_out, 0)
        a, VR = _sym_eig_desc(A)  # rows are eigenvectors
        b, VB = _sym_eig_desc(Bm)
        k_in = energy_rank(a, p.energy_in)
        k_out = energy_rank(b, p.energy_out)
        ar = torch.arange(d, device=A.device)
        Wrows = torch.where((ar[None, :] < k_out[:, None])[..., None], VB, 0)  # [B, d, d], top-k_B rows
        P = torch.eye(d, dtype=A.dtype, device=A.device) - Wrows.mT @ Wrows  # I - W Wᵀ
        D = VR @ P  # rows: Uᵀ(I - WWᵀ); symmetric P
        norms = torch.linalg.vector_norm(D, dim=-1)  # [B, d]
        keep = (ar[None, :] < k_in[:, None]) & (norms > _KEEP) & finite[:, None]
        D = D / norms.clamp(min=torch.finfo(D.dtype).tiny)[..., None]
        energy = torch.einsum("bkd,bde,bke->bk", D, A, D)  # post-projection vᵀ M_R v
        rnd = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1) / d  # tr M_R / d: a random direction's
        keep = keep & (energy >= INERT_FRAC * rnd[:, None])
        energy = torch.where(keep, energy, float("-inf"))
        order = torch.argsort(energy, dim=-1, descending=True)
        D = torch.gather(D, 1, order[..., None].expand(B, d, d))
        energy = torch.gather(energy, 1, order)
        valid = keep.sum(-1)
        spectrum = torch.where(ar[None, :] < valid[:, None], energy, float("nan"))
        diag = {"k_in": torch.where(finite, k_in, -1).to(torch.int32),
                "k_out": torch.where(finite, k_out, -1).to(torch.int32)}
        return _finalize(D, valid, spectrum, diag)
