"""A stand-in for the Face Mesh detector, for tests of the no-face path without mediapipe.

:class:`StandInDetector` has :class:`lrgan_dist.landmarks.FaceMeshDetector`'s interface:
``detect(images)`` returns one ``(landmarks [468, 2] in [0, 1] or None, reason)`` per
image. It "finds" one fixed face on the images at even positions of each batch and no face
on the odd ones, so with batches that start at even sample indices the samples with odd
indices are the no-face samples. :class:`StandInFaces` is a stage hook that installs it in
every worker process (``submit(spec, hooks=StandInFaces())``), so the whole Ray pipeline
runs the no-face path.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lrgan_dist.pipeline.runtime import StageHooks

__all__ = ["StandInDetector", "StandInFaces", "NO_FACE_REASON"]

NO_FACE_REASON = "no face detected (stand-in)"


class StandInDetector:
    """A fixed face on even batch positions, none on odd ones; counts its constructions."""

    calls = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        StandInDetector.calls += 1

    def detect(self, images: Sequence[Any]) -> list[tuple[np.ndarray | None, str]]:
        from lrgan_dist.landmarks import NUM_LANDMARKS

        rng = np.random.default_rng(0)
        lm = (0.3 + 0.4 * rng.random((NUM_LANDMARKS, 2))).astype(np.float32)
        return [(None, NO_FACE_REASON) if k % 2 else (lm, "") for k in range(len(images))]

    def close(self) -> None:
        return None


class StandInFaces(StageHooks):
    """Stage hook: every worker uses :class:`StandInDetector` instead of Face Mesh."""

    def on_worker_start(self) -> None:
        import lrgan_dist.landmarks as lm

        lm.FaceMeshDetector = StandInDetector  # type: ignore[misc,assignment]
