"""lrgan_dist.apply.edit: applying directions and rendering edit grids from a store."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lrgan_dist.apply.edit import apply_direction, direction_vector, edit_grid, edit_images
from lrgan_dist.store.zarrstore import Store, StoreError
from lrgan_dist.testing.stores import build_study_store


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return build_study_store(tmp_path_factory.getbasetemp())[1]


def test_apply_direction():
    x, v = torch.zeros(3), torch.tensor([1.0, 0.0, 0.0])
    out = apply_direction(x, v, [-2.0, 0.0, 0.5])
    assert out.tolist() == [[-2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]


def test_edit_images_zero_strength_is_the_stored_preview(uri):
    imgs, masks = edit_images(uri, "eyes_mask", "lowrankgan", [2, 7], 0, [-2.0, 0.0, 2.0])
    assert imgs.shape == (2, 3, 32, 32, 3) and imgs.dtype == np.uint8
    assert masks.shape == (2, 32, 32)
    st = Store.open(uri)
    np.testing.assert_array_equal(imgs[:, 1], st.group["images"].oindex[[2, 7]])
    assert (imgs[:, 0] != imgs[:, 1]).any() and (imgs[:, 2] != imgs[:, 1]).any()


def test_transferred_direction_edits_inside_the_target_region(uri):
    st = Store.open(uri)
    own, _ = edit_images(uri, "eyes_mask", "lowrankgan", [9], 0, [0.0, 3.0])
    moved, masks = edit_images(uri, "eyes_mask", "lowrankgan", [9], 0, [0.0, 3.0], source=0)
    assert (own[0, 1] != moved[0, 1]).any()  # a different direction
    diff = np.abs(moved[0, 1].astype(float) - moved[0, 0].astype(float)).sum(-1)
    inside = masks[0] > 0.5
    assert diff[inside].mean() > 20 * max(diff[~inside].mean(), 1e-3)
    v = direction_vector(st, "eyes_mask", "lowrankgan", 0, 0)
    assert v.shape == (64,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_edit_grid_png(uri, tmp_path):
    out = edit_grid(uri, "eyes", "lowrankgan", [0, 3, 5], 0, [-3, 0, 3], tmp_path / "g" / "grid.png", source=1)
    assert out == tmp_path / "g" / "grid.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 150


def test_edit_errors_name_the_problem(uri):
    with pytest.raises(StoreError, match="no directions for region 'eyes' and method 'nope'"):
        edit_images(uri, "eyes", "nope", [0], 0, [1.0])
    with pytest.raises(StoreError, match="sample 99"):
        edit_images(uri, "eyes", "lowrankgan", [99], 0, [1.0])
    with pytest.raises(StoreError, match="direction 63 of sample 0 is not defined"):
        edit_images(uri, "eyes", "lowrankgan", [0], 63, [1.0])
