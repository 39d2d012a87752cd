"""Forward-mode region Jacobians and Gram matrices (README "Concepts").

Implements the quantities of LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs",
NeurIPS 2021, §3.1, Eq. (2)-(3)): for a generator ``G: x ∈ R^d -> y ∈ R^{C×H×W}``
the image is area-pooled to the *analysis grid* ``h×w`` and its channels reduced
(``mean`` -> c = 1, ``sum`` -> c = 1, ``rgb`` -> c = C), giving ``y' ∈ R^{c×h×w}``
and the Jacobian ``J = ∂y'/∂x ∈ R^{(c·h·w)×d}``.  For a region mask ``R`` on the
grid (values in [0, 1]) and the rest ``B = 1 - R``::

    M_R = Jᵀ diag(R) J / ΣR          M_B = Jᵀ diag(B) J / ΣB          (d×d, PSD)

The mask is broadcast over the c channels (``diag(R)`` repeats R for every
channel) while ``ΣR`` sums R over the h·w grid only, so with ``channels="rgb"``
``M_R = Σ_c Σ_p R_p J_{c,p}ᵀ J_{c,p} / Σ_p R_p``.  The paper's reference code
computes J in *reverse* mode, one backward pass per output pixel; here J is
computed in **forward mode**: d Jacobian-vector products with the one-hot tangents
``e_j``, ``k`` at a time (``torch.func.vmap`` over ``torch.func.jvp``), every
tangent batched over the n samples.  Pooling and channel reduction are linear, so
they are applied to the tangent images of each chunk as soon as it is computed.

Cost model
----------
Notation: n samples, d latent size, k chunk (tangents per pass), ``C×H×W``
generator output, ``c×h×w`` analysis grid, R regions, ``F`` flops and ``A`` bytes
of peak activations of one generator forward pass for one sample, ``s`` bytes per
Gram element (4 for float32, 8 for float64).

===========  =====================================  ======================================
stage        flops                                  memory (peak, beyond the generator)
===========  =====================================  ======================================
jvp          ``n·F·(⌈d/k⌉ + γ·d)``, γ ≈ 1–2         ``n·(1+k)·A`` activations (primal +
             (one primal per chunk, one tangent     k tangents) + ``4·n·k·C·H·W`` tangent
             stream per latent dim)                 images of the chunk
             ``vectorize=False``: ``n·F·d·(1+γ)``   ``2·n·A`` + ``4·n·C·H·W``
pool         ``n·d·C·H·W`` (one read per tangent    J: ``4·n·c·h·w·d`` (float32, held
             image; ``·(h+w)`` if not divisible)    for the Gram stage; returned only
                                                    with ``keep_jacobian``)
grams        ``4·R·n·c·h·w·d²`` (2R weighted        ``s·n·2R·c·q·d`` per block of q grid
             Gram products, multiply-add = 2)       cells (q set so that this is <= 2^24
                                                    elements) + ``2·s·n·R·d²`` results
===========  =====================================  ======================================

Reverse mode needs ``c·h·w`` backward passes of cost ``≈ 2–3·F`` each, so forward
mode wins by roughly ``2.5·c·h·w / (γ·d)``: ≈ 100× for a 64×64 grid with d = 64 and
≈ 1000× for 256² with d = 512.  The chunk k trades activation memory
(``∝ 1 + k``) against the number of primal passes (``⌈d/k⌉``); only the jvp stage
grows with k, the pooled J does not depend on it.  With a cheap generator on CPU the
fixed per-pass overhead of vmap/jvp dominates and larger k is faster
(``bench/bench_jacobian.py`` reports k = 8 … 64).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CHANNEL_MODES",
    "JacobianConfig",
    "JacobianEngine",
    "default_grid",
    "describe_failures",
    "jacobian",
    "pool_image",
    "region_grams",
    "to_uint8_preview",
]

CHANNEL_MODES = ("mean", "sum", "rgb")
_GRAM_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Elements of one weighted pixel block in the Gram stage (bounds its memory).
_GRAM_BLOCK_ELEMS = 1 << 24


def default_grid(image_shape: tuple[int, int, int], max_side: int = 256) -> tuple[int, int]:
    """The default analysis grid: square, ``min(H, max_side)`` (README "Concepts")."""
    g = min(int(image_shape[1]), int(max_side))
    return (g, g)


# ----------------------------------------------------------------------------- pooling


def _area_weights(n_in: int, n_out: int, dtype: torch.dtype, device: Any) -> Tensor:
    """[n_out, n_in] exact area-averaging weights (rows sum to 1).

    Output cell i covers ``[i·n_in/n_out, (i+1)·n_in/n_out)`` of the input axis;
    each input pixel contributes the fraction of the cell it overlaps.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    p = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, p + 1) - np.maximum(lo, p), 0.0, None)
    w = overlap / (n_in / n_out)
    return torch.as_tensor(w, dtype=dtype, device=device)


def _check_grid(grid: Any, name: str = "grid") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in grid)
        ok = h > 0 and w > 0 and all(float(v) == int(v) for v in grid)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected two positive integers (h, w), received {grid!r}")
    return h, w


def pool_image(y: Tensor, grid: tuple[int, int], channels: str = "mean") -> Tensor:
    """Area-pool images to the analysis grid and reduce channels.

    y [n, C, H, W] -> [n, c, h, w] with c = 1 for ``mean``/``sum``, c = C for ``rgb``.
    Exact block means when ``H % h == 0`` and ``W % w == 0``; otherwise exact
    fractional-area averaging (each grid cell averages the image area it covers).
    Linear in y, so it applies unchanged to Jacobian-vector products.
    """
    if not isinstance(y, Tensor) or y.ndim != 4:
        got = list(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"pool_image: expected images [n, C, H, W], received {got}")
    if channels not in CHANNEL_MODES:
        raise ValueError(
            f"pool_image: channels must be one of {list(CHANNEL_MODES)}, received {channels!r}"
        )
    h, w = _check_grid(grid, "pool_image: grid")
    n, C, H, W = y.shape
    if channels == "mean":
        y = y.mean(dim=1, keepdim=True)
    elif channels == "sum":
        y = y.sum(dim=1, keepdim=True)
    c = y.shape[1]
    if (H, W) == (h, w):
        return y
    if H % h == 0 and W % w == 0:
        return y.reshape(n, c, h, H // h, w, W // w).mean(dim=(3, 5))
    wh = _area_weights(H, h, y.dtype, y.device)  # [h, H]
    ww = _area_weights(W, w, y.dtype, y.device)  # [w, W]
    return torch.einsum("iH,ncHW,jW->ncij", wh, y, ww)


# ----------------------------------------------------------------------------- jacobian


def _one_hot_tangents(x: Tensor, j0: int, j1: int) -> Tensor:
    """[k, n, d]: tangent t has e_{j0+t} in every sample's row."""
    n, d = x.shape
    k = j1 - j0
    t = torch.zeros(k, n, d, dtype=x.dtype, device=x.device)
    t[torch.arange(k), :, torch.arange(j0, j1)] = 1.0
    return t


def _jvp_chunk_vmap(fn: Callable[[Tensor], Tensor], x: Tensor, tangents: Tensor):
    from torch.func import jvp, vmap

    def one(t: Tensor):
        return jvp(fn, (x,), (t,))

    # The primal does not depend on the tangent: out_dims=None keeps one copy.
    # torch types out_dims as int | tuple[int, ...]; a None entry (unbatched output) is documented
    return vmap(one, in_dims=0, out_dims=(None, 0), randomness="same")(tangents)  # type: ignore[arg-type]


def _jvp_chunk_loop(fn: Callable[[Tensor], Tensor], x: Tensor, tangents: Tensor):
    # Plain forward-mode AD (dual tensors), one batched pass per tangent: works for
    # modules that vmap cannot transform (custom autograd.Functions without a vmap
    # rule, old-style Functions, in-place tricks).
    import torch.autograd.forward_ad as fwAD

    y = None
    outs = []
    for t in tangents:
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(x, t.contiguous()))
            primal, tangent = fwAD.unpack_dual(out)
            if tangent is None:  # output independent of x
                tangent = torch.zeros_like(primal)
            if y is None:
                y = primal.detach().clone()
            outs.append(tangent.detach().clone())
    return y, torch.stack(outs)


def _jvp_chunks(
    fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int, vectorize: bool
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """Yield ``(j0, j1, y, dy [k, n, ...])`` for latent columns ``j0:j1``."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, received {chunk!r}")
    n, d = x.shape
    use_vmap = vectorize
    for j0 in range(0, d, chunk):
        j1 = min(d, j0 + chunk)
        tangents = _one_hot_tangents(x, j0, j1)
        with torch.no_grad():
            if use_vmap:
                try:
                    y, dy = _jvp_chunk_vmap(fn, x, tangents)
                except Exception as exc:  # noqa: BLE001 - any vmap failure -> loop
                    if j0 > 0:
                        raise
                    warnings.warn(
                        "jacobian: vmap over jvp failed "
                        f"({type(exc).__name__}: {str(exc)[:200]}); "
                        "falling back to a loop over tangents (vectorize=False)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    use_vmap = False
            if not use_vmap:
                y, dy = _jvp_chunk_loop(fn, x, tangents)
        if y.ndim < 1 or y.shape[0] != n:
            raise ValueError(
                f"jacobian: fn must map [n, d] -> [n, ...] with n = {n}, "
                f"received output shape {list(y.shape)}"
            )
        yield j0, j1, y, dy


def jacobian(
    fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int = 16, vectorize: bool = True
) -> tuple[Tensor, Tensor]:
    """Forward-mode Jacobian of a batched function, chunked over latent dims.

    x [n, d]; ``fn`` maps [n, d] -> [n, *out] sample-wise (row i of the output
    depends on row i of x only).  Returns ``(y [n, *out], J [n, *out, d])`` where
    ``J[i, ..., j] = ∂ fn(x)[i, ...] / ∂ x[i, j]``; y is the primal output of the
    same jvp passes.  ``chunk`` tangents are pushed per pass; ``vectorize`` uses
    ``vmap`` over ``jvp`` (falling back to a loop with a warning if vmap fails),
    ``False`` loops over tangents with dual tensors.  Works in x's dtype.
    """
    if not isinstance(x, Tensor) or x.ndim != 2:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"jacobian: expected x [n, d], received {got}")
    d = x.shape[1]
    y_out: Tensor | None = None
    J: Tensor | None = None
    for j0, j1, y, dy in _jvp_chunks(fn, x, chunk, vectorize):
        if J is None:
            y_out = y
            J = torch.empty((*y.shape, d), dtype=dy.dtype, device=dy.device)
        J[..., j0:j1] = torch.movedim(dy, 0, -1)
    assert y_out is not None and J is not None
    return y_out, J


# ----------------------------------------------------------------------------- grams


def _as_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype in _GRAM_DTYPES:
        return _GRAM_DTYPES[dtype]
    raise ValueError(f"gram dtype: expected 'float32' or 'float64', received {dtype!r}")


def region_grams(
    J: Tensor, masks: Tensor, dtype: Any = torch.float32
) -> tuple[Tensor, Tensor]:
    """Per-sample region Grams ``M_R`` and rest Grams ``M_B`` from one pass over J.

    J [n, c, h, w, d]; masks [R, h, w] (shared) or [R, n, h, w] (per sample), values
    in [0, 1].  Returns ``(gram_in [n, R, d, d], gram_out [n, R, d, d])`` with
    ``gram_in = Jᵀ diag(R) J / ΣR`` and ``gram_out = Jᵀ diag(1-R) J / Σ(1-R)``; the
    mask is broadcast over channels, the sums run over the h·w grid.  J is read in
    pixel blocks, each block weighted by all 2R masks and multiplied in one batched
    matmul, accumulated in ``dtype`` (float32 or float64) and symmetrised.  A
    (sample, region) whose mask or rest has zero area gets NaN Grams.
    """
    dt = _as_dtype(dtype)
    if not isinstance(J, Tensor) or J.ndim != 5:
        got = list(J.shape) if isinstance(J, Tensor) else type(J).__name__
        raise ValueError(f"region_grams: expected J [n, c, h, w, d], received {got}")
    n, c, h, w, d = J.shape
    masks = torch.as_tensor(masks)
    if masks.ndim == 3 and tuple(masks.shape[1:]) == (h, w):
        masks = masks[:, None].expand(-1, n, h, w)
    elif not (masks.ndim == 4 and tuple(masks.shape[1:]) == (n, h, w)):
        raise ValueError(
            f"region_grams: expected masks [R, {h}, {w}] or [R, {n}, {h}, {w}], "
            f"received {list(masks.shape)}"
        )
    R = masks.shape[0]
    m = masks.to(device=J.device, dtype=dt).reshape(R, n, h * w)
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("region_grams: mask values must be finite and in [0, 1]")
    weights = torch.cat([m, 1.0 - m], dim=0).permute(1, 0, 2)  # [n, 2R, hw]
    area = weights.sum(dim=-1)  # [n, 2R]
    Jf = J.reshape(n, c, h * w, d)
    gram = torch.zeros(n, 2 * R, d, d, dtype=dt, device=J.device)
    q = max(1, _GRAM_BLOCK_ELEMS // max(1, n * 2 * R * c * d))
    for p0 in range(0, h * w, q):
        p1 = min(h * w, p0 + q)
        Jb = Jf[:, :, p0:p1].to(dt).reshape(n, 1, c * (p1 - p0), d)  # [n, 1, c·q, d]
        wb = weights[:, :, None, p0:p1].expand(n, 2 * R, c, p1 - p0)
        wb = wb.reshape(n, 2 * R, c * (p1 - p0), 1)  # [n, 2R, c·q, 1]
        gram += (Jb * wb).transpose(-1, -2) @ Jb
    gram = 0.5 * (gram + gram.transpose(-1, -2))
    denom = torch.where(area > 0, area, torch.full_like(area, float("nan")))
    gram = gram / denom[:, :, None, None]
    return gram[:, :R].contiguous(), gram[:, R:].contiguous()


# ----------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class JacobianConfig:
    """Settings of the Jacobian stage (saved with every result)."""

    grid: tuple[int, int]
    channels: str = "mean"
    chunk: int = 16
    gram_dtype: str = "float32"
    keep_jacobian: bool = False
    vectorize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", _check_grid(self.grid, "jacobian.grid"))
        if self.channels not in CHANNEL_MODES:
            raise ValueError(
                f"jacobian.channels: expected one of {list(CHANNEL_MODES)}, "
                f"received {self.channels!r}"
            )
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(
                f"jacobian.chunk: expected a positive integer, received {self.chunk!r}"
            )
        if self.gram_dtype not in _GRAM_DTYPES:
            raise ValueError(
                f"jacobian.gram_dtype: expected one of {sorted(_GRAM_DTYPES)}, "
                f"received {self.gram_dtype!r}"
            )
        for field in ("keep_jacobian", "vectorize"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(
                    f"jacobian.{field}: expected a bool, received {getattr(self, field)!r}"
                )


class JacobianEngine:
    """Images, pooled Jacobians and region Grams for a batch of latents.

    A plain class holding one generator (the Ray actor wraps it).  ``compute``
    returns CPU tensors::

        images    f32 [n, C, H, W]    generator output (primal of the jvp passes)
        gram_in   f32|f64 [n, R, d, d]
        gram_out  f32|f64 [n, R, d, d]
        finite    bool [n]            False: NaN/Inf in the image, J or a Gram, or a
                                      region/rest of zero area for that sample
        jacobian  f32 [n, c, h, w, d] only with ``keep_jacobian``

    Non-finite values are left in place (never replaced by plausible numbers); the
    caller must mark samples with ``finite == False`` failed
    (:func:`describe_failures` gives the reason).
    """

    def __init__(self, generator: Any, cfg: JacobianConfig, device: Any = "cpu") -> None:
        if not isinstance(cfg, JacobianConfig):
            raise TypeError(f"cfg: expected JacobianConfig, received {type(cfg).__name__}")
        self.generator = generator
        self.cfg = cfg
        self.device = torch.device(device)
        self.latent_dim = int(generator.latent_dim)
        self.image_shape = tuple(int(s) for s in generator.image_shape)

    @property
    def n_channels(self) -> int:
        return self.image_shape[0] if self.cfg.channels == "rgb" else 1

    def _check_masks(self, masks: Any, n: int) -> Tensor:
        h, w = self.cfg.grid
        m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, Tensor) else masks)
        ok = (m.ndim == 3 and tuple(m.shape[1:]) == (h, w)) or (
            m.ndim == 4 and tuple(m.shape[1:]) == (n, h, w)
        )
        if not ok or m.shape[0] < 1:
            raise ValueError(
                f"masks: expected [R, {h}, {w}] or [R, {n}, {h}, {w}] on the analysis grid "
                f"with R >= 1, received {list(m.shape)}"
            )
        m = m.to(torch.float32)
        if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise ValueError("masks: expected finite values in [0, 1]")
        return m

    def compute(
        self, x: Tensor, masks: Tensor, anchor: Tensor | None = None
    ) -> dict[str, Tensor]:
        d = self.latent_dim
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x: expected latents [n, {d}], received {list(x.shape)}")
        n = x.shape[0]
        x = x.to(device=self.device, dtype=torch.float32)
        anchor = x if anchor is None else torch.as_tensor(anchor)
        if tuple(anchor.shape) != (n, d):
            raise ValueError(f"anchor: expected [{n}, {d}], received {list(anchor.shape)}")
        anchor = anchor.to(device=self.device, dtype=torch.float32).detach().clone()
        m = self._check_masks(masks, n)
        cfg, G = self.cfg, self.generator

        def fn(z: Tensor) -> Tensor:  # anchor is closed over: held fixed
            return G.forward(z, anchor)

        h, w = cfg.grid
        J = torch.empty(n, self.n_channels, h, w, d, dtype=torch.float32, device=self.device)
        images: Tensor | None = None
        for j0, j1, y, dy in _jvp_chunks(fn, x, cfg.chunk, cfg.vectorize):
            if images is None:
                if tuple(y.shape) != (n, *self.image_shape):
                    raise ValueError(
                        f"generator output: expected [{n}, {', '.join(map(str, self.image_shape))}],"
                        f" received {list(y.shape)}"
                    )
                images = y.to(torch.float32)
            k = j1 - j0
            pooled = pool_image(dy.reshape(k * n, *dy.shape[2:]), cfg.grid, cfg.channels)
            J[..., j0:j1] = torch.movedim(pooled.reshape(k, n, *pooled.shape[1:]), 0, -1)
        assert images is not None
        gram_in, gram_out = region_grams(J, m, dtype=_GRAM_DTYPES[cfg.gram_dtype])

        def ok(t: Tensor) -> Tensor:
            return torch.isfinite(t.reshape(n, -1)).all(dim=1)

        finite = ok(images) & ok(J) & ok(gram_in) & ok(gram_out)
        out = {
            "images": images.cpu(),
            "gram_in": gram_in.cpu(),
            "gram_out": gram_out.cpu(),
            "finite": finite.cpu(),
        }
        if cfg.keep_jacobian:
            out["jacobian"] = J.cpu()
        return out


def describe_failures(
    result: dict[str, Tensor], region_names: list[str] | None = None
) -> dict[int, str]:
    """``{sample: reason}`` for the samples of a ``compute`` result with finite False."""
    failed = torch.nonzero(~result["finite"]).flatten().tolist()
    reasons: dict[int, str] = {}
    for i in failed:
        parts = []
        if not torch.isfinite(result["images"][i]).all():
            parts.append("NaN/Inf in the generator output")
        if "jacobian" in result and not torch.isfinite(result["jacobian"][i]).all():
            parts.append("NaN/Inf in the Jacobian")
        R = result["gram_in"].shape[1]
        for r in range(R):
            name = region_names[r] if region_names else f"region {r}"
            for key, what in (("gram_in", "region"), ("gram_out", "rest")):
                if not torch.isfinite(result[key][i, r]).all():
                    parts.append(f"{name}: non-finite {key} (NaN/Inf in J or empty {what})")
        reasons[i] = "; ".join(parts) or "non-finite values"
    return reasons


# ----------------------------------------------------------------------------- previews


def to_uint8_preview(
    images: Tensor, image_range: tuple[float, float] = (-1.0, 1.0), max_size: int = 256
) -> np.ndarray:
    """[n, C, H, W] in ``image_range`` -> uint8 [n, H', W', 3], area-downsampled.

    The longer side becomes ``min(max(H, W), max_size)`` (aspect kept); 1-channel
    images are replicated to RGB.  Non-finite pixels become 0.
    """
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"to_uint8_preview: expected images [n, 1 or 3, H, W], received {list(images.shape)}"
        )
    lo, hi = (float(v) for v in image_range)
    if not hi > lo:
        raise ValueError(f"to_uint8_preview: image_range must have lo < hi, received {image_range}")
    n, C, H, W = images.shape
    scale = min(1.0, max_size / max(H, W))
    grid = (max(1, round(H * scale)), max(1, round(W * scale)))
    y = pool_image(images.detach().to(torch.float64).cpu(), grid, channels="rgb")
    y = torch.nan_to_num(y, nan=lo, posinf=hi, neginf=lo)
    y = ((y - lo) / (hi - lo) * 255.0).clamp(0, 255).round().to(torch.uint8)
    if C == 1:
        y = y.expand(n, 3, *grid)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())
