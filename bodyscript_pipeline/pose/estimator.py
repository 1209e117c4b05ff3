"""MediaPipe PoseLandmarker (Tasks API) in VIDEO mode, producing the ``landmarks`` table's rows.

Several people: the landmarker's detector sees the whole frame shrunk to 224 x 224, so in a wide frame
people are small and get missed. With ``num_poses`` above one,
a wide (or tall) frame is covered by overlapping square tiles along its long side, each with its own
landmarker in VIDEO mode; a person seen by two tiles is kept once (the copy with more visible landmarks).
A landmarker in VIDEO mode runs its detector only while it tracks nobody, so someone entering a tile
where another person is tracked is found only once that track ends. Restarting landmarkers periodically to
force detection was tried and measured worse (tracked people were lost to detector misses). Measured
figures: README, "Several people".
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bodyscript_pipeline.lake.schemas import LANDMARK_FLOATS
from bodyscript_pipeline.pose.imports import mediapipe
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES, NUM_LANDMARKS

# MediaPipe logs every model load through glog at INFO; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")

_log = logging.getLogger("bodyscript.pose")
_LANDMARK_IDS = np.arange(NUM_LANDMARKS, dtype=np.uint8)
X, Y, Z, VISIBILITY = (LANDMARK_FLOATS.index(name) for name in ("x", "y", "z", "visibility"))
TILE_OVERLAP = 0.2  # fraction of a tile shared with its neighbour: a person on the seam is whole in one of them
DUPLICATE_IOU = 0.4  # two poses from neighbouring tiles whose boxes overlap this much are one person


@dataclass(frozen=True)
class PoseOptions:
    """How a video's people are found: at most ``num_poses``, ``tiles`` (``None``: automatic), the delegate,
    and how many frames a person may be missing and still keep their id."""

    num_poses: int = 1
    tiles: int | None = None
    delegate: str = "cpu"
    track_max_gap: int = 15


@dataclass(frozen=True)
class Tile:
    x0: int
    y0: int
    width: int
    height: int


def tiles_for(width: int, height: int, num_poses: int, tiles: int | None = None) -> list[Tile]:
    """Square tiles along the long side, overlapping by ``TILE_OVERLAP``; one tile (the whole frame) for one
    person or a near-square frame. ``tiles`` forces a count (``None``: automatic)."""
    side, long = min(width, height), max(width, height)
    if tiles is None:
        tiles = (
            1
            if num_poses <= 1 or long <= 1.25 * side
            else math.ceil((long - TILE_OVERLAP * side) / ((1 - TILE_OVERLAP) * side))
        )
    if tiles <= 1:
        return [Tile(0, 0, width, height)]
    starts = np.linspace(0, long - side, tiles).round().astype(int)
    if width >= height:
        return [Tile(int(s), 0, side, height) for s in starts]
    return [Tile(0, int(s), width, side) for s in starts]


class PoseEstimator:
    """Landmarkers over one video's frames, fed in order with strictly increasing timestamps.

    ``delegate="gpu"`` asks for MediaPipe's GPU delegate; where it cannot start (no GPU, no EGL driver) the
    landmarker runs on the CPU, logs a warning, and says so in ``delegate`` and ``fallback_reason``.
    """

    def __init__(
        self,
        model_path: Path,
        num_poses: int = 1,
        min_confidence: float = 0.5,
        delegate: str = "cpu",
        tiles: int | None = None,
    ) -> None:
        self.fallback_reason: str | None = None
        self.delegate = delegate
        self.num_poses = num_poses
        self._options = (model_path, num_poses, min_confidence)
        self._tile_count = tiles
        self._tiles: list[Tile] | None = None
        self._landmarkers: list[Any] = []
        self._last_ms = -1

    def _landmarker(self) -> Any:
        try:
            return _create(*self._options, self.delegate)
        except (RuntimeError, ValueError) as exc:
            if self.delegate == "cpu":
                raise
            self.fallback_reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            _log.warning(
                "pose: the %s delegate is unavailable (%s); running on the CPU", self.delegate, self.fallback_reason
            )
            self.delegate = "cpu"
            return _create(*self._options, "cpu")

    def detect(self, image: np.ndarray, timestamp_ms: int) -> np.ndarray:
        """The people in ``image`` (RGB): array (persons, 33, 8) of ``LANDMARK_FLOATS``, x and y normalized."""
        mp = mediapipe()

        height, width = image.shape[:2]
        if self._tiles is None:
            self._tiles = tiles_for(width, height, self.num_poses, self._tile_count)
            self._landmarkers = [self._landmarker() for _ in self._tiles]
        # VIDEO mode needs strictly increasing timestamps; two frames within one millisecond
        # (high frame rates, variable frame rate) are fed 1 ms apart, and keep their true time in the table.
        feed_ms = max(timestamp_ms, self._last_ms + 1)
        self._last_ms = feed_ms
        found = []
        for t, tile in enumerate(self._tiles):
            part = (
                image
                if len(self._tiles) == 1
                else np.ascontiguousarray(image[tile.y0 : tile.y0 + tile.height, tile.x0 : tile.x0 + tile.width])
            )
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=part)
            poses = _as_array(self._landmarkers[t].detect_for_video(frame, feed_ms))
            if len(self._tiles) > 1 and len(poses):
                poses[:, :, X] = (poses[:, :, X] * tile.width + tile.x0) / width
                poses[:, :, Y] = (poses[:, :, Y] * tile.height + tile.y0) / height
                poses[:, :, Z] *= tile.width / width
            found.append(poses)
        people = np.concatenate(found) if found else np.empty((0, NUM_LANDMARKS, len(LANDMARK_FLOATS)), np.float32)
        if len(self._tiles) > 1:
            people = _drop_duplicates(people, width, height)
        return people[: self.num_poses]

    def close(self) -> None:
        for landmarker in self._landmarkers:
            landmarker.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def preload() -> None:
    """Import MediaPipe's Tasks API (about 0.5 s): a process that forks pose workers does it once, before forking,
    so that no worker pays for it. No landmarker is made: MediaPipe's threads would not survive a fork."""
    mediapipe()


def _create(model_path: Path, num_poses: int, min_confidence: float, delegate: str) -> Any:
    mediapipe()
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


def _as_array(result: Any) -> np.ndarray:
    people = result.pose_landmarks or []
    out = np.empty((len(people), NUM_LANDMARKS, len(LANDMARK_FLOATS)), dtype=np.float32)
    for p, (normalized, world) in enumerate(zip(people, result.pose_world_landmarks, strict=True)):
        out[p] = [
            [lm.x, lm.y, lm.z, lm.visibility, lm.presence, w.x, w.y, w.z]
            for lm, w in zip(normalized, world, strict=True)
        ]
    return out


def _drop_duplicates(people: np.ndarray, width: int, height: int) -> np.ndarray:
    """One pose per person: of poses whose boxes overlap by ``DUPLICATE_IOU``, the one seeing more landmarks."""
    if len(people) < 2:
        return people
    seen = (people[:, :, VISIBILITY] >= 0.5).sum(axis=1) + people[:, :, VISIBILITY].mean(axis=1)
    order = np.argsort(-seen, kind="stable")
    boxes = [_box(people[i], width, height) for i in range(len(people))]
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[k]) < DUPLICATE_IOU for k in kept):
            kept.append(int(i))
    return people[sorted(kept)]


def _box(pose: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x, y = pose[:, X] * width, pose[:, Y] * height
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def result_columns(
    frame_index: int, timestamp_ms: int, people: np.ndarray, ids: np.ndarray | None = None
) -> dict[str, list[Any]]:
    """The ``landmarks`` rows of one frame: 33 per person (``person`` is its id in ``ids``, by default its
    place in ``people``), or one all-null row when nobody was found."""
    if not len(people):
        columns: dict[str, list[Any]] = {
            "frame_index": [frame_index],
            "timestamp_ms": [timestamp_ms],
            "person": [None],
            "landmark_id": [None],
            "landmark": [None],
        }
        columns.update({name: [None] for name in LANDMARK_FLOATS})
        return columns
    rows = NUM_LANDMARKS * len(people)
    values = people.reshape(rows, len(LANDMARK_FLOATS)).T
    columns = {
        "frame_index": [frame_index] * rows,
        "timestamp_ms": [timestamp_ms] * rows,
        "person": np.repeat(np.arange(len(people), dtype=np.uint16) if ids is None else ids, NUM_LANDMARKS).tolist(),
        "landmark_id": np.tile(_LANDMARK_IDS, len(people)).tolist(),
        "landmark": list(LANDMARK_NAMES) * len(people),
    }
    columns.update({name: values[i].tolist() for i, name in enumerate(LANDMARK_FLOATS)})
    return columns


def merge_columns(parts: Iterable[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for part in parts:
        for key, values in part.items():
            merged.setdefault(key, []).extend(values)
    return merged
