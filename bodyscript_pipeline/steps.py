"""The work of each asset, free of Dagster: read inputs from the lake by path rules, write outputs there.

Heavy data (video, frames, landmarks) is streamed between storage and local temp files; only small
results (counts, URIs, timings) are returned to the caller.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.lake import TABLES, VideoLake
from bodyscript_pipeline.metrics import DetectionCounter, JointStatistics, frame_metrics
from bodyscript_pipeline.model import ModelFile
from bodyscript_pipeline.overlay_video import OverlayEncoder, OverlayStyle, frame_at, join_segments, overlay_size
from bodyscript_pipeline.parquet_io import (
    TableWriter,
    file_metadata,
    iter_batches,
    read_frame_range,
    read_table,
    table_writer,
    whole_frames,
    write_table,
)
from bodyscript_pipeline.pose import PoseOptions
from bodyscript_pipeline.pose_chunks import (
    Chunk,
    ChunkResult,
    OverlaySegment,
    PoseRun,
    estimate_in_chunks,
    merge_chunks,
    run_chunk,
)
from bodyscript_pipeline.pose_service import PoseService
from bodyscript_pipeline.pose_topology import NUM_LANDMARKS
from bodyscript_pipeline.schemas import FRAMES, VIDEOS
from bodyscript_pipeline.sources import SourceRecord, load_source
from bodyscript_pipeline.validation import Limits, check_size
from bodyscript_pipeline.video_io import FrameIndex, Probe, decode_limits, iter_decoded, probe_video

Progress = Callable[[int, int], None]
# Every per-video output folder, each written from one source version.
OUTPUT_TABLES = (*TABLES, "overlays", "exports")
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


def extract_frames(
    lake_uri: str, partition: str, limits: Limits | None = None, version: str | None = None
) -> FramesResult:
    """Check and probe the source, copy it into the lake, and write the frame index every later step reads by.
    The source object itself is only ever read, and only as ``version`` (default: the registered one)."""
    limits = limits or Limits()
    lake = VideoLake(lake_uri, partition)
    source = load_source(lake_uri, partition)
    version = version or source.version
    video_uri = source_copy_uri(lake, source.uri)
    name = PurePosixPath(source.uri).name
    with tempfile.TemporaryDirectory(prefix="bodyscript-") as tmpdir:
        # Named as the source, so that messages name it; a name no file can have gets a plain one.
        usable = name not in ("", ".", "..") and len(name.encode()) <= 200
        local = Path(tmpdir) / (name if usable else "source" + PurePosixPath(video_uri).suffix)
        try:
            storage.fetch_source(source.uri, version, local, limits.max_bytes)
        except FileNotFoundError:
            raise VideoError(f"{name}: the source object no longer exists ({source.uri})") from None
        drop_other_versions(lake, version)  # the pinned version is the current one: the older one's outputs go
        check_size(name, local.stat().st_size, limits)
        probe, index = probe_video(local, limits)
        storage.put_file(local, video_uri)
    timestamps = [probe.timestamp_ms(p) for p in index.pts]
    columns = {
        "frame_index": range(len(index)),
        "pts": index.pts,
        "timestamp_ms": timestamps,
        "keyframe": index.keyframe,
    }
    frames = pa.table({name: pa.array(columns[name], FRAMES.field(name).type) for name in FRAMES.names})
    meta = {
        "bodyscript.video_uri": video_uri,
        "bodyscript.source_uri": source.uri,
        "bodyscript.source_version": version,
    }
    write_table("frames", lake.frame_index, frames, meta)
    storage.write_bytes(lake.probe, probe.to_json().encode())
    return FramesResult(probe, source.uri, version, lake.frame_index, video_uri)


def begin_writing(lake_uri: str, partition: str, run_id: str) -> None:
    """Hide the partition from the lake's views until :func:`end_writing`: its outputs are about to change."""
    storage.write_bytes(VideoLake(lake_uri, partition).writing, json.dumps({"run_id": run_id}).encode())


def end_writing(lake_uri: str, partition: str) -> None:
    """Every output of the run is written: the partition's new set shows in the views at once."""
    storage.delete_tree(VideoLake(lake_uri, partition).writing)


def drop_other_versions(lake: VideoLake, version: str) -> None:
    """Before the first output of a new source version is written, remove every output of the one before: a
    reader sees the old version's results, or the new one's as far as they go, never a mix of the two. Outputs
    of the same version are kept (a re-materialization overwrites them file by file)."""
    try:
        previous = file_metadata(lake.frame_index).get("bodyscript.source_version")
    except FileNotFoundError:
        if not storage.exists(lake.folder("landmarks")):
            return  # a new partition
        previous = None
    if previous != version:
        for table in OUTPUT_TABLES:
            storage.delete_tree(lake.folder(table))


def frames_source(lake: VideoLake) -> SourceRecord:
    """The source object and version the partition's frames were made from: what every later output of the
    partition describes, even after a newer version was registered for its own run."""
    meta = file_metadata(lake.frame_index)
    if "bodyscript.source_version" not in meta:  # frames written before the version was recorded
        return load_source(lake.lake_uri, lake.partition)
    return SourceRecord(meta["bodyscript.source_uri"], meta["bodyscript.source_version"], 0)


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
    overlay_segments: int = 0  # overlay segments drawn while inferring
    overlay_segments_kept: int = 0  # of those, the ones with the merged person ids, kept for the overlay

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
    overlay: OverlayStyle | None = None,
    service: PoseService | None = None,
) -> LandmarksResult:
    """Run the pose model on every frame, in ``workers`` parallel frame ranges (in the warm pose ``service``
    where there is one), and write the rows in frame
    order with tracked person ids, streaming in bounded batches. With an ``overlay`` style, the workers draw
    the overlay of their ranges too (each frame decoded once for both); the segments drawn with the final
    person ids are kept in the lake for the overlay step, which draws only the rest again."""
    options = options or PoseOptions()
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    started = time.perf_counter()
    with (
        storage.local_copy(_frame_video_uri(lake)) as video,
        tempfile.TemporaryDirectory(prefix="bodyscript-pose-") as workdir,
        _landmarks_writer(lake, model, options) as out,
    ):
        storage.delete_tree(lake.overlay_segments)
        run = estimate_in_chunks(
            video, probe, index, model.path, workers, Path(workdir), out, progress, options, overlay, service
        )
        return _finish_landmarks(lake, out, run, time.perf_counter() - started, overlay)


def _landmarks_writer(lake: VideoLake, model: ModelFile, options: PoseOptions) -> AbstractContextManager[TableWriter]:
    meta = {
        "bodyscript.model": model.variant,
        "bodyscript.model_sha256": model.sha256,
        "bodyscript.num_poses": str(options.num_poses),
    }
    return table_writer("landmarks", lake.table_part("landmarks"), meta)


def _finish_landmarks(
    lake: VideoLake, out: TableWriter, run: PoseRun, seconds: float, overlay: OverlayStyle | None
) -> LandmarksResult:
    """Keep the usable overlay segments and record the run in the landmarks file's metadata."""
    kept = _keep_segments(lake, run.segments)
    out.add_metadata(
        {
            "bodyscript.pose_seconds": f"{seconds:.6f}",
            "bodyscript.frames": str(run.frames),
            "bodyscript.pose_delegate": run.delegate,
            **({"bodyscript.overlay_style": overlay.to_json()} if overlay else {}),
            "bodyscript.overlay_segments": json.dumps(kept),
        }
    )
    return LandmarksResult(
        lake.table_part("landmarks"),
        out.rows,
        run.frames,
        run.detected,
        seconds,
        run.delegate,
        run.fallback_reason,
        run.people,
        len(run.segments),
        len(kept),
    )


def infer_landmark_range(
    lake_uri: str,
    partition: str,
    model: ModelFile,
    chunk: Chunk,
    options: PoseOptions | None = None,
    overlay: OverlayStyle | None = None,
) -> dict[str, object]:
    """One frame range of pose inference (and its overlay segment) in this process, stored in the lake for
    :func:`merge_landmark_ranges`: the separate steps, and so pods, of ``landmarks`` under Kubernetes.
    Returns where the range's files are and what it found."""
    options = options or PoseOptions()
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    started = time.perf_counter()
    with (
        storage.local_copy(_frame_video_uri(lake)) as video,
        tempfile.TemporaryDirectory(prefix="bodyscript-pose-") as workdir,
    ):
        result = run_chunk(video, probe, index, model.path, chunk, Path(workdir) / "range.parquet", options, overlay)
        landmarks_uri = lake.pose_range(chunk.index, ".parquet")
        storage.put_file(result.path, landmarks_uri)
        segment_uri = None
        if result.segment is not None:
            segment_uri = lake.pose_range(chunk.index, ".mp4")
            storage.put_file(result.segment, segment_uri)
    return {
        "chunk": asdict(chunk),
        "landmarks_uri": landmarks_uri,
        "segment_uri": segment_uri,
        "frames": result.frames,
        "detected": result.detected,
        "delegate": result.delegate,
        "fallback_reason": result.fallback_reason,
        "seconds": time.perf_counter() - started,
    }


def merge_landmark_ranges(
    lake_uri: str,
    partition: str,
    model: ModelFile,
    ranges: list[dict[str, object]],
    options: PoseOptions | None = None,
    overlay: OverlayStyle | None = None,
) -> LandmarksResult:
    """The ``landmarks`` table from the ranges :func:`infer_landmark_range` stored, merged in frame order
    with person ids from one tracker, exactly as the local workers' chunks are; the ranges' files are
    removed afterwards. Its pose seconds are the slowest range's (the ranges run side by side)."""
    options = options or PoseOptions()
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    with (
        tempfile.TemporaryDirectory(prefix="bodyscript-merge-") as workdir,
        _landmarks_writer(lake, model, options) as out,
    ):
        storage.delete_tree(lake.overlay_segments)
        results = []
        for done in ranges:
            chunk = Chunk(**done["chunk"])  # type: ignore[arg-type]
            local = Path(workdir) / f"range-{chunk.index:05d}"
            path = _fetch(str(done["landmarks_uri"]), local.with_suffix(".parquet"))
            segment = _fetch(str(done["segment_uri"]), local.with_suffix(".mp4")) if done["segment_uri"] else None
            fallback = done["fallback_reason"]
            results.append(
                ChunkResult(chunk, path, int(str(done["frames"])), int(str(done["detected"])), str(done["delegate"]),
                            None if fallback is None else str(fallback), segment)
            )  # fmt: skip
        run = merge_chunks(results, probe, out, options, overlay)
        seconds = max(float(str(done["seconds"])) for done in ranges)
        landmarks = _finish_landmarks(lake, out, run, seconds, overlay)
    storage.delete_tree(lake.pose_ranges)
    return landmarks


def _fetch(uri: str, local: Path) -> Path:
    with storage.local_copy(uri) as source:
        shutil.copyfile(source, local)
    return local


def _keep_segments(lake: VideoLake, segments: tuple[OverlaySegment, ...]) -> list[dict[str, object]]:
    """Store the segments drawn with the final person ids; returns their ranges and locations."""
    kept: list[dict[str, object]] = []
    for segment in segments:
        if segment.usable:
            uri = lake.overlay_segment(segment.start, segment.stop)
            storage.put_file(segment.path, uri)
            kept.append({"start": segment.start, "stop": segment.stop, "uri": uri})
        segment.path.unlink()
    return kept


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
    frames_drawn: int  # frames drawn by this step; the others came from the pose workers' segments
    faces_blurred: bool
    thumbnail: bytes  # the thumbnail's JPEG, for the UI


def render_overlay(
    lake_uri: str, partition: str, style: OverlayStyle, progress: Progress = _no_progress
) -> OverlayResult:
    """The browser-ready overlay MP4 and its thumbnail: the segments the pose workers drew with the final
    person ids and this ``style``, joined with the ranges drawn here from the source and the landmarks."""
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    started = time.perf_counter()
    landmarks_uri = lake.table_part("landmarks")
    ranges = _overlay_ranges(file_metadata(landmarks_uri), style, len(index))
    poses = _poses_by_frame(landmarks_uri)
    pending = next(poses, None)
    empty = np.empty((0, NUM_LANDMARKS, 3), dtype=np.float32)
    no_ids = np.empty(0, dtype=np.uint16)
    drawn = 0
    with (
        storage.local_copy(_frame_video_uri(lake)) as video,
        storage.staged_output(lake.overlay) as out_path,
        tempfile.TemporaryDirectory(prefix="bodyscript-overlay-") as workdir,
        ExitStack() as stored,
    ):
        parts: list[Path] = []
        for start, stop, segment_uri in ranges:
            if segment_uri is not None:  # read where it lies (downloaded only from object storage)
                parts.append(stored.enter_context(storage.local_copy(segment_uri)))
                continue
            part = Path(workdir) / f"part-{start:07d}.mp4"
            with OverlayEncoder(part, probe, style, first_pts=index.pts[start]) as encoder:
                for i, pts, frame in iter_decoded(video, index, start, stop, decode_limits(probe)):
                    people, ids = empty, no_ids
                    while pending is not None and pending[0] <= i:
                        if pending[0] == i:
                            ids, people = pending[1], pending[2]
                        pending = next(poses, None)
                    encoder.add(frame, pts, people, ids)
                    drawn += 1
                    if drawn % 64 == 0:
                        progress(min(drawn, len(index)), len(index))
            parts.append(part)
        offsets = [index.pts[start] - probe.start_pts for start, _, _ in ranges]
        frames_written = join_segments(parts, offsets, probe.time_base, out_path)
        thumbnail = _write_thumbnail(lake.thumbnail, frame_at(out_path, len(index) // 2))
        size = overlay_size(probe.width, probe.height, style.max_resolution)
    storage.delete_tree(lake.overlay_segments)
    progress(len(index), len(index))
    seconds = time.perf_counter() - started
    return OverlayResult(
        lake.overlay, lake.thumbnail, frames_written, *size, seconds, drawn, style.blur_faces, thumbnail
    )


def _overlay_ranges(
    landmarks_meta: dict[str, str], style: OverlayStyle, frame_count: int
) -> list[tuple[int, int, str | None]]:
    """Consecutive frame ranges covering the video, each with the stored segment to use (drawn by the pose
    workers with the final ids and this style, and still there) or ``None`` where it must be drawn."""
    segments: list[dict[str, object]] = []
    if landmarks_meta.get("bodyscript.overlay_style") == style.to_json():
        segments = json.loads(landmarks_meta.get("bodyscript.overlay_segments", "[]"))
    ranges: list[tuple[int, int, str | None]] = []
    position = 0
    for segment in sorted(segments, key=lambda s: int(str(s["start"]))):
        start, stop, uri = int(str(segment["start"])), int(str(segment["stop"])), str(segment["uri"])
        if start < position or not storage.exists(uri):
            continue
        if start > position:
            ranges.append((position, start, None))
        ranges.append((start, stop, uri))
        position = stop
    if position < frame_count:
        ranges.append((position, frame_count, None))
    return ranges


def _write_thumbnail(uri: str, image: np.ndarray, max_side: int = 480) -> bytes:
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("thumbnail could not be encoded")
    jpeg = encoded.tobytes()
    storage.write_bytes(uri, jpeg)
    return jpeg


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
    source = frames_source(lake)
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
    write_table("videos", lake.table_part("videos"), pa.Table.from_pylist([video_row], schema=VIDEOS))
    return MetricsResult(
        lake.table_part("frame_metrics"),
        lake.table_part("video_metrics"),
        lake.table_part("videos"),
        frame_rows,
        summary.detection_rate,
        video_row,
        per_joint.to_pylist(),
    )
