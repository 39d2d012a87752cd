"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, CVPR 2021).

"Closed-Form Factorization of Latent Semantics in GANs", §3.2, Eq. (5)-(6): a latent
direction n moves the modulation (style) input of a layer by ``A n``, where A is the
layer's affine weight; the directions that change it most maximise ``‖A n‖²`` under
``‖n‖ = 1`` -- the eigenvectors of ``AᵀA`` with the largest eigenvalues.  For several
layers, A stacks their weights.

Normalization (as the authors' code, ``genforce/sefa`` ``utils.py::factorize_weight``):
the weight is built as ``concat([style.weight.T ...], axis=1)`` ([w_dim, Σ out]) and each
column -- i.e. each **row of A**, one style channel -- is scaled to unit norm
(``weight / np.linalg.norm(weight, axis=0)``) before ``np.linalg.eig(weight @ weight.T)``.
Row normalization makes every style channel count equally, and it makes per-layer
run-time gains (equalized learning rate, the ToRGB weight gain) irrelevant, so
:meth:`StyleGAN2Generator.modulation_weights` (weights with their gains) gives the same
directions as the raw parameters.  We use ``torch.linalg.eigh`` on the symmetric
``AᵀA`` (float64) and sort eigenvalues descending (``np.linalg.eig`` returns them
unordered); each eigenvector's sign is fixed so that its largest-magnitude entry is
positive.  Layer choice: ``layers`` are style-slot indices (default: the generator's
analysed slots); ToRGB layers are excluded unless ``include_torgb`` (the reference
``layer_idx='all'`` includes only the last ToRGB).

The directions live in W (w_dim); they apply to generators analysed in ``w`` or
``wplus`` (edit the chosen slots), not in ``z``.

Cost: building A is free (weights only, no forward pass); ``AᵀA`` is O(Σout·d²) and the
eigendecomposition O(d³): a few ms for d = 512.  It does not depend on samples: SeFa
is a population-only method.

Method registry: :class:`SeFa` is the population-only :class:`lrgan_dist.core.methods.Method`
``sefa`` (params ``layers``, ``include_torgb``, ``rank_tol``); like ``ganspace`` its
per-sample ``__call__`` raises and :meth:`SeFa.from_generator` gives a B = 1
:class:`~lrgan_dist.core.methods.DirectionResult`.  Importing this module registers it; the
methods module imports it at its end so that ``sefa`` is always available.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor

from lrgan_dist.core.lowrankgan import check_rank_tol, numerical_rank
from lrgan_dist.core.methods.registry import DirectionResult, Method, register_method

__all__ = ["sefa_directions", "sefa_from_weights", "SeFa"]


def sefa_from_weights(A: Tensor, normalize_rows: bool = True) -> tuple[Tensor, Tensor]:
    """Eigen-directions of ``AᵀA`` for a stacked modulation weight ``A`` [m, d].

    Returns ``(vectors [d, d], eigenvalues [d])``: unit rows, eigenvalues descending,
    float64.  ``normalize_rows`` scales each row of A to unit norm first (the reference).
    """
    if not isinstance(A, Tensor) or A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        got = list(A.shape) if isinstance(A, Tensor) else type(A).__name__
        raise ValueError(f"sefa: expected modulation weights A [m, d], received {got}")
    A = A.detach().to(torch.float64)
    if not torch.isfinite(A).all():
        raise ValueError("sefa: modulation weights contain NaN/Inf")
    if normalize_rows:
        norms = A.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise ValueError(f"sefa: {int((norms == 0).sum())} all-zero rows in A cannot be normalized")
        A = A / norms
    M = A.T @ A  # [d, d]
    M = 0.5 * (M + M.T)
    evals, evecs = torch.linalg.eigh(M)  # ascending
    order = torch.argsort(evals, descending=True)
    evals, V = evals[order], evecs[:, order].T  # rows = directions
    idx = V.abs().argmax(dim=1)
    sign = torch.sign(V[torch.arange(V.shape[0]), idx])
    sign[sign == 0] = 1
    return V * sign[:, None], evals


def sefa_directions(generator: Any, layers: Sequence[int] | None = None, include_torgb: bool = False,
                    k: int | None = None) -> tuple[Tensor, Tensor]:
    """SeFa directions of a generator exposing ``modulation_weights(layers, include_torgb)``.

    ``layers``: style-slot indices (None: the generator's default, its analysed slots).
    Returns ``(vectors [k, d], eigenvalues [k])`` (float64, CPU; k = d by default).
    """
    if not callable(getattr(generator, "modulation_weights", None)):
        raise ValueError(f"sefa: needs a generator with modulation weights (StyleGAN2); "
                         f"received {type(generator).__name__}")
    space = getattr(generator, "space", "w")
    if space == "z":
        raise ValueError("sefa: directions live in W; received a generator analysed in 'z' "
                         "(expected latent.space w or wplus)")
    A = generator.modulation_weights(None if layers is None else [int(i) for i in layers], include_torgb)
    V, ev = sefa_from_weights(A.cpu())
    d = int(getattr(generator, "latent_dim", V.shape[1]))
    if V.shape[1] != d:
        raise ValueError(f"sefa: modulation weights have {V.shape[1]} columns, the generator's latent has {d}")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d:
            raise ValueError(f"sefa: k: expected an integer in 1..{d}, received {k!r}")
        V, ev = V[:k], ev[:k]
    return V, ev


@register_method("sefa")
class SeFa(Method):
    """SeFa (Shen & Zhou, CVPR 2021): eigenvectors of AᵀA, A = row-normalized modulation weights.

    Population only: :meth:`from_generator` (B = 1); the per-sample ``__call__`` on Grams
    raises.  ``vectors`` [1, d, d] unit rows by eigenvalue descending; ``spectrum`` the
    eigenvalues; ``rank`` = ``#{λ > rank_tol · λ_max}`` (numpy's tolerance with "numpy").
    ``layers``: style slots whose modulations are factorized (None: the generator's analysed
    slots, ``latent.layers``); ``include_torgb`` adds the ToRGB modulations of those slots.
    """

    population_only: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params:
        layers: Any = None  # list of style-slot indices, or None
        include_torgb: bool = False
        rank_tol: str | float = "numpy"

        def __post_init__(self) -> None:
            if self.layers is not None:
                ok = isinstance(self.layers, (list, tuple)) and len(self.layers) > 0 and all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.layers)
                if not ok:
                    raise ValueError(f"sefa.layers: expected a non-empty list of style-slot indices or null, "
                                     f"received {self.layers!r}")
                object.__setattr__(self, "layers", tuple(sorted(set(int(i) for i in self.layers))))
            if not isinstance(self.include_torgb, bool):
                raise ValueError(f"sefa.include_torgb: expected a bool, received {self.include_torgb!r}")
            check_rank_tol(self.rank_tol, "sefa.rank_tol")

    params: "SeFa.Params"  # narrows Method.params: __init__ checks isinstance(params, self.Params)

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        raise TypeError("sefa is population-only: call from_generator(generator) instead")

    def from_generator(self, generator: Any) -> DirectionResult:
        p = self.params
        V, ev = sefa_directions(generator, p.layers, p.include_torgb)
        d = V.shape[1]
        m = generator.modulation_weights(None if p.layers is None else list(p.layers), p.include_torgb).shape[0]
        valid = numerical_rank(ev.clamp(min=0)[None], p.rank_tol, max(m, d))  # [1]
        ar = torch.arange(d)
        keep = ar[None, :] < valid[:, None]
        vectors = torch.where(keep[..., None], V[None], float("nan"))
        spectrum = torch.where(keep, ev[None], float("nan"))
        return DirectionResult(vectors=vectors.to(torch.float32), rank=valid.to(torch.int32),
                               spectrum=spectrum.to(torch.float32),
                               diagnostics={"rows": torch.tensor([m])})
