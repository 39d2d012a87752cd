"""Region definitions -> masks on the analysis grid (README "Concepts").

LowRankGAN (Zhu et al., NeurIPS 2021, §3.1) splits the image into a region of
interest R and the rest B = 1 - R; the Gram matrices of J restricted to R and to B
drive the direction search.  A region is given as

* ``box``    -- ``(y0, x0, y1, x1)`` in ``normalized`` image coordinates ([0, 1]) or
  in image ``pixels`` of the generator output (pixel p spans [p, p+1), so
  ``(0, 0, H, W)`` is the whole image).  Rasterised with *exact fractional area
  coverage*: each grid cell holds the fraction of its area inside the box, so the
  mask's sum equals the box area in cells (after clipping to the image);
* ``mask``   -- a ``.npy`` ([h, w], [H, W], per-sample [N, h, w] / [N, H, W]) or
  ``.png`` file, resized to the grid by area averaging; ``labels`` turns a
  segmentation label map into a mask (inside = label in labels);
* ``preset`` -- a named box, e.g. ``ffhq:eyes`` (:data:`FFHQ_PRESETS`);
* ``part``   -- a ground-truth part of a generator that exposes
  ``part_masks(x, grid)`` (the synthetic generator), per sample; see
  :func:`part_masks`;
* ``landmarks`` -- a face landmark set (``eyes``, ``left_eye``, ``right_eye``, ``brows``,
  ``mouth``, ``nose``, ``face``; :data:`lrgan_dist.landmarks.LANDMARK_SETS`) detected per
  sample on the sample's own rendered image by MediaPipe Face Mesh in the jacobians stage
  (docs/spec.md), rasterised on the analysis grid as the union of the set's convex hulls,
  optionally grown by ``dilate`` *analysis-grid* pixels (Minkowski sum with a disc).  A
  sample without a detected face gets an empty mask, ``found = 0`` and a reason; its
  Grams for that region stay NaN and it is left out of that region's factorization and
  scores (the sample stays done for the other regions).  Needs the optional extra
  ``faces`` (:data:`lrgan_dist.landmarks.FACES_INSTALL`).

Masks are float32 in [0, 1]: shared ``[h, w]`` or per-sample ``[N, h, w]``.  Values
strictly between 0 and 1 are allowed: a *soft* mask weighs cell p by R_p in M_R and by
1 - R_p in M_B (:mod:`lrgan_dist.core.jacobian`), e.g. a feathered edge or a grey-level PNG.
Refused (:class:`RegionError`, exit code 2): a shape other than grid / image size (or
per-sample of those), values outside [0, 1] or NaN/Inf, an empty mask and one that
covers the whole image (the rest B = 1 - R needs area).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "FFHQ_PRESETS",
    "LANDMARK_SET_NAMES",
    "PRESETS",
    "REGION_KINDS",
    "RegionSpec",
    "RegionError",
    "box_mask",
    "part_masks",
    "preset_box",
    "region_mask",
    "resize_mask",
    "validate_mask",
]

REGION_KINDS = ("box", "mask", "preset", "part", "landmarks")
#: largest mask image accepted (64 Mpixel): masks are resized to the analysis grid anyway
MAX_MASK_PIXELS = 1 << 26
#: landmark set names (lrgan_dist.landmarks.LANDMARK_SETS), kept here so the spec validates without torch
LANDMARK_SET_NAMES = ("brows", "eyes", "face", "left_eye", "mouth", "nose", "right_eye")
_UNITS = ("normalized", "pixels")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Boxes of the paper's repository (github.com/zhujiapeng/LowRankGAN, examples for
# FFHQ StyleGAN2, coordinates on the 256×256 image): [row centre, col centre,
# height, width]; the reference rasterises rows ``rc - h//2 : rc - h//2 + h`` and
# likewise for columns, which preset_box reproduces.
FFHQ_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "eyes": (120, 128, 20, 115),
    "left_eye": (120, 95, 20, 38),
    "right_eye": (120, 159, 20, 38),
    "nose": (142, 131, 40, 46),
    "mouth": (184, 127, 30, 70),
    "chin": (217, 130, 42, 110),
}
# dataset -> (canvas size the coordinates refer to, boxes)
PRESETS: dict[str, tuple[int, dict[str, tuple[int, int, int, int]]]] = {
    "ffhq": (256, FFHQ_PRESETS),
}


class RegionError(ValueError):
    """A bad region definition or mask (maps to CLI exit code 2).

    ``field`` is the region's field at fault ("" for the region as a whole), ``None``
    for problems found while rasterising (a mask file's content).
    """

    def __init__(self, name: str | None, message: str, field: str | None = None) -> None:
        self.region = name
        self.field = field
        self.message = message
        super().__init__(f"region {name!r}: {message}" if name else f"region: {message}")

    def __reduce__(self) -> Any:  # picklable, so an error raised in a Ray worker reaches the CLI intact
        return (type(self), (self.region, self.message, self.field))


def _available_presets() -> list[str]:
    return [f"{ds}:{part}" for ds, (_, boxes) in PRESETS.items() for part in boxes]


@dataclass(frozen=True)
class RegionSpec:
    """One region of a job spec — the project's single region type (spec, stages and
    rasteriser all use it); validated on construction.

    Exactly one of ``box``, ``mask``, ``preset``, ``part``, ``landmarks`` names the region's
    *kind*; ``dilate`` (analysis-grid pixels, >= 0) goes with ``landmarks`` only.
    ``mask`` is a file path, relative to the job spec's folder until the spec resolves
    it (:meth:`lrgan_dist.spec.JobSpec.region` returns regions with absolute paths);
    ``truth`` names a ground-truth part to score directions against (synthetic).
    Errors are :class:`RegionError` with ``field`` set, so the spec can name
    ``regions.<name>.<field>``.
    """

    name: str
    box: tuple[float, float, float, float] | None = None  # (y0, x0, y1, x1)
    units: Literal["normalized", "pixels"] = "normalized"
    mask: str | None = None  # .npy / .png path
    preset: str | None = None  # e.g. "ffhq:eyes"
    part: str | None = None  # generator ground-truth part (per-sample masks)
    labels: tuple[int, ...] | None = None  # label map → inside = label in labels
    truth: str | None = None  # ground-truth part to score directions against (synthetic)
    landmarks: str | None = None  # face landmark set, detected per sample (lrgan_dist.landmarks)
    dilate: float | None = None  # landmarks only: grow the hull by this many analysis-grid pixels (None = 0)

    @property
    def kind(self) -> str:
        for k in REGION_KINDS:
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated RegionSpec without a kind")  # pragma: no cover

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise RegionError(None, f"received region name {name!r}; expected letters, digits, '_', '.', '-' "
                                    "(a store group name, no '/')", field="")
        kinds = [k for k in REGION_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise RegionError(name, f"received {kinds or 'none'}; expected exactly one of "
                                    f"{', '.join(REGION_KINDS)}", field="")
        if self.units not in _UNITS:
            raise RegionError(name, f"received {self.units!r}; expected one of {list(_UNITS)}", field="units")
        if self.labels is not None and self.mask is None:
            raise RegionError(name, "labels applies to a mask file only; expected mask: FILE with labels",
                              field="labels")
        if self.dilate is not None:
            if self.landmarks is None:
                raise RegionError(name, "dilate applies to landmark regions only; expected landmarks: SET with dilate",
                                  field="dilate")
            d = self.dilate
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0:
                raise RegionError(name, f"received {d!r}; expected a number of analysis-grid pixels >= 0",
                                  field="dilate")
            object.__setattr__(self, "dilate", float(d))
        if self.box is not None:
            box = _check_box(name, self.box)
            if self.units == "normalized" and not all(-1e-9 <= v <= 1 + 1e-9 for v in box):
                raise RegionError(name, f"received {list(box)}; expected normalized coordinates in [0, 1] "
                                        "(or units: pixels)", field="box")
            object.__setattr__(self, "box", box)
        elif self.mask is not None:
            if Path(self.mask).suffix.lower() not in (".npy", ".png"):
                raise RegionError(name, f"received {self.mask!r}; expected a .npy or .png file", field="mask")
            if self.labels is not None:
                try:
                    labels = tuple(int(v) for v in self.labels)
                    ok = len(labels) > 0 and all(int(v) == v for v in self.labels)
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    raise RegionError(name, f"received {self.labels!r}; expected a non-empty list of integers",
                                      field="labels")
                object.__setattr__(self, "labels", labels)
        elif self.preset is not None:
            names = _available_presets()
            if self.preset not in names:
                raise RegionError(name, f"unknown preset {self.preset!r}{_suggest(self.preset, names)}; "
                                        f"expected one of {names}", field="preset")
        elif self.landmarks is not None:
            if self.landmarks not in LANDMARK_SET_NAMES:
                raise RegionError(name, f"unknown landmark set {self.landmarks!r}"
                                        f"{_suggest(str(self.landmarks), list(LANDMARK_SET_NAMES))}; "
                                        f"expected one of {list(LANDMARK_SET_NAMES)}", field="landmarks")
        elif not isinstance(self.part, str) or not self.part:
            raise RegionError(name, f"received {self.part!r}; expected a part name", field="part")


def _suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_box(name: str | None, box: Any) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise RegionError(name, f"received {box!r}; expected four finite numbers [y0, x0, y1, x1]", field="box")
    y0, x0, y1, x1 = vals
    if not (y1 > y0 and x1 > x0):
        raise RegionError(name, f"received {list(box)}; expected [y0, x0, y1, x1] with y1 > y0 and x1 > x0",
                          field="box")
    return vals  # type: ignore[return-value]


# ----------------------------------------------------------------------------- rasterising


def _coverage(a0: float, a1: float, n: int) -> np.ndarray:
    """[n] fraction of each unit cell [j, j+1) inside [a0, a1]."""
    j = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(j + 1, a1) - np.maximum(j, a0), 0.0, 1.0)


def box_mask(
    box: tuple[float, float, float, float],
    grid: tuple[int, int],
    image_hw: tuple[int, int],
    units: str = "normalized",
    name: str | None = None,
) -> np.ndarray:
    """[h, w] float32 mask of a box with exact fractional area coverage per cell.

    ``box = (y0, x0, y1, x1)``; the part outside the image is clipped off, a box
    that does not intersect the image is an error.
    """
    y0, x0, y1, x1 = _check_box(name, box)
    h, w = (int(v) for v in grid)
    H, W = (int(v) for v in image_hw)
    sy: float
    sx: float
    if units == "normalized":
        sy, sx = h, w
    elif units == "pixels":
        sy, sx = h / H, w / W
    else:
        raise RegionError(name, f"units: expected one of {list(_UNITS)}, received {units!r}")
    gy0, gy1 = np.clip([y0 * sy, y1 * sy], 0, h)
    gx0, gx1 = np.clip([x0 * sx, x1 * sx], 0, w)
    if not (gy1 > gy0 and gx1 > gx0):
        extent = "[0, 1]" if units == "normalized" else f"[0, {H}] x [0, {W}] pixels"
        raise RegionError(
            name, f"box {tuple(box)} ({units}) lies outside the image; expected it to overlap {extent}"
        )
    m = np.outer(_coverage(gy0, gy1, h), _coverage(gx0, gx1, w)).astype(np.float32)
    if not m.sum() > 0:
        raise RegionError(name, f"box {tuple(box)} ({units}) covers no area of the {h}x{w} grid")
    return m


def preset_box(preset: str) -> tuple[float, float, float, float]:
    """Normalized ``(y0, x0, y1, x1)`` of a preset such as ``"ffhq:eyes"``."""
    ds, _, part = str(preset).partition(":")
    if ds not in PRESETS or part not in PRESETS[ds][1]:
        raise RegionError(None, f"preset: expected one of {_available_presets()}, received {preset!r}")
    size, boxes = PRESETS[ds]
    rc, cc, bh, bw = boxes[part]
    r0, c0 = rc - bh // 2, cc - bw // 2  # as the reference's get_mask_by_coordinates
    return (r0 / size, c0 / size, (r0 + bh) / size, (c0 + bw) / size)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] area-averaging weights (rows sum to 1)."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    p = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], p + 1) - np.maximum(edges[:-1, None], p), 0, None)
    return overlap / (n_in / n_out)


def resize_mask(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Area-average [..., a, b] to [..., h, w] (exact fractional area)."""
    h, w = grid
    a, b = mask.shape[-2:]
    if (a, b) == (h, w):
        return mask.astype(np.float32)
    wh, ww = _area_weights(a, h), _area_weights(b, w)
    out = np.einsum("ia,...ab,jb->...ij", wh, mask.astype(np.float64), ww)
    return out.astype(np.float32)


def validate_mask(
    mask: Any, grid: tuple[int, int], name: str | None, *, allow_empty_samples: bool = False
) -> np.ndarray:
    """Check a mask on the grid; return it as float32 [h, w] or [N, h, w].

    Values must be finite and in [0, 1]; the region must not be empty and must not
    cover the whole image (B = 1 - R needs area: there is a rest to protect).  For
    per-sample masks ``allow_empty_samples`` lets single samples be empty or full
    (e.g. a part hidden in that sample); the engine then flags those samples.
    """
    h, w = (int(v) for v in grid)
    m = np.asarray(mask)
    if m.ndim not in (2, 3) or tuple(m.shape[-2:]) != (h, w) or (m.ndim == 3 and m.shape[0] < 1):
        raise RegionError(name, f"mask shape: expected [{h}, {w}] or [N, {h}, {w}], received {list(m.shape)}")
    if m.dtype == bool:
        m = m.astype(np.float32)
    if not np.issubdtype(m.dtype, np.number):
        raise RegionError(name, f"mask dtype: expected numbers, received {m.dtype}")
    m = m.astype(np.float32)
    if not np.isfinite(m).all():
        raise RegionError(name, "mask values: expected finite numbers, received NaN/Inf")
    lo, hi = float(m.min()), float(m.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise RegionError(name, f"mask values: expected [0, 1], received range [{lo:g}, {hi:g}]")
    m = np.clip(m, 0.0, 1.0)
    cells = h * w
    tol = 1e-6 * cells
    sums = m.reshape(-1, cells).sum(axis=1, dtype=np.float64)
    samples = m.ndim == 3
    for i, s in enumerate(sums):
        where = f" (sample {i})" if samples else ""
        if samples and allow_empty_samples:
            continue
        if s <= tol:
            raise RegionError(name, f"mask is empty{where}; expected a region with positive area")
        if cells - s <= tol:
            raise RegionError(
                name, f"mask covers the whole image{where}; expected a rest (1 - mask) with positive area"
            )
    if samples and allow_empty_samples and (np.all(sums <= tol) or np.all(cells - sums <= tol)):
        raise RegionError(name, "mask is empty or covers the whole image in every sample")
    return m


# ----------------------------------------------------------------------------- files


def _load_png(path: Path, name: str, labels: tuple[int, ...] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_MASK_PIXELS:  # checked before decoding: a small PNG can inflate to gigabytes
                raise RegionError(name, f"{path}: a {w}x{h} image ({w * h} pixels); expected a mask of at most "
                                        f"{MAX_MASK_PIXELS} pixels")
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RegionError(name, f"{path}: cannot read as a PNG image ({type(exc).__name__}: {exc}); "
                                "expected a valid .png mask") from None
    if mode == "1":
        values = arr.astype(np.float64)
        return np.isin(values, labels).astype(np.float64) if labels else values
    if mode in ("L", "LA", "P", "PA", "I", "I;16", "I;16B", "I;16L", "F"):
        if arr.ndim == 3:  # LA / PA: drop alpha
            arr = arr[..., 0]
        if labels:
            return np.isin(arr, labels).astype(np.float64)
        if mode in ("P", "PA"):  # palette indices: non-zero = inside
            return (arr != 0).astype(np.float64)
        scale = 255.0 if mode in ("L", "LA") else (65535.0 if mode.startswith("I") else 1.0)
        return arr.astype(np.float64) / scale
    if mode in ("RGB", "RGBA"):
        rgb = arr[..., :3].astype(np.float64)
        grey = bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))
        if labels:
            if not grey:
                raise RegionError(
                    name, f"labels need a single-channel label map, received a colour {mode} image {path}"
                )
            return np.isin(rgb[..., 0], labels).astype(np.float64)
        if grey:  # grey levels -> soft mask
            return rgb[..., 0] / 255.0
        return (rgb.max(axis=-1) > 0).astype(np.float64)  # colour: non-zero = inside
    raise RegionError(name, f"png mode {mode!r} of {path} is not supported; expected grey, palette or RGB")


def _load_mask_file(cfg: RegionSpec) -> np.ndarray:
    path = Path(str(cfg.mask)).expanduser()
    if path.exists() and not path.is_file():
        raise RegionError(cfg.name, f"mask {str(path)!r} is not a regular file (a FIFO or device?); expected a "
                                    ".npy or .png file")
    if not path.is_file():
        raise RegionError(cfg.name, f"mask file not found: {str(path)!r}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise RegionError(cfg.name, f"cannot read {str(path)!r} as a .npy array: {exc}") from None
        if cfg.labels:
            return np.isin(arr, cfg.labels).astype(np.float64)
        if arr.dtype == bool:
            return arr.astype(np.float64)
        if not np.issubdtype(arr.dtype, np.number):
            raise RegionError(cfg.name, f"{path}: expected a numeric array, received dtype {arr.dtype}")
        return arr.astype(np.float64)
    return _load_png(path, cfg.name, cfg.labels)


def region_mask(
    cfg: RegionSpec,
    grid: tuple[int, int],
    image_hw: tuple[int, int],
    n_samples: int | None = None,
) -> np.ndarray:
    """The mask of a region on the analysis grid: [h, w] or per-sample [N, h, w].

    Per-sample mask files must have at least ``n_samples`` entries (row i is sample
    i; extra rows are dropped).  Kind ``part`` needs the generator: use
    :func:`part_masks`.
    """
    h, w = (int(v) for v in grid)
    H, W = (int(v) for v in image_hw)
    if cfg.kind == "box":
        m = box_mask(cfg.box, (h, w), (H, W), cfg.units, name=cfg.name)  # type: ignore[arg-type]
    elif cfg.kind == "preset":
        m = box_mask(preset_box(str(cfg.preset)), (h, w), (H, W), "normalized", name=cfg.name)
    elif cfg.kind == "mask":
        arr = _load_mask_file(cfg)
        shapes = {(h, w), (H, W)}
        want = " or ".join(f"[{a}, {b}]" for a, b in sorted(shapes))
        if arr.ndim not in (2, 3) or tuple(arr.shape[-2:]) not in shapes:
            raise RegionError(
                cfg.name,
                f"{cfg.mask}: expected a mask {want} (grid or image size) or per-sample "
                f"[N, ...] of those, received shape {list(arr.shape)}",
            )
        if not np.isfinite(arr).all():
            raise RegionError(cfg.name, f"{cfg.mask}: expected finite values in [0, 1], received NaN/Inf values")
        if arr.min() < 0 or arr.max() > 1:
            hint = "" if cfg.labels else " (for a segmentation label map set labels)"
            raise RegionError(
                cfg.name,
                f"{cfg.mask}: expected values in [0, 1]{hint}, received range "
                f"[{np.nanmin(arr):g}, {np.nanmax(arr):g}]",
            )
        if arr.ndim == 3 and n_samples is not None:
            if arr.shape[0] < n_samples:
                raise RegionError(
                    cfg.name, f"{cfg.mask}: expected per-sample masks for {n_samples} samples, "
                    f"received {arr.shape[0]}",
                )
            arr = arr[:n_samples]
        m = resize_mask(arr, (h, w))
    elif cfg.kind == "landmarks":
        raise RegionError(
            cfg.name, "kind 'landmarks' is detected per sample on rendered images: use lrgan_dist.landmarks.landmark_masks"
        )
    elif cfg.kind == "part":
        raise RegionError(
            cfg.name, "kind 'part' needs the generator: use regions.part_masks(cfg, generator, x, grid)"
        )
    else:  # pragma: no cover - RegionSpec validates kind
        raise RegionError(cfg.name, f"kind: expected one of {list(REGION_KINDS)}, received {cfg.kind!r}")
    return validate_mask(m, (h, w), cfg.name)


def part_masks(cfg: RegionSpec, generator: Any, x: Any, grid: tuple[int, int]) -> np.ndarray:
    """Per-sample ground-truth part masks [n, h, w] from ``generator.part_masks``.

    Single samples where the part is empty or covers the image are allowed (the
    engine flags them non-finite and the sample fails); all-empty is an error.
    """
    if cfg.kind != "part":
        raise RegionError(cfg.name, f"part_masks needs kind 'part', received {cfg.kind!r}")
    fn = getattr(generator, "part_masks", None)
    if not callable(fn):
        raise RegionError(
            cfg.name, f"kind 'part' needs a generator with part_masks(x, grid); "
            f"{type(generator).__name__} has none",
        )
    masks = fn(x, tuple(grid))
    if cfg.part not in masks:
        raise RegionError(cfg.name, f"part: expected one of {sorted(masks)}, received {cfg.part!r}")
    m = masks[cfg.part]
    m = m.detach().cpu().numpy() if hasattr(m, "detach") else np.asarray(m)
    n = len(x)
    if m.ndim != 3 or m.shape[0] != n:
        raise RegionError(cfg.name, f"part mask: expected [{n}, {grid[0]}, {grid[1]}], received {list(m.shape)}")
    return validate_mask(m, grid, cfg.name, allow_empty_samples=True)
