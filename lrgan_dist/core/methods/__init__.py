"""Registry of direction methods computed from region Grams (README "Concepts", "Other methods").

Every method maps a batch of Grams ``gram_in = M_R`` and ``gram_out = M_B`` ([B, d, d],
symmetric PSD) to a :class:`DirectionResult`: ``vectors`` [B, d, d] float32 unit rows, best
first, NaN-padded beyond ``rank`` valid rows; ``spectrum`` [B, d] float32, the method's own
spectrum (descending, NaN-padded); ``diagnostics``.  Row signs are fixed (the largest-
magnitude entry of every row is positive) so results are deterministic.

Methods (each class docstring gives its equation and reference):

* ``lowrankgan``   — Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021.
* ``projected_svd`` — LOCO-Edit's rule (Chen et al., NeurIPS 2024): no RPCA.
* ``resefa``       — Zhu et al., "Region-Based Semantic Factorization in GANs", ICML 2022.
* ``jacobian_svd`` — top eigenvectors of M_R (ablation: no null-space projection).
* ``ganspace``     — Härkönen et al., "GANSpace", NeurIPS 2020 (population only).

``get_method(name, **params)`` builds one from the registry; an unknown name or parameter
raises ``ValueError`` listing the valid ones.  ``Method.param_hash()`` is a stable 12-hex
fingerprint of the name and parameters (sha256 of their sorted JSON).
"""
from lrgan_dist.core.methods.ganspace import GANSpace
from lrgan_dist.core.methods.jacobian_svd import JacobianSVD
from lrgan_dist.core.methods.lowrankgan import LowRankGAN
from lrgan_dist.core.methods.projected_svd import ProjectedSVD
from lrgan_dist.core.methods.registry import (
    DirectionResult,
    Method,
    available_methods,
    get_method,
    register_method,
)
from lrgan_dist.core.methods.resefa import ReSeFa
from lrgan_dist.core.methods.sefa import SeFa

__all__ = [
    "DirectionResult",
    "Method",
    "register_method",
    "get_method",
    "available_methods",
    "LowRankGAN",
    "ProjectedSVD",
    "ReSeFa",
    "JacobianSVD",
    "GANSpace",
    "SeFa",
]
