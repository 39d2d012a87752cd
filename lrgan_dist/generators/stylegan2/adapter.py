"""``generator.kind: stylegan2`` -- our own StyleGAN2 (Karras et al., CVPR 2020) as an adapter.

The network is :mod:`.stylegan2_net` (plain PyTorch, numerically matching NVIDIA's
official generator; see there for the architecture and the cost of a forward pass);
checkpoints are read by :mod:`.checkpoints` without executing any code from the file.

Parameters (``generator.params``)
---------------------------------
* ``checkpoint`` -- path to an NVIDIA snapshot ``.pkl`` (``G_ema`` is used) or a
  rosinality ``.pt`` (``g_ema``); *or* ``random_init`` -- a mapping for a random-weight
  model (tests, benchmarks): ``z_dim`` (512), ``w_dim`` (512), ``c_dim`` (0),
  ``img_resolution`` (256), ``img_channels`` (3), ``channel_base`` (32768),
  ``channel_max`` (512), ``mapping_layers`` (8), ``mapping_lr_multiplier`` (0.01),
  ``architecture`` (skip), ``conv_clamp`` (None), ``num_fp16_res`` (0),
  ``resample_filter`` ([1,3,3,1]), ``use_noise`` (true), ``seed`` (0), ``perturb`` (0:
  add ``perturb·N(0,1)`` to every weight, bias, noise strength and constant so that all
  code paths matter; official initialisation leaves noise strengths at 0).
  Random models get ``w_avg`` = mean of mapping over 2 000 seeded z.
* ``space`` -- ``z``, ``w`` (default) or ``wplus``: the analysed latent x.
  ``z``: x = z, image = synthesis(mapping(z) truncated).  ``w``: x is the (truncated) w,
  fed to every style slot.  ``wplus``: x is one w fed to the slots in ``layers``; the
  other slots keep the sample's own w, passed as ``anchor`` to ``forward(x, anchor)``
  (anchor = x when omitted).
* ``layers`` -- style-slot indices 0 … num_ws−1 for ``wplus`` (default: all, one shared w);
  ``"all"``: W+ proper -- every slot gets its **own** w, x = the concatenation
  ``[w_0, …, w_{num_ws−1}]`` (d = num_ws·w_dim, e.g. 18·512 = 9 216 at 1024²), sampled as
  the sample's w repeated (so ``forward(sample_latents(…))`` is the w-space image); the
  matrix-free Jacobian path (``compute.jacobian: matfree``) is meant for this size.
* ``truncation`` (ψ, 1.0) and ``truncation_cutoff`` (None = all slots).  In w/wplus
  spaces x is the truncated w ``w_avg + ψ(w − w_avg)``; slots ``≥ cutoff`` receive the
  untruncated ``w_avg + (x − w_avg)/ψ``, so that ``forward(sample_latents(…))`` is exactly
  the official ``G(z, c, ψ, cutoff)``.
* ``noise`` -- ``const`` (default; ``noise_const · noise_strength``) or ``none``.  Random
  noise is not deterministic and is not offered.
* ``class_idx`` -- class of conditional models (``c_dim > 0``; required there).
* ``dtype`` -- ``float32`` (default) or ``float64``; ``device`` -- torch device (cpu).
* ``fused_modconv`` -- evaluate modulated convs as grouped convolutions (official form)
  instead of the default shared-weight form; same numbers, slower under forward mode.

Latents: ``sample_latents(seed, indices)`` draws z_i from
``latent_rng(seed, i).standard_normal(z_dim)`` (float64, base.py) and maps it to the
analysed space.  Images are in the official range ``image_range = (-1, 1)`` (unclamped;
``to_uint8`` gives the official 8-bit conversion).
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence, cast

import numpy as np
import torch
from torch import Tensor, nn

from lrgan_dist.generators.base import GeneratorError, assert_shape, latent_rng, register
from lrgan_dist.generators.checkpoints import Checkpoint, build_network, load_checkpoint
from lrgan_dist.generators.stylegan2.net import ARCHITECTURES, Generator, SynthesisLayer, ToRGBLayer

__all__ = ["StyleGAN2Generator", "make_stylegan2", "random_network", "to_uint8", "RANDOM_INIT_DEFAULTS"]

RANDOM_INIT_DEFAULTS: dict[str, Any] = {
    "z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": 256, "img_channels": 3,
    "channel_base": 32768, "channel_max": 512, "mapping_layers": 8, "mapping_lr_multiplier": 0.01,
    "architecture": "skip", "conv_clamp": None, "num_fp16_res": 0, "resample_filter": [1, 3, 3, 1],
    "use_noise": True, "seed": 0, "perturb": 0.0,
}
_SPACES = ("z", "w", "wplus")
_NOISE = ("const", "none")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def to_uint8(img: Tensor) -> Tensor:
    """Official 8-bit conversion: ``(img·127.5 + 128)`` clamped to [0, 255], truncated; NCHW → NHWC."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def random_network(**cfg: Any) -> tuple[Generator, dict[str, Any]]:
    """A random-weight :class:`Generator` from ``random_init`` parameters; returns (net, resolved cfg)."""
    unknown = sorted(set(cfg) - set(RANDOM_INIT_DEFAULTS))
    if unknown:
        raise GeneratorError(f"generator.params.random_init: unknown keys {unknown}; "
                             f"expected some of {sorted(RANDOM_INIT_DEFAULTS)}")
    c = {**RANDOM_INIT_DEFAULTS, **cfg}
    for k in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
              "mapping_layers", "num_fp16_res", "seed"):
        if isinstance(c[k], bool) or not isinstance(c[k], (int, np.integer)) or c[k] < 0:
            raise GeneratorError(f"generator.params.random_init.{k}: expected a non-negative integer, "
                                 f"received {c[k]!r}")
    if c["architecture"] not in ARCHITECTURES:
        raise GeneratorError(f"generator.params.random_init.architecture: expected one of {list(ARCHITECTURES)}, "
                             f"received {c['architecture']!r}")
    r = c["img_resolution"]
    if r < 4 or r & (r - 1):
        raise GeneratorError(f"generator.params.random_init.img_resolution: expected a power of two >= 4, received {r}")
    kwargs = dict(z_dim=c["z_dim"], c_dim=c["c_dim"], w_dim=c["w_dim"], img_resolution=r,
                  img_channels=c["img_channels"],
                  mapping_kwargs=dict(num_layers=c["mapping_layers"], lr_multiplier=c["mapping_lr_multiplier"]),
                  synthesis_kwargs=dict(channel_base=c["channel_base"], channel_max=c["channel_max"],
                                        architecture=c["architecture"], conv_clamp=c["conv_clamp"],
                                        num_fp16_res=c["num_fp16_res"], resample_filter=list(c["resample_filter"]),
                                        use_noise=bool(c["use_noise"])))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(c["seed"]))
        try:
            net = Generator(**kwargs)
        except ValueError as exc:
            raise GeneratorError(f"generator.params.random_init: {exc}") from None
        eps = float(c["perturb"])
        with torch.no_grad():
            if eps:
                for name, t in list(net.named_parameters()) + list(net.named_buffers()):
                    if not name.endswith("resample_filter") and t.is_floating_point():
                        t.add_(eps * torch.randn_like(t))
            z = torch.randn(2000, c["z_dim"])
            cc = None
            if c["c_dim"]:
                cc = torch.nn.functional.one_hot(torch.randint(c["c_dim"], (2000,)), c["c_dim"]).float()
            net.mapping.w_avg.copy_(net.mapping(z, cc)[:, 0].mean(0))
    return net.eval().requires_grad_(False), c


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 behind the generator protocol (see module docstring for parameters)."""

    image_range: tuple[float, float] = (-1.0, 1.0)
    _c: Tensor  # registered buffer, typed here (nn.Module.__getattr__ returns Tensor | Module)

    def __init__(self, checkpoint: str | None = None, random_init: Mapping[str, Any] | None = None,
                 space: str = "w", layers: Sequence[int] | None = None, truncation: float = 1.0,
                 truncation_cutoff: int | None = None, noise: str = "const", class_idx: int | None = None,
                 dtype: str = "float32", device: str = "cpu", fused_modconv: bool = False) -> None:
        super().__init__()
        if (checkpoint is None) == (random_init is None):
            raise GeneratorError("generator.params: expected exactly one of 'checkpoint' (path to .pkl/.pt) or "
                                 f"'random_init' (mapping); received checkpoint={checkpoint!r}, "
                                 f"random_init={random_init!r}")
        if dtype not in _DTYPES:
            raise GeneratorError(f"generator.params.dtype: expected one of {list(_DTYPES)}, received {dtype!r}")
        if space not in _SPACES:
            raise GeneratorError(f"generator.params.space: expected one of {list(_SPACES)}, received {space!r}")
        if noise not in _NOISE:
            raise GeneratorError(f"generator.params.noise: expected one of {list(_NOISE)}, received {noise!r}")
        self._ckpt_info: dict[str, Any] | None = None
        self._random_cfg: dict[str, Any] | None = None
        if checkpoint is not None:
            if not isinstance(checkpoint, (str, os.PathLike)):
                raise GeneratorError(f"generator.params.checkpoint: expected a path, received {checkpoint!r}")
            ckpt: Checkpoint = load_checkpoint(checkpoint)
            net = build_network(ckpt)
            self._ckpt_info = ckpt.info()
        else:
            if not isinstance(random_init, Mapping):
                raise GeneratorError(f"generator.params.random_init: expected a mapping, received {random_init!r}")
            net, self._random_cfg = random_network(**dict(random_init))
        net.set_fused_modconv(bool(fused_modconv))
        self.net: Generator = net.to(device=device, dtype=_DTYPES[dtype])
        self.dtype_name = dtype
        self.fused_modconv = bool(fused_modconv)
        self.z_dim, self.w_dim, self.c_dim = net.z_dim, net.w_dim, net.c_dim
        self.num_ws = net.num_ws
        self.image_shape = (net.img_channels, net.img_resolution, net.img_resolution)
        self.space, self.noise = space, noise
        self.latent_dim = self.z_dim if space == "z" else self.w_dim
        self.per_layer = isinstance(layers, str) and layers == "all"  # W+ with one w per style slot
        if isinstance(layers, str):
            if not self.per_layer or space != "wplus":
                raise GeneratorError(f"generator.params.layers: expected a list of integers, or 'all' with space "
                                     f"'wplus'; received {layers!r} with space {space!r}")
            layers = None
            self.latent_dim = self.num_ws * self.w_dim

        if layers is not None:
            if space != "wplus":
                raise GeneratorError(f"generator.params.layers: only used with space 'wplus'; received space {space!r}")
            try:
                layers = sorted({int(i) for i in layers})
            except (TypeError, ValueError):
                raise GeneratorError(f"generator.params.layers: expected a list of integers, received {layers!r}") \
                    from None
            bad = [i for i in layers if not 0 <= i < self.num_ws]
            if bad or not layers:
                raise GeneratorError(f"generator.params.layers: expected non-empty indices in 0..{self.num_ws - 1} "
                                     f"(num_ws = {self.num_ws}), received {layers!r}")
        self.layers: list[int] = list(range(self.num_ws)) if layers is None else list(layers)

        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not math.isfinite(truncation):
            raise GeneratorError(f"generator.params.truncation: expected a number, received {truncation!r}")
        self.truncation = float(truncation)
        if truncation_cutoff is not None:
            if isinstance(truncation_cutoff, bool) or not isinstance(truncation_cutoff, int) or truncation_cutoff < 0:
                raise GeneratorError(f"generator.params.truncation_cutoff: expected a non-negative integer or null, "
                                     f"received {truncation_cutoff!r}")
            if space != "z" and self.truncation == 0 and truncation_cutoff < self.num_ws:
                raise GeneratorError("generator.params.truncation_cutoff: with truncation 0 the untruncated w of "
                                     "slots >= cutoff cannot be recovered from x; use space 'z' or no cutoff")
        self.truncation_cutoff = truncation_cutoff

        if self.c_dim > 0:
            if isinstance(class_idx, bool) or not isinstance(class_idx, int) or not 0 <= class_idx < self.c_dim:
                raise GeneratorError(f"generator.params.class_idx: conditional model (c_dim = {self.c_dim}) needs "
                                     f"an integer class in 0..{self.c_dim - 1}; received {class_idx!r}")
        elif class_idx is not None:
            raise GeneratorError(f"generator.params.class_idx: the model is unconditional (c_dim = 0); "
                                 f"received {class_idx!r}")
        self.class_idx = class_idx
        c = torch.zeros([1, max(self.c_dim, 1)])
        if self.c_dim:
            c[0, class_idx] = 1
        self.register_buffer("_c", c.to(device=device, dtype=_DTYPES[dtype]), persistent=False)
        self.eval()

    # ------------------------------------------------------------------ helpers
    @property
    def _dtype(self) -> torch.dtype:
        return self.net.mapping.w_avg.dtype

    def _class(self, n: int) -> Tensor | None:
        return self._c.expand(n, -1) if self.c_dim else None

    def mapping(self, z: Tensor, c: Tensor | None = None, truncation: float | None = None,
                truncation_cutoff: int | None | str = "default") -> Tensor:
        """z [n, z_dim] (+ one-hot c [n, c_dim]) -> ws [n, num_ws, w_dim] in the model dtype."""
        assert_shape(z, (None, self.z_dim), "z")
        psi = self.truncation if truncation is None else float(truncation)
        cut = self.truncation_cutoff if truncation_cutoff == "default" else truncation_cutoff
        if c is None:
            c = self._class(z.shape[0])
        else:
            c = c.to(self._dtype)
        return self.net.mapping(z.to(self._dtype), c, truncation_psi=psi, truncation_cutoff=cut)

    def synthesize_ws(self, ws: Tensor, noise: str | None = None) -> Tensor:
        """ws [n, num_ws, w_dim] -> images [n, C, H, W] (model dtype)."""
        assert_shape(ws, (None, self.num_ws, self.w_dim), "ws")
        return self.net.synthesis(ws.to(self._dtype), noise_mode=noise or self.noise)

    def _slot(self, v: Tensor, slot: int) -> Tensor:
        """What style slot ``slot`` receives for a truncated w ``v`` (see truncation_cutoff)."""
        cut = self.truncation_cutoff
        if self.truncation == 1 or cut is None or slot < cut:
            return v
        w_avg = self.net.mapping.w_avg.to(v.dtype)
        return w_avg + (v - w_avg) / self.truncation

    def ws_from_latent(self, x: Tensor, anchor: Tensor | None = None) -> Tensor:
        """Analysed latent x [n, w_dim] (+ anchor) -> ws [n, num_ws, w_dim] (w / wplus spaces)."""
        if self.space == "z":
            return self.mapping(x)
        if self.per_layer:  # x = [w_0, …, w_{num_ws−1}]: every slot its own w
            per = x.reshape(x.shape[0], self.num_ws, self.w_dim)
            return torch.stack([self._slot(per[:, i], i) for i in range(self.num_ws)], dim=1)
        if anchor is None or self.space == "w":
            anchor = x
        assert_shape(anchor, tuple(x.shape), "anchor")
        chosen = set(self.layers) if self.space == "wplus" else set(range(self.num_ws))
        return torch.stack([self._slot(x if i in chosen else anchor, i) for i in range(self.num_ws)], dim=1)

    # ------------------------------------------------------------------ protocol
    def sample_latents(self, seed: int, indices: Sequence[int]) -> Tensor:
        """[n, d] float32: z from ``latent_rng(seed, i)``; in w/wplus the truncated w = mapping(z)."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        z = np.stack([latent_rng(seed, i).standard_normal(self.z_dim) for i in idx]) if idx \
            else np.zeros((0, self.z_dim))
        return self.latents_from_z(z)

    def latents_from_z(self, z: np.ndarray | Tensor) -> Tensor:
        """z [n, z_dim] → the analysed latent [n, d] float32 on CPU (identity in space z; else the
        truncated w = mapping(z), one row at a time so that a row never depends on its batch).
        Used for drawn samples and for a user's own z (``samples.latents`` / NVIDIA ``samples.seeds``)."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float64) if not isinstance(z, Tensor) else z)
        assert_shape(zt, (None, self.z_dim), "z")
        if self.space == "z":
            return zt.to(torch.float32)
        zt = zt.to(device=self._c.device, dtype=self._dtype)
        with torch.no_grad():  # one row at a time: bit-identical whatever the batch
            rows = [self.mapping(zt[i:i + 1], truncation_cutoff=None)[:, 0] for i in range(zt.shape[0])]
        w = torch.cat(rows) if rows else torch.zeros((0, self.w_dim), dtype=self._dtype)
        if self.per_layer:  # W+ over all slots: the sample's w in every slot
            w = w.repeat(1, self.num_ws)
        return w.to(device="cpu", dtype=torch.float32)

    def forward(self, x: Tensor, anchor: Tensor | None = None) -> Tensor:
        """x [n, d] (+ anchor [n, d]) -> images [n, C, H, W] in (-1, 1), dtype of x."""
        assert_shape(x, (None, self.latent_dim), "x")
        out_dtype = x.dtype
        xm = x.to(self._dtype)
        am = None if anchor is None else anchor.to(device=xm.device, dtype=self._dtype)
        img = self.synthesize_ws(self.ws_from_latent(xm, am))
        return img.to(out_dtype)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "stylegan2",
            "params": {
                "checkpoint": None if self._ckpt_info is None else self._ckpt_info["source"],
                "random_init": self._random_cfg,
                "space": self.space,
                "layers": self.layers if self.space == "wplus" else None,
                "truncation": self.truncation,
                "truncation_cutoff": self.truncation_cutoff,
                "noise": self.noise,
                "class_idx": self.class_idx,
                "dtype": self.dtype_name,
                "fused_modconv": self.fused_modconv,
            },
            "checkpoint": self._ckpt_info,
            "init_kwargs": self.net.init_kwargs,
            "latent_dim": self.latent_dim,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "image_shape": list(self.image_shape),
            "image_range": list(self.image_range),
            "layer_slots": [[s, name] for s, name in self.net.synthesis.layer_slots()],
        }

    # ------------------------------------------------------------------ SeFa support
    def modulation_layers(self, layers: Sequence[int] | None = None, include_torgb: bool = False) -> list[str]:
        """Module paths (under ``synthesis``) of the modulated layers reading the given style slots."""
        slots = set(self.layers if layers is None else (int(i) for i in layers))
        return [name for s, name in self.net.synthesis.layer_slots()
                if s in slots and (include_torgb or not name.endswith("torgb"))]

    def modulation_weights(self, layers: Sequence[int] | None = None, include_torgb: bool = False) -> Tensor:
        """Style (affine) weights of the layers reading ``layers`` with their run-time gains,
        stacked: [Σ in_channels, w_dim] (SeFa, Shen & Zhou 2021: eigenvectors of AᵀA)."""
        rows = []
        for name in self.modulation_layers(layers, include_torgb):
            # modulation_layers names only SynthesisLayer / ToRGBLayer modules (asserted below)
            layer = cast("SynthesisLayer | ToRGBLayer", self.net.synthesis.get_submodule(name))
            a = layer.affine.weight * layer.affine.weight_gain
            if isinstance(layer, ToRGBLayer):
                a = a * layer.weight_gain
            assert isinstance(layer, (SynthesisLayer, ToRGBLayer))
            rows.append(a)
        if not rows:
            raise GeneratorError(f"modulation_weights: no modulated layer reads style slots {layers!r}")
        return torch.cat(rows, dim=0).detach()


_PARAMS = ("checkpoint", "random_init", "space", "layers", "truncation", "truncation_cutoff", "noise",
           "class_idx", "dtype", "device", "fused_modconv")


@register("stylegan2", params=_PARAMS)
def make_stylegan2(**params: Any) -> StyleGAN2Generator:
    """Factory for ``generator.kind: stylegan2`` (parameters documented on the module)."""
    return StyleGAN2Generator(**params)
