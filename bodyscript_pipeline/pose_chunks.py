"""Pose inference over frame ranges in parallel processes, merged back in frame order.

Each range (chunk) gets its own landmarker in VIDEO mode and its own decoder. A landmarker starting cold
re-detects the person instead of tracking them, so every chunk after the first starts ``WARMUP_FRAMES``
early: those frames only warm the tracker up and are not written. Every frame belongs to exactly one chunk,
so the merged table has each frame exactly once, in order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bodyscript_pipeline.parquet_io import TableWriter, table_writer
from bodyscript_pipeline.pose import PoseEstimator, merge_columns, result_columns
from bodyscript_pipeline.video_io import FrameIndex, Probe, iter_frames

WARMUP_FRAMES = 30
MIN_CHUNK_FRAMES = 150  # below this a process's start-up (about a second) outweighs what it saves
BATCH_FRAMES = 1024  # frames per Parquet row group: bounded memory, good compression
PROGRESS_EVERY = 16

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


@dataclass(frozen=True)
class PoseRun:
    frames: int
    detected: int
    delegate: str
    fallback_reason: str | None


def plan_chunks(frame_count: int, workers: int) -> list[Chunk]:
    """Contiguous frame ranges of near-equal size covering ``[0, frame_count)`` exactly once."""
    count = max(1, min(workers, frame_count // MIN_CHUNK_FRAMES))
    bounds = [round(k * frame_count / count) for k in range(count + 1)]
    return [Chunk(k, bounds[k], bounds[k + 1]) for k in range(count)]


def _init_worker(counter: Any) -> None:
    global _progress
    _progress = counter


def run_chunk(
    video: Path, probe: Probe, index: FrameIndex, model_path: Path, chunk: Chunk, out: Path, delegate: str = "cpu"
) -> ChunkResult:
    """Pose rows of one chunk's frames, written to a local Parquet file."""
    frames = detected = 0
    estimator = PoseEstimator(model_path, delegate=delegate)
    with estimator, table_writer("landmarks", f"file://{out}") as writer:
        parts: list[dict[str, list[object]]] = []
        for frame_index, pts, image in iter_frames(video, probe, index, chunk.warmup_start, chunk.stop):
            timestamp_ms = probe.timestamp_ms(pts)
            result = estimator.detect(image, timestamp_ms)
            if frame_index < chunk.start:
                continue  # warm-up: tracker state only
            detected += bool(result.pose_landmarks)
            parts.append(result_columns(frame_index, timestamp_ms, result))
            frames += 1
            if len(parts) == BATCH_FRAMES:
                writer.write_columns(merge_columns(parts))
                parts = []
            if _progress is not None and frames % PROGRESS_EVERY == 0:
                with _progress.get_lock():
                    _progress.value += PROGRESS_EVERY
        writer.write_columns(merge_columns(parts))
    return ChunkResult(chunk, out, frames, detected, estimator.delegate, estimator.fallback_reason)


def estimate_in_chunks(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    workers: int,
    workdir: Path,
    out: TableWriter,
    progress: Callable[[int, int], None],
    delegate: str = "cpu",
) -> PoseRun:
    """Run every chunk (in parallel processes when more than one), then append their rows to ``out`` in
    frame order."""
    chunks = plan_chunks(len(index), workers)
    paths = [workdir / f"chunk-{c.index:03d}.parquet" for c in chunks]
    if len(chunks) == 1:
        results = [run_chunk(video, probe, index, model_path, chunks[0], paths[0], delegate)]
    else:
        results = _run_parallel(video, probe, index, model_path, chunks, paths, progress, delegate)
    for result in sorted(results, key=lambda r: r.chunk.index):
        for batch in pq.ParquetFile(result.path).iter_batches(batch_size=BATCH_FRAMES * 33):
            out.write_batch(batch)
        result.path.unlink()
    progress(len(index), len(index))
    fallbacks = [r.fallback_reason for r in results if r.fallback_reason]
    return PoseRun(
        frames=sum(r.frames for r in results),
        detected=sum(r.detected for r in results),
        delegate="gpu" if all(r.delegate == "gpu" for r in results) else "cpu",
        fallback_reason=fallbacks[0] if fallbacks else None,
    )


def _run_parallel(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    chunks: list[Chunk],
    paths: list[Path],
    progress: Callable[[int, int], None],
    delegate: str,
) -> list[ChunkResult]:
    # spawn, not fork: the parent holds threads (Dagster's, PyAV's) that a fork would copy mid-flight.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    with ProcessPoolExecutor(len(chunks), mp_context=context, initializer=_init_worker, initargs=(counter,)) as pool:
        futures = [
            pool.submit(run_chunk, video, probe, index, model_path, chunk, path, delegate)
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
