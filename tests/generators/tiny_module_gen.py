"""A tiny user generator for ``kind: module`` tests (``factory: tiny_module_gen:make``).

It follows the generator protocol with plain torch: latent -> linear -> 4×4 features ->
nearest upsampling + 3×3 convolutions -> tanh image.  Weights are drawn from ``seed``.
Also a few deliberately broken factories for error tests.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from lrgan_dist.generators.base import latent_rng


class TinyConvGen(nn.Module):
    image_range = (-1.0, 1.0)

    def __init__(self, latent_dim: int = 8, resolution: int = 16, channels: int = 8, seed: int = 0,
                 space: str | None = None) -> None:
        super().__init__()
        if space not in (None, "z"):
            raise ValueError(f"TinyConvGen has only the latent space 'z', received {space!r}")
        self.latent_dim = int(latent_dim)
        self.image_shape = (3, int(resolution), int(resolution))
        self.seed = int(seed)
        ups = int(np.log2(resolution // 4))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.fc = nn.Linear(latent_dim, channels * 16)
            self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(ups))
            self.rgb = nn.Conv2d(channels, 3, 1)
        self.channels = channels
        self.requires_grad_(False).eval()

    def sample_latents(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        rows = [latent_rng(seed, int(i)).standard_normal(self.latent_dim) for i in indices]
        return torch.as_tensor(np.asarray(rows).reshape(-1, self.latent_dim), dtype=torch.float32)

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        dt = self.fc.weight.dtype
        h = self.fc(x.to(dt)).reshape(x.shape[0], self.channels, 4, 4)
        for conv in self.convs:
            h = torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = torch.nn.functional.softplus(conv(h))
        return torch.tanh(self.rgb(h)).to(x.dtype)

    def info(self) -> dict[str, Any]:
        return {"kind": "module", "factory": "tiny_module_gen:make", "latent_dim": self.latent_dim,
                "image_shape": list(self.image_shape), "image_range": list(self.image_range), "seed": self.seed}


def make(**kwargs: Any) -> TinyConvGen:
    return TinyConvGen(**kwargs)


def not_a_generator(**kwargs: Any) -> object:
    return object()


class _Half:
    latent_dim = 4
    image_shape = (3, 8)  # wrong: not (C, H, W)
    image_range = (1.0, -1.0)  # wrong: lo > hi

    def forward(self, x, anchor=None):
        return x


def half_generator(**kwargs: Any) -> _Half:
    return _Half()


def raises(**kwargs: Any) -> None:
    raise RuntimeError("boom from user code")


NOT_CALLABLE = 42
