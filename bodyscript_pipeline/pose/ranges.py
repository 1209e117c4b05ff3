"""Pose inference over frame ranges in parallel processes, merged back in frame order.

Each range (frame_range) gets its own landmarker in VIDEO mode and its own decoder. A landmarker starting cold
re-detects the person instead of tracking them, so every frame_range after the first starts ``WARMUP_FRAMES``
early: those frames only warm the tracker up and are not written. Every frame belongs to exactly one frame_range,
so the merged table has each frame exactly once, in order. Person ids are given while merging, by one
``PersonTracker`` over all ranges in frame order, so they do not restart at frame_range boundaries.

Given an overlay style, each worker also draws its frame_range's overlay segment from the frames it decodes for
pose, labelled (several people per frame) with the ids of its own tracker, which sees the warm-up frames
too. The merge says which segments drew exactly the merged ids; the others are drawn again by the overlay
step.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bodyscript_pipeline.lake.parquet import TableWriter, table_writer, whole_frames
from bodyscript_pipeline.lake.schemas import IMAGE_COLUMNS
from bodyscript_pipeline.overlay.video import OverlayEncoder, OverlayStyle, opencv_threads
from bodyscript_pipeline.pose import service as pose_service
from bodyscript_pipeline.pose.estimator import (
    VISIBILITY,
    PoseEstimator,
    PoseOptions,
    X,
    Y,
    merge_columns,
    result_columns,
)
from bodyscript_pipeline.pose.service import PoseService, ServiceUnavailable
from bodyscript_pipeline.pose.tracking import PersonTracker
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS
from bodyscript_pipeline.video.heap import reuse_frame_buffers
from bodyscript_pipeline.video.io import (
    FrameIndex,
    Probe,
    RgbConverter,
    decode_limits,
    iter_decoded,
)

WARMUP_FRAMES = 30
MIN_RANGE_FRAMES = 150  # below this a process's start-up (about a second) outweighs what it saves
BATCH_FRAMES = 1024  # frames per Parquet row group: bounded memory, good compression
PROGRESS_EVERY = 16

PR_SET_PDEATHSIG = 1  # prctl(2)
_report: Callable[[int], None] | None = None  # where a worker process reports frames done


def set_progress_reporter(report: Callable[[int], None] | None) -> None:
    global _report
    _report = report


@dataclass(frozen=True)
class FrameRange:
    index: int
    start: int
    stop: int

    @property
    def warmup_start(self) -> int:
        return max(0, self.start - WARMUP_FRAMES)


@dataclass(frozen=True)
class RangeResult:
    frame_range: FrameRange
    path: Path
    frames: int
    detected: int
    delegate: str
    fallback_reason: str | None
    segment: Path | None = None  # the frame_range's overlay, drawn with the frame_range's own person ids


@dataclass(frozen=True)
class OverlaySegment:
    """A frame_range's overlay segment, and whether it is the overlay of its range (it drew no ids, or exactly
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
    head_start: bool = False  # the ranges were begun before the step (pose/head_start.py)


def plan_worker_ranges(frame_count: int, workers: int) -> list[FrameRange]:
    """Contiguous frame ranges covering ``[0, frame_count)`` exactly once, one per worker (fewer for a short
    video), of near-equal work: every range after the first also runs its ``WARMUP_FRAMES``, so the first gets
    as many frames more, and the workers, side by side, finish together."""
    return _equal_ranges(frame_count, max(1, min(workers, frame_count // MIN_RANGE_FRAMES)), WARMUP_FRAMES)


def plan_ranges(frame_count: int, range_frames: int) -> list[FrameRange]:
    """Contiguous frame ranges of at most ``range_frames`` frames and near-equal size covering
    ``[0, frame_count)`` exactly once: the separate steps (pods) of pose inference under Kubernetes."""
    return _equal_ranges(frame_count, max(1, -(-frame_count // max(1, range_frames))))


def range_paths(workdir: Path, ranges: list[FrameRange]) -> list[Path]:
    """Where each range's rows are written (its overlay segment beside them)."""
    return [workdir / f"frame_range-{r.index:03d}.parquet" for r in ranges]


def spare_cores(ranges: list[FrameRange], running: int = 0) -> bool:
    """Whether ranges run side by side on this machine, beside ``running`` other ranges (other videos' in the
    pose service), leave cores free for threads of their own (decoding, drawing). Where there is a range per
    core, those threads only competed with inference for the same cores: 7-10 % more CPU each on a 60 s clip
    with two ranges on two cores."""
    return len(ranges) + running < (os.cpu_count() or 1)


def _equal_ranges(frame_count: int, count: int, warmup: int = 0) -> list[FrameRange]:
    """``count`` ranges that each run the same number of frames, where every range after the first also runs
    ``warmup`` frames before its own."""
    run = frame_count + (count - 1) * warmup  # frames run by all, warm-ups included: ``run / count`` each
    bounds = [0, *(round((k * run - (k - 1) * warmup * count) / count) for k in range(1, count)), frame_count]
    return [FrameRange(k, bounds[k], bounds[k + 1]) for k in range(count)]


def _init_worker(counter: Any) -> None:
    def add(frames: int) -> None:
        with counter.get_lock():
            counter.value += frames

    set_progress_reporter(add)
    if sys.platform == "linux":
        # Die with the step process: a step killed mid-run (OOM, kill -9) leaves no worker computing for nobody.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_range(
    video: Path,
    probe: Probe,
    index: FrameIndex,
    model_path: Path,
    frame_range: FrameRange,
    out: Path,
    options: PoseOptions,
    overlay: OverlayStyle | None = None,
    threaded: bool = True,
) -> RangeResult:
    """Pose rows of one frame_range's frames, written to a local Parquet file with ``person`` the id given by the
    frame_range's own tracker; with an ``overlay`` style, also the frame_range's overlay segment beside that file.
    ``threaded``: the decoder and the overlay have threads of their own, for cores that inference leaves free
    (``spare_cores``); without, this range's process does all of its work on one thread. A range runs in a
    process of its own (a worker, a pose service's child, a Kubernetes step), whose heap it sets up to reuse
    frame-sized buffers (video/heap.py)."""
    reuse_frame_buffers()
    frames = detected = 0
    estimator = PoseEstimator(model_path, options.num_poses, delegate=options.delegate, tiles=options.tiles)
    tracker = PersonTracker(probe.width, probe.height, options.track_max_gap)
    segment = out.with_suffix(".mp4") if overlay else None
    first_pts = index.pts[frame_range.start]
    # One encoder thread: the ranges' processes already keep every core busy.
    drawing = (
        OverlayEncoder(segment, probe, overlay, first_pts, threads=1, background=threaded)
        if segment and overlay
        else nullcontext()
    )
    rgb = RgbConverter(probe.rotation, threaded)
    single = opencv_threads(None if threaded else 1)
    with estimator, table_writer("landmarks", f"file://{out}") as writer, drawing as drawn, single:
        parts: list[dict[str, list[object]]] = []
        for frame_index, pts, frame in iter_decoded(
            video, index, frame_range.warmup_start, frame_range.stop, decode_limits(probe), threaded=threaded
        ):
            timestamp_ms = probe.timestamp_ms(pts)
            people = estimator.detect(rgb(frame), timestamp_ms)
            xyv = people[:, :, [X, Y, VISIBILITY]]
            ids = np.asarray(tracker.assign(frame_index, xyv) if len(people) else [], dtype=np.uint16)
            if frame_index < frame_range.start:
                continue  # warm-up: pose and person tracker state only
            detected += bool(len(people))
            parts.append(result_columns(frame_index, timestamp_ms, people, ids))
            if drawn is not None:
                drawn.add(frame, pts, xyv, ids)
            frames += 1
            if len(parts) == BATCH_FRAMES:
                writer.write_columns(merge_columns(parts))
                parts = []
            if _report is not None and frames % PROGRESS_EVERY == 0:
                _report(PROGRESS_EVERY)
        writer.write_columns(merge_columns(parts))
    return RangeResult(frame_range, out, frames, detected, estimator.delegate, estimator.fallback_reason, segment)


def run_request(request: dict[str, Any], running: int = 0) -> dict[str, Any]:
    """``run_range`` from a pose service request (``VideoRanges.request``); the result as a record. The range has
    threads of its own where its caller says cores are left and ``running`` requests beside it (a burst's other
    videos) leave them still; the outputs are the same either way."""
    overlay = request["overlay"]
    frame_range = FrameRange(**request["frame_range"])
    threaded = request.get("threaded", True) and spare_cores([frame_range], running)
    result = run_range(
        Path(request["video"]),
        Probe.from_json(request["probe"]),
        FrameIndex(request["index"]["pts"], request["index"]["keyframe"]),
        Path(request["model"]),
        frame_range,
        Path(request["out"]),
        PoseOptions(**request["options"]),
        OverlayStyle(**overlay) if overlay is not None else None,
        threaded,
    )
    return {
        "threaded": threaded,
        "frames": result.frames,
        "detected": result.detected,
        "delegate": result.delegate,
        "fallback_reason": result.fallback_reason,
        "segment": str(result.segment) if result.segment is not None else None,
    }


def estimate_in_ranges(
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
    service: PoseService | None = None,
    begun: Callable[[VideoRanges, list[FrameRange]], list[RangeResult] | None] | None = None,
) -> PoseRun:
    """Run every frame_range in worker processes, in parallel, then append their rows to ``out`` in frame order,
    with person ids from one tracker; with an ``overlay`` style, the ranges' overlay segments too. With a
    ``service``, the ranges run in the warm pose service's processes instead of freshly started ones. ``begun``
    gives the results of these very ranges where they were begun already (pose/head_start.py)."""
    ranges = plan_worker_ranges(len(index), workers)
    paths = range_paths(workdir, ranges)
    video_ranges = VideoRanges(video, probe, index, model_path, options, overlay)
    results = begun(video_ranges, ranges) if begun is not None else None
    head_start = results is not None
    if results is None:
        # Even one frame_range runs in a worker process: the step's own process then never loads MediaPipe and
        # its model, which keeps it small (the CLI runs every step in one process).
        results = video_ranges.run(ranges, paths, progress, service)
    run = replace(merge_ranges(results, probe, out, options, overlay), head_start=head_start)
    progress(len(index), len(index))
    return run


def merge_ranges(
    results: list[RangeResult], probe: Probe, out: TableWriter, options: PoseOptions, overlay: OverlayStyle | None
) -> PoseRun:
    """Append the ranges' rows to ``out`` in frame order with person ids from one tracker, and say which
    overlay segments are the overlay of their range. The ranges' local files are removed once read."""
    tracker = PersonTracker(probe.width, probe.height, options.track_max_gap)
    segments = []
    for result in sorted(results, key=lambda r: r.frame_range.index):
        batches = pq.ParquetFile(result.path).iter_batches(batch_size=BATCH_FRAMES * NUM_LANDMARKS)
        ids_match = True
        for table in whole_frames(batches):  # a frame_range's frames all lie in its own file
            ids_match &= _write_tracked(table, tracker, out)
        result.path.unlink()
        if result.segment is not None and overlay is not None:
            usable = ids_match or not overlay.label_people
            segments.append(OverlaySegment(result.frame_range.start, result.frame_range.stop, result.segment, usable))
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
    """Replace the frame_range's own ``person`` ids by the merged tracker's, then write the rows. Returns whether
    the ids were the same."""
    if not table.num_rows:
        return True
    valid = pc.is_valid(table["person"]).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    ids = np.zeros(table.num_rows, dtype=np.uint16)
    if len(rows):
        values = np.stack([table[c].to_numpy(zero_copy_only=False)[rows] for c in IMAGE_COLUMNS], axis=-1).reshape(
            -1, NUM_LANDMARKS, 3
        )
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


@dataclass(frozen=True)
class VideoRanges:
    """What every range of one video's pose inference shares; ``run`` runs ranges side by side."""

    video: Path
    probe: Probe
    index: FrameIndex
    model_path: Path
    options: PoseOptions
    overlay: OverlayStyle | None

    def run(
        self,
        ranges: list[FrameRange],
        paths: list[Path],
        progress: Callable[[int, int], None],
        service: PoseService | None,
    ) -> list[RangeResult]:
        """In the warm pose ``service``'s processes, or freshly spawned ones (no service, or it did not start)."""
        if service is not None:
            try:
                return self._in_service(ranges, paths, progress, service)
            except ServiceUnavailable as exc:
                logging.getLogger("bodyscript").warning(f"{exc}; starting pose workers for this video instead")
        return self._spawned(ranges, paths, progress)

    def request(self, frame_range: FrameRange, out: Path, threaded: bool = True) -> dict[str, Any]:
        """One range as a pose service request, in JSON (``run_request`` reads it back)."""
        return {
            "video": str(self.video),
            "probe": self.probe.to_json(),
            "index": {"pts": self.index.pts, "keyframe": self.index.keyframe},
            "model": str(self.model_path),
            "frame_range": asdict(frame_range),
            "out": str(out),
            "options": asdict(self.options),
            "overlay": asdict(self.overlay) if self.overlay is not None else None,
            "threaded": threaded,
        }

    def _spawned(
        self, ranges: list[FrameRange], paths: list[Path], progress: Callable[[int, int], None]
    ) -> list[RangeResult]:
        # spawn, not fork: the parent holds threads (Dagster's, PyAV's) that a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        counter = context.Value("q", 0)
        with ProcessPoolExecutor(
            len(ranges), mp_context=context, initializer=_init_worker, initargs=(counter,)
        ) as pool:
            args = (self.video, self.probe, self.index, self.model_path)
            threaded = spare_cores(ranges)
            futures = [
                pool.submit(run_range, *args, frame_range, path, self.options, self.overlay, threaded)
                for frame_range, path in zip(ranges, paths, strict=True)
            ]
            return _gather(futures, lambda: int(counter.value), len(self.index), progress)

    def _in_service(
        self, ranges: list[FrameRange], paths: list[Path], progress: Callable[[int, int], None], service: PoseService
    ) -> list[RangeResult]:
        """One connection per range, side by side."""
        done = [0]
        lock = threading.Lock()

        def add(frames: int) -> None:
            with lock:
                done[0] += frames

        threaded = spare_cores(ranges)

        def one(frame_range: FrameRange, path: Path) -> RangeResult:
            client = pose_service.connect(service.home, service.idle_s)
            record = pose_service.run_remote(client, self.request(frame_range, path, threaded), add)
            segment = record["segment"]
            return RangeResult(frame_range, path, record["frames"], record["detected"], record["delegate"],
                               record["fallback_reason"], Path(segment) if segment else None)  # fmt: skip

        with ThreadPoolExecutor(len(ranges)) as pool:
            futures = [pool.submit(one, frame_range, path) for frame_range, path in zip(ranges, paths, strict=True)]
            return _gather(futures, lambda: done[0], len(self.index), progress)


def _gather(
    futures: list[Future[RangeResult]], frames_done: Callable[[], int], total: int, progress: Callable[[int, int], None]
) -> list[RangeResult]:
    """The ranges' results in order, reporting progress meanwhile; the first failure cancels what has not
    started and is raised."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            for future in pending:
                future.cancel()
            break
        progress(min(frames_done(), total), total)
    return [future.result() for future in futures]
