"""Helpers shared by the pipeline stages: generator construction, grid, devices."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lrgan_dist.generators.base import GeneratorError, build_generator, runs_user_code
from lrgan_dist.spec import JobSpec, SpecError


class UserCodeRefused(GeneratorError):
    """A spec read from a store names user code; it is not run without the user's explicit consent."""


def make_generator(spec: JobSpec, device: str | torch.device = "cpu", *, allow_user_code: bool = True) -> Any:
    """Build the spec's generator, forwarding the latent section to adapters.

    ``allow_user_code=False`` is for specs that come out of a store (``edit``, ``report``,
    summaries of an existing store): a store is data others may hand you, and reading it
    must never execute code, so a generator kind that runs user code (``kind: module``)
    is refused with :class:`UserCodeRefused` (exit 2) unless the caller opts in.
    """
    if not allow_user_code and runs_user_code(spec.generator.kind):
        factory = spec.generator.params.get("factory")
        raise UserCodeRefused(
            f"generator.kind: the store's generator is user code (kind {spec.generator.kind!r}, factory "
            f"{factory!r}); reading a store never runs code. Expected --trust-code to rebuild it from the "
            "store's spec, or render with your own job spec")
    params = spec.generator_params()  # a relative checkpoint: beside the spec, else the driver's directory
    lat = spec.latent
    for key in ("space", "layers", "truncation"):
        val = getattr(lat, key)
        if val is not None:
            if key in params:
                raise SpecError(f"latent.{key}", "set both in latent and in generator.params; expected it in one place")
            params[key] = list(val) if isinstance(val, tuple) else val
    try:
        gen = build_generator(spec.generator.kind, params)
    except TypeError as exc:  # unexpected keyword from the factory
        raise SpecError("generator.params", f"{exc}; see the generator's documentation for valid parameters") from None
    if hasattr(gen, "to"):
        gen = gen.to(device)
    if hasattr(gen, "eval"):
        gen.eval()
    return gen


def analysis_grid(spec: JobSpec, image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Analysis grid h×w: ``grid.resolution`` rows (default min(H, 256)), aspect kept."""
    _, H, W = image_shape
    h = spec.grid.resolution or min(H, 256)
    if h > H:
        raise SpecError("grid.resolution", f"received {h}; expected at most the image height {H}")
    w = max(1, round(h * W / H))
    return (h, w)


def preview_hw(image_shape: tuple[int, int, int], max_size: int = 256) -> tuple[int, int]:
    _, H, W = image_shape
    f = 1
    while H // f > max_size or W // f > max_size:
        f *= 2
    return (H // f, W // f) if H % f == 0 and W % f == 0 else (min(H, max_size), min(W, max_size))


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SpecError("compute.device", "received 'cuda' but no CUDA device is visible; expected 'auto' or 'cpu'")
        return torch.device("cuda")
    return torch.device("cpu")


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """[n] bool: True where every array's row is free of NaN/Inf."""
    ok = None
    for a in arrays:
        r = np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        ok = r if ok is None else ok & r
    assert ok is not None, "finite_rows: expected at least one array"
    return ok
