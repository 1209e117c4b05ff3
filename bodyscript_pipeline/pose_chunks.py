"""Pose inference over frame ranges in parallel processes, merged back in frame order.

Each range (chunk) gets its own landmarker in VIDEO mode and its own decoder. A landmarker starting cold
re-detects the person instead of tracking them, so every chunk after the first starts ``WARMUP_FRAMES``
early: those frames only warm the tracker up and are not written. Every frame belongs to exactly one chunk,
so the merged table has each frame exactly once, in order. Person ids are given while merging, by one
``PersonTracker`` over all chunks in frame order, so they do not restart at chunk boundaries.

Given an overlay style, each worker also draws its chunk's overlay segment from the frames it decodes for
pose, labelled (several people per frame) with the ids of its own tracker, which sees the warm-up frames
too. The merge says which segments drew exactly the merged ids; the others are drawn again by the overlay
step.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bodyscript_pipeline.overlay_video import OverlayEncoder, OverlayStyle
from bodyscript_pipeline.parquet_io import TableWriter, table_writer, whole_frames
from bodyscript_pipeline.pose import VISIBILITY, PoseEstimator, PoseOptions, X, Y, merge_columns, result_columns
from bodyscript_pipeline.pose_topology import NUM_LANDMARKS
from bodyscript_pipeline.tracking import PersonTracker
from bodyscript_pipeline.video_io import FrameIndex, Probe, iter_decoded, upright

WARMUP_FRAMES = 30
MIN_CHUNK_FRAMES = 150  # below this a process's start-up (about a second) outweighs what it saves
BATCH_FRAMES = 1024  # frames per Parquet row group: bounded memory, good compression
PROGRESS_EVERY = 16

PR_SET_PDEATHSIG = 1  # prctl(2)
_progress: Any = None  # a shared counter of frames done, set in each worker process


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    stop: int

    @property
    def warmup_start(self) -> int:
        return max(0, self.start - WARMUP_FRAMES)


@dataclass(frozen=True)
class ChunkResult:
    chunk: Chunk
    path: Path
    frames: int
    detected: int
    delegate: str
    fallback_reason: str | None
    segment: Path | None = None  # the chunk's overlay, drawn with the chunk's own person ids


@dataclass(frozen=True)
class OverlaySegment:
    """A chunk's overlay segment, and whether it is the overlay of its range (it drew no ids, or exactly
    the merged ones)."""

    start: int
    stop: int
    path: Path
    usable: bool


@dataclass(frozen=True)
class PoseRun:
    frames: int
    detected: int
    delegate: str
    fallback_reason: str | None
    people: int = 0  # person ids given
    segments: tuple[OverlaySegment, ...] = ()


def plan_chunks(frame_count: int, workers: int) -> list[Chunk]:
    """Contiguous frame ranges of near-equal size covering ``[0, frame_count)`` exactly once, one per worker
    (fewer for a short video)."""
    return _equal_chunks(frame_count, max(1, min(workers, frame_count // MIN_CHUNK_FRAMES)))


def plan_ranges(frame_count: int, range_frames: int) -> list[Chunk]:
    """Contiguous frame ranges of at most ``range_frames`` frames and near-equal size covering
    ``[0, frame_count)`` exactly once: the separate steps (pods) of pose inference under Kubernetes."""
    return _equal_chunks(frame_count, max(1, -(-frame_count // max(1, range_frames))))


def _equal_chunks(frame_count: int, count: int) -> list[Chunk]:
    bounds = [round(k * frame_count / count) for k in range(count + 1)]
    return [Chunk(k, bounds[k], bounds[k + 1]) for k in range(count)]


def _init_worker(counter: Any) -> None:
    global _progress
    _progress = counter
    if sys.platform == "linux":
        # Die with the step process: a step killed mid-run (OOM, kill -9) leaves no worker computing for nobody.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_chunk(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    chunk: Chunk,
    out: Path,
    options: PoseOptions,
    overlay: OverlayStyle | None = None,
) -> ChunkResult:
    """Pose rows of one chunk's frames, written to a local Parquet file with ``person`` the id given by the
    chunk's own tracker; with an ``overlay`` style, also the chunk's overlay segment beside that file."""
    frames = detected = 0
    estimator = PoseEstimator(model_path, options.num_poses, delegate=options.delegate, tiles=options.tiles)
    tracker = PersonTracker(probe.width, probe.height, options.track_max_gap)
    segment = out.with_suffix(".mp4") if overlay else None
    first_pts = index.pts[chunk.start]
    # One encoder thread: the chunks' processes already keep every core busy.
    drawing = OverlayEncoder(segment, probe, overlay, first_pts, threads=1) if segment and overlay else nullcontext()
    with estimator, table_writer("landmarks", f"file://{out}") as writer, drawing as drawn:
        parts: list[dict[str, list[object]]] = []
        for frame_index, pts, frame in iter_decoded(video, index, chunk.warmup_start, chunk.stop):
            timestamp_ms = probe.timestamp_ms(pts)
            people = estimator.detect(upright(frame.to_ndarray(format="rgb24"), probe.rotation), timestamp_ms)
            xyv = people[:, :, [X, Y, VISIBILITY]]
            ids = np.asarray(tracker.assign(frame_index, xyv) if len(people) else [], dtype=np.uint16)
            if frame_index < chunk.start:
                continue  # warm-up: pose and person tracker state only
            detected += bool(len(people))
            parts.append(result_columns(frame_index, timestamp_ms, people, ids))
            if drawn is not None:
                drawn.add(frame, pts, xyv, ids)
            frames += 1
            if len(parts) == BATCH_FRAMES:
                writer.write_columns(merge_columns(parts))
                parts = []
            if _progress is not None and frames % PROGRESS_EVERY == 0:
                with _progress.get_lock():
                    _progress.value += PROGRESS_EVERY
        writer.write_columns(merge_columns(parts))
    return ChunkResult(chunk, out, frames, detected, estimator.delegate, estimator.fallback_reason, segment)


def estimate_in_chunks(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    workers: int,
    workdir: Path,
    out: TableWriter,
    progress: Callable[[int, int], None],
    options: PoseOptions,
    overlay: OverlayStyle | None = None,
) -> PoseRun:
    """Run every chunk in worker processes, in parallel, then append their rows to ``out`` in frame order,
    with person ids from one tracker; with an ``overlay`` style, the chunks' overlay segments too."""
    chunks = plan_chunks(len(index), workers)
    paths = [workdir / f"chunk-{c.index:03d}.parquet" for c in chunks]
    # Even one chunk runs in a worker process: the step's own process then never loads MediaPipe and its
    # model, which keeps it small (the CLI runs every step in one process).
    results = _run_parallel(video, probe, index, model_path, chunks, paths, progress, options, overlay)
    run = merge_chunks(results, probe, out, options, overlay)
    progress(len(index), len(index))
    return run


def merge_chunks(
    results: list[ChunkResult], probe: Probe, out: TableWriter, options: PoseOptions, overlay: OverlayStyle | None
) -> PoseRun:
    """Append the chunks' rows to ``out`` in frame order with person ids from one tracker, and say which
    overlay segments are the overlay of their range. The chunks' local files are removed once read."""
    tracker = PersonTracker(probe.width, probe.height, options.track_max_gap)
    segments = []
    for result in sorted(results, key=lambda r: r.chunk.index):
        batches = pq.ParquetFile(result.path).iter_batches(batch_size=BATCH_FRAMES * NUM_LANDMARKS)
        ids_match = True
        for table in whole_frames(batches):  # a chunk's frames all lie in its own file
            ids_match &= _write_tracked(table, tracker, out)
        result.path.unlink()
        if result.segment is not None and overlay is not None:
            usable = ids_match or not overlay.label_people
            segments.append(OverlaySegment(result.chunk.start, result.chunk.stop, result.segment, usable))
    fallbacks = [r.fallback_reason for r in results if r.fallback_reason]
    return PoseRun(
        frames=sum(r.frames for r in results),
        detected=sum(r.detected for r in results),
        delegate="gpu" if all(r.delegate == "gpu" for r in results) else "cpu",
        fallback_reason=fallbacks[0] if fallbacks else None,
        people=tracker.next_id,
        segments=tuple(segments),
    )


def _write_tracked(table: pa.Table, tracker: PersonTracker, out: TableWriter) -> bool:
    """Replace the chunk's own ``person`` ids by the merged tracker's, then write the rows. Returns whether
    the ids were the same."""
    if not table.num_rows:
        return True
    valid = pc.is_valid(table["person"]).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    ids = np.zeros(table.num_rows, dtype=np.uint16)
    if len(rows):
        values = np.stack(
            [table[c].to_numpy(zero_copy_only=False)[rows] for c in ("x", "y", "visibility")], axis=-1
        ).reshape(-1, NUM_LANDMARKS, 3)
        pose_frame = table["frame_index"].to_numpy()[rows][::NUM_LANDMARKS]
        pose_ids = np.empty(len(pose_frame), dtype=np.uint16)
        starts = np.flatnonzero(np.r_[True, pose_frame[1:] != pose_frame[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(pose_frame)], strict=True):
            pose_ids[s:e] = tracker.assign(int(pose_frame[s]), values[s:e])
        ids[rows] = np.repeat(pose_ids, NUM_LANDMARKS)
    own_ids = table["person"].to_numpy(zero_copy_only=False)[rows]
    person = pa.array(ids, pa.uint16(), mask=~valid)
    table = table.set_column(table.schema.get_field_index("person"), "person", person).combine_chunks()
    for batch in table.to_batches():
        out.write_batch(batch)
    return bool(np.array_equal(own_ids, ids[rows]))


def _run_parallel(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    chunks: list[Chunk],
    paths: list[Path],
    progress: Callable[[int, int], None],
    options: PoseOptions,
    overlay: OverlayStyle | None,
) -> list[ChunkResult]:
    # spawn, not fork: the parent holds threads (Dagster's, PyAV's) that a fork would copy mid-flight.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    with ProcessPoolExecutor(len(chunks), mp_context=context, initializer=_init_worker, initargs=(counter,)) as pool:
        futures = [
            pool.submit(run_chunk, video, probe, index, model_path, chunk, path, options, overlay)
            for chunk, path in zip(chunks, paths, strict=True)
        ]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                for future in pending:
                    future.cancel()
                break
            progress(min(counter.value, len(index)), len(index))
        return [future.result() for future in futures]
