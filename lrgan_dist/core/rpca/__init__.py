"""Robust PCA by Principal Component Pursuit, batched in torch (README "Concepts", step 1).

From *Low-Rank Subspaces in GANs* (Zhu et al., NeurIPS 2021, "LowRankGAN", Alg. 1 and
their ``RobustPCA.py``) and *Robust Principal Component Analysis?* (Candès, Li, Ma &
Wright, J. ACM 2011).  Principal Component Pursuit (Candès et al., eq. 1.1)::

    min_{L,S}  ‖L‖_* + λ‖S‖₁    s.t.  M = L + S                                   (PCP)

with ``λ = 1/√max(n₁, n₂)`` (Candès et al., Thm 1.1; ``lam=None``); ``lam=1/60`` is the
paper's setting for 512-d StyleGAN2 latents.

Notation: ``shrink(X, t) = sign(X)·max(|X| − t, 0)`` and ``D_τ(X) = U shrink(Σ, τ) Vᵀ``
(singular-value thresholding, SVT).  For a symmetric ``X = V diag(e) Vᵀ``,
``D_τ(X) = V diag(sign(e)·max(|e| − τ, 0)) Vᵀ``: one ``eigh`` replaces the SVD and every
iterate stays symmetric when ``M`` is (Gram matrices are); a general ``M`` uses
``torch.linalg.svd`` (``structure`` in :class:`RPCAConfig`).

Rooms:

* :mod:`.config`      — :class:`RPCAConfig`, :class:`RPCAResult`, the μ rules;
* :mod:`.reference`   — ``solver="reference"``: the paper's ADMM exactly (fixed μ,
  ``S₀ = Y₀ = 0``; ``L_{k+1} = D_{1/μ}(M − S_k + Y_k/μ)``,
  ``S_{k+1} = shrink(M − L_{k+1} + Y_k/μ, λ/μ)``, ``Y_{k+1} = Y_k + μ(M − L − S)``; stop at
  ``‖M − L − S‖_F ≤ tol·‖M‖_F`` or ``max_iter``).  ``mu="reference"``: ``μ = n₁n₂/(4‖M‖₁)``
  with numpy's *matrix* 1-norm, as ``RobustPCA.py``; ``mu="candes"``: the entrywise norm;
* :mod:`.ialm`        — inexact ALM with increasing μ (Lin, Chen & Ma 2010, Alg. 5): quick,
  freezes short of the optimum; the fast solver's phase 1 (warm start, with a slow band of
  μ growth through [0.01, 1] × the μ rule's μ);
* :mod:`.fast`        — ``solver="fast"`` (default) phase 2: Douglas–Rachford splitting on
  ``min ‖L‖_* + λ‖M − L‖₁`` with safeguarded type-II Anderson acceleration (Walker & Ni
  2011; Zhang, O'Donoghue & Boyd 2020), step γ = 1/μ::

      L = D_γ(z);  S = shrink(M − (2L − z), γλ);  z⁺ = z + (M − S) − L

  The DR fixed point ``z* = L* + γY*`` is the PCP optimum for every γ > 0;
* :mod:`.certificate` — ``Y = (z − L)/γ`` has ``‖Y‖₂ ≤ 1``, so a clipped Y is dual-feasible
  (``max ⟨Y, M⟩ s.t. ‖Y‖₂ ≤ 1, ‖Y‖_∞ ≤ λ``) and bounds the optimum from below, while
  ``‖L‖_* + λ‖M − L‖₁`` bounds it from above; the fast solver stops when the primal
  residual ≤ ``tol`` *and* the relative gap ≤ ``gap_tol``, so its objective is provably
  within ``gap_tol`` of the optimum; a problem stopped by ``max_iter`` returns the best
  feasible pair seen;
* :mod:`.linalg`      — the SVT's eigensolvers: full ``eigh``/SVD, or (``eig="auto"`` from
  d = 48) a warm-started block subspace iteration on the eigenpairs above the threshold;
* :mod:`.solve`       — :func:`rpca`, the batched entry point and dispatcher.

Cost model (d×d symmetric, per problem, float64): per iteration one ``eigh`` (≈ 9d³ flops)
plus ``V diag(e) Vᵀ`` (2d³) — with a partial SVT ≈ 2d²(2p + k) for a block of p ≈ rank + 16
vectors — plus ≈ 7–9 elementwise passes over d² numbers and, for Anderson, ≈ 3m·d²
float32 reads; an exact certificate (``eigvalsh``, ≈ 4d³/3) every 5th step near the
tolerance.  Memory ≈ 14·d² float64 + 2m·d² float32 numbers per problem still iterating.
All problems of a batch iterate together and leave it as they converge.  Measured
iteration counts and timings: docs/benchmarks.md ("RPCA").

The iteration runs in ``float64`` by default; a float32 run cannot resolve a 1e-7
residual, so its ``tol`` is floored at ``10·eps(float32)``.
"""
from lrgan_dist.core.rpca.certificate import pcp_objective
from lrgan_dist.core.rpca.config import (
    RPCAConfig,
    RPCAResult,
    default_lam,
    mu_from_rule,
)
from lrgan_dist.core.rpca.solve import rpca

__all__ = ["RPCAConfig", "RPCAResult", "rpca", "mu_from_rule", "default_lam", "pcp_objective"]
