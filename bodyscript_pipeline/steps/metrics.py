"""The ``metrics`` asset's work: angles and velocities per frame, range of motion per joint, and the video's
summary row in ``videos``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.parquet import (
    file_metadata,
    read_frame_range,
    table_writer,
    write_table,
)
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import IMAGE_COLUMNS, TableRow
from bodyscript_pipeline.metrics.angles import DetectionCounter, JointRange, JointStatistics, frame_metrics
from bodyscript_pipeline.steps.frames import frames_source, load_probe

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"

METRICS_WINDOW_FRAMES = 2048


@dataclass(frozen=True)
class VideoRow(TableRow):
    """The video's row in ``videos``: where it came from, what it is, and how well it was measured."""

    TABLE: ClassVar[str] = "videos"

    source_uri: str
    source_version: str
    codec: str
    width: int
    height: int
    rotation: int
    fps: float
    duration_s: float
    frame_count: int
    variable_frame_rate: bool
    detected_frames: int
    detection_rate: float
    mean_visibility: float | None
    p10_visibility: float | None
    pose_frames_per_s: float | None
    model: str
    model_sha256: str
    metrics_landmarks: str
    processed_at_ms: int


@dataclass(frozen=True)
class MetricsResult:
    frame_metrics_uri: str
    video_metrics_uri: str
    videos_uri: str
    frame_rows: int
    detection_rate: float
    video: VideoRow
    joints: tuple[JointRange, ...]

    @property
    def video_row(self) -> dict[str, Any]:
        """The ``videos`` row as a dict (what the Dagster layer shows)."""
        return self.video.to_row()

    @property
    def joint_rows(self) -> list[dict[str, Any]]:
        """The ``video_metrics`` rows as dicts, as stored (what the Dagster layer shows)."""
        return [row.to_row() for row in self.joints]


def compute_metrics(
    lake_uri: str, partition: str, min_visibility: float, landmarks_source: str = "raw"
) -> MetricsResult:
    """Angles and velocities per frame, range of motion per joint, and the video's summary row, measured on
    the ``raw`` or ``cleaned`` landmarks (``landmarks_source``, recorded in the ``videos`` row).

    Streams in windows of ``METRICS_WINDOW_FRAMES`` frames, each read with one frame more on both sides:
    a velocity needs only its neighbours, so the result equals a whole-video pass."""
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    landmarks_uri = lake.table_part("landmarks")
    meta = file_metadata(landmarks_uri)
    measured_uri = lake.table_part("landmarks_clean") if landmarks_source == "cleaned" else landmarks_uri
    columns = ["frame_index", "timestamp_ms", "person", "landmark_id", *IMAGE_COLUMNS]
    detections = DetectionCounter()
    joints = JointStatistics()
    frame_rows = 0
    with (
        storage.local_copy(landmarks_uri) as raw_path,
        storage.local_copy(measured_uri) as measured_path,
        table_writer(
            "frame_metrics", lake.table_part("frame_metrics"), {"bodyscript.landmarks": landmarks_source}
        ) as out,
    ):
        frame_count = probe.frame_count
        for start in range(0, frame_count, METRICS_WINDOW_FRAMES):
            stop = min(start + METRICS_WINDOW_FRAMES, frame_count)
            detections.add(read_frame_range(raw_path, ["frame_index", "person", "visibility"], start, stop))
            window = read_frame_range(measured_path, columns, max(0, start - 1), stop + 1)
            per_frame = frame_metrics(window, probe.width, probe.height, min_visibility)
            mine = pc.and_(pc.greater_equal(per_frame["frame_index"], start), pc.less(per_frame["frame_index"], stop))
            per_frame = per_frame.filter(mine)
            joints.add(per_frame)
            for batch in per_frame.to_batches():
                out.write_batch(batch)
            frame_rows += per_frame.num_rows
    per_joint = joints.table()
    summary = detections.summary()
    pose_seconds = float(meta.get("bodyscript.pose_seconds", "0"))
    source = frames_source(lake)
    video = VideoRow(
        source_uri=source.uri,
        source_version=source.version,
        codec=probe.codec,
        width=probe.width,
        height=probe.height,
        rotation=probe.rotation,
        fps=probe.fps,
        duration_s=probe.duration_s,
        frame_count=probe.frame_count,
        variable_frame_rate=probe.variable_frame_rate,
        detected_frames=summary.detected_frames,
        detection_rate=summary.detection_rate,
        mean_visibility=summary.mean_visibility,
        p10_visibility=summary.p10_visibility,
        pose_frames_per_s=summary.frames / pose_seconds if pose_seconds else None,
        model=meta.get("bodyscript.model", ""),
        model_sha256=meta.get("bodyscript.model_sha256", ""),
        metrics_landmarks=landmarks_source,
        processed_at_ms=int(time.time() * 1000),
    )
    write_table("video_metrics", lake.table_part("video_metrics"), per_joint)
    write_table("videos", lake.table_part("videos"), VideoRow.table([video]))
    return MetricsResult(
        lake.table_part("frame_metrics"),
        lake.table_part("video_metrics"),
        lake.table_part("videos"),
        frame_rows,
        summary.detection_rate,
        video,
        tuple(JointRange.rows(per_joint)),
    )
