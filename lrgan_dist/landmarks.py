"""Per-sample semantic regions from face landmarks (MediaPipe Face Mesh), rasterised on the analysis grid.

docs/spec.md: regions on real generated faces come from a landmark detector whose model
ships inside its wheel, run per sample, with a per-sample detection flag (no detection ->
all-zero mask, ``found = False`` and a reason; the pipeline scores no region for it).

Landmark sets
-------------
Index lists into the 468-point canonical face mesh of MediaPipe Face Mesh (Kartynnik et
al., "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs", CVPR
Workshops 2019).  They are the vertices of the contour connection sets published in
mediapipe's ``mediapipe/python/solutions/face_mesh_connections.py`` (``FACEMESH_LEFT_EYE``,
``FACEMESH_RIGHT_EYE``, ``FACEMESH_LEFT_EYEBROW``, ``FACEMESH_RIGHT_EYEBROW``,
``FACEMESH_LIPS``, ``FACEMESH_NOSE``, ``FACEMESH_FACE_OVAL``; mediapipe 0.10.14), written here
as data.  "left"/"right" are the *subject's* (MediaPipe's convention): the left eye is on
the image's right.  A set is a tuple of groups; its mask is the union of the groups'
convex hulls (``eyes`` = two hulls, not one hull that would also cover the nose bridge):

=========  =================================================  ======
set        groups                                             points
=========  =================================================  ======
left_eye   FACEMESH_LEFT_EYE (lid contour)                    16
right_eye  FACEMESH_RIGHT_EYE                                 16
eyes       left_eye, right_eye                                2 × 16
brows      FACEMESH_LEFT_EYEBROW, FACEMESH_RIGHT_EYEBROW      2 × 10
mouth      FACEMESH_LIPS (outer and inner lip contours)       40
nose       FACEMESH_NOSE                                      24
face       FACEMESH_FACE_OVAL                                 36
=========  =================================================  ======

Rasteriser
----------
Points are in normalised image coordinates (x = column, y = row, both in [0, 1], as the
detector returns them).  On an h × w grid, pixel (i, j) has its centre at
((j + ½)/w, (i + ½)/h); it is inside a convex polygon when it lies on the inner side of
every edge (half-plane tests, vectorised over pixels × edges: no loop over pixels).
``dilate_px`` r > 0 adds every pixel whose centre is within r grid pixels of the polygon
(distance to the nearest edge segment): the Minkowski sum with a disc of radius r.
:func:`polygon_mask` rasterises a simple, possibly non-convex polygon with the even-odd
rule (crossing number, vectorised the same way).

Detector
--------
:class:`FaceMeshDetector` runs ``mediapipe.solutions.face_mesh.FaceMesh`` with
``static_image_mode=True`` (every image on its own: no tracking state between samples),
``max_num_faces=1`` and ``refine_landmarks=False`` (468 points, no iris).  Images smaller
than ``upsample_to`` (256) on their short side are upsampled (bicubic, torch) before
detection: the face detector's short-range model works on 128 × 128 inputs and the mesh
model on 192 × 192 crops, and a 64 × 64 DCGAN face holds too few pixels per face for
them.  Landmarks are normalised, so upsampling does not change their meaning.  mediapipe is
imported only when a detector is created.  Install: ``pip install 'lrgan-dist[faces]'`` plus
``pip install --no-deps mediapipe==0.10.14`` (its metadata pins protobuf < 5, which
breaks Ray's protobuf ≥ 6 stack; the faces extra brings its other dependencies and a
protobuf 6 that both run with).  With protobuf ≥ 5, mediapipe 0.10.14 calls the removed
``SymbolDatabase.GetPrototype`` / ``MessageFactory.GetPrototype``; before importing it, the
detector installs those methods (as ``message_factory.GetMessageClass``) on protobuf's
classes where they are missing.  protobuf 7 also drops ``FieldDescriptor.label``, which
mediapipe needs and which cannot be added to the C type: hence protobuf < 7.  Later
mediapipe releases (0.10.30+) no longer ship ``solutions.face_mesh`` nor its model.

Intended job-spec form (integration with the spec and the jacobians stage is the
lead's; not wired here)::

    regions:
      eyes_lm:  {landmarks: eyes, dilate: 1}
      mouth_lm: {landmarks: mouth, dilate: 1}

The jacobians stage renders each sample, calls :func:`landmark_masks` on its uint8 image
and stores ``found`` / ``reasons`` per sample.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "FACES_INSTALL",
    "LANDMARK_SETS",
    "NUM_LANDMARKS",
    "FaceMeshDetector",
    "LandmarkError",
    "convex_hull",
    "hull_mask",
    "landmark_masks",
    "landmark_points",
    "polygon_mask",
    "set_mask",
]

NUM_LANDMARKS = 468
FACES_INSTALL = "pip install 'lrgan-dist[faces]' && pip install --no-deps mediapipe==0.10.14"


class LandmarkError(ValueError):
    """Landmark regions cannot be computed (mediapipe missing, bad set name or input): CLI exit 2."""


# Vertices of mediapipe's face_mesh_connections contour sets (see the module docstring).
_LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
_RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
_LEFT_BROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
_RIGHT_BROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
_LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269,
         270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
_FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
              288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)

LANDMARK_SETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "left_eye": (_LEFT_EYE,),
    "right_eye": (_RIGHT_EYE,),
    "eyes": (_LEFT_EYE, _RIGHT_EYE),
    "brows": (_LEFT_BROW, _RIGHT_BROW),
    "mouth": (_LIPS,),
    "nose": (_NOSE,),
    "face": (_FACE_OVAL,),
}


# ------------------------------------------------------------------------------- rasteriser


def convex_hull(points: np.ndarray) -> np.ndarray:
    """[m, 2] -> hull vertices [k, 2] in counter-clockwise order (x right, y down: clockwise on screen).

    Andrew's monotone chain; collinear points are dropped.  k may be 1 or 2 for
    degenerate input.
    """
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, then y
    if len(pts) <= 2:
        return pts

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    lower: list[np.ndarray] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[np.ndarray] = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _centres(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = grid
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return xs.reshape(-1), ys.reshape(-1)  # [h·w] in grid-pixel units


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[P] pixel centres × [E, 2] segments a->b -> [P] distance to the nearest segment."""
    d = b - a  # [E, 2]
    len2 = np.maximum((d ** 2).sum(1), 1e-24)
    rx = px[:, None] - a[None, :, 0]  # [P, E]
    ry = py[:, None] - a[None, :, 1]
    t = np.clip((rx * d[None, :, 0] + ry * d[None, :, 1]) / len2[None], 0.0, 1.0)
    ex, ey = rx - t * d[None, :, 0], ry - t * d[None, :, 1]
    return np.sqrt(ex ** 2 + ey ** 2).min(axis=1)


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    if len(grid) != 2 or any(isinstance(g, bool) or int(g) != g or g < 1 for g in grid):
        raise LandmarkError(f"grid: expected (h, w) positive integers, received {grid!r}")
    return int(grid[0]), int(grid[1])


def _check_dilate(dilate_px: float) -> float:
    if isinstance(dilate_px, bool) or not isinstance(dilate_px, (int, float, np.floating)) or not dilate_px >= 0:
        raise LandmarkError(f"dilate: expected a number of grid pixels >= 0, received {dilate_px!r}")
    return float(dilate_px)


def hull_mask(points: np.ndarray, grid: Sequence[int], dilate_px: float = 0.0) -> np.ndarray:
    """Convex hull of ``points`` [m, 2] (normalised x, y) -> mask [h, w] float32 in {0, 1}.

    A pixel is in when its centre is inside the closed hull (half-plane tests against every
    edge; centres on an edge count as inside) or within ``dilate_px`` grid pixels of it.
    Fewer than 3 non-collinear points give the pixels within ``max(dilate_px, √½)`` of the
    point / segment (√½: every point's own pixel is in).
    """
    h, w = _check_grid(grid)
    r = _check_dilate(dilate_px)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * np.array([w, h], dtype=np.float64)
    if len(pts) == 0 or not np.isfinite(pts).all():
        raise LandmarkError(f"hull_mask: expected finite points [m >= 1, 2], received {np.shape(points)}")
    hull = convex_hull(pts)  # [k, 2] in grid-pixel units, counter-clockwise (y down)
    px, py = _centres((h, w))
    a, b = hull, np.roll(hull, -1, axis=0)  # edges a_k -> a_{k+1}
    if len(hull) >= 3:
        # With y pointing down, the monotone chain's order has the interior on the side where
        # cross(b - a, p - a) >= 0.
        cross = (b[None, :, 0] - a[None, :, 0]) * (py[:, None] - a[None, :, 1]) \
            - (b[None, :, 1] - a[None, :, 1]) * (px[:, None] - a[None, :, 0])  # [P, E]
        inside = (cross >= 0).all(axis=1)
        if r > 0:
            inside |= _segment_distance(px, py, a, b) <= r
    else:
        inside = _segment_distance(px, py, a, b) <= max(r, np.sqrt(0.5))  # at least each point's own pixel
    return inside.reshape(h, w).astype(np.float32)


def polygon_mask(vertices: np.ndarray, grid: Sequence[int], dilate_px: float = 0.0) -> np.ndarray:
    """Simple polygon (vertices [m >= 3, 2] in order, normalised x, y) -> mask [h, w] float32.

    Even-odd rule on the pixel centres: a horizontal ray from the centre crosses the
    boundary an odd number of times (vectorised over pixels × edges), plus the pixels within
    ``dilate_px`` grid pixels of the boundary.
    """
    h, w = _check_grid(grid)
    r = _check_dilate(dilate_px)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2) * np.array([w, h], dtype=np.float64)
    if len(v) < 3 or not np.isfinite(v).all():
        raise LandmarkError(f"polygon_mask: expected finite vertices [m >= 3, 2], received {np.shape(vertices)}")
    a, b = v, np.roll(v, -1, axis=0)
    px, py = _centres((h, w))
    ay, by = a[None, :, 1], b[None, :, 1]
    straddles = (ay > py[:, None]) != (by > py[:, None])  # [P, E]; half-open: each vertex counted once
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[None, :, 0] + (py[:, None] - ay) * (b[None, :, 0] - a[None, :, 0]) / (by - ay)
    crossings = (straddles & (px[:, None] < x_at)).sum(axis=1)
    inside = crossings % 2 == 1
    if r > 0:
        inside |= _segment_distance(px, py, a, b) <= r
    return inside.reshape(h, w).astype(np.float32)


def set_mask(landmarks: np.ndarray, name: str, grid: Sequence[int], dilate_px: float = 0.0) -> np.ndarray:
    """Mask [h, w] of landmark set ``name`` for one face's landmarks [468, 2]: union of group hulls."""
    groups = _groups(name)
    lm = np.asarray(landmarks)
    if lm.shape != (NUM_LANDMARKS, 2):
        raise LandmarkError(f"landmarks: expected shape [{NUM_LANDMARKS}, 2], received {list(lm.shape)}")
    out = np.zeros(_check_grid(grid), dtype=np.float32)
    for g in groups:
        out = np.maximum(out, hull_mask(lm[list(g)], grid, dilate_px))
    return out


def _groups(name: str) -> tuple[tuple[int, ...], ...]:
    if name not in LANDMARK_SETS:
        raise LandmarkError(f"landmarks: unknown landmark set {name!r}; expected one of {sorted(LANDMARK_SETS)}")
    return LANDMARK_SETS[name]


# ------------------------------------------------------------------------------- detector


def _import_face_mesh() -> Any:
    try:
        _protobuf_compat()
        from mediapipe.python.solutions import face_mesh
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install (protobuf mismatch …)
        raise LandmarkError(f"landmark regions need mediapipe (Face Mesh); install with `{FACES_INSTALL}` "
                            f"(import failed: {type(exc).__name__}: {str(exc)[:200]})") from None
    return face_mesh


def _protobuf_compat() -> None:
    # mediapipe 0.10.14 (built for protobuf 4) calls SymbolDatabase.GetPrototype and
    # MessageFactory.GetPrototype, removed from protobuf >= 5; GetMessageClass is their
    # replacement (same class for a descriptor).  Installed only where missing.
    from google.protobuf import message_factory, symbol_database

    if not hasattr(message_factory, "GetMessageClass"):
        return  # protobuf 4: the methods exist

    def _get_prototype(self: Any, descriptor: Any) -> Any:
        return message_factory.GetMessageClass(descriptor)

    for cls in (symbol_database.SymbolDatabase, message_factory.MessageFactory):
        if not hasattr(cls, "GetPrototype"):
            cls.GetPrototype = _get_prototype


def _check_images(images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise LandmarkError(f"images: expected uint8 RGB [n, H, W, 3], received {arr.dtype} {list(arr.shape)}")
    return arr


def _upsample(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 with short side >= ``size`` (bicubic), unchanged when already large."""
    H, W = img.shape[:2]
    s = size / min(H, W)
    if s <= 1:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(torch.float32)
    up = torch.nn.functional.interpolate(t, size=(round(H * s), round(W * s)), mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


class FaceMeshDetector:
    """MediaPipe Face Mesh on uint8 RGB images -> per image landmarks [468, 2] (x, y in [0, 1]) or None.

    Use as a context manager or call :meth:`close`; one graph serves every image
    (``static_image_mode``: no state carries over between images).
    """

    def __init__(self, upsample_to: int = 256, min_detection_confidence: float = 0.5) -> None:
        if isinstance(upsample_to, bool) or not isinstance(upsample_to, int) or upsample_to < 1:
            raise LandmarkError(f"upsample_to: expected a positive integer, received {upsample_to!r}")
        self.upsample_to = upsample_to
        self.min_detection_confidence = float(min_detection_confidence)
        fm = _import_face_mesh()
        try:
            self._mesh = fm.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                     min_detection_confidence=self.min_detection_confidence)
        except Exception as exc:  # noqa: BLE001 - e.g. protobuf 7 (no FieldDescriptor.label)
            from google.protobuf import __version__ as pb
            raise LandmarkError(f"mediapipe Face Mesh could not start ({type(exc).__name__}: {str(exc)[:200]}); "
                                f"mediapipe 0.10.14 runs with protobuf >= 4.25.3, < 7 (installed: {pb}); "
                                f"install with `{FACES_INSTALL}`") from None

    def detect(self, images: Any) -> list[tuple[np.ndarray | None, str]]:
        """images uint8 [n, H, W, 3] -> [(landmarks [468, 2] float32 | None, reason)]; reason '' when found."""
        arr = _check_images(images)
        out: list[tuple[np.ndarray | None, str]] = []
        for img in arr:
            res = self._mesh.process(_upsample(img, self.upsample_to))
            faces = res.multi_face_landmarks
            if not faces:
                reason = f"no face detected (Face Mesh, min_detection_confidence={self.min_detection_confidence})"
                out.append((None, reason))
                continue
            lm = np.array([(p.x, p.y) for p in faces[0].landmark], dtype=np.float32)
            if lm.shape != (NUM_LANDMARKS, 2) or not np.isfinite(lm).all():
                reason = f"detector returned {lm.shape[0]} landmarks or non-finite ones; expected {NUM_LANDMARKS}"
                out.append((None, reason))
                continue
            out.append((lm, ""))
        return out

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def landmark_masks(images: Any, sets: Iterable[str], grid: Sequence[int], dilate_px: float = 0.0,
                   detector: FaceMeshDetector | None = None
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Per-sample landmark-set masks.

    images uint8 [n, H, W, 3] -> (``{set: [n, h, w] float32}``, found [n] bool, reasons [n] str).
    A sample without a detected face gets all-zero masks, ``found = False`` and the reason.
    ``detector`` defaults to a fresh :class:`FaceMeshDetector` (closed afterwards).
    """
    names = list(sets)
    if not names:
        raise LandmarkError(f"landmarks: expected at least one set of {sorted(LANDMARK_SETS)}")
    for s in names:
        _groups(s)
    h, w = _check_grid(grid)
    _check_dilate(dilate_px)
    arr = _check_images(images)
    own = detector is None
    det = FaceMeshDetector() if detector is None else detector  # own == (detector is None)
    try:
        results = det.detect(arr)
    finally:
        if own:
            det.close()
    n = arr.shape[0]
    masks = {s: np.zeros((n, h, w), dtype=np.float32) for s in names}
    found = np.zeros(n, dtype=bool)
    reasons = []
    for i, (lm, reason) in enumerate(results):
        reasons.append(reason)
        if lm is None:
            continue
        found[i] = True
        for s in names:
            masks[s][i] = set_mask(lm, s, (h, w), dilate_px)
    return masks, found, reasons


def landmark_points(landmarks: np.ndarray, name: str) -> np.ndarray:
    """The points [m, 2] of set ``name`` (all groups) from one face's landmarks [468, 2]."""
    return np.asarray(landmarks)[[i for g in _groups(name) for i in g]]

