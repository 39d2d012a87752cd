"""Apply stored directions and render edit grids (README "Concepts" and ``lrgan-dist edit``).

An edit moves a sample's latent along a unit direction found by a method,
``x' = x_j + α·D_k`` (LowRankGAN, Zhu et al., NeurIPS 2021; README "Concepts"); with
LowRankGAN's null-space projection the change stays inside the region without any
spatial mask at edit time. The direction comes from the sample itself
(``source=None``) or from another sample ``source`` — the *transfer* case of the
paper's generalization claim, where a direction found on one image is applied to others.

:func:`edit_images` returns the rendered grid as arrays; :func:`edit_grid` writes a PNG
with rows = samples, columns = strengths, each target's own region outlined (per-sample
masks move with the sample). Rendering uses the job's generator rebuilt from the spec
saved in the store, so only the store is needed.

Cost: rows × columns generator forward passes (one batch per row) plus the figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import torch

from lrgan_dist.store.zarrstore import Store, StoreError

__all__ = ["store_spec", "store_generator", "direction_vector", "apply_direction", "edit_images", "edit_grid"]


def _open(store: str | Store) -> Store:
    return store if isinstance(store, Store) else Store.open(str(store), mode="r")


def store_spec(store: str | Store) -> Any:
    """The JobSpec saved in a store (re-parsed and validated)."""
    from lrgan_dist.spec import parse_spec

    st = _open(store)
    return parse_spec(st.spec, base_dir=cast(str, st.group.attrs.get("spec_base_dir", ".")))  # a JSON str attr


def store_generator(store: str | Store, device: str = "cpu", trust_code: bool = False) -> Any:
    """The store's generator, rebuilt from the saved spec.

    Built-in kinds load weights only (safe loaders); a kind that runs user code is
    refused unless ``trust_code`` (the CLI's ``--trust-code``) — reading a store never
    executes code on its own.
    """
    from lrgan_dist.apply.build import make_generator

    return make_generator(store_spec(store), device, allow_user_code=trust_code)


def _group_path(st: Store, region: str, method: str) -> str:
    path = f"directions/{region}/{method}"
    if path not in st.group:
        have = [f"{r}/{label}" for r, label, _ in st.direction_groups()]
        raise StoreError(f"{st.uri}: no directions for region {region!r} and method {method!r}; "
                         f"expected one of {have}")
    return path


def direction_vector(store: str | Store, region: str, method: str, sample: int, direction: int) -> np.ndarray:
    """Unit direction ``direction`` (0 = best) of ``sample`` for (region, method label), [d]."""
    st = _open(store)
    path = _group_path(st, region, method)
    n = st.layout.n
    if not 0 <= sample < n:
        raise StoreError(f"sample: received {sample}; expected an index in [0, {n})")
    if not 0 <= direction < st.layout.d:
        raise StoreError(f"direction: received {direction}; expected an index in [0, {st.layout.d})")
    v = np.asarray(st.group[f"{path}/vectors"][sample, direction], dtype=np.float32)
    if not np.isfinite(v).all():
        rank = int(cast(Any, st.group[f"{path}/rank"][sample]))  # a numpy scalar
        raise StoreError(f"{path}: direction {direction} of sample {sample} is not defined "
                         f"(rank {rank}, factorize status {int(cast(Any, st.group[f'{path}/status'][sample]))}); "
                         "expected a direction index below the number of stored directions")
    return v


def apply_direction(x: torch.Tensor, v: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """[d] latent, [d] direction, A strengths → [A, d] latents ``x + α·v``."""
    a = torch.as_tensor(list(strengths), dtype=x.dtype, device=x.device)
    return x[None, :] + a[:, None] * v.to(x)[None, :]


def _region_masks(st: Store, region: str, samples: Sequence[int]) -> np.ndarray:
    arr = st.group[f"regions/{region}/mask"]
    if arr.ndim == 2:
        return np.broadcast_to(np.asarray(arr[...]), (len(samples), *arr.shape)).copy()
    return np.stack([np.asarray(arr[i]) for i in samples])


def edit_images(store: str | Store, region: str, method: str, samples: Sequence[int], direction: int,
                strengths: Sequence[float], source: int | None = None, generator: Any = None,
                max_size: int = 256, trust_code: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render edits: (images u8 [rows, cols, H', W', 3], region masks f32 [rows, h, w]).

    Row i edits ``samples[i]`` along direction ``direction`` of ``samples[i]`` itself, or of
    ``source`` when given (the same direction for every row).
    """
    from lrgan_dist.core.jacobian import to_uint8_preview

    st = _open(store)
    samples = [int(i) for i in samples]
    if not samples or not strengths:
        raise ValueError("edit: expected at least one sample and one strength")
    status = st.status()
    for i in [*samples, *([source] if source is not None else [])]:
        if not 0 <= i < st.layout.n or status[i] != 1:
            raise StoreError(f"sample {i}: not a done sample of {st.uri}; expected a sample with status done")
    G = generator if generator is not None else store_generator(st, trust_code=trust_code)
    rows = []
    with torch.no_grad():
        for i in samples:
            x = torch.as_tensor(np.asarray(st.group["latents"][i]), dtype=torch.float32)
            v = torch.as_tensor(direction_vector(st, region, method, i if source is None else source, direction))
            X = apply_direction(x, v, strengths)
            y = G.forward(X, x.expand_as(X))
            rows.append(to_uint8_preview(y, tuple(G.image_range), max_size=max_size))
    return np.stack(rows), _region_masks(st, region, samples).astype(np.float32)


def _upsample(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.asarray(mask, dtype=np.float32), mode="F")
    return np.asarray(im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR))  # the same filter (2); Pillow >= 9.1 types it here


def edit_grid(store_uri: str, region: str, method: str, samples: list[int], direction: int,
              strengths: list[float], out: str | Path, source: int | None = None,
              trust_code: bool = False) -> Path:
    """Write a PNG edit grid: rows = samples, columns = strengths, region outlined.

    The direction is the sample's own (``source=None``) or ``source``'s (transfer).
    Returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    images, masks = edit_images(store_uri, region, method, samples, direction, strengths, source,
                                trust_code=trust_code)
    R, C, H, W, _ = images.shape
    fig, axes = plt.subplots(R, C, figsize=(1.4 * C + 0.6, 1.4 * R + 0.5), squeeze=False)
    for r in range(R):
        m = _upsample(masks[r], (H, W))
        for c in range(C):
            ax = axes[r, c]
            ax.imshow(images[r, c], interpolation="nearest")
            if m.max() > 0.5 > m.min():  # region boundary exists
                ax.contour(np.arange(W), np.arange(H), m, levels=[0.5], colors=["#ff3030"], linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"α={strengths[c]:+g}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"#{samples[r]}", fontsize=8)
    who = f"direction {direction} of sample {source}" if source is not None else f"own direction {direction}"
    fig.suptitle(f"{region} / {method}: {who}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
