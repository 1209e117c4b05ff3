"""The work of each asset, free of Dagster: read inputs from the lake by path rules, write outputs there.

Heavy data (video, frames, landmarks) is streamed between storage and local temp files; only small
results (counts, URIs, timings) are returned to the caller.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.drawing import draw_skeletons, draw_skeletons_yuv420p
from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.metrics import DetectionCounter, JointStatistics, frame_metrics
from bodyscript_pipeline.model import ModelFile
from bodyscript_pipeline.parquet_io import (
    file_metadata,
    iter_batches,
    read_frame_range,
    read_table,
    table_writer,
    whole_frames,
    write_table,
)
from bodyscript_pipeline.pose import PoseOptions
from bodyscript_pipeline.pose_chunks import estimate_in_chunks
from bodyscript_pipeline.pose_topology import NUM_LANDMARKS
from bodyscript_pipeline.sources import load_source
from bodyscript_pipeline.validation import Limits, check_size
from bodyscript_pipeline.video_io import FrameIndex, H264Writer, Probe, iter_decoded, probe_video, upright

Progress = Callable[[int, int], None]
METRICS_WINDOW_FRAMES = 2048


def _no_progress(done: int, total: int) -> None:
    return None


def load_probe(lake: VideoLake) -> Probe:
    return Probe.from_json(storage.read_bytes(lake.probe).decode())


def load_frame_index(lake: VideoLake) -> FrameIndex:
    table = read_table(lake.frame_index, columns=["pts", "keyframe"])
    return FrameIndex(table["pts"].to_pylist(), table["keyframe"].to_pylist())


def source_copy_uri(lake: VideoLake, source_uri: str) -> str:
    return lake.source_copy(PurePosixPath(source_uri).suffix.lower())


@dataclass(frozen=True)
class FramesResult:
    probe: Probe
    source_uri: str
    source_version: str
    index_uri: str
    video_uri: str


def extract_frames(lake_uri: str, partition: str, limits: Limits | None = None) -> FramesResult:
    """Check and probe the source, copy it into the lake, and write the frame index every later step reads by.
    The source object itself is only ever read."""
    limits = limits or Limits()
    lake = VideoLake(lake_uri, partition)
    source = load_source(lake_uri, partition)
    video_uri = source_copy_uri(lake, source.uri)
    name = PurePosixPath(source.uri).name
    try:
        size = storage.size_of(source.uri)
    except FileNotFoundError:
        raise VideoError(f"{name}: the source object no longer exists ({source.uri})") from None
    check_size(name, size, limits)
    with storage.local_copy(source.uri) as local:
        probe, index = probe_video(local, limits)
        storage.put_file(local, video_uri)
    timestamps = [probe.timestamp_ms(p) for p in index.pts]
    frames = pa.table(
        {
            "frame_index": pa.array(range(len(index)), pa.uint32()),
            "pts": pa.array(index.pts, pa.int64()),
            "timestamp_ms": pa.array(timestamps, pa.int64()),
            "keyframe": pa.array(index.keyframe, pa.bool_()),
        }
    )
    write_table("frames", lake.frame_index, frames, {"bodyscript.video_uri": video_uri})
    storage.write_bytes(lake.probe, probe.to_json().encode())
    return FramesResult(probe, source.uri, source.version, lake.frame_index, video_uri)


def _frame_video_uri(lake: VideoLake) -> str:
    return file_metadata(lake.frame_index)["bodyscript.video_uri"]


@dataclass(frozen=True)
class LandmarksResult:
    uri: str
    rows: int
    frames: int
    detected_frames: int
    seconds: float
    delegate: str = "cpu"
    delegate_fallback: str | None = None
    people: int = 0

    @property
    def detection_rate(self) -> float:
        return self.detected_frames / self.frames if self.frames else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def estimate_landmarks(
    lake_uri: str,
    partition: str,
    model: ModelFile,
    workers: int = 1,
    progress: Progress = _no_progress,
    options: PoseOptions | None = None,
) -> LandmarksResult:
    """Run the pose model on every frame, in ``workers`` parallel frame ranges, and write the rows in frame
    order with tracked person ids, streaming in bounded batches."""
    options = options or PoseOptions()
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    uri = lake.table_part("landmarks")
    started = time.perf_counter()
    meta = {
        "bodyscript.model": model.variant,
        "bodyscript.model_sha256": model.sha256,
        "bodyscript.num_poses": str(options.num_poses),
    }
    with (
        storage.local_copy(_frame_video_uri(lake)) as video,
        tempfile.TemporaryDirectory(prefix="bodyscript-pose-") as workdir,
        table_writer("landmarks", uri, meta) as out,
    ):
        run = estimate_in_chunks(video, probe, index, model.path, workers, Path(workdir), out, progress, options)
        seconds = time.perf_counter() - started
        out.add_metadata(
            {
                "bodyscript.pose_seconds": f"{seconds:.6f}",
                "bodyscript.frames": str(run.frames),
                "bodyscript.pose_delegate": run.delegate,
            }
        )
        rows = out.rows
    return LandmarksResult(uri, rows, run.frames, run.detected, seconds, run.delegate, run.fallback_reason, run.people)


def _poses_by_frame(
    landmarks_uri: str, batch_rows: int = NUM_LANDMARKS * 2048
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, person ids, array (persons, 33, 3) of x, y, visibility) for frames with detections.

    Each frame comes whole, even where a read batch splits it (see ``whole_frames``)."""
    columns = ["frame_index", "person", "x", "y", "visibility"]
    for frames in whole_frames(iter_batches(landmarks_uri, columns, batch_size=batch_rows)):
        yield from _frame_poses(frames.filter(pc.is_valid(frames["person"])))


def _frame_poses(table: pa.Table) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    if not table.num_rows:
        return
    frame = table["frame_index"].to_numpy()
    values = np.stack([table[c].to_numpy(zero_copy_only=False) for c in ("x", "y", "visibility")], axis=-1)
    starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    person = table["person"].to_numpy()
    for s, e in zip(starts, ends, strict=True):
        yield int(frame[s]), person[s:e:NUM_LANDMARKS], values[s:e].reshape(-1, NUM_LANDMARKS, 3)


@dataclass(frozen=True)
class OverlayResult:
    uri: str
    thumbnail_uri: str
    frames: int
    width: int
    height: int
    seconds: float


def render_overlay(
    lake_uri: str, partition: str, min_visibility: float, progress: Progress = _no_progress
) -> OverlayResult:
    """Draw the skeletons on every source frame and encode a browser-ready MP4 plus a thumbnail."""
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    started = time.perf_counter()
    thumbnail_at = len(index) // 2
    thumbnail: np.ndarray | None = None
    poses = _poses_by_frame(lake.table_part("landmarks"))
    pending = next(poses, None)
    empty = np.empty((0, NUM_LANDMARKS, 3), dtype=np.float32)
    no_ids = np.empty(0, dtype=np.uint16)
    with (
        storage.local_copy(_frame_video_uri(lake)) as video,
        storage.staged_output(lake.overlay) as out_path,
        H264Writer(out_path, probe.width, probe.height, probe.time_base, probe.fps) as writer,
    ):
        # Frames already upright, even-sized and in yuv420p are drawn on as they are: no conversion to RGB
        # and back, which would cost more than decoding them.
        direct = probe.rotation == 0 and probe.width % 2 == 0 and probe.height % 2 == 0
        for i, pts, frame in iter_decoded(video, index):
            people, ids = empty, no_ids
            while pending is not None and pending[0] <= i:
                if pending[0] == i:
                    ids, people = pending[1], pending[2]
                pending = next(poses, None)
            if direct and frame.format.name == "yuv420p":
                planes = frame.to_ndarray()
                draw_skeletons_yuv420p(planes, people, min_visibility, ids)
                writer.write_yuv420p(planes, pts - probe.start_pts)
                if i == thumbnail_at:
                    thumbnail = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24")
            else:
                image = upright(frame.to_ndarray(format="rgb24"), probe.rotation)
                draw_skeletons(image, people, min_visibility, ids)
                writer.write(image, pts - probe.start_pts)
                if i == thumbnail_at:
                    thumbnail = image
            if i % 64 == 0:
                progress(i, len(index))
        frames_written = writer.frames
        size = (writer.width, writer.height)
    if thumbnail is not None:
        _write_thumbnail(lake.thumbnail, thumbnail)
    progress(len(index), len(index))
    return OverlayResult(lake.overlay, lake.thumbnail, frames_written, *size, time.perf_counter() - started)


def _write_thumbnail(uri: str, image: np.ndarray, max_side: int = 480) -> None:
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("thumbnail could not be encoded")
    storage.write_bytes(uri, encoded.tobytes())


@dataclass(frozen=True)
class MetricsResult:
    frame_metrics_uri: str
    video_metrics_uri: str
    videos_uri: str
    frame_rows: int
    detection_rate: float
    video_row: dict[str, object]
    joint_rows: list[dict[str, object]]


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
    columns = ["frame_index", "timestamp_ms", "person", "landmark_id", "x", "y", "visibility"]
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
    source = load_source(lake_uri, partition)
    video_row: dict[str, object] = {
        "source_uri": source.uri,
        "source_version": source.version,
        "codec": probe.codec,
        "width": probe.width,
        "height": probe.height,
        "rotation": probe.rotation,
        "fps": probe.fps,
        "duration_s": probe.duration_s,
        "frame_count": probe.frame_count,
        "variable_frame_rate": probe.variable_frame_rate,
        "detected_frames": summary.detected_frames,
        "detection_rate": summary.detection_rate,
        "mean_visibility": summary.mean_visibility,
        "p10_visibility": summary.p10_visibility,
        "pose_frames_per_s": summary.frames / pose_seconds if pose_seconds else None,
        "model": meta.get("bodyscript.model", ""),
        "model_sha256": meta.get("bodyscript.model_sha256", ""),
        "metrics_landmarks": landmarks_source,
        "processed_at_ms": int(time.time() * 1000),
    }
    write_table("video_metrics", lake.table_part("video_metrics"), per_joint)
    write_table("videos", lake.table_part("videos"), pa.Table.from_pylist([video_row]))
    return MetricsResult(
        lake.table_part("frame_metrics"),
        lake.table_part("video_metrics"),
        lake.table_part("videos"),
        frame_rows,
        summary.detection_rate,
        video_row,
        per_joint.to_pylist(),
    )
