"""StyleGAN2 generator network in plain PyTorch (forward-mode AD friendly).

Implements the generator of *Analyzing and Improving the Image Quality of StyleGAN*
(Karras, Laine, Aittala, Hellsten, Lehtinen, Aila; CVPR 2020, "StyleGAN2") with the
conventions of NVIDIA's PyTorch port (stylegan2-ada-pytorch / stylegan3's
``networks_stylegan2``) so that official weights load under their official parameter
names with ``load_state_dict(strict=True)`` and give the same images (max abs
difference ~1e-6 in float32 on the test fixture).  Written from the architecture
description; no custom CUDA ops, no run-time compilation, no in-place ops on values
that carry tangents, no data-dependent Python control flow -- so ``torch.func.jvp``,
``jacfwd``, ``vmap`` over ``jvp`` and reverse mode all pass through, in float32 and
float64, on any device.

Architecture facts (paper §2 and Appendix; official PyTorch conventions)
-----------------------------------------------------------------------
* **Mapping** ``z → w``: z is normalised to unit second moment
  (``z · rsqrt(mean(z²) + 1e-8)``); for conditional models (``c_dim > 0``) a linear
  embedding of the one-hot class is normalised the same way and concatenated.  Then
  ``num_layers`` fully connected layers with leaky ReLU (slope 0.2, gain √2) and a
  learning-rate multiplier (0.01): weights are stored divided by it and scaled at run
  time by ``lr_mult / sqrt(fan_in)`` (equalized learning rate), biases by ``lr_mult``.
  w is broadcast to the ``num_ws`` style slots.  Truncation (paper eq. in §1 of the
  StyleGAN1 paper): ``w' = w_avg + ψ (w − w_avg)`` on slots ``< cutoff`` (all if none).
* **Synthesis**: blocks ``b4, b8, …, b{R}`` with ``C(r) = min(channel_base // r,
  channel_max)`` channels.  ``b4`` starts from a learned constant ``[C, 4, 4]``; every
  other block's ``conv0`` upsamples ×2 (transposed 3×3 convolution with stride 2, then
  the [1,3,3,1] FIR low-pass filter with gain 4), ``conv1`` keeps the resolution.
* **Modulated convolution** (paper eq. 1–3): style ``s = A(w)`` (affine, bias init 1,
  gain 1/√w_dim), ``w'_{oik} = s_i · w_{oik}``, demodulation
  ``w''_{oik} = w'_{oik} / sqrt(Σ_{ik} w'²_{oik} + 1e-8)``.  The conv weights carry no
  equalized-lr gain (demodulation removes any scale).  We evaluate it in the equivalent
  *non-fused* form ``conv(x ⊙ s, W) ⊙ d`` with one shared weight for the batch (cheapest
  under forward mode: the tangent of ``s`` enters only through two elementwise products);
  the fused grouped-convolution form of the official code is available with
  ``fused_modconv=True`` and agrees to float rounding.
* **Noise**: ``noise_strength · noise`` added after the convolution, before bias and
  activation; ``noise`` is the per-layer buffer ``noise_const [r, r]`` ("const"), a fresh
  ``N(0, 1)`` draw ("random"), or nothing ("none").  Then ``lrelu(x + b) · √2 · gain``,
  clamped to ``±conv_clamp · gain`` when ``conv_clamp`` is set.
* **ToRGB**: 1×1 modulated convolution without demodulation, style gain
  ``1/sqrt(C)``, bias, clamp to ``±conv_clamp``.
* **Architectures**: ``skip`` (every block has a ToRGB; the running RGB image is
  upsampled with the FIR filter — zero insertion, pad (2, 1), gain 4 — and added),
  ``resnet`` (residual 1×1 up-sampling ``skip`` branch, both paths scaled by √½, RGB
  from the last block only), ``orig`` (plain, RGB from the last block).
* **Style slots**: block ``b{r}`` reads one w per conv layer and, for its ToRGB, the
  slot after its last conv (shared with the next block's ``conv0``);
  ``num_ws = #conv layers + 1``  (18 at 1024², 8 at 32²).
* **FIR resampling** (``upfirdn2d`` semantics): zero insertion, padding, true
  convolution with the normalised 2-D outer product of the taps (times gain), all with
  plain ``F.pad`` / depthwise ``conv2d``.
* **Mixed precision**: snapshots trained with ``num_fp16_res > 0`` ran their last
  blocks in float16 on GPU; here everything runs in the module's dtype (float32 or
  float64).  The result is the exact float32 math of the same weights; the official
  fp16 path differs from it by float16 rounding (unit roundoff 2^-11 ≈ 5e-4 relative per
  operation, accumulating over the fp16 layers; not measured here -- expect pixel
  differences of order 1e-3 to 1e-2), so parity at 1e-4 holds only against the official
  generator run in float32 (``force_fp32=True``, or on CPU).  The official fp16 path also
  pre-normalises weights and styles before demodulation, which is exact algebra.

Cost model
----------
A forward pass costs ≈ Σ_r [ (r/2)²·C(r/2)·C(r)·k² (conv0, transposed conv at input
resolution) + r²·C(r)²·k² (conv1) ] multiply-adds plus O(r²·C) elementwise work; for the
FFHQ config-f generator (1024², channel_base 32768, channel_max 512) that is ≈ 74 GMAC,
dominated equally by the four highest resolutions.  The mapping network is negligible
(8 × 512² MACs).  Forward mode: one JVP costs about 1.5–2 forward passes (primal once,
tangents through the same convolutions with the shared weight); ``vmap`` over k tangents
shares the primal, so a d-column Jacobian costs ≈ 1 + d·(tangent cost) forwards.
Activation memory is ≈ Σ_r C(r)·r²·(batch · tangents) floats per live layer.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrgan_dist.core.digest import to_jsonable

__all__ = [
    "ARCHITECTURES",
    "NOISE_MODES",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "modulated_conv2d",
    "FullyConnectedLayer",
    "MappingNetwork",
    "Conv2dLayer",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
    "channels_for",
]

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("const", "random", "none")

# activation name -> (function, default gain); the official defaults.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2.0)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2.0)),
}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _bias_act(x: Tensor, b: Tensor | None, act: str = "linear", gain: float = 1.0,
              clamp: float | None = None) -> Tensor:
    """``clamp(act(x + b) * gain)``; b broadcast along dim 1 (channels)."""
    fn, _ = _activation(act)
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    x = fn(x)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# --------------------------------------------------------------------------- FIR

def setup_filter(taps: Sequence[float] | Tensor | None) -> Tensor:
    """2-D FIR kernel [kh, kw]: outer product of 1-D taps, normalised to sum 1."""
    if taps is None:
        taps = [1]
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"resample_filter: expected 1-D or 2-D taps, received shape {list(f.shape)}")
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Upsample (zero insertion), pad, FIR-filter, downsample.  x [N, C, H, W], f [kh, kw].

    ``pad = (x_before, x_after, y_before, y_after)`` (negative crops).  The filter is
    applied as a true convolution (flipped for ``conv2d``'s correlation) times ``gain``.
    """
    n, c, h, w = x.shape
    if up > 1:  # y[.., up*i, up*j] = x[.., i, j], zeros elsewhere
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = (int(p) for p in pad)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    if min(px0, px1, py0, py1) < 0:
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    k = (f * gain).to(x.dtype).flip([0, 1])
    x = F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """×up FIR upsampling that keeps the image centred (output size up·H)."""
    fh, fw = f.shape
    pad = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, pad=pad, gain=up * up)


def _conv(x: Tensor, weight: Tensor, f: Tensor | None, up: int, padding: int, groups: int = 1) -> Tensor:
    """Convolution with optional ×up FIR upsampling (official conv2d_resample semantics).

    ``up = 1``: plain ``conv2d`` (cross-correlation) with symmetric padding.
    ``up > 1``, k×k with k > 1: transposed convolution (stride up, weight used as is,
    i.e. a true convolution), then the FIR filter with the padding that centres the
    result.  ``up > 1``, 1×1: conv, then FIR upsampling.
    """
    if up == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    assert f is not None
    out_ch, in_per_group, kh, kw = weight.shape
    fh, fw = f.shape
    # Padding for "zero-insert + FIR" upsampling around a conv with `padding` ...
    px0 = padding + (fw + up - 1) // 2
    px1 = padding + (fw - up) // 2
    py0 = padding + (fh + up - 1) // 2
    py1 = padding + (fh - up) // 2
    if kh == 1 and kw == 1:
        x = F.conv2d(x, weight, groups=groups)
        return upfirdn2d(x, f, up=up, pad=[px0, px1, py0, py1], gain=up * up)
    # ... minus what the transposed convolution already spans.
    px0 -= kw - 1
    px1 -= kw - up
    py0 -= kh - 1
    py1 -= kh - up
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    if groups == 1:
        wt = weight.transpose(0, 1)  # [in, out, kh, kw]
    else:
        wt = weight.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, pad=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None,
                     up: int = 1, padding: int = 0, resample_filter: Tensor | None = None,
                     demodulate: bool = True, fused: bool = False) -> Tensor:
    """StyleGAN2 modulated (and demodulated) convolution, paper eq. 1–3.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I], noise broadcastable to the output.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    dcoefs = None
    if demodulate:
        # Σ_{i,k} (s_i w_oik)² = Σ_i s_i² Σ_k w_oik²  -> [N, O] without forming [N, O, I, k, k]
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    if not fused:
        x = x * styles.reshape(n, -1, 1, 1)
        x = _conv(x, weight, resample_filter, up, padding)
        if dcoefs is not None:
            x = x * dcoefs.reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise
        return x
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    x = _conv(x, w.reshape(n * out_ch, in_ch, kh, kw), resample_filter, up, padding, groups=n)
    x = x.reshape(n, out_ch, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


# --------------------------------------------------------------------------- layers

class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate (gains applied at run time)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        _activation(activation)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:  # [N, in] -> [N, out]
        w = self.weight * self.weight_gain
        b = None if self.bias is None else self.bias * self.bias_gain
        if self.activation == "linear":
            return x @ w.t() if b is None else torch.addmm(b.unsqueeze(0), x, w.t())
        return _bias_act(x @ w.t(), b, act=self.activation, gain=_activation(self.activation)[1])


def _normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (and class c) -> ws [N, num_ws, w_dim]; holds ``w_avg`` for truncation."""

    # registered buffers, typed here (nn.Module.__getattr__ returns Tensor | Module)
    w_avg: Tensor

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = int(z_dim), int(c_dim), int(w_dim)
        self.num_ws, self.num_layers = num_ws, int(num_layers)
        self.w_avg_beta = w_avg_beta  # training only; kept for the constructor signature
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        feats = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor | None, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(_normalize_2nd_moment(cast(Tensor, z)))  # z is required when z_dim > 0
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"c: this mapping network is conditional (c_dim={self.c_dim}); received None")
            parts.append(_normalize_2nd_moment(self.embed(c.to(self.embed.weight.dtype))))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    def truncate(self, ws: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
        """``w_avg + ψ (ws − w_avg)`` on slots ``< cutoff`` (all slots if cutoff is None)."""
        if psi == 1:
            return ws
        t = self.w_avg.to(ws.dtype).lerp(ws, psi)
        if cutoff is None or cutoff >= ws.shape[1]:
            return t
        return torch.cat([t[:, :cutoff], ws[:, cutoff:]], dim=1)


class Conv2dLayer(nn.Module):
    """Plain equalized-lr convolution with optional ×2 FIR upsampling (resnet skip path)."""

    # registered buffers, typed here (nn.Module.__getattr__ returns Tensor | Module)
    resample_filter: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        _activation(activation)
        self.activation, self.up, self.conv_clamp = activation, int(up), conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = _activation(activation)[1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        x = _conv(x, self.weight * self.weight_gain, self.resample_filter, self.up, self.padding)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (+ ×2 upsampling for conv0), noise, bias, lrelu, clamp."""

    # registered buffers, typed here (nn.Module.__getattr__ returns Tensor | Module)
    resample_filter: Tensor
    noise_const: Tensor

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        _activation(activation)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.resolution, self.up, self.use_noise = int(resolution), int(up), bool(use_noise)
        self.activation, self.conv_clamp = activation, conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = _activation(activation)[1]
        self.fused_modconv = False
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", gain: float = 1.0) -> Tensor:
        styles = self.affine(w)  # [N, I]
        noise = None
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode: expected one of {NOISE_MODES}, received {noise_mode!r}")
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=self.fused_modconv)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1×1 modulated conv without demodulation, bias, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.fused_modconv = False
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, padding=self.padding, demodulate=False,
                             fused=self.fused_modconv)
        return _bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: const or conv0 (up ×2), conv1, and ToRGB / resnet skip."""

    # registered buffers, typed here (nn.Module.__getattr__ returns Tensor | Module)
    resample_filter: Tensor

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, received {architecture!r}")
        self.in_channels, self.resolution, self.is_last = int(in_channels), int(resolution), bool(is_last)
        self.architecture, self.use_fp16 = architecture, bool(use_fp16)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, resample_filter=resample_filter, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "const"):
        """ws [N, num_conv + num_torgb, w_dim] -> (features, rgb image or None)."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv])
            img = y if img is None else img + y
        return x, img


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(int(channel_base) // int(resolution), int(channel_max))


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (official range ~[-1, 1])."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any) -> None:
        super().__init__()
        log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution: expected a power of two >= 4, received {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = int(w_dim), int(img_resolution), int(img_channels)
        self.num_fp16_res = int(num_fp16_res)
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = {r: channels_for(r, channel_base, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - self.num_fp16_res), 8)
        self.num_ws = 0
        self.ws_slots: dict[int, tuple[int, int]] = {}  # res -> (first slot, number of slots read)
        for r in self.block_resolutions:
            block = SynthesisBlock(self.channels[r // 2] if r > 4 else 0, self.channels[r], w_dim=w_dim,
                                   resolution=r, img_channels=img_channels, is_last=(r == img_resolution),
                                   use_fp16=(r >= fp16_resolution), **block_kwargs)
            self.ws_slots[r] = (self.num_ws, block.num_conv + block.num_torgb)
            self.num_ws += block.num_conv
            if r == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{r}", block)

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws: expected shape [*, {self.num_ws}, {self.w_dim}], received {list(ws.shape)}")
        x = img = None
        for r in self.block_resolutions:
            start, count = self.ws_slots[r]
            x, img = getattr(self, f"b{r}")(x, img, ws[:, start:start + count], noise_mode)
        return cast(Tensor, img)  # the last block always returns an image

    def layer_slots(self) -> list[tuple[int, str]]:
        """``(ws slot, module path)`` for every modulated layer, in forward order."""
        out = []
        for r in self.block_resolutions:
            block = getattr(self, f"b{r}")
            start, _ = self.ws_slots[r]
            names = (["conv0"] if block.in_channels else []) + ["conv1"]
            for i, name in enumerate(names):
                out.append((start + i, f"b{r}.{name}"))
            if block.num_torgb:
                out.append((start + block.num_conv, f"b{r}.torgb"))
        return out


_MAPPING_KEYS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "architecture", "resample_filter",
                   "conv_clamp", "fp16_channels_last", "use_noise", "activation", "kernel_size",
                   "channels_last"}
# Accepted for compatibility with newer snapshots; they do not change the float32 math.
_IGNORED_KEYS = {"fused_modconv_default"}


class Generator(nn.Module):
    """Official constructor signature: ``Generator(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, synthesis_kwargs)`` -- ``init_kwargs`` of an NVIDIA
    snapshot pass straight in."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Mapping[str, Any] | None = None,
                 synthesis_kwargs: Mapping[str, Any] | None = None, **extra: Any) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        for k in list(extra):  # stylegan3's networks_stylegan2 passes synthesis kwargs flat
            if k in _SYNTHESIS_KEYS:
                synthesis_kwargs.setdefault(k, extra.pop(k))
            elif k in _IGNORED_KEYS:
                extra.pop(k)
        bad = sorted(set(extra)) + [f"mapping_kwargs.{k}" for k in sorted(set(mapping_kwargs) - _MAPPING_KEYS)] \
            + [f"synthesis_kwargs.{k}" for k in sorted(set(synthesis_kwargs) - _SYNTHESIS_KEYS - _IGNORED_KEYS)]
        if bad:
            raise ValueError(f"Generator: unsupported constructor arguments {bad}")
        for k in _IGNORED_KEYS:
            synthesis_kwargs.pop(k, None)
        self.z_dim, self.c_dim, self.w_dim = int(z_dim), int(c_dim), int(w_dim)
        self.img_resolution, self.img_channels = int(img_resolution), int(img_channels)
        self.init_kwargs = dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                                img_resolution=self.img_resolution, img_channels=self.img_channels,
                                mapping_kwargs=to_jsonable(mapping_kwargs),
                                synthesis_kwargs=to_jsonable(synthesis_kwargs))
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def set_fused_modconv(self, fused: bool) -> "Generator":
        """Switch between the shared-weight (default) and grouped-conv modulated convolution."""
        for m in self.modules():
            if isinstance(m, (SynthesisLayer, ToRGBLayer)):
                m.fused_modconv = bool(fused)
        return self
