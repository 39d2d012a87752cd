"""Region definitions and masks: boxes, presets, files, validation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lrgan_dist.regions import (
    FFHQ_PRESETS,
    RegionError,
    RegionSpec,
    box_mask,
    part_masks,
    preset_box,
    region_mask,
    resize_mask,
    validate_mask,
)

coord = st.floats(min_value=-0.3, max_value=1.3, allow_nan=False)
side = st.integers(min_value=1, max_value=40)


def clipped_area(box, h, w):
    y0, x0, y1, x1 = box
    dy = max(0.0, min(y1, 1.0) - max(y0, 0.0))
    dx = max(0.0, min(x1, 1.0) - max(x0, 0.0))
    return dy * h * dx * w


# ----------------------------------------------------------------------------- boxes


@settings(max_examples=200, deadline=None)
@given(coord, coord, coord, coord, side, side)
def test_box_area_matches_box_area(a, b, c, d, h, w):
    box = (min(a, c), min(b, d), max(a, c), max(b, d))
    area = clipped_area(box, h, w)
    try:
        m = box_mask(box, (h, w), (64, 64))
    except RegionError as exc:  # only boxes (numerically) outside the image or empty
        assert area < 1e-6, exc
        return
    assert m.shape == (h, w) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    # the contract: within one cell row/column of the box area ...
    y0, x0, y1, x1 = np.clip(box, 0, 1)
    assert abs(m.sum() - area) <= max((x1 - x0) * w, (y1 - y0) * h) + 1e-4
    # ... and exact fractional coverage makes it equal up to rounding
    assert m.sum() == pytest.approx(area, rel=1e-5, abs=1e-4)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_pixel_aligned_box_is_binary_slice(data):
    h = data.draw(st.integers(2, 32))
    w = data.draw(st.integers(2, 32))
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    ref = np.zeros((h, w), np.float32)
    ref[y0:y1, x0:x1] = 1
    # image twice the grid, box in image pixels
    m = box_mask((2 * y0, 2 * x0, 2 * y1, 2 * x1), (h, w), (2 * h, 2 * w), units="pixels")
    np.testing.assert_array_equal(m, ref)
    n = box_mask((y0 / h, x0 / w, y1 / h, x1 / w), (h, w), (7, 7))
    np.testing.assert_allclose(n, ref, atol=1e-6)


def test_box_fractional_coverage():
    m = box_mask((0.125, 0.25, 0.5, 0.625), (4, 4), (64, 64))
    # rows: 0.5 of row 0, full row 1; cols: full col 1, half col 2
    expected = np.outer([0.5, 1, 0, 0], [0, 1, 0.5, 0])
    np.testing.assert_allclose(m, expected)


def test_box_pixels_equals_normalized():
    a = box_mask((10, 20, 50, 90), (32, 32), (128, 256), units="pixels")
    b = box_mask((10 / 128, 20 / 256, 50 / 128, 90 / 256), (32, 32), (128, 256))
    np.testing.assert_allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------- presets


def reference_mask(size, coordinate):
    """LowRankGAN's get_mask_by_coordinates (rows first)."""
    mask = np.zeros([size, size], dtype=np.float32)
    cx, cy, crop_x, crop_y = coordinate
    xx, yy = cx - crop_x // 2, cy - crop_y // 2
    mask[xx : xx + crop_x, yy : yy + crop_y] = 1.0
    return mask


@pytest.mark.parametrize("part", sorted(FFHQ_PRESETS))
def test_ffhq_presets_match_reference_and_scale(part):
    cfg = RegionSpec(name=part, preset=f"ffhq:{part}")
    ref = reference_mask(256, FFHQ_PRESETS[part])
    np.testing.assert_array_equal(region_mask(cfg, (256, 256), (1024, 1024)), ref)
    # any grid: same normalized box, area scales with the grid
    m64 = region_mask(cfg, (64, 64), (1024, 1024))
    np.testing.assert_allclose(m64, ref.reshape(64, 4, 64, 4).mean(axis=(1, 3)), atol=1e-6)
    m50 = region_mask(cfg, (50, 50), (64, 64))
    assert m50.sum() == pytest.approx(ref.sum() * (50 / 256) ** 2, rel=1e-5)


def test_preset_values():
    assert FFHQ_PRESETS["eyes"] == (120, 128, 20, 115)
    assert FFHQ_PRESETS["chin"] == (217, 130, 42, 110)
    y0, x0, y1, x1 = preset_box("ffhq:eyes")
    assert (y0 * 256, x0 * 256, y1 * 256, x1 * 256) == (110, 71, 130, 186)


# ----------------------------------------------------------------------------- files


def test_npy_masks(tmp_path):
    grid, image = (8, 8), (32, 32)
    m = np.zeros(grid, np.float32)
    m[2:5, 1:6] = 0.5
    np.save(tmp_path / "grid.npy", m)
    out = region_mask(RegionSpec("a", mask=str(tmp_path / "grid.npy")), grid, image)
    np.testing.assert_array_equal(out, m)

    big = np.zeros(image, bool)
    big[3:17, 5:30] = True
    np.save(tmp_path / "image.npy", big)
    out = region_mask(RegionSpec("b", mask=str(tmp_path / "image.npy")), grid, image)
    np.testing.assert_allclose(out, big.reshape(8, 4, 8, 4).mean(axis=(1, 3)), atol=1e-6)

    per = np.zeros((3, *grid), np.float32)
    for i in range(3):
        per[i, i : i + 2, 2:4] = 1
    np.save(tmp_path / "per.npy", per)
    cfg = RegionSpec("c", mask=str(tmp_path / "per.npy"))
    np.testing.assert_array_equal(region_mask(cfg, grid, image), per)
    np.testing.assert_array_equal(region_mask(cfg, grid, image, n_samples=2), per[:2])
    with pytest.raises(RegionError, match="expected per-sample masks for 5 samples, received 3"):
        region_mask(cfg, grid, image, n_samples=5)


def test_npy_label_map(tmp_path):
    seg = np.zeros((16, 16), np.int64)
    seg[2:6, 2:6] = 4
    seg[8:10, 8:12] = 7
    seg[12:, :] = 1
    np.save(tmp_path / "seg.npy", seg)
    cfg = RegionSpec("eyes", mask=str(tmp_path / "seg.npy"), labels=(4, 7))
    out = region_mask(cfg, (16, 16), (16, 16))
    np.testing.assert_array_equal(out, np.isin(seg, [4, 7]).astype(np.float32))
    with pytest.raises(RegionError, match=r"set labels"):
        region_mask(RegionSpec("eyes", mask=str(tmp_path / "seg.npy")), (16, 16), (16, 16))


def test_png_masks(tmp_path):
    grey = np.zeros((16, 16), np.uint8)
    grey[4:8, 4:12] = 255
    grey[10:12, 2:6] = 51  # soft: 0.2
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    out = region_mask(RegionSpec("g", mask=str(tmp_path / "grey.png")), (16, 16), (16, 16))
    np.testing.assert_allclose(out, grey / 255.0, atol=1e-6)
    out8 = region_mask(RegionSpec("g", mask=str(tmp_path / "grey.png")), (8, 8), (16, 16))
    np.testing.assert_allclose(out8, (grey / 255.0).reshape(8, 2, 8, 2).mean(axis=(1, 3)), atol=1e-6)

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[1:5, 1:5] = (200, 0, 10)  # coloured: non-zero = inside
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    out = region_mask(RegionSpec("c", mask=str(tmp_path / "rgb.png")), (16, 16), (16, 16))
    ref = np.zeros((16, 16), np.float32)
    ref[1:5, 1:5] = 1
    np.testing.assert_array_equal(out, ref)

    rgb_grey = np.repeat(grey[..., None], 3, axis=-1)  # grey saved as RGB: still soft
    Image.fromarray(rgb_grey, "RGB").save(tmp_path / "rgbgrey.png")
    out = region_mask(RegionSpec("c", mask=str(tmp_path / "rgbgrey.png")), (16, 16), (16, 16))
    np.testing.assert_allclose(out, grey / 255.0, atol=1e-6)

    seg = np.zeros((16, 16), np.uint8)
    seg[3:9, 3:9] = 5
    Image.fromarray(seg, "L").save(tmp_path / "seg.png")
    cfg = RegionSpec("s", mask=str(tmp_path / "seg.png"), labels=(5,))
    np.testing.assert_array_equal(region_mask(cfg, (16, 16), (16, 16)), (seg == 5).astype(np.float32))
    with pytest.raises(RegionError, match="single-channel label map"):
        region_mask(RegionSpec("s", mask=str(tmp_path / "rgb.png"), labels=(5,)), (16, 16), (16, 16))


def test_resize_mask_area_preserving():
    m = np.random.default_rng(0).random((2, 30, 20))
    r = resize_mask(m, (7, 9))
    assert r.shape == (2, 7, 9)
    np.testing.assert_allclose(r.mean(axis=(1, 2)), m.mean(axis=(1, 2)), rtol=1e-6)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "box,match",
    [
        ((1.1, 0.2, 1.5, 0.4), "normalized coordinates in \\[0, 1\\]"),
        ((70.4, 12.8, 96.0, 25.6), "outside the image"),  # pixels
        ((-32.0, -32.0, -6.4, 32.0), "outside the image"),  # pixels
        ((0.5, 0.2, 0.5, 0.4), "y1 > y0"),
        ((0.6, 0.2, 0.5, 0.4), "y1 > y0"),
        ((0.0, 0.0, 1.0, 1.0), "whole image"),
        ((-6.4, -6.4, 76.8, 70.4), "whole image"),  # pixels
        ((0.0, 0.1, float("nan"), 0.3), "four finite numbers"),
        ((0.0, 0.1, 0.3), "four finite numbers"),
    ],
)
def test_bad_boxes(box, match):
    with pytest.raises(RegionError, match=match) as info:
        units = "pixels" if any(abs(v) > 2 for v in box if v == v) else "normalized"
        cfg = RegionSpec(name="eyes", box=box, units=units)
        region_mask(cfg, (8, 8), (64, 64))
    assert "'eyes'" in str(info.value) and isinstance(info.value, ValueError)


def test_bad_mask_files(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((5, 5), np.float32))
    with pytest.raises(RegionError, match=r"expected a mask \[8, 8\] or \[32, 32\].*received shape \[5, 5\]"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "shape.npy")), (8, 8), (32, 32))
    np.save(tmp_path / "range.npy", np.full((8, 8), 1.5, np.float32))
    with pytest.raises(RegionError, match=r"expected values in \[0, 1\].*received range \[1.5, 1.5\]"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "range.npy")), (8, 8), (32, 32))
    np.save(tmp_path / "empty.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(RegionError, match="empty"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "empty.npy")), (8, 8), (32, 32))
    np.save(tmp_path / "full.npy", np.ones((8, 8), np.float32))
    with pytest.raises(RegionError, match="whole image"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "full.npy")), (8, 8), (32, 32))
    with pytest.raises(RegionError, match="not found"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "missing.npy")), (8, 8), (32, 32))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(RegionError, match="cannot read"):
        region_mask(RegionSpec("m", mask=str(tmp_path / "junk.npy")), (8, 8), (32, 32))


def test_validate_mask():
    grid = (4, 4)
    good = np.zeros(grid)
    good[1, 1] = 0.5
    assert validate_mask(good, grid, "r").dtype == np.float32
    with pytest.raises(RegionError, match=r"expected \[4, 4\] or \[N, 4, 4\], received \[4, 5\]"):
        validate_mask(np.zeros((4, 5)), grid, "r")
    with pytest.raises(RegionError, match=r"received range \[-0.5"):
        validate_mask(good - 0.5, grid, "r")
    with pytest.raises(RegionError, match="NaN"):
        validate_mask(np.full(grid, np.nan), grid, "r")
    per = np.stack([good, np.zeros(grid)])
    with pytest.raises(RegionError, match=r"empty \(sample 1\)"):
        validate_mask(per, grid, "r")
    assert validate_mask(per, grid, "r", allow_empty_samples=True).shape == (2, 4, 4)
    with pytest.raises(RegionError, match="every sample"):
        validate_mask(np.zeros((2, 4, 4)), grid, "r", allow_empty_samples=True)


@pytest.mark.parametrize(
    "kwargs,field,match",
    [
        ({"name": "a"}, "", "expected exactly one of box, mask, preset, part"),
        ({"name": "a", "box": (0, 0, 0.5, 0.5), "mask": "m.npy"}, "", "exactly one of"),
        ({"name": "a/b", "box": (0, 0, 0.5, 0.5)}, "", "name"),
        ({"name": "a", "box": (0, 0, 0.5)}, "box", "four finite numbers"),
        ({"name": "a", "box": (0.5, 0, 0.2, 0.5)}, "box", "y1 > y0"),
        ({"name": "a", "box": (0, 0, 0.5, 1.5)}, "box", "normalized"),
        ({"name": "a", "box": (0, 0, 0.5, 0.5), "units": "cm"}, "units", "units|normalized"),
        ({"name": "a", "box": (0, 0, 0.5, 0.5), "labels": (1,)}, "labels", "mask file only"),
        ({"name": "a", "mask": "m.jpg"}, "mask", r"\.npy or \.png"),
        ({"name": "a", "mask": "m.npy", "labels": ()}, "labels", "labels|integers"),
        ({"name": "a", "preset": "ffhq:ears"}, "preset", r"did you mean 'ffhq:eyes'"),
        ({"name": "a", "part": ""}, "part", "part name"),
    ],
)
def test_bad_regions(kwargs, field, match):
    with pytest.raises(RegionError, match=match) as exc:
        RegionSpec(**kwargs)
    assert exc.value.field == field


def test_spec_names_the_region_field():
    """The job spec reports a region error under regions.<name>.<field> (one region type)."""
    from lrgan_dist.spec import SpecError, parse_spec

    base = {"generator": {"kind": "synthetic"}, "samples": {"count": 2}}
    with pytest.raises(SpecError) as exc:
        parse_spec({**base, "regions": {"eyes": {"mask": "m.jpg"}}})
    assert exc.value.field == "regions.eyes.mask"
    with pytest.raises(SpecError) as exc:
        parse_spec({**base, "regions": {"eyes": {"box": [0, 0, 1, 1], "colour": 1}}})
    assert exc.value.field.startswith("regions.eyes")


# ----------------------------------------------------------------------------- parts


class FakePartGen:
    def part_masks(self, x, grid):
        n = len(x)
        eyes = np.zeros((n, *grid), np.float32)
        for i in range(n):
            eyes[i, i % grid[0], :2] = 1.0
        mouth = np.zeros((n, *grid), np.float32)
        mouth[0, 0, 0] = 1.0  # hidden in every sample but the first
        return {"eyes": eyes, "mouth": mouth}


def test_part_masks():
    cfg = RegionSpec("eyes", part="eyes")
    with pytest.raises(RegionError, match="needs the generator"):
        region_mask(cfg, (4, 4), (16, 16))
    m = part_masks(cfg, FakePartGen(), np.zeros((3, 5)), (4, 4))
    assert m.shape == (3, 4, 4) and m[2, 2, :2].tolist() == [1.0, 1.0]
    mouth = part_masks(RegionSpec("mouth", part="mouth"), FakePartGen(), np.zeros((3, 5)), (4, 4))
    assert mouth[1:].sum() == 0  # per-sample empties allowed; the engine flags them
    with pytest.raises(RegionError, match=r"part: expected one of \['eyes', 'mouth'\], received 'hair'"):
        part_masks(RegionSpec("h", part="hair"), FakePartGen(), np.zeros((3, 5)), (4, 4))
    with pytest.raises(RegionError, match="part_masks"):
        part_masks(cfg, object(), np.zeros((3, 5)), (4, 4))
