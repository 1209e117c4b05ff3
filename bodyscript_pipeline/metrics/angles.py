"""Joint angles, angular velocities and per-video summaries from the ``landmarks`` table.

Conventions are defined in :mod:`bodyscript_pipeline.skeleton.joints`. Angles are computed in pixel space
(normalized coordinates scaled by the upright frame's width and height).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline.lake.schemas import FRAME_METRICS, TableRow
from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, JOINTS, angle_column, velocity_column
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS


def interior_angle_deg(a: np.ndarray, vertex: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle at ``vertex`` between rays to ``a`` and ``c`` (arrays of shape (n, 2)), in [0, 180] degrees."""
    u = a - vertex
    v = c - vertex
    cross = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    dot = (u * v).sum(axis=1)
    angle = np.degrees(np.arctan2(np.abs(cross), dot))
    degenerate = (np.hypot(u[:, 0], u[:, 1]) == 0) | (np.hypot(v[:, 0], v[:, 1]) == 0)
    return np.where(degenerate, np.nan, angle)


def joint_angles(xy_pixels: np.ndarray, visibility: np.ndarray, min_visibility: float) -> dict[str, np.ndarray]:
    """Angles of every joint for ``n`` poses: ``xy_pixels`` (n, 33, 2), ``visibility`` (n, 33).

    An angle is NaN where any of its three landmarks is less visible than ``min_visibility``.
    """
    angles: dict[str, np.ndarray] = {}
    for joint in JOINTS:
        interior = interior_angle_deg(xy_pixels[:, joint.a], xy_pixels[:, joint.vertex], xy_pixels[:, joint.c])
        seen = (visibility[:, [joint.a, joint.vertex, joint.c]] >= min_visibility).all(axis=1)
        angles[joint.name] = np.where(seen, joint.from_interior(interior), np.nan)
    return angles


def angular_velocity(frame_index: np.ndarray, timestamp_ms: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Degrees per second for one person's frames in order: central difference across adjacent frames
    where both neighbours have an angle, one-sided at ends and gaps, NaN when no neighbour has one."""
    n = len(angle)
    out = np.full(n, np.nan)
    if n < 2:
        return out
    fi = frame_index.astype(np.int64)
    t = timestamp_ms.astype(np.float64)
    ok = np.isfinite(angle)
    link = (np.diff(fi) == 1) & ok[1:] & ok[:-1] & (np.diff(t) > 0)
    slope = np.full(n - 1, np.nan)
    slope[link] = (angle[1:][link] - angle[:-1][link]) / (t[1:][link] - t[:-1][link]) * 1000.0
    has_prev = np.concatenate([[False], link])
    has_next = np.concatenate([link, [False]])
    both = has_prev & has_next
    idx = np.flatnonzero(both)
    out[idx] = (angle[idx + 1] - angle[idx - 1]) / (t[idx + 1] - t[idx - 1]) * 1000.0
    only_prev = has_prev & ~has_next
    out[only_prev] = slope[np.flatnonzero(only_prev) - 1]
    only_next = has_next & ~has_prev
    out[only_next] = slope[np.flatnonzero(only_next)]
    return out


@dataclass(frozen=True)
class DetectionSummary:
    frames: int
    detected_frames: int
    mean_visibility: float | None
    p10_visibility: float | None

    @property
    def detection_rate(self) -> float:
        return self.detected_frames / self.frames if self.frames else 0.0


class DetectionCounter:
    """Frames, detected frames and the visibility distribution, added window by window (each frame in one
    window only). Stored visibilities have few distinct values (4 mantissa bits), so their counts are kept
    exactly and the 10th percentile is exact."""

    def __init__(self) -> None:
        self.frames = 0
        self.detected_frames = 0
        self._visibility: dict[float, int] = {}

    def add(self, landmarks: pa.Table) -> None:
        if not landmarks.num_rows:
            return
        self.frames += pc.count_distinct(landmarks["frame_index"]).as_py()
        detected = landmarks.filter(pc.is_valid(landmarks["person"]))
        if detected.num_rows:
            self.detected_frames += pc.count_distinct(detected["frame_index"]).as_py()
            values, counts = np.unique(detected["visibility"].to_numpy(zero_copy_only=False), return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self._visibility[value] = self._visibility.get(value, 0) + count

    def summary(self) -> DetectionSummary:
        if not self._visibility:
            return DetectionSummary(self.frames, self.detected_frames, None, None)
        values = np.array(sorted(self._visibility))
        counts = np.array([self._visibility[v] for v in values])
        mean = float((values * counts).sum() / counts.sum())
        return DetectionSummary(self.frames, self.detected_frames, mean, _quantile(values, counts, 0.1))


def _quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """``np.quantile`` (linear) of the sample holding each value ``counts`` times, without expanding it."""
    position = q * (counts.sum() - 1)
    ends = np.cumsum(counts)  # the sample index after each value's last copy
    lower = values[np.searchsorted(ends, np.floor(position), side="right")]
    upper = values[np.searchsorted(ends, np.ceil(position), side="right")]
    return float(lower + (upper - lower) * (position - np.floor(position)))


def frame_metrics(landmarks: pa.Table, width: int, height: int, min_visibility: float) -> pa.Table:
    """The ``frame_metrics`` table: one row per frame and detected person."""
    detected = landmarks.filter(pc.is_valid(landmarks["person"])).sort_by(
        [("person", "ascending"), ("frame_index", "ascending"), ("landmark_id", "ascending")]
    )
    poses = detected.num_rows // NUM_LANDMARKS
    if poses * NUM_LANDMARKS != detected.num_rows:
        raise ValueError("landmarks table has a detected pose without all 33 landmarks")

    def column(name: str) -> np.ndarray:
        return detected[name].to_numpy(zero_copy_only=False).reshape(poses, NUM_LANDMARKS)

    xy = np.stack([column("x") * width, column("y") * height], axis=-1).astype(np.float64)
    angles = joint_angles(xy, column("visibility"), min_visibility)
    frame_index = column("frame_index")[:, 0].astype(np.int64)
    timestamp_ms = column("timestamp_ms")[:, 0].astype(np.int64)
    person = column("person")[:, 0].astype(np.int64)

    velocities = {name: np.full(poses, np.nan) for name in JOINT_NAMES}
    for p in np.unique(person):
        rows = np.flatnonzero(person == p)
        for name in JOINT_NAMES:
            velocities[name][rows] = angular_velocity(frame_index[rows], timestamp_ms[rows], angles[name][rows])

    values: dict[str, np.ndarray] = {
        "frame_index": frame_index,
        "timestamp_ms": timestamp_ms,
        "person": person,
        **{angle_column(name): angles[name] for name in JOINT_NAMES},
        **{velocity_column(name): velocities[name] for name in JOINT_NAMES},
    }
    table = pa.table([_column(field, values[field.name]) for field in FRAME_METRICS], schema=FRAME_METRICS)
    return table.sort_by([("frame_index", "ascending"), ("person", "ascending")])


class JointStatistics:
    """Per person and joint, range of motion and peak angular velocity, added ``frame_metrics`` window by
    window; ``table()`` gives the ``video_metrics`` table."""

    def __init__(self) -> None:
        # (person, joint) -> [valid frames, min, max, sum, max |velocity| (NaN: none)]
        self._stats: dict[tuple[int, str], list[float]] = {}

    def add(self, frames: pa.Table) -> None:
        person = frames["person"].to_numpy(zero_copy_only=False)
        for p in np.unique(person):
            mine = person == p
            for name in JOINT_NAMES:
                angle = frames[angle_column(name)].to_numpy(zero_copy_only=False)[mine].astype(np.float64)
                velocity = frames[velocity_column(name)].to_numpy(zero_copy_only=False)[mine].astype(np.float64)
                angle = angle[np.isfinite(angle)]
                velocity = velocity[np.isfinite(velocity)]
                stats = self._stats.setdefault((int(p), name), [0, np.inf, -np.inf, 0.0, np.nan])
                stats[0] += len(angle)
                if len(angle):
                    stats[1] = min(stats[1], float(angle.min()))
                    stats[2] = max(stats[2], float(angle.max()))
                    stats[3] += float(angle.sum())
                if len(velocity):
                    stats[4] = np.fmax(stats[4], float(np.abs(velocity).max()))

    def rows(self) -> list[JointRange]:
        """One row per person and joint, in person then ``JOINT_NAMES`` order."""
        rows = []
        for (person, name), (valid, low, high, total, speed) in sorted(
            self._stats.items(), key=lambda item: (item[0][0], JOINT_NAMES.index(item[0][1]))
        ):
            rows.append(
                JointRange(
                    person=person,
                    joint=name,
                    valid_frames=int(valid),
                    min_deg=low if valid else None,
                    max_deg=high if valid else None,
                    range_of_motion_deg=high - low if valid else None,
                    mean_deg=total / valid if valid else None,
                    max_abs_velocity_deg_s=None if np.isnan(speed) else speed,
                )
            )
        return rows

    def table(self) -> pa.Table:
        return JointRange.table(self.rows())


@dataclass(frozen=True)
class JointRange(TableRow):
    """One row of ``video_metrics``: a joint's range of motion for one person, and how many frames measured it."""

    TABLE: ClassVar[str] = "video_metrics"

    person: int
    joint: str
    valid_frames: int
    min_deg: float | None
    max_deg: float | None
    range_of_motion_deg: float | None
    mean_deg: float | None
    max_abs_velocity_deg_s: float | None


def _column(field: pa.Field, values: np.ndarray) -> pa.Array:
    """One column as its schema declares it: floats with NaN as null, integers checked to fit."""
    if pa.types.is_floating(field.type):
        return pa.array(values.astype(field.type.to_pandas_dtype()), field.type, mask=~np.isfinite(values))
    return pa.array(values, field.type)
