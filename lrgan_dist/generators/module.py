"""``generator.kind: module`` -- any user generator that follows the protocol (docs/spec.md).

Parameters (``generator.params``)
---------------------------------
* ``factory`` -- ``"package.module:function"`` (or ``"package.module:Class"`` /
  ``"package.module:obj.attr"``): a callable that returns an object following the
  generator protocol of :mod:`lrgan_dist.generators.base`.
* ``kwargs`` -- a mapping passed to it as keyword arguments (default ``{}``).
* Latent settings of the job spec (``latent.space`` / ``layers`` / ``truncation``) are
  forwarded into the call as keyword arguments too, when set.

Security: this *imports and runs user code*, and only the code the job spec names
explicitly: exactly ``importlib.import_module("package.module")`` followed by the
attribute path after the colon, then one call.  Nothing is discovered, scanned or loaded
implicitly (no entry points, no pickles); a spec names the code it runs the way a
Python script would.  Treat a job spec that uses ``kind: module`` like a script: run it only
if you trust the module it names.  The module must be importable in every Ray worker
(installed in the environment, or on ``PYTHONPATH`` / a Ray ``runtime_env`` for
clusters); ``lrgan-dist validate`` does not import it (it never builds generators).

Checks on the returned object, each a :class:`GeneratorError` naming what is wrong:
``latent_dim`` a positive int, ``image_shape`` three positive ints (C, H, W),
``image_range`` two numbers lo < hi, and callables ``sample_latents``, ``forward`` and
``info``.  Behavioural checks (determinism, forward-mode AD, dtypes) are the conformance
suite's job (``tests/generators/test_conformance.py``): run it against your factory.

Cost: one import and one factory call; no forward pass at construction.
"""
from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Mapping

from lrgan_dist.generators.base import GeneratorError, register

__all__ = ["make_module", "resolve_factory", "check_protocol"]

_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def resolve_factory(factory: Any) -> Callable[..., Any]:
    """Import ``"package.module:attr[.attr]"`` and return the named callable."""
    where = "generator.params.factory"
    if not isinstance(factory, str) or not _FACTORY.match(factory.strip()):
        raise GeneratorError(f"{where}: expected 'package.module:function' (dotted module path, a colon, "
                             f"an attribute name), received {factory!r}")
    mod_name, _, attr_path = factory.strip().partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and (mod_name == exc.name or mod_name.startswith(exc.name + ".")):
            raise GeneratorError(f"{where}: cannot import module {mod_name!r} (no module named {exc.name!r}); "
                                 "expected a module importable here and in every Ray worker "
                                 "(installed, or on PYTHONPATH)") from None
        raise GeneratorError(f"{where}: importing {mod_name!r} failed: its own import of {exc.name!r} is missing "
                             f"({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - user code raised while importing
        raise GeneratorError(f"{where}: importing {mod_name!r} raised {type(exc).__name__}: {exc}") from exc
    obj: Any = mod
    done = mod_name
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise GeneratorError(f"{where}: {done!r} has no attribute {part!r}; "
                                 f"received {factory!r}, expected an existing callable")
        obj = getattr(obj, part)
        done = f"{done}.{part}" if done != mod_name else f"{mod_name}:{part}"
    if not callable(obj):
        raise GeneratorError(f"{where}: {factory!r} is a {type(obj).__name__}, expected a callable returning a generator")
    return obj


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or type(v).__name__ in ("int64", "int32")


def check_protocol(gen: Any, source: str = "factory") -> Any:
    """Raise :class:`GeneratorError` unless ``gen`` has the protocol's attributes and methods."""
    problems = []
    d: Any = getattr(gen, "latent_dim", None)
    if not _is_int(d) or int(d) < 1:
        problems.append(f"latent_dim: expected a positive int, received {d!r}")
    shp: Any = getattr(gen, "image_shape", None)
    try:
        ok = len(shp) == 3 and all(_is_int(s) and int(s) >= 1 for s in shp)
    except TypeError:
        ok = False
    if not ok:
        problems.append(f"image_shape: expected (C, H, W) positive ints, received {shp!r}")
    rng: Any = getattr(gen, "image_range", None)
    try:
        lo, hi = (float(v) for v in rng)
        ok = lo < hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        problems.append(f"image_range: expected (lo, hi) numbers with lo < hi, received {rng!r}")
    for m in ("sample_latents", "forward", "info"):
        if not callable(getattr(gen, m, None)):
            problems.append(f"{m}: expected a method, missing or not callable")
    if problems:
        raise GeneratorError(f"generator.params.factory: {source} returned a {type(gen).__name__} that does not "
                             "follow the generator protocol: " + "; ".join(problems))
    return gen


_LATENT_KEYS = ("space", "layers", "truncation")


@register("module", user_code=True, mask_parts=lambda params: None)  # parts known once built
def make_module(factory: str | None = None, kwargs: Mapping[str, Any] | None = None, **latent: Any) -> Any:
    """Factory for ``generator.kind: module`` (see module docstring)."""
    unknown = sorted(set(latent) - set(_LATENT_KEYS))
    if unknown:
        raise GeneratorError(f"generator.params: unknown parameters {unknown} for kind 'module'; expected "
                             f"'factory' and 'kwargs' (and latent.{'/'.join(_LATENT_KEYS)} from the spec)")
    if factory is None:
        raise GeneratorError("generator.params.factory: required for kind 'module'; expected "
                             "'package.module:function'")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise GeneratorError(f"generator.params.kwargs: expected a mapping of keyword arguments, received {kwargs!r}")
    fn = resolve_factory(factory)
    call_kwargs = {**dict(kwargs), **latent}
    try:
        gen = fn(**call_kwargs)
    except GeneratorError:
        raise
    except TypeError as exc:
        raise GeneratorError(f"generator.params.kwargs: calling {factory!r} with {sorted(call_kwargs)} failed: "
                             f"{exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code
        raise GeneratorError(f"generator.params.factory: {factory!r} raised {type(exc).__name__}: {exc}") from exc
    return check_protocol(gen, repr(factory))
