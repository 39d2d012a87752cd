"""Built-in synthetic generator: a differentiable procedural face with known latent structure.

``kind: synthetic`` is the embedded default generator (``jobs/quickstart.yaml``) and the
ground truth against which every claim of the method is checked (docs/spec.md).  It
needs no download and no GPU.

Model
-----
A latent ``x ∈ R^d`` (default d = 64) is rotated by a fixed orthonormal basis
``Q ∈ R^{d×d}`` (QR of a Gaussian matrix drawn from ``seed``, column signs fixed so that
``diag(R) > 0``).  Consecutive blocks of columns of ``Q`` belong to the parts, in the
order of :attr:`SyntheticFaces.PARTS`, and a part's factor coordinates are
``f_part = Q_partᵀ x`` (standard normal when x is).  The remaining ``d − Σk`` columns
drive nothing: the Jacobian along them is exactly zero.  Because ``Q`` is a random
rotation, no part is axis-aligned in x.

Parts and their factors (``parts={"eyes": 2, ...}`` keeps only the first k factors of a
part; the others are held at 0; ``d >= Σk`` is required):

==========  ==  ======================================================================
part         k  factors, in order
==========  ==  ======================================================================
background   4  top colour, bottom colour, horizon height, horizon tilt (a two-colour
                gradient fixed in the image)
face         4  skin tone, ear size, face width, face height (ellipse + two ears)
hair         4  hair colour, shine (vertical gradient), volume (ellipse behind the
                face), fringe depth (hair over the top of the face)
eyes         4  openness (lids), size, iris colour, sclera tone (two eyes, each an
                ellipse cut by the lids, with an iris disc and a dark lash line)
mouth        4  size, openness (the lower lip drops and an opening shows), lip colour,
                colour of the opening (lips with a dark outline)
layout       2  vertical, horizontal translation of the whole face -- face, ears, hair,
                eyes, mouth and shirt -- by up to ``max_shift`` (default 0.12) of the
                image size: ``shift = max_shift (k tanh l + (1-k) tanh³ l)``, k = 0.045:
                a gentle slope at a centred face (0.35 px per unit at R = 64), ±0.055
                at |l| = 1, ±0.11 at |l| = 2
lighting     2  global brightness, horizontal brightness gradient (multiplies the image)
==========  ==  ======================================================================

Two fixed-colour elements carry no factor: a dark shirt (moves with the face) and a
light frame around the picture; only the lighting changes them, so that no combination
of lighting and colour factors can cancel everywhere outside a box.

Every factor enters through a smooth bounded map -- colours are ``sigmoid`` of an
affine function of one factor (with a luminance component, so they survive a channel
mean), sizes and positions are ``centre + amp·tanh(0.4 f)`` -- so the Jacobian depends
on x and no shape can outgrow its bounds.  The amplitudes are balanced so that, at a
centred face and in the outside ``B`` of either canonical box, the Jacobian energies of
all factors lie within a few hundred of each other: the Gram ``M_B`` has no near-null
directions other than those of the part inside the box and the unused dimensions.
Shapes are ellipses (aspect >= 0.7) and bands whose edges are a compact C² ramp (quintic
smootherstep) of half-width ``edge`` pixels (default 1) on (near-)exact signed distances:
alpha is exactly 0 beyond one half-width outside a shape and exactly 1 one half-width
inside, so a part changes *exactly* nothing outside its region of influence, and a layer
hides what lies under it exactly.  Hence the Jacobian of a part is exactly zero outside
its mask, and the eye (mouth) subspace lies exactly in the null space of M_B for its
box -- as the numerical-rank step of LowRankGAN needs.  Layers are alpha-composited:
background → hair → shirt → ears, face → fringe → eyes → mouth → frame, then multiplied
by the lighting field ``b·(1 + g·(2u − 1))``.  Colours lie in [0.03, 0.96] and the
lighting in (0.65, 0.97), so ``2·colour·light − 1`` lies strictly inside
``image_range = (-1, 1)`` without clamping.

The renderer is pure elementwise torch on broadcast pixel grids -- no in-place ops on
inputs, no ``.item()``, no data-dependent Python control flow -- so it works under
``torch.func.jvp``, ``jacfwd`` and ``vmap``, in float32 and float64 (the output follows
``x``'s dtype) and on any device (the basis is a registered buffer; grids are built on
``x``'s device).

Ground-truth API
----------------
* :meth:`SyntheticFaces.ground_truth_subspaces` -- ``{part: Q_part [d, k]}`` for all
  seven parts (float32, orthonormal, mutually orthogonal);
  :meth:`~SyntheticFaces.unused_subspace` -- the ``d − Σk`` columns with no effect;
  :meth:`~SyntheticFaces.factors` -- the coordinates ``f_part``.
* :meth:`SyntheticFaces.part_masks` -- per sample, the *region of influence* of each
  local part (background, face, hair, eyes, mouth) on an analysis grid: the pixels the
  part's own factors can change at that sample's layout: 1 within one edge half-width
  of the part's largest extent over all factor values (where it can act), ramping to 0
  over the next ``mask_margin`` pixels (default 1.5); area-pooled from the image grid.
  For the background: everything but what the smallest face/hair and the shirt surely
  hide.  Masks move with the layout.  Layout and lighting are global: no mask.
* :meth:`SyntheticFaces.canonical_boxes` -- loose boxes ``(y0, x0, y1, x1)`` in
  normalized image coordinates around both eyes and around the mouth of a *centred*
  face (layout = 0): the largest extent plus ``box_margin`` pixels (default 2, more
  than the edge half-width, so nothing of the part reaches outside).
  At the defaults (R = 64): eyes ``(0.3628, 0.2968, 0.5473, 0.7033)``, mouth
  ``(0.5538, 0.3588, 0.7263, 0.6413)``.
* :meth:`SyntheticFaces.centre` -- x with its layout coordinates set to 0;
  :meth:`~SyntheticFaces.face_centre` -- where the layout puts each face.

Measured at the defaults (tests/generators/test_synthetic.py, channel-mean Jacobian on
the 64×64 grid): the eye (mouth) factors put 0 (< 1e-15, rounding) of their Jacobian
energy outside the eye (mouth) box of a centred face and outside their part mask of any
face; with the box as the region and a stand-in LowRankGAN (eigen-decompositions with
1e-3 thresholds), the projected directions lie in the part's subspace to sin < 1e-6 and
span all of it, while the unprojected ones mix in layout, lighting and skin.  (Balanced
energies matter for such threshold rules; at R = 32 the eyes are 2-3 pixels tall and the
balance is weaker.)

Cost
----
About 25 soft-edged shape evaluations plus compositing: a few hundred elementwise
ops over ``n × R × R`` (×3 for colours), O(n·R²) time and memory, no convolutions.  On
one CPU core at R = 64: ~2-4 ms for one image, ~20 ms for 16; a full forward-mode
Jacobian (d = 64 tangents through ``jacfwd``) ~0.3 s per image in float32.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F

from lrgan_dist.generators.base import GeneratorError, assert_shape, latent_rng, register

__all__ = ["SyntheticFaces", "make_synthetic", "validate_params", "DEFAULT_PART_DIMS"]

#: Default number of latent dimensions per part (their native factor count).
DEFAULT_PART_DIMS: dict[str, int] = {
    "background": 4,
    "face": 4,
    "hair": 4,
    "eyes": 4,
    "mouth": 4,
    "layout": 2,
    "lighting": 2,
}

_LOCAL_PARTS = ("background", "face", "hair", "eyes", "mouth")

# ---------------------------------------------------------------------------------------
# Geometry, in normalized image coordinates (image side = 1).  The face centre is
# (cy, cx) = 0.5 + max_shift * shift(layout) with shift(l) = k tanh(l) + (1-k) tanh(l)^3:
# a gentle slope (k * max_shift) at the centre and most of the range at |l| ~ 1..2.
# Every other geometric control is  centre + amp * tanh(_GAIN * f)  -- bounded, and with a
# slope that falls by at most ~3x for |f| < 2.5, so that no factor becomes invisible.
# The Jacobian energies of all factors are balanced to within a few hundred of each
# other (in B of either canonical box), so that the null space of the outside Gram has
# no near-null directions besides the part inside the box.
_GAIN = 0.4
_LAYOUT_K = 0.045
_BG_HORIZON = (0.45, 0.06)  # gradient midpoint (image y)
_BG_SOFT = 0.1  # gradient width
_BG_TILT = 0.15  # horizon slope = amp * tanh(_GAIN * tilt)
_FACE_RY = (0.36, 0.015)
_FACE_RX = (0.30, 0.015)
_EAR = (0.0, 0.295, 0.05, 0.025)  # dy, |dx|, ry centre, ry amp (rx = 0.7 ry)
_HAIR_DY = -0.07
_HAIR_RY = (0.36, 0.01)
_HAIR_RX = (0.35, 0.013)
_HAIR_SHINE = 1.5  # logit change over the hair's height, times tanh(_GAIN * shine)
_FRINGE = (-0.25, 0.025)  # hairline = cy + centre + amp * tanh(_GAIN * depth)
_SHIRT = (0.60, 0.30, 0.40)  # dy, ry, rx (fixed colour; moves with the face)
_FRAME = 0.05  # width of the fixed frame around the picture
_ASPECT = 0.7  # eye and mouth outlines: ellipse (ry = 0.7 rx) cut by a horizontal slab
_EYE_DY = -0.045
_EYE_DX = 0.09
_EYE_A = (0.055, 0.015)  # eye half-width a
_EYE_LIDS = (0.45, 0.25)  # lid half-gap = a * (centre + amp * tanh(_GAIN * open))
_IRIS = 0.45  # iris radius / a
_EYE_LINE = 0.012  # dark outline (lash line) around the eye
_MOUTH_DY = 0.13
_MOUTH_A = (0.08, 0.02)  # mouth half-width ma
_MOUTH_TOP = 0.35  # upper lip edge at mcy - 0.35 ma
_MOUTH_BOTTOM = (0.35, 0.2)  # lower lip edge at mcy + ma * (centre + amp * tanh(_GAIN * open))
_MOUTH_INNER = (0.75, 0.12, 0.12)  # opening: half-width, top below mcy, inset from the lower lip (/ ma)
_MOUTH_LINE = 0.01  # dark outline around the lips

_EYE_A_MAX = _EYE_A[0] + _EYE_A[1] + _EYE_LINE
_EYE_B_MAX = _ASPECT * (_EYE_A[0] + _EYE_A[1]) + _EYE_LINE  # lids never open beyond the ellipse
_MOUTH_A_MAX = _MOUTH_A[0] + _MOUTH_A[1] + _MOUTH_LINE
# extent above / below the mouth centre (the band stays inside the lips' ellipse)
_MOUTH_UP_MAX = (_MOUTH_A[0] + _MOUTH_A[1]) * _MOUTH_TOP + _MOUTH_LINE
_MOUTH_DOWN_MAX = (_MOUTH_A[0] + _MOUTH_A[1]) * sum(_MOUTH_BOTTOM) + _MOUTH_LINE

# ---------------------------------------------------------------------------------------
# Colours: lo + (hi - lo) * sigmoid(logit(base) + mix * factor [+ shading]).  Each colour
# is driven by ONE factor with a luminance component, so it stays visible after a channel
# mean (the default analysis reduction); the uneven per-channel mix shifts the hue.  Bases
# keep the parts apart in luminance (dark hair, mid skin, light sclera, dark lips) so that
# every edge, and with it every geometric factor, stays visible.
_C_LO, _C_HI = 0.03, 0.96


def _logit(p: float) -> float:
    q = (p - _C_LO) / (_C_HI - _C_LO)
    return math.log(q / (1.0 - q))


_PALETTES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "bg_top": ((0.62, 0.74, 0.86), (0.25, 0.22, 0.18)),
    "bg_bottom": ((0.30, 0.36, 0.30), (0.18, 0.18, 0.22)),
    "skin": ((0.80, 0.62, 0.50), (0.14, 0.15, 0.17)),
    "hair": ((0.22, 0.15, 0.10), (0.4, 0.4, 0.45)),
    "iris": ((0.40, 0.50, 0.62), (1.1, 0.9, 0.6)),
    "sclera": ((0.74, 0.72, 0.68), (0.8, 0.8, 0.8)),
    "lips": ((0.58, 0.26, 0.28), (1.0, 0.9, 0.9)),
    "mouth_inner": ((0.62, 0.52, 0.50), (0.8, 0.8, 0.8)),
}
# Fixed colours: elements that only the lighting changes, so that no combination of the
# lighting and the colour factors can cancel outside a box (it would otherwise leave a
# non-eye direction whose only effect is on the eyes).
_SHIRT_RGB = (0.22, 0.26, 0.36)
_EYE_LINE_RGB = (0.10, 0.07, 0.07)
_MOUTH_LINE_RGB = (0.22, 0.07, 0.08)
_FRAME_RGB = (0.84, 0.81, 0.76)

_LIGHT_B = (0.8, 0.06)  # brightness = centre + amp * tanh(_GAIN * l0)
_LIGHT_G = 0.12  # horizontal gradient = amp * tanh(_GAIN * l1)

_EPS = 1e-6  # regularises the distance function at an ellipse's centre


def _t(f: torch.Tensor) -> torch.Tensor:
    return torch.tanh(_GAIN * f)


def _colour(name: str, f: torch.Tensor, shade: torch.Tensor | None = None) -> torch.Tensor:
    """Colour [N, 3, 1, 1] (or [N, 3, R, 1] with a logit shading field) from a factor [N, 1, 1]."""
    base, mix = _PALETTES[name]
    b = f.new_tensor([_logit(c) for c in base]).view(1, 3, 1, 1)
    m = f.new_tensor(list(mix)).view(1, 3, 1, 1)
    logits = b + m * f.unsqueeze(1)
    if shade is not None:
        logits = logits + shade.unsqueeze(1)
    return _C_LO + (_C_HI - _C_LO) * torch.sigmoid(logits)


def _const_colour(rgb: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor(list(rgb)).view(1, 3, 1, 1)


def _ramp(t: torch.Tensor) -> torch.Tensor:
    """Compact C² step: 0 for t <= -1, 1 for t >= 1, quintic smootherstep in between.

    Unlike a sigmoid it is *exactly* 0 and 1 outside [-1, 1], so a shape changes nothing
    beyond one edge half-width of its boundary: a part's Jacobian is exactly zero
    outside its region of influence (the null space of M_B is exact, not approximate).
    """
    s = torch.clamp(0.5 + 0.5 * t, 0.0, 1.0)
    return s * s * s * (s * (6.0 * s - 15.0) + 10.0)


def _ellipse(yy, xx, cy, cx, ry, rx, edge):
    """Soft ellipse alpha ``_ramp(-d / edge)`` with d ≈ signed distance to the boundary.

    d = (ρ − 1)/|∇ρ| with ρ the ellipse "radius" (1 on the boundary): exact on the axes
    and for circles, within 3 % of the true distance near the boundary for aspect ratios
    >= 0.7 (thinner shapes are an ellipse cut by a band, see :func:`_band`); smooth
    everywhere (regularised at the centre).  ``edge`` is the ramp's half-width.
    """
    u = (yy - cy) / ry
    v = (xx - cx) / rx
    r2 = u * u + v * v
    iry2 = 1.0 / (ry * ry)
    irx2 = 1.0 / (rx * rx)
    g2 = (u * u * iry2 + v * v * irx2 + _EPS * 0.5 * (iry2 + irx2)) / (r2 + _EPS)
    d = (torch.sqrt(r2 + _EPS) - 1.0) * torch.rsqrt(g2)
    return _ramp(-d / edge)


def _slab(yy, cy, half, edge):
    """Soft band |y − cy| < half (exact distances)."""
    dy = yy - cy
    return _ramp((half - dy) / edge) * _ramp((half + dy) / edge)


def _band(yy, top, bottom, edge):
    """Soft band top < y < bottom (exact distances)."""
    return _ramp((yy - top) / edge) * _ramp((bottom - yy) / edge)


def _union(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b - a * b


def _over(dst: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Composite ``colour`` [N,3,*,*] with ``alpha`` [N,R,R] over ``dst`` [N,3,R,R]."""
    a = alpha.unsqueeze(1)
    return dst * (1.0 - a) + colour * a


class SyntheticFaces(torch.nn.Module):
    """Procedural face renderer with known per-part latent subspaces (see module doc)."""

    PARTS: tuple[str, ...] = ("background", "face", "hair", "eyes", "mouth", "layout", "lighting")
    LOCAL_PARTS: tuple[str, ...] = _LOCAL_PARTS
    image_range: tuple[float, float] = (-1.0, 1.0)
    basis: torch.Tensor  # registered buffer, typed here (nn.Module.__getattr__ returns Tensor | Module)

    def __init__(
        self,
        latent_dim: int = 64,
        resolution: int = 64,
        seed: int = 0,
        parts: Mapping[str, int] | None = None,
        edge: float = 1.0,
        max_shift: float = 0.12,
        mask_margin: float = 1.5,
        box_margin: float = 2.0,
    ) -> None:
        super().__init__()
        latent_dim, resolution, seed, sizes = validate_params(
            latent_dim=latent_dim, resolution=resolution, seed=seed, parts=parts, edge=edge, max_shift=max_shift,
            mask_margin=mask_margin, box_margin=box_margin)

        self.latent_dim = latent_dim
        self.resolution = resolution
        self.seed = seed
        self.image_shape = (3, resolution, resolution)
        self.edge = float(edge)
        self.max_shift = float(max_shift)
        self.mask_margin = float(mask_margin)
        self.box_margin = float(box_margin)
        self.part_dims = {p: sizes[p] for p in self.PARTS}
        self.part_slices: dict[str, tuple[int, int]] = {}
        start = 0
        for p in self.PARTS:
            self.part_slices[p] = (start, start + sizes[p])
            start += sizes[p]
        self.used_dims = start

        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5F1A7E]))
        q, r = np.linalg.qr(rng.standard_normal((latent_dim, latent_dim)))
        q = q * np.sign(np.diag(r))[None, :]  # unique QR: diag(R) > 0
        self.register_buffer("basis", torch.from_numpy(np.ascontiguousarray(q)).to(torch.float64))
        self.eval()

    # ------------------------------------------------------------------ protocol
    def sample_latents(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """[n, d] float32; row i = ``latent_rng(seed, indices[i]).standard_normal(d)``."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        rows = [latent_rng(seed, i).standard_normal(self.latent_dim) for i in idx]
        arr = np.stack(rows) if rows else np.zeros((0, self.latent_dim))
        return torch.from_numpy(arr.astype(np.float32))

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Images [n, 3, R, R] in (-1, 1), dtype and device of ``x`` [n, d]; anchor ignored."""
        assert_shape(x, (None, self.latent_dim), "x")
        return self._render(x)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "params": {
                "latent_dim": self.latent_dim,
                "resolution": self.resolution,
                "seed": self.seed,
                "parts": dict(self.part_dims),
                "edge": self.edge,
                "max_shift": self.max_shift,
                "mask_margin": self.mask_margin,
                "box_margin": self.box_margin,
            },
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "image_range": list(self.image_range),
            "parts": {
                p: {"dims": self.part_dims[p], "columns": list(self.part_slices[p])} for p in self.PARTS
            },
            "unused_dims": self.latent_dim - self.used_dims,
        }

    # ------------------------------------------------------------------ ground truth
    def ground_truth_subspaces(self) -> dict[str, torch.Tensor]:
        """``{part: [d, k_part]}`` float32 orthonormal columns (blocks of the basis)."""
        out = {}
        for p in self.PARTS:
            s, e = self.part_slices[p]
            out[p] = self.basis[:, s:e].to(torch.float32).clone()
        return out

    def unused_subspace(self) -> torch.Tensor:
        """[d, d − Σk] float32: the latent directions with exactly zero effect."""
        return self.basis[:, self.used_dims:].to(torch.float32).clone()

    def factors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{part: f_part = x Q_part}`` [n, k_part] in x's dtype."""
        f = x @ self.basis.to(dtype=x.dtype, device=x.device)
        return {p: f[:, s:e] for p, (s, e) in self.part_slices.items()}

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """x with its layout coordinates set to 0 (face centred); other factors unchanged."""
        s, e = self.part_slices["layout"]
        ql = self.basis[:, s:e].to(dtype=x.dtype, device=x.device)
        return x - (x @ ql) @ ql.T

    def face_centre(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 2] (y, x) of each face's centre in normalized image coordinates (0.5 = centred)."""
        cy, cx = self._layout(self._controls(x)["layout"])
        return torch.stack([cy.reshape(-1), cx.reshape(-1)], 1)

    def canonical_boxes(self) -> dict[str, tuple[float, float, float, float]]:
        """Loose boxes (y0, x0, y1, x1), normalized, around both eyes and the mouth of a centred face."""
        m = self.box_margin / self.resolution
        ey = 0.5 + _EYE_DY
        my = 0.5 + _MOUTH_DY
        boxes = {
            "eyes": (ey - _EYE_B_MAX - m, 0.5 - _EYE_DX - _EYE_A_MAX - m,
                     ey + _EYE_B_MAX + m, 0.5 + _EYE_DX + _EYE_A_MAX + m),
            "mouth": (my - _MOUTH_UP_MAX - m, 0.5 - _MOUTH_A_MAX - m,
                      my + _MOUTH_DOWN_MAX + m, 0.5 + _MOUTH_A_MAX + m),
        }
        return cast(dict[str, tuple[float, float, float, float]],  # each box keeps its 4 coordinates
                    {k: tuple(float(min(max(c, 0.0), 1.0)) for c in v) for k, v in boxes.items()})

    @torch.no_grad()
    def part_masks(
        self, x: torch.Tensor, grid: tuple[int, int] | int | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-sample regions of influence ``{part: [n, h, w]}`` float32 in [0, 1].

        For each local part (background, face, hair, eyes, mouth): the pixels that the
        part's own factors can change at this sample's layout -- its shape at the largest
        extent over all factor values, grown by ``mask_margin`` pixels, with the render's
        soft edge; area-pooled from the R×R image grid to ``grid`` (default R×R).
        """
        assert_shape(x, (None, self.latent_dim), "x")
        h, w = _grid(grid, self.resolution)
        x = x.detach()
        yy, xx, e = self._grid_coords(x)
        cy, cx = self._layout(self._controls(x)["layout"])
        # A part's factors act exactly within one edge half-width e of its largest
        # extent; a mask is 1 there and ramps to 0 over the next mask_margin pixels.
        soft = 0.5 * max(self.mask_margin, 1e-3) / self.resolution
        grow = e + soft

        def reach(cy_, cx_, ry, rx):  # 1 within e of the ellipse (ry, rx), 0 beyond e + margin
            return _ellipse(yy, xx, cy_, cx_, ry + grow, rx + grow, soft)

        def hidden(cy_, cx_, ry, rx):  # 1 only deeper than e + margin inside the ellipse
            return _ellipse(yy, xx, cy_, cx_, ry - grow, rx - grow, soft)

        ey = cy + _EYE_DY
        eyes = _union(
            reach(ey, cx - _EYE_DX, _EYE_B_MAX, _EYE_A_MAX), reach(ey, cx + _EYE_DX, _EYE_B_MAX, _EYE_A_MAX)
        )
        my = cy + _MOUTH_DY
        mouth = reach(my, cx, _ASPECT * _MOUTH_A_MAX, _MOUTH_A_MAX) * _band(
            yy, my - _MOUTH_UP_MAX - grow, my + _MOUTH_DOWN_MAX + grow, soft
        )
        ear_ry = _EAR[2] + _EAR[3]
        face = _union(
            reach(cy, cx, sum(_FACE_RY), sum(_FACE_RX)),
            _union(*[reach(cy + _EAR[0], cx + sg * _EAR[1], ear_ry, _ASPECT * ear_ry) for sg in (-1.0, 1.0)]),
        )
        hair = reach(cy + _HAIR_DY, cx, sum(_HAIR_RY), sum(_HAIR_RX))
        cover = _union(
            _union(
                hidden(cy, cx, _FACE_RY[0] - _FACE_RY[1], _FACE_RX[0] - _FACE_RX[1]),
                hidden(cy + _HAIR_DY, cx, _HAIR_RY[0] - _HAIR_RY[1], _HAIR_RX[0] - _HAIR_RX[1]),
            ),
            hidden(cy + _SHIRT[0], cx, _SHIRT[1], _SHIRT[2]),
        )
        half = 0.5 - _FRAME + grow  # the frame hides everything deeper than e inside it
        inside = _slab(yy, 0.5, half, soft) * _slab(xx, 0.5, half, soft)
        masks = {"background": 1.0 - cover, "face": face, "hair": hair, "eyes": eyes, "mouth": mouth}
        masks = {k: v * inside for k, v in masks.items()}
        out = {}
        for p in _LOCAL_PARTS:
            mk = masks[p].expand(x.shape[0], self.resolution, self.resolution)
            if (h, w) != (self.resolution, self.resolution):
                mk = F.adaptive_avg_pool2d(mk.unsqueeze(1), (h, w)).squeeze(1)
            out[p] = mk.to(torch.float32).clamp(0.0, 1.0).contiguous()
        return out

    # ------------------------------------------------------------------ rendering
    def _grid_coords(self, x: torch.Tensor):
        r = self.resolution
        c = (torch.arange(r, dtype=x.dtype, device=x.device) + 0.5) / r
        return c.view(1, r, 1), c.view(1, 1, r), self.edge / r

    def _controls(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Per part, its native factor list as [N, 1, 1] tensors (missing ones = 0)."""
        f = x @ self.basis.to(dtype=x.dtype, device=x.device)
        zero = (x[:, :1] * 0.0).unsqueeze(-1)
        out = {}
        for p, (s, e) in self.part_slices.items():
            out[p] = [f[:, s + i, None, None] if s + i < e else zero for i in range(DEFAULT_PART_DIMS[p])]
        return out

    def _layout(self, lay: list[torch.Tensor]):
        s, k = self.max_shift, _LAYOUT_K
        ty, tx = torch.tanh(lay[0]), torch.tanh(lay[1])
        return 0.5 + s * (k * ty + (1.0 - k) * ty ** 3), 0.5 + s * (k * tx + (1.0 - k) * tx ** 3)

    def _render(self, x: torch.Tensor) -> torch.Tensor:
        yy, xx, e = self._grid_coords(x)
        c = self._controls(x)
        cy, cx = self._layout(c["layout"])

        # background: blend top -> bottom across a horizon of variable height and tilt
        # (fixed in the image: it does not move with the face)
        bg = c["background"]
        horizon = _BG_HORIZON[0] + _BG_HORIZON[1] * _t(bg[2])
        tilt = _BG_TILT * _t(bg[3])
        t = torch.sigmoid((yy - horizon - tilt * (xx - 0.5)) / _BG_SOFT).unsqueeze(1)  # [N, 1, R, R]
        img = _colour("bg_top", bg[0]) * (1.0 - t) + _colour("bg_bottom", bg[1]) * t

        # hair (behind the face), with a vertical shine gradient
        hr = c["hair"]
        hcy = cy + _HAIR_DY
        hair_col = _colour("hair", hr[0], _HAIR_SHINE * _t(hr[1]) * (hcy - yy) / _HAIR_RY[0])
        vol = _t(hr[2])
        hair_a = _ellipse(
            yy, xx, hcy, cx, _HAIR_RY[0] + _HAIR_RY[1] * vol, _HAIR_RX[0] + _HAIR_RX[1] * vol, e
        )
        img = _over(img, hair_col, hair_a)

        # shirt: fixed colour, moves with the face
        shirt_a = _ellipse(yy, xx, cy + _SHIRT[0], cx, _SHIRT[1], _SHIRT[2], e)
        img = _over(img, _const_colour(_SHIRT_RGB, x), shirt_a)

        # face: skin tone, ear size, width, height (ears first, behind the face)
        fc = c["face"]
        skin = _colour("skin", fc[0])
        ery = _EAR[2] + _EAR[3] * _t(fc[1])
        ears = _union(
            _ellipse(yy, xx, cy + _EAR[0], cx - _EAR[1], ery, _ASPECT * ery, e),
            _ellipse(yy, xx, cy + _EAR[0], cx + _EAR[1], ery, _ASPECT * ery, e),
        )
        img = _over(img, skin, ears)
        face_ry = _FACE_RY[0] + _FACE_RY[1] * _t(fc[3])
        face_rx = _FACE_RX[0] + _FACE_RX[1] * _t(fc[2])
        face_a = _ellipse(yy, xx, cy, cx, face_ry, face_rx, e)
        img = _over(img, skin, face_a)

        # fringe: the hair again, over the top of the face, above the hairline
        hairline = cy + _FRINGE[0] + _FRINGE[1] * _t(hr[3])
        img = _over(img, hair_col, hair_a * _ramp((hairline - yy) / e))

        # eyes: an ellipse (ry = 0.7 a) cut by the lids (a band), with an iris disc and a
        # dark lash line around it
        ey_ = c["eyes"]
        a = _EYE_A[0] + _EYE_A[1] * _t(ey_[1])
        lids = a * (_EYE_LIDS[0] + _EYE_LIDS[1] * _t(ey_[0]))
        ri = _IRIS * a
        ecy = cy + _EYE_DY
        left, right = cx - _EYE_DX, cx + _EYE_DX
        eb = _ASPECT * a
        eye_a = _union(_ellipse(yy, xx, ecy, left, eb, a, e), _ellipse(yy, xx, ecy, right, eb, a, e))
        iris_a = _union(_ellipse(yy, xx, ecy, left, ri, ri, e), _ellipse(yy, xx, ecy, right, ri, ri, e))
        la, lb = a + _EYE_LINE, _ASPECT * a + _EYE_LINE
        line_a = _union(_ellipse(yy, xx, ecy, left, lb, la, e), _ellipse(yy, xx, ecy, right, lb, la, e))
        img = _over(img, _const_colour(_EYE_LINE_RGB, x), line_a * _slab(yy, ecy, lids + _EYE_LINE, e))
        eye_col = _over(_colour("sclera", ey_[3]).expand_as(img), _colour("iris", ey_[2]), iris_a)
        img = _over(img, eye_col, eye_a * _slab(yy, ecy, lids, e))

        # mouth: lips (ellipse cut by a band) with a dark outline, around an opening
        mo = c["mouth"]
        ma = _MOUTH_A[0] + _MOUTH_A[1] * _t(mo[0])
        mcy = cy + _MOUTH_DY
        top = mcy - _MOUTH_TOP * ma
        bottom = mcy + ma * (_MOUTH_BOTTOM[0] + _MOUTH_BOTTOM[1] * _t(mo[1]))  # the jaw drops
        line_a = _ellipse(yy, xx, mcy, cx, _ASPECT * ma + _MOUTH_LINE, ma + _MOUTH_LINE, e)
        line_a = line_a * _band(yy, top - _MOUTH_LINE, bottom + _MOUTH_LINE, e)
        img = _over(img, _const_colour(_MOUTH_LINE_RGB, x), line_a)
        mouth_a = _ellipse(yy, xx, mcy, cx, _ASPECT * ma, ma, e) * _band(yy, top, bottom, e)
        ia_ = _MOUTH_INNER[0] * ma
        inner_a = _ellipse(yy, xx, mcy, cx, _ASPECT * ia_, ia_, e) * _band(
            yy, mcy - _MOUTH_INNER[1] * ma, bottom - _MOUTH_INNER[2] * ma, e
        )
        mouth_col = _over(_colour("lips", mo[2]).expand_as(img), _colour("mouth_inner", mo[3]), inner_a)
        img = _over(img, mouth_col, mouth_a)

        # frame: fixed colour and place, over everything -- only the lighting changes it
        inside = _slab(yy, 0.5, 0.5 - _FRAME, e) * _slab(xx, 0.5, 0.5 - _FRAME, e)
        img = _over(img, _const_colour(_FRAME_RGB, x), 1.0 - inside)

        # lighting: global brightness and a horizontal gradient
        li = c["lighting"]
        bright = _LIGHT_B[0] + _LIGHT_B[1] * _t(li[0])
        grad = _LIGHT_G * _t(li[1])
        light = (bright * (1.0 + grad * (2.0 * xx - 1.0))).unsqueeze(1)  # [N, 1, 1, R]
        return 2.0 * img * light - 1.0


#: bounds of the synthetic generator's size parameters (a latent of 10⁹ dimensions would
#: allocate its basis before anything else could refuse it)
MAX_LATENT_DIM = 16_384
MAX_RESOLUTION = 1_024


def validate_params(latent_dim: Any = 64, resolution: Any = 64, seed: Any = 0, parts: Any = None, edge: Any = 1.0,
                    max_shift: Any = 0.12, mask_margin: Any = 1.5, box_margin: Any = 2.0,
                    **unknown: Any) -> tuple[int, int, int, dict[str, int]]:
    """Check ``generator.params`` without building anything (``lrgan-dist validate``).

    Returns ``(latent_dim, resolution, seed, part sizes)``; raises :class:`GeneratorError`
    naming the parameter.
    """
    if unknown:
        raise GeneratorError(f"generator.params: unknown parameters {sorted(unknown)} for kind 'synthetic'; "
                             "expected some of ['latent_dim', 'resolution', 'seed', 'parts', 'edge', 'max_shift', "
                             "'mask_margin', 'box_margin']")
    latent_dim = _as_int(latent_dim, "latent_dim")
    resolution = _as_int(resolution, "resolution")
    seed = _as_int(seed, "seed")
    if not 16 <= resolution <= MAX_RESOLUTION:
        raise GeneratorError(
            f"generator.params.resolution: expected an integer in [16, {MAX_RESOLUTION}], received {resolution}"
        )
    sizes = dict(DEFAULT_PART_DIMS)
    if parts is not None:
        if not isinstance(parts, Mapping):
            raise GeneratorError(
                "generator.params.parts: expected a mapping part -> size, "
                f"received {type(parts).__name__}"
            )
        for name, k in parts.items():
            if name not in DEFAULT_PART_DIMS:
                raise GeneratorError(
                    f"generator.params.parts: unknown part {name!r}; "
                    f"expected some of {list(SyntheticFaces.PARTS)}"
                )
            k = _as_int(k, f"parts.{name}")
            if not 0 <= k <= DEFAULT_PART_DIMS[name]:
                raise GeneratorError(
                    f"generator.params.parts.{name}: expected 0..{DEFAULT_PART_DIMS[name]} "
                    f"(the part's factor count), received {k}"
                )
            sizes[name] = k
    total = sum(sizes.values())
    if not total <= latent_dim <= MAX_LATENT_DIM:
        raise GeneratorError(
            f"generator.params.latent_dim: expected an integer in [{total}, {MAX_LATENT_DIM}] (at least the sum of "
            f"part sizes {sizes}), received {latent_dim}"
        )
    for name, val, lo in (("edge", edge, 0.0), ("max_shift", max_shift, 0.0),
                          ("mask_margin", mask_margin, 0.0), ("box_margin", box_margin, 0.0)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < lo:
            raise GeneratorError(
                f"generator.params.{name}: expected a number >= {lo}, received {val!r}"
            )
    if edge <= 0:
        raise GeneratorError(f"generator.params.edge: expected a number > 0, received {edge!r}")
    if max_shift > 0.15:
        raise GeneratorError(
            "generator.params.max_shift: expected <= 0.15 (the face must stay inside the image), "
            f"received {max_shift}"
        )

    return latent_dim, resolution, seed, sizes


def _as_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise GeneratorError(f"generator.params.{name}: expected an integer, received {v!r}")
    return int(v)


def _grid(grid: tuple[int, int] | int | None, r: int) -> tuple[int, int]:
    if grid is None:
        return r, r
    if isinstance(grid, (int, np.integer)):
        return int(grid), int(grid)
    h, w = (int(g) for g in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid: expected positive (h, w), received {grid}")
    return h, w


@register("synthetic", check=validate_params, mask_parts=lambda params: _LOCAL_PARTS)
def make_synthetic(
    latent_dim: int = 64,
    resolution: int = 64,
    seed: int = 0,
    parts: Mapping[str, int] | None = None,
    edge: float = 1.0,
    max_shift: float = 0.12,
    mask_margin: float = 1.5,
    box_margin: float = 2.0,
) -> SyntheticFaces:
    """Factory for ``generator.kind: synthetic`` (parameters documented on the module)."""
    return SyntheticFaces(
        latent_dim=latent_dim,
        resolution=resolution,
        seed=seed,
        parts=parts,
        edge=edge,
        max_shift=max_shift,
        mask_margin=mask_margin,
        box_margin=box_margin,
    )
