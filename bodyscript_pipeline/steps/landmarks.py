"""The ``landmarks`` asset's work: pose inference over every frame, in parallel frame ranges, written in frame
order with tracked person ids; under Kubernetes, one range per step and a merge."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.parquet import (
    TableWriter,
    table_writer,
)
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import object_version
from bodyscript_pipeline.overlay.video import OverlayStyle
from bodyscript_pipeline.pose import head_start
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ModelFile, ensure_model
from bodyscript_pipeline.pose.ranges import (
    FrameRange,
    OverlaySegment,
    PoseRun,
    RangeResult,
    VideoRanges,
    estimate_in_ranges,
    merge_ranges,
    plan_worker_ranges,
    range_paths,
    run_range,
)
from bodyscript_pipeline.pose.service import PoseService
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import frame_video_uri, frames_source, load_frame_index, load_probe
from bodyscript_pipeline.steps.progress import Progress, no_progress
from bodyscript_pipeline.video.io import FrameIndex, Probe, probe_video

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"


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
    head_start: bool = False  # the ranges were begun before the step, by ``begin_pose``

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
    progress: Progress = no_progress,
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
    started = time.perf_counter()
    with _pose_inputs(lake) as (video, probe, index, workdir), _landmarks_writer(lake, model, options) as out:
        storage.delete_tree(lake.overlay_segments)
        begun = _head_start_of(lake, progress) if head_start.any_begun() else None
        run = estimate_in_ranges(
            video, probe, index, model.path, workers, workdir, out, progress, options, overlay, service, begun
        )
        # The pose seconds are the ranges' too where they began before the step (with a short clip, often all).
        began = head_start.taken_ranges_began() if run.head_start else None
        first = started if began is None else min(started, began)
        return _finish_landmarks(lake, out, run, time.perf_counter() - first, overlay)


def _head_start_of(
    lake: VideoLake, progress: Progress
) -> Callable[[VideoRanges, list[FrameRange]], list[RangeResult] | None]:
    """How the step takes the ranges this process began ahead for the partition's source (``begin_pose``)."""
    source = frames_source(lake)
    return lambda video, ranges: head_start.take(head_start.identity((source.uri, source.version), video, ranges),
                                                 progress)  # fmt: skip


def begin_pose(settings: Settings, uri: str, version: str) -> None:
    """Begins a local source's pose in the pose service, in a background thread, for a ``landmarks`` step later
    in this process to take (pose/head_start.py): ``bodyscript process`` calls this before it loads Dagster, a
    run's ``pose`` step before it checks the source (``pose_ahead``)."""
    service = settings.pose_service
    if service is None or not uri.startswith("file://"):
        return
    video = Path(uri.removeprefix("file://"))

    def work(begun: head_start.HeadStart) -> None:
        if object_version(uri) != version:
            raise BodyscriptError(f"{uri} is not the version {version} any more")
        # Probed here, unchecked (packets and the first frame), while the service starts: its ranges can begin
        # the moment it is up (0.1-0.2 s sooner than a probe sent to it then).
        probe, index = probe_video(video, settings.limits, checked=False)
        begun.probed.set_result((probe, index))
        model = ensure_model(settings)
        video_ranges = VideoRanges(video, probe, index, model.path, pose_options(settings), overlay_style(settings))
        ranges = plan_worker_ranges(len(index), settings.pose_workers)
        begun.frames = len(index)
        begun.identity.set_result(head_start.identity((uri, version), video_ranges, ranges))
        workdir = begun.workdir = Path(tempfile.mkdtemp(prefix="bodyscript-head-start-"))
        begun.ranges_began = time.perf_counter()
        results = video_ranges.run(ranges, range_paths(workdir, ranges), begun.report, service)
        if object_version(uri) != version:
            raise BodyscriptError(f"{uri} changed while its pose was begun")
        begun.results.set_result(results)

    head_start.begin((uri, version), work)


@contextmanager
def pose_ahead(settings: Settings, uri: str, version: str) -> Iterator[None]:
    """``begin_pose`` for the duration of a run's ``pose`` step, which checks and copies the source before its
    landmarks (0.4-0.7 s of the real clip): the ranges run in the service meanwhile, and their files are removed
    when the step ends, taken or not. Nothing more is begun where this process began pose already (``bodyscript
    process`` runs the step in its own process)."""
    if head_start.any_begun():
        yield
        return
    begin_pose(settings, uri, version)
    try:
        yield
    finally:
        head_start.end()


def pose_options(settings: Settings) -> PoseOptions:
    """How the deployment finds people (``BODYSCRIPT_NUM_POSES`` and the pose settings)."""
    return PoseOptions(settings.num_poses, settings.pose_tiles or None, settings.pose_delegate, settings.track_max_gap)


def overlay_style(settings: Settings) -> OverlayStyle:
    """How the deployment draws the overlay; people are labelled where there can be several."""
    return OverlayStyle(
        settings.overlay_max_resolution,
        settings.min_visibility,
        label_people=settings.num_poses > 1,
        blur_faces=settings.blur_faces,
    )


@contextmanager
def _pose_inputs(lake: VideoLake) -> Iterator[tuple[Path, Probe, FrameIndex, Path]]:
    """What pose inference reads: the partition's video (local), its probe and frame index, and a work folder."""
    with (
        storage.local_copy(frame_video_uri(lake)) as video,
        tempfile.TemporaryDirectory(prefix="bodyscript-pose-") as workdir,
    ):
        yield video, load_probe(lake), load_frame_index(lake), Path(workdir)


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
        run.head_start,
    )


@dataclass(frozen=True)
class RangeRecord:
    """What :func:`infer_landmark_range` stored for one frame range and found in it: the record its step hands
    to the merge under Kubernetes (the step IO manager pickles it, so it holds locations and counts only)."""

    frame_range: FrameRange
    landmarks_uri: str
    segment_uri: str | None  # the range's overlay segment, where one was drawn
    frames: int
    detected: int
    delegate: str
    fallback_reason: str | None
    seconds: float


def infer_landmark_range(
    lake_uri: str,
    partition: str,
    model: ModelFile,
    frame_range: FrameRange,
    options: PoseOptions | None = None,
    overlay: OverlayStyle | None = None,
) -> RangeRecord:
    """One frame range of pose inference (and its overlay segment) in this process, stored in the lake for
    :func:`merge_landmark_ranges`: the separate steps, and so pods, of ``landmarks`` under Kubernetes.
    Returns where the range's files are and what it found."""
    options = options or PoseOptions()
    lake = VideoLake(lake_uri, partition)
    started = time.perf_counter()
    with _pose_inputs(lake) as (video, probe, index, workdir):
        result = run_range(video, probe, index, model.path, frame_range, workdir / "range.parquet", options, overlay)
        landmarks_uri = lake.pose_range(frame_range.index, ".parquet")
        storage.put_file(result.path, landmarks_uri)
        segment_uri = None
        if result.segment is not None:
            segment_uri = lake.pose_range(frame_range.index, ".mp4")
            storage.put_file(result.segment, segment_uri)
    return RangeRecord(
        frame_range=frame_range,
        landmarks_uri=landmarks_uri,
        segment_uri=segment_uri,
        frames=result.frames,
        detected=result.detected,
        delegate=result.delegate,
        fallback_reason=result.fallback_reason,
        seconds=time.perf_counter() - started,
    )


def merge_landmark_ranges(
    lake_uri: str,
    partition: str,
    model: ModelFile,
    ranges: Sequence[RangeRecord],
    options: PoseOptions | None = None,
    overlay: OverlayStyle | None = None,
) -> LandmarksResult:
    """The ``landmarks`` table from the ranges :func:`infer_landmark_range` stored, merged in frame order
    with person ids from one tracker, exactly as the local workers' ranges are; the ranges' files are
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
            local = Path(workdir) / f"range-{done.frame_range.index:05d}"
            path = _fetch(done.landmarks_uri, local.with_suffix(".parquet"))
            segment = _fetch(done.segment_uri, local.with_suffix(".mp4")) if done.segment_uri else None
            results.append(
                RangeResult(
                    done.frame_range, path, done.frames, done.detected, done.delegate, done.fallback_reason, segment
                )
            )
        run = merge_ranges(results, probe, out, options, overlay)
        seconds = max(done.seconds for done in ranges)
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
