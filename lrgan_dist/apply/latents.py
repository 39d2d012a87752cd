"""The latents a job analyses: drawn, the user's own file, or NVIDIA seeds (``samples``).

Three sources, one rule -- sample ``i`` of a job is the same latent on any worker, in any
order, on resume:

* default: ``generator.sample_latents(samples.seed, [i])`` (row i from ``(seed, i)`` alone);
* ``samples.latents: FILE.npy`` with ``samples.space``: row ``i`` of the file [N, ·];
* ``samples.seeds: [s0, s1, …]``: NVIDIA's convention (stylegan2-ada-pytorch ``gen_images.py``),
  ``z_i = np.random.RandomState(s_i).randn(z_dim)`` in float64, then like any z.

A file's (or seed's) space must fit the generator's analysed space ``a`` (``latent.space``;
``z`` for adapters with one latent space):

==============  ======================  =================================================
file space      accepted when           row shape / conversion
==============  ======================  =================================================
``a``           always                  [d] -- used as is
``w``           ``a == wplus``          [w_dim] -- one w fed to every style slot (the
                                        analysed slots and the anchor), as drawn samples
                                        (``layers: all``: the w repeated per slot)
``wplus``       ``layers: all``         [num_ws, w_dim] per-slot codes (e.g. projected
                                        images), flattened slot by slot -- or [d]
``z``           the adapter maps z      [z_dim] -- ``generator.latents_from_z`` (StyleGAN2:
                (``latents_from_z``)    truncated w = mapping(z), like drawn samples)
==============  ======================  =================================================

Anything else -- another space, another row length, per-slot codes without ``layers: all`` --
is refused with a :class:`~lrgan_dist.spec.SpecError` naming ``samples.latents`` (or
``samples.seeds``/``samples.space``), the received shape/space and the expected one (exit 2).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from lrgan_dist.spec import JobSpec, SpecError, npy_header

__all__ = ["analysed_space", "job_latents", "check_job_latents", "nvidia_z"]


def analysed_space(generator: Any) -> str:
    """The generator's analysed latent space (``z`` for adapters with a single space)."""
    return str(getattr(generator, "space", None) or "z")


def nvidia_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """[n, z_dim] float64: ``np.random.RandomState(seed).randn(z_dim)`` per seed (NVIDIA's gen_images.py)."""
    return np.stack([np.random.RandomState(int(s)).randn(int(z_dim)) for s in seeds]).reshape(len(seeds), int(z_dim))


def _per_slot(generator: Any) -> tuple[int, int] | None:
    """(num_ws, w_dim) when the generator analyses W+ with one w per style slot (``layers: all``)."""
    if getattr(generator, "per_layer", False):
        return int(generator.num_ws), int(generator.w_dim)
    return None


def _expected(spec: JobSpec, generator: Any, space: str) -> tuple[list[tuple[int, ...]], str]:
    """(accepted row shapes, how rows become x) for latents of ``space``: ``as_is``, ``repeat``
    (one w into every slot of a per-slot W+), ``via_z`` (mapped). SpecError when the space does not fit."""
    a = analysed_space(generator)
    d = int(generator.latent_dim)
    per = _per_slot(generator)
    where = "samples.seeds" if spec.samples.seeds is not None else "samples.space"
    if space == a:
        return ([(d,), per] if per and a == "wplus" else [(d,)]), "as_is"
    if space == "w" and a == "wplus":
        return ([(per[1],)], "repeat") if per else ([(d,)], "as_is")
    if space == "z" and hasattr(generator, "latents_from_z"):
        return [(int(getattr(generator, "z_dim")),)], "via_z"
    ok = [a] + (["w"] if a == "wplus" else []) + (["z"] if hasattr(generator, "latents_from_z") and a != "z" else [])
    raise SpecError(where, f"received latents in space {space!r}; generator {spec.generator.kind!r} analyses "
                    f"space {a!r} and takes latents in {ok}; expected samples.space one of {ok} "
                    "(or latent.space set to the file's space)")


def _fmt(shapes: list[tuple[int, ...]]) -> str:
    return " or ".join(str(["N", *s]).replace("'", "") for s in shapes)


def check_job_latents(spec: JobSpec, generator: Any) -> None:
    """Validate the user's own latents against ``generator`` (driver, before anything is created)."""
    s = spec.samples
    if s.seeds is not None:
        _expected(spec, generator, "z")
        return
    if s.latents is None:
        return
    space = s.space or analysed_space(generator)
    shapes, _ = _expected(spec, generator, space)
    from pathlib import Path

    if not Path(s.latents).is_file():
        raise SpecError("samples.latents", f"file {s.latents!r} does not exist; expected a .npy file of latents")
    shape, _ = npy_header(Path(s.latents), "samples.latents")
    if tuple(shape[1:]) not in shapes:
        hint = ""
        if len(shape) == 3 and not _per_slot(generator):
            hint = (" (per-slot W+ codes [N, num_ws, w_dim] need latent.layers: all; otherwise pass one w per "
                    "sample with space w)")
        raise SpecError("samples.latents", f"{s.latents!r} holds latents {list(shape)} in space {space!r}; expected "
                        f"{_fmt(shapes)} for generator {spec.generator.kind!r} (analysed space "
                        f"{analysed_space(generator)!r}, d = {int(generator.latent_dim)}){hint}")
    arr = np.load(s.latents, mmap_mode="r", allow_pickle=False)
    for b in range(0, shape[0], 65536):
        rows = np.asarray(arr[b:b + 65536]).reshape(min(65536, shape[0] - b), -1)
        if not np.isfinite(rows).all():
            r = b + int(np.argwhere(~np.isfinite(rows).all(axis=1))[0, 0])
            raise SpecError("samples.latents", f"{s.latents!r}: row {r} holds NaN/Inf; expected finite latents")
    if shape[0] < s.count:
        raise SpecError("samples.latents", f"{s.latents!r} holds {shape[0]} rows; expected at least samples.count "
                        f"= {s.count}")


def job_latents(spec: JobSpec, generator: Any, indices: Sequence[int]) -> torch.Tensor:
    """The analysed latents [n, d] float32 (CPU) of samples ``indices`` of the job."""
    s = spec.samples
    idx = [int(i) for i in indices]
    if s.latents is None and s.seeds is None:
        return generator.sample_latents(s.seed, idx).float().cpu()
    bad = [i for i in idx if not 0 <= i < s.count]
    if bad:
        raise SpecError("samples", f"received sample indices {bad[:8]}; expected indices in [0, {s.count})")
    if s.seeds is not None:
        space = "z"
        rows = nvidia_z([s.seeds[i] for i in idx], _expected(spec, generator, "z")[0][0][0])
    else:
        space = s.space or analysed_space(generator)
        arr = np.load(str(s.latents), mmap_mode="r", allow_pickle=False)
        if tuple(arr.shape[1:]) not in _expected(spec, generator, space)[0]:
            check_job_latents(spec, generator)  # raises the full message
        rows = np.asarray(arr[idx], dtype=np.float64).reshape(len(idx), -1)
    _, mode = _expected(spec, generator, space)
    if mode == "via_z":
        return generator.latents_from_z(rows).float().cpu()
    if mode == "repeat":
        rows = np.tile(rows, (1, _per_slot(generator)[0]))  # type: ignore[index]
    return torch.as_tensor(rows, dtype=torch.float32)
