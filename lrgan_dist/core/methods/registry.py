"""The method registry and the result type shared by every direction method (see :mod:`lrgan_dist.core.methods`)."""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor

from lrgan_dist.core.digest import json_sha256
from lrgan_dist.core.lowrankgan import (
    _sign_fix,
)
from lrgan_dist.core.shapes import assert_shape


@dataclass
class DirectionResult:
    """Directions for B problems in a latent space of size d (k = d rows).

    vectors      [B, k, d] float32  unit rows, best first, NaN rows beyond ``rank``
    rank         [B] int32          number of valid (leading, non-NaN) rows
    spectrum     [B, d] float32     the method's own spectrum, descending, NaN-padded
    diagnostics  dict[str, Tensor]  per-problem extras (leading dimension B)
    """

    vectors: Tensor
    rank: Tensor
    spectrum: Tensor
    diagnostics: dict[str, Tensor] = field(default_factory=dict)


_REGISTRY: dict[str, type["Method"]] = {}


def register_method(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    # The built-in methods register themselves when the package is imported.
    import lrgan_dist.core.methods  # noqa: F401


def available_methods() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _method_class(name: str) -> type["Method"]:
    """The registered class of method ``name``; ValueError naming the known ones otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"method: unknown method {name!r}; expected one of {available_methods()}")
    return _REGISTRY[name]


def get_method(name: str, **params: Any) -> "Method":
    """Instantiate a registered method with parameters (unknown ones are refused)."""
    cls = _method_class(name)
    valid = [f.name for f in dataclasses.fields(cls.Params)]
    for key in params:
        if key not in valid:
            raise ValueError(f"method {name!r}: unknown parameter {key!r}; valid parameters: {valid}")
    return cls(cls.Params(**params))


def grid_params(name: str) -> tuple[str, ...]:
    """Parameters of method ``name`` that take one scalar value (number, string, flag or
    null): a job spec may give a list of values for these, a parameter grid that expands
    into one result group per value (``lrgan_dist.spec``).  Parameters that are lists
    themselves (``sefa.layers``) are not among them."""
    cls = _method_class(name)
    hints = typing.get_type_hints(cls.Params, globalns=vars(sys.modules[cls.__module__]))
    return tuple(f.name for f in dataclasses.fields(cls.Params) if _scalar_type(hints[f.name]))


def _scalar_type(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return all(_scalar_type(a) for a in typing.get_args(tp))
    return origin is Literal or tp in (int, float, str, bool, type(None))


class Method:
    """Base class: a named, parameterised map (gram_in, gram_out) → DirectionResult."""

    name: ClassVar[str] = ""
    population_only: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        if not isinstance(self.params, self.Params):
            raise TypeError(f"{type(self).__name__}: params must be {self.Params.__qualname__}")

    #: parameters added after stores were first written: hashed only when not at their
    #: default, so the groups of existing stores keep their hash (and stay resumable)
    hash_omit_default: ClassVar[tuple[str, ...]] = ()

    def param_hash(self) -> str:
        params = dataclasses.asdict(self.params)
        defaults = self.Params()
        for f in self.hash_omit_default:
            if params.get(f) == getattr(defaults, f):
                params.pop(f)
        return json_sha256({"name": self.name, "params": params})[:12]

    def __repr__(self) -> str:
        return f"get_method({self.name!r}, **{dataclasses.asdict(self.params)!r})"

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        gram_in, gram_out = _check_grams(gram_in, gram_out)
        return self._compute(gram_in, gram_out)

    def diagnostics_schema(self, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Per-sample diagnostics the factorize stage stores: name → (numpy dtype, trailing
        shape).  Keys are those of ``DirectionResult.diagnostics``."""
        return {}

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:  # pragma: no cover
        raise NotImplementedError


def _check_grams(gram_in: Tensor, gram_out: Tensor) -> tuple[Tensor, Tensor]:
    for t, nm in ((gram_in, "gram_in"), (gram_out, "gram_out")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm}: expected a torch.Tensor, received {type(t).__name__}")
    assert_shape(gram_in, [None, None, None], "gram_in")  # [B, d, d]
    B, d, _ = gram_in.shape
    assert_shape(gram_in, [B, d, d], "gram_in")
    assert_shape(gram_out, [B, d, d], "gram_out")
    return gram_in.to(torch.float64), gram_out.to(torch.float64)


def _finalize(V: Tensor, valid: Tensor, spectrum: Tensor, diagnostics: dict[str, Tensor]) -> DirectionResult:
    """V [B, d, d] rows best first; valid [B] count of leading valid rows."""
    B, k, d = V.shape
    ar = torch.arange(k, device=V.device)
    rowmask = (ar[None, :] < valid[:, None])[..., None]
    V = torch.where(rowmask, _sign_fix(torch.nan_to_num(V)), float("nan"))
    return DirectionResult(vectors=V.to(torch.float32), rank=valid.to(torch.int32),
                           spectrum=spectrum.to(torch.float32),
                           diagnostics={k_: v for k_, v in diagnostics.items()})


def _sym_eig_desc(A: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues descending [B, d] and eigenvectors as rows [B, d, d] of symmetric A."""
    w, V = torch.linalg.eigh(0.5 * (A + A.mT))
    return w.flip(-1), V.flip(-1).mT
