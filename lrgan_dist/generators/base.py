"""Generator protocol and registry.

Every generator adapter (synthetic, stylegan2, biggan, user modules) exposes the same
small surface so that the Jacobian engine, the Ray actors and the edit renderer never
special-case a model:

* ``latent_dim``  -- d, the size of the *analysed* latent x (README "Concepts").
* ``image_shape`` -- (C, H, W) of the generator output.
* ``image_range`` -- (lo, hi) of pixel values in the generator's own range.
* ``sample_latents(seed, indices)`` -> x  [n, d] float32; row i depends only on
  ``(seed, indices[i])`` -- never on the batch or on the actor (reproducibility).
* ``forward(x, anchor=None)`` -> images [n, C, H, W]; differentiable and
  ``torch.func.jvp``-compatible in x.  ``anchor`` [n, d] is the sample's own latent;
  adapters that analyse a sub-space of a larger code (StyleGAN2 ``w+`` on a layer
  subset) use it for the parts of the code that x does not replace.  Others ignore it.
* ``info()`` -> JSON-able dict stored in the zarr store's provenance attributes.

Optional ground truth (the synthetic generator): ``ground_truth_subspaces()`` ->
``{part: [d, k] orthonormal}`` and ``part_masks(x, grid)`` -> ``{part: [n, h, w]}``.

The registry maps ``generator.kind`` in the job spec to a factory taking the
generator's parameter dict.  Unknown kinds raise an error listing the valid ones.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from lrgan_dist.core.shapes import assert_shape

__all__ = [
    "Generator",
    "GeneratorError",
    "register",
    "build_generator",
    "available",
    "runs_user_code",
    "state_dict_mismatch",
    "check_params",
    "mask_parts",
    "assert_shape",
    "latent_rng",
]


class GeneratorError(ValueError):
    """Bad generator configuration or checkpoint (maps to CLI exit code 2)."""


@runtime_checkable
class Generator(Protocol):
    latent_dim: int
    image_shape: tuple[int, int, int]
    image_range: tuple[float, float]

    def sample_latents(self, seed: int, indices: Sequence[int]) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor: ...

    def info(self) -> dict[str, Any]: ...


_REGISTRY: dict[str, Callable[..., Any]] = {}
_USER_CODE: set[str] = set()
_CHECKS: dict[str, Callable[..., Any]] = {}
_MASK_PARTS: dict[str, Callable[[Mapping[str, Any]], Sequence[str] | None]] = {}
_PARAMS: dict[str, tuple[str, ...]] = {}


def register(kind: str, user_code: bool = False, check: Callable[..., Any] | None = None,
             mask_parts: Callable[[Mapping[str, Any]], Sequence[str] | None] | None = None,
             params: Sequence[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a generator factory under ``kind``.

    ``user_code=True`` marks a kind whose factory imports and runs code named in its
    parameters (``kind: module``): such a generator is built only when the user names
    it explicitly — from their own job spec, never from a spec read out of a store
    (:func:`runs_user_code`).  ``check(**params)`` validates parameters without building
    anything (``lrgan-dist validate``; :func:`check_params`).  ``mask_parts(params)`` names
    the ground-truth parts that have per-sample masks (regions ``part: NAME``;
    :func:`mask_parts`), or returns ``None`` when only the built generator knows (user
    code); kinds without it have none.  ``params`` names the accepted parameters: any
    other is refused (at validate and at build) with the list of valid ones.
    """

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if params is not None:  # the factory itself refuses unknown parameters, however it is called
            inner = factory

            @functools.wraps(inner)
            def factory(**kw: Any) -> Any:
                _check_known(kind, kw)
                return inner(**kw)

        def unwrapped(f: Callable[..., Any]) -> Any:
            return getattr(f, "__wrapped__", f)

        if kind in _REGISTRY and unwrapped(_REGISTRY[kind]) is not unwrapped(factory):
            raise RuntimeError(f"generator kind {kind!r} registered twice")
        _REGISTRY[kind] = factory
        if user_code:
            _USER_CODE.add(kind)
        if check is not None:
            _CHECKS[kind] = check
        if mask_parts is not None:
            _MASK_PARTS[kind] = mask_parts
        if params is not None:
            _PARAMS[kind] = tuple(params)
        return factory

    return deco


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """Validate ``generator.params`` of ``kind`` cheaply (no weights read, nothing allocated)."""
    _load_builtin()
    _check_known(kind, params)
    fn = _CHECKS.get(kind)
    if fn is not None:
        fn(**dict(params))


def _check_known(kind: str, params: Mapping[str, Any]) -> None:
    known = _PARAMS.get(kind)
    unknown = sorted(set(params) - set(known)) if known is not None else []
    if unknown:
        raise GeneratorError(f"generator.params: unknown parameters {unknown} for kind {kind!r}; "
                             f"expected some of {list(known or ())}")


def mask_parts(kind: str, params: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Ground-truth parts of ``kind`` that have per-sample masks (empty: none; None: known once built)."""
    _load_builtin()
    fn = _MASK_PARTS.get(kind)
    if fn is None:
        return ()
    parts = fn(params)
    return None if parts is None else tuple(parts)


def runs_user_code(kind: str) -> bool:
    """True when building a generator of ``kind`` imports and runs code named in its parameters."""
    _load_builtin()
    return kind in _USER_CODE


def _load_builtin() -> None:
    # Import for the side effect of registration; kept lazy so that importing the
    # protocol does not pull in every adapter.
    import importlib

    for mod in ("synthetic", "stylegan2.adapter", "biggan", "dcgan", "module"):
        try:
            importlib.import_module(f"lrgan_dist.generators.{mod}")
        except ModuleNotFoundError as exc:  # adapter not present in this build
            if exc.name != f"lrgan_dist.generators.{mod}":
                raise


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_generator(kind: str, params: Mapping[str, Any] | None = None) -> Any:
    """Instantiate a registered generator; unknown kinds list the valid ones."""
    _load_builtin()
    if kind not in _REGISTRY:
        raise GeneratorError(
            f"generator.kind: unknown generator {kind!r}; expected one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[kind](**dict(params or {}))


def state_dict_mismatch(state: Mapping[str, Any], own: Mapping[str, Any]) -> str | None:
    """What separates a checkpoint's state dict from the network's (``None`` when keys and shapes match).

    One line for error messages: missing keys, unexpected keys and shape mismatches
    (checkpoint vs network), three examples each.
    """
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {list(state[k].shape)} vs expected {list(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"shape mismatches (checkpoint vs network) e.g. {shapes[:3]}")
    return "; ".join(parts) or None


def latent_rng(seed: int, index: int) -> np.random.Generator:
    """The RNG for sample ``index`` of a job seeded ``seed``.

    Derived from ``(seed, index)`` alone through numpy's SeedSequence, so latents do
    not depend on batching, actor placement or the order in which work units run.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
