"""MediaPipe PoseLandmarker (Tasks API) in VIDEO mode, producing the ``landmarks`` table's rows."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bodyscript_pipeline.pose_topology import LANDMARK_NAMES, NUM_LANDMARKS

# MediaPipe logs every model load through glog at INFO; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")

_log = logging.getLogger("bodyscript.pose")
_LANDMARK_IDS = np.arange(NUM_LANDMARKS, dtype=np.uint8)
FLOAT_COLUMNS = ("x", "y", "z", "visibility", "presence", "world_x", "world_y", "world_z")


class PoseEstimator:
    """One landmarker over one video's frames, fed in order with strictly increasing timestamps.

    ``delegate="gpu"`` asks for MediaPipe's GPU delegate; where it cannot start (no GPU, no EGL driver) the
    landmarker runs on the CPU, logs a warning, and says so in ``delegate`` and ``fallback_reason``.
    """

    def __init__(
        self, model_path: Path, num_poses: int = 1, min_confidence: float = 0.5, delegate: str = "cpu"
    ) -> None:
        self.fallback_reason: str | None = None
        self.delegate = delegate
        try:
            self._landmarker = _create(model_path, num_poses, min_confidence, delegate)
        except (RuntimeError, ValueError) as exc:
            if delegate == "cpu":
                raise
            self.fallback_reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            _log.warning(
                "pose: the %s delegate is unavailable (%s); running on the CPU", delegate, self.fallback_reason
            )
            self.delegate = "cpu"
            self._landmarker = _create(model_path, num_poses, min_confidence, "cpu")
        self._last_ms = -1

    def detect(self, image: np.ndarray, timestamp_ms: int) -> Any:
        import mediapipe as mp

        # VIDEO mode needs strictly increasing timestamps; two frames within one millisecond
        # (high frame rates, variable frame rate) are fed 1 ms apart, and keep their true time in the table.
        feed_ms = max(timestamp_ms, self._last_ms + 1)
        self._last_ms = feed_ms
        return self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=image), feed_ms)

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create(model_path: Path, num_poses: int, min_confidence: float, delegate: str) -> Any:
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(
            model_asset_path=str(model_path),
            delegate=BaseOptions.Delegate.GPU if delegate == "gpu" else BaseOptions.Delegate.CPU,
        ),
        running_mode=vision.RunningMode.VIDEO,
        num_poses=num_poses,
        min_pose_detection_confidence=min_confidence,
        min_pose_presence_confidence=min_confidence,
        min_tracking_confidence=min_confidence,
    )
    return vision.PoseLandmarker.create_from_options(options)


def result_columns(frame_index: int, timestamp_ms: int, result: Any) -> dict[str, list[Any]]:
    """The ``landmarks`` rows of one frame: 33 per person, or one all-null row when nobody was found."""
    people = result.pose_landmarks or []
    if not people:
        columns: dict[str, list[Any]] = {
            "frame_index": [frame_index],
            "timestamp_ms": [timestamp_ms],
            "person": [None],
            "landmark_id": [None],
            "landmark": [None],
        }
        columns.update({name: [None] for name in FLOAT_COLUMNS})
        return columns
    rows = NUM_LANDMARKS * len(people)
    values = np.empty((len(FLOAT_COLUMNS), rows), dtype=np.float32)
    for p, (normalized, world) in enumerate(zip(people, result.pose_world_landmarks, strict=True)):
        block = slice(p * NUM_LANDMARKS, (p + 1) * NUM_LANDMARKS)
        values[:, block] = np.array(
            [
                [lm.x, lm.y, lm.z, lm.visibility, lm.presence, w.x, w.y, w.z]
                for lm, w in zip(normalized, world, strict=True)
            ],
            dtype=np.float32,
        ).T
    columns = {
        "frame_index": [frame_index] * rows,
        "timestamp_ms": [timestamp_ms] * rows,
        "person": np.repeat(np.arange(len(people), dtype=np.uint8), NUM_LANDMARKS).tolist(),
        "landmark_id": np.tile(_LANDMARK_IDS, len(people)).tolist(),
        "landmark": list(LANDMARK_NAMES) * len(people),
    }
    columns.update({name: values[i].tolist() for i, name in enumerate(FLOAT_COLUMNS)})
    return columns


def merge_columns(parts: Iterable[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for part in parts:
        for key, values in part.items():
            merged.setdefault(key, []).extend(values)
    return merged
