"""Render a job's generator to an ``.npz`` (the library behind ``lrgan-dist render``, README and docs/spec.md).

Two sources of latents:

* **sample indices** (``--seeds A-B``): image i is the job's sample i -- the latent that
  ``lrgan-dist submit`` analyses, drawn by the adapter from ``(samples.seed, i)`` -- so a
  render reproduces the store's samples bit for bit.  :func:`parse_seeds` reads ``"0-7"``
  (inclusive, 8 samples), ``"5"`` and comma lists ``"0,3,10-12"``.
* **a latent file** (``--latents FILE.npy --space z|w``): float [n, d] latents in the
  named space.  When ``space`` differs from the job's analysed space the generator is built
  with ``latent.space`` = ``space`` (``layers`` dropped unless ``wplus``), e.g. a StyleGAN2
  job analysed in W+ renders z or w files; an adapter without that space refuses with a
  :class:`~lrgan_dist.generators.base.GeneratorError`.  Each row is its own anchor (the
  sample's own latent; for BigGAN it decides the class).

A job whose ``samples`` name the user's own latents (``samples.latents`` / NVIDIA
``samples.seeds``, :mod:`lrgan_dist.apply.latents`) renders index i as row i / seed i.
``png_dir`` (``--png DIR``) also writes one 8-bit PNG per image (:func:`write_pngs`).

Output ``.npz`` (``np.load(path)`` needs no pickle)::

    images        f32 [n, C, H, W]   generator output in its own range (image_range)
    latents       f32 [n, d]         the latents fed to forward (in ``space``)
    seeds         i64 [n]            sample indices (-1 for rows of a latent file)
    samples_seed  i64 []             the job's samples.seed
    space         str []             the latent space of ``latents`` ("" if the adapter has none)
    image_range   f32 [2]

Cost: n generator forward passes in batches of ``batch_size`` (default
``compute.batch_size`` or 8) under ``torch.no_grad`` on ``compute.device``; memory is
one batch of activations plus the n output images (4·n·C·H·W bytes: 12 MB per 1024² image).
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lrgan_dist.spec import MAX_SAMPLES, GeneratorSpec, JobSpec, SpecError

__all__ = ["render", "parse_seeds", "load_latents", "render_images", "write_pngs"]

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
SPACES = ("z", "w", "wplus")


def parse_seeds(text: str) -> range | list[int]:
    """``"0-7"`` → ``range(0, 8)`` (inclusive); ``"5"`` → ``range(5, 6)``; ``"0,3,10-12"`` → [0, 3, 10, 11, 12].

    Raises :class:`SpecError` (field ``--seeds``) for anything else.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError("--seeds", f"received {text!r}; expected sample indices such as 0-7 or 0,3,10-12")
    parts = text.split(",")
    out: list[int] = []
    for part in parts:
        m = _RANGE.match(part)
        if not m:
            raise SpecError("--seeds", f"received {text!r}; expected non-negative integers and inclusive ranges "
                                       "A-B separated by commas, e.g. 0-7 or 0,3,10-12")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise SpecError("--seeds", f"received range {part.strip()!r}; expected A-B with A <= B")
        if len(out) + (b - a + 1) > MAX_SAMPLES:
            raise SpecError("--seeds", f"received {text!r} ({len(out) + b - a + 1} samples); expected at most "
                                       f"{MAX_SAMPLES} samples")
        out.extend(range(a, b + 1))
    if len(parts) == 1:
        return range(out[0], out[-1] + 1)
    if len(set(out)) != len(out):
        raise SpecError("--seeds", f"received {text!r} with repeated indices; expected each sample once")
    return out


def load_latents(path: str | os.PathLike) -> np.ndarray:
    """Read ``--latents FILE.npy`` ([n, d] or [d] floats) without pickle; SpecError otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError("--latents", f"file {str(p)!r} does not exist; expected a .npy file of latents [n, d]")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SpecError("--latents", f"{str(p)!r} is not a readable .npy array without pickle ({exc}); "
                                     "expected np.save of a float array [n, d]") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise SpecError("--latents", f"{str(p)!r} is an .npz archive; expected a single .npy array [n, d]")
    return arr


def _with_space(spec: JobSpec, space: str) -> JobSpec:
    """The spec with ``latent.space = space`` (layers kept only for wplus)."""
    params = {k: v for k, v in spec.generator.params.items() if k not in ("space",) + (() if space == "wplus" else ("layers",))}
    latent = dataclasses.replace(spec.latent, space=space,
                                 layers=spec.latent.layers if space == "wplus" else None)
    if space == "wplus" and latent.layers is None and "layers" in params:
        latent = dataclasses.replace(latent, layers=tuple(params.pop("layers")))
    return dataclasses.replace(spec, generator=GeneratorSpec(kind=spec.generator.kind, params=params), latent=latent)


def _spec_space(spec: JobSpec) -> str | None:
    return spec.latent.space or spec.generator.params.get("space")


def write_pngs(images: torch.Tensor, image_range: tuple[float, float], out_dir: str | os.PathLike,
               seeds: np.ndarray | None = None) -> list[str]:
    """One 8-bit PNG per image in ``out_dir``: ``sample_{i:06d}.png`` (``row_{r:06d}.png`` for rows of a
    latent file). Values are mapped from ``image_range`` to [0, 255] (clamped); 1-channel images are grey."""
    from PIL import Image

    d = Path(out_dir).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    lo, hi = image_range
    arr = ((images.float() - lo) / (hi - lo) * 255.0).round().clamp(0, 255).to(torch.uint8)
    arr_np = arr.permute(0, 2, 3, 1).numpy()
    paths = []
    for r in range(arr_np.shape[0]):
        i = int(seeds[r]) if seeds is not None and int(seeds[r]) >= 0 else None
        p = d / (f"sample_{i:06d}.png" if i is not None else f"row_{r:06d}.png")
        img = arr_np[r, :, :, 0] if arr_np.shape[-1] == 1 else arr_np[r, :, :, :3]
        tmp = p.with_name(p.name + ".tmp")
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, p)
        paths.append(str(p))
    return paths


def render_images(generator: Any, x: torch.Tensor, batch_size: int = 8, device: Any = "cpu") -> torch.Tensor:
    """f32 [n, C, H, W]: ``generator.forward(x, anchor=x)`` in batches, no autograd, on CPU."""
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device)
            outs.append(generator.forward(xb, xb).detach().to("cpu", torch.float32))
    C, H, W = (int(s) for s in generator.image_shape)
    return torch.cat(outs) if outs else torch.zeros((0, C, H, W))


def render(spec: JobSpec, seeds: Sequence[int] | range | None = None, latents: np.ndarray | None = None,
           space: str | None = None, out: str | os.PathLike | None = "render.npz", batch_size: int | None = None,
           device: str | None = None, png_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Render sample indices ``seeds`` or rows of ``latents`` (in ``space``) to ``out`` (.npz).

    Exactly one of ``seeds`` / ``latents``; ``seeds=None`` and ``latents=None`` renders the
    job's samples 0 … samples.count−1.  ``space`` only goes with ``latents``.  Returns a
    JSON-able summary ``{out, n, seeds, samples_seed, space, image_shape, image_range,
    latent_dim, seconds}``.  Bad input raises :class:`SpecError` / ``GeneratorError``.
    """
    from lrgan_dist.apply.build import make_generator, pick_device
    from lrgan_dist.generators.base import GeneratorError

    t0 = time.perf_counter()
    if seeds is not None and latents is not None:
        raise SpecError("--seeds", "received both --seeds and --latents; expected one of them")
    if space is not None and latents is None:
        raise SpecError("--space", f"received {space!r} without --latents; expected --space only with a latent file")
    if space is not None and space not in SPACES:
        raise SpecError("--space", f"received {space!r}; expected one of {list(SPACES)}")
    if latents is None and seeds is None:
        seeds = range(spec.samples.count)

    if latents is not None:
        arr = np.asarray(latents)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.floating):
            raise SpecError("--latents", f"received an array {arr.dtype} {list(arr.shape)}; expected float latents [n, d]")
        if not np.isfinite(arr).all():
            raise SpecError("--latents", "received non-finite values (NaN/Inf); expected finite latents")
        if space is not None and space != _spec_space(spec):
            spec = _with_space(spec, space)
    gen = make_generator(spec, "cpu")
    dev = pick_device(device or spec.compute.device)
    if hasattr(gen, "to"):
        gen = gen.to(dev)
    d = int(gen.latent_dim)

    if latents is not None:
        if arr.shape[1] != d:
            raise SpecError("--latents", f"received latents [{arr.shape[0]}, {arr.shape[1]}]; expected [n, {d}] "
                                         f"for the generator's {space or _spec_space(spec) or 'latent'} space")
        x = torch.as_tensor(arr, dtype=torch.float32)
        idx = np.full(x.shape[0], -1, dtype=np.int64)
    else:
        assert seeds is not None  # defaulted above when latents is None
        idx = np.asarray(list(seeds), dtype=np.int64)
        if idx.size == 0 or (idx < 0).any():
            raise SpecError("--seeds", f"received {list(idx)[:8]}; expected one or more non-negative sample indices")
        from lrgan_dist.apply.latents import check_job_latents, job_latents

        check_job_latents(spec, gen)
        if spec.samples.latents is not None or spec.samples.seeds is not None:
            bad = idx[idx >= spec.samples.count]
            if bad.size:
                raise SpecError("--seeds", f"received sample indices {bad[:8].tolist()}; the job's own latents "
                                f"hold {spec.samples.count}, expected indices in [0, {spec.samples.count})")
        x = job_latents(spec, gen, idx.tolist()).to(torch.float32).cpu()
    bs = batch_size or spec.compute.batch_size or 8
    images = render_images(gen, x, bs, dev)
    if tuple(images.shape[1:]) != tuple(int(s) for s in gen.image_shape):
        raise GeneratorError(f"render: generator output {list(images.shape[1:])} does not match its image_shape "
                             f"{list(gen.image_shape)}")

    used_space = space or _spec_space(spec) or ""
    lo, hi = (float(v) for v in gen.image_range)
    out_path = None if out is None else Path(out).expanduser()
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(out_path.name + ".tmp")
        with open(tmp, "wb") as f:  # a file handle: np.savez would append ".npz" to a bare name
            np.savez(f, images=images.numpy().astype(np.float32), latents=x.numpy().astype(np.float32), seeds=idx,
                     samples_seed=np.int64(spec.samples.seed), space=np.str_(used_space),
                     image_range=np.asarray([lo, hi], dtype=np.float32))
        os.replace(tmp, out_path)
    pngs = write_pngs(images, (lo, hi), png_dir, idx) if png_dir is not None else None
    return {
        "out": None if out_path is None else str(out_path),
        "png": pngs,
        "n": int(x.shape[0]),
        "seeds": idx.tolist() if latents is None else None,
        "samples_seed": int(spec.samples.seed),
        "space": used_space or None,
        "latent_dim": d,
        "image_shape": [int(s) for s in gen.image_shape],
        "image_range": [lo, hi],
        "finite": bool(torch.isfinite(images).all()),
        "seconds": round(time.perf_counter() - t0, 3),
    }
