"""Partitioned assets of one video, computed in two steps.

- ``pose`` materializes ``frames`` and ``landmarks``: the frame index, then pose inference (worker processes
  locally, the GPU pool under Kubernetes).
- ``derived`` materializes ``overlays``, ``clean_landmarks`` (with its quality checks), ``metrics`` and
  ``exports``: cheap CPU work that would cost more in process or pod start-ups than it does itself.

Each asset still gets its own materialization, metadata, data version and lineage; either step can run a
subset of its assets (``can_subset``). Files move through the lake, never through an IO manager.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

from assets import metadata
from assets.partitions import PARTITION_TAG, SOURCE_VERSION_TAG, videos_partitions
from assets.pods import pod_tags
from bodyscript_pipeline import steps
from bodyscript_pipeline.cleaned_layer import clean_landmarks as clean_landmarks_step
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.research_exports import write_exports
from resources import PipelineResource

GROUP = "video"
PROGRESS_PREFIX = "progress:"
# Transient faults (storage hiccups, a killed worker) are retried with exponential backoff and jitter;
# expected failures (bad video, missing model) raise Failure(allow_retries=False) and fail at once.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
POSE_STEP = "pose"
DERIVED_STEP = "derived"

source_video = dg.AssetSpec(
    "source_video",
    partitions_def=videos_partitions,
    group_name=GROUP,
    description="The dropped video object; observed with its URI and version (ETag, or size and mtime).",
    kinds={"video"},
)


def _spec(name: str, deps: list[dg.AssetSpec], kinds: set[str], description: str, **kwargs: bool) -> dg.AssetSpec:
    return dg.AssetSpec(
        name, deps=deps, group_name=GROUP, code_version="1", kinds=kinds, description=description, **kwargs
    )


FRAMES = _spec(
    "frames",
    [source_video],
    {"video", "parquet"},
    "Probe of the source video and its frame index (frame, pts, ms); the source copied into the lake.",
)
LANDMARKS = _spec(
    "landmarks",
    [FRAMES],
    {"mediapipe", "parquet"},
    "MediaPipe PoseLandmarker (VIDEO mode): one row per frame x person x landmark, person ids tracked across "
    "frames; undetected frames are one all-null row.",
)
OVERLAYS = _spec(
    "overlays",
    [LANDMARKS],
    {"video"},
    "The skeleton drawn on every frame: H.264, yuv420p, faststart MP4 with the source's timing (short side at "
    "most BODYSCRIPT_OVERLAY_MAX_RESOLUTION), and a thumbnail, faces blurred (BODYSCRIPT_BLUR_FACES). Joins the "
    "segments the pose workers drew with the final person ids and draws the rest.",
)
CLEAN_LANDMARKS = _spec(
    "clean_landmarks",
    [LANDMARKS],
    {"parquet"},
    "The cleaned layer: short gaps filled, tracks smoothed (zero-phase Butterworth), each value flagged; the "
    "raw landmarks stay untouched. Quality scores per video and person.",
)
# Skippable: a failed blocking quality check stops the step before them.
METRICS = _spec(
    "metrics",
    [LANDMARKS, CLEAN_LANDMARKS],
    {"parquet"},
    "Joint angles and angular velocities per frame and person; range of motion per joint; the video's summary row.",
    skippable=True,
)
EXPORTS = _spec(
    "exports",
    [CLEAN_LANDMARKS, METRICS],
    {"csv", "png"},
    "Files for research tools: OpenSim .trc (cleaned world landmarks) and .mot (angles) per person, the long "
    "CSV, and a plot per joint of its angles over time.",
    skippable=True,
)

DERIVED_SPECS = (OVERLAYS, CLEAN_LANDMARKS, METRICS, EXPORTS)
DETECTION_CHECK = "pose_detection"
STABILITY_CHECK = "pose_stability"
QUALITY_CHECKS = [
    dg.AssetCheckSpec(
        DETECTION_CHECK,
        asset=CLEAN_LANDMARKS.key,
        blocking=True,
        description="Detection rate and mean visibility at or above their thresholds; blocks metrics and "
        "exports of a video whose pose data cannot be trusted.",
    ),
    dg.AssetCheckSpec(
        STABILITY_CHECK,
        asset=CLEAN_LANDMARKS.key,
        description="Jitter and the fraction of filled frames at or below their thresholds (a warning).",
    ),
]


@contextmanager
def user_errors(asset: str) -> Iterator[None]:
    """Expected failures (bad video, missing model) fail the step with their one-line reason and no retry;
    ``asset`` says which of the step's assets failed."""
    try:
        yield
    except BodyscriptError as exc:
        metadata = {"reason": str(exc), "asset": asset}
        raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from None


ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
PARTITION_WAIT_S = 10
PARTITION_WAIT_RETRIES = 360  # an hour


def partition_runs(instance: dg.DagsterInstance, partition: str, statuses: list[dg.DagsterRunStatus]) -> list[str]:
    """Ids of the runs of one video partition in these states."""
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: partition}, statuses=statuses))
    return [record.dagster_run.run_id for record in records]


def only_run_of_partition(context: dg.OpExecutionContext) -> None:
    """At most one run per partition writes its outputs: the run queue holds a second one back (dagster.yaml:
    one run per ``dagster/partition`` value); a run that meets another anyway (``bodyscript process`` bypasses the
    queue, or an instance keeps an older dagster.yaml) waits for it, before writing anything."""
    others = [r for r in partition_runs(context.instance, context.partition_key, ACTIVE) if r != context.run_id]
    if others:
        context.log.info(f"partition {context.partition_key} is being processed by run {others[0]}; waiting for it")
        raise dg.RetryRequested(max_retries=PARTITION_WAIT_RETRIES, seconds_to_wait=PARTITION_WAIT_S)


def pinned_version(context: dg.OpExecutionContext) -> str | None:
    """The source version this run was launched for (None: the registered one, when the step starts)."""
    return context.run.tags.get(SOURCE_VERSION_TAG)


def progress_logger(context: dg.OpExecutionContext, asset: str, every: int = 10) -> Callable[[int, int], None]:
    """Logs ``progress: done/total frames (asset)`` about ``every`` percent; the CLI draws its bar from these."""
    last = [-1]

    def report(done: int, total: int) -> None:
        step = max(1, total * every // 100)
        if done == total or done // step != last[0]:
            last[0] = done // step
            context.log.info(f"{PROGRESS_PREFIX} {done}/{total} frames ({asset})")

    return report


@dg.multi_asset(
    name=POSE_STEP,
    specs=[FRAMES, LANDMARKS],
    partitions_def=videos_partitions,
    can_subset=True,
    retry_policy=STEP_RETRY,
    op_tags=pod_tags(POSE_STEP),
    pool="pose",
    description="The frame index, then pose inference over it.",
)
def pose(
    context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
) -> Iterator[dg.MaterializeResult]:
    selected = context.selected_asset_keys
    only_run_of_partition(context)
    steps.begin_writing(pipeline.lake_uri, context.partition_key, context.run_id)
    if FRAMES.key in selected:
        started = time.perf_counter()
        with user_errors(FRAMES.key.to_user_string()):
            frames = steps.extract_frames(
                pipeline.lake_uri, context.partition_key, pipeline.limits, pinned_version(context)
            )
        yield dg.MaterializeResult(
            asset_key=FRAMES.key,
            metadata=metadata.frames(context, pipeline, frames, time.perf_counter() - started),
            data_version=dg.DataVersion(frames.source_version),
        )
    if LANDMARKS.key in selected:
        with user_errors(LANDMARKS.key.to_user_string()):
            model = pipeline.model()
            result = steps.estimate_landmarks(
                pipeline.lake_uri,
                context.partition_key,
                model,
                workers=pipeline.pose_workers,
                progress=progress_logger(context, LANDMARKS.key.to_user_string()),
                options=pipeline.pose_options,
                overlay=pipeline.overlay_style,
                service=pipeline.pose_service,
            )
        yield dg.MaterializeResult(
            asset_key=LANDMARKS.key, metadata=metadata.landmarks(context, pipeline, result, model)
        )
    if not derived_in_run(context):
        steps.end_writing(pipeline.lake_uri, context.partition_key)


def derived_in_run(context: dg.OpExecutionContext) -> bool:
    """Whether a ``derived`` step follows in this run (it ends the writing, once everything is written)."""
    selection = context.run.asset_selection
    return selection is None or any(spec.key in selection for spec in DERIVED_SPECS)


@dg.multi_asset(
    name=DERIVED_STEP,
    specs=list(DERIVED_SPECS),
    check_specs=QUALITY_CHECKS,
    partitions_def=videos_partitions,
    can_subset=True,
    retry_policy=STEP_RETRY,
    op_tags=pod_tags(DERIVED_STEP),
    description="Everything derived from the landmarks: overlay, cleaned layer and quality checks, metrics, exports.",
)
def derived(context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> Iterator[object]:
    yield from derive(context, pipeline)


def derive(context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> Iterator[object]:
    """The selected derived assets in dependency order; a failed blocking quality check ends the step
    there, so metrics and exports of untrustworthy pose data are never written."""
    selected = context.selected_asset_keys
    partition = context.partition_key
    if OVERLAYS.key in selected:
        with user_errors(OVERLAYS.key.to_user_string()):
            overlay = steps.render_overlay(
                pipeline.lake_uri,
                partition,
                pipeline.overlay_style,
                progress=progress_logger(context, OVERLAYS.key.to_user_string()),
            )
        yield dg.MaterializeResult(asset_key=OVERLAYS.key, metadata=metadata.overlays(context, pipeline, overlay))
    if CLEAN_LANDMARKS.key in selected:
        with user_errors(CLEAN_LANDMARKS.key.to_user_string()):
            cleaned = clean_landmarks_step(pipeline.lake_uri, partition, pipeline.cleaning)
        yield dg.MaterializeResult(
            asset_key=CLEAN_LANDMARKS.key, metadata=metadata.clean_landmarks(context, pipeline, cleaned)
        )
        checks = metadata.quality_checks(pipeline.quality, cleaned.video_quality, DETECTION_CHECK, STABILITY_CHECK)
        selected_checks = {key.name for key in context.selected_asset_check_keys}
        yield from (check for check in checks if check.check_name in selected_checks)
        if not checks[0].passed:
            steps.end_writing(pipeline.lake_uri, partition)
            return
    if METRICS.key in selected:
        started = time.perf_counter()
        with user_errors(METRICS.key.to_user_string()):
            measured = steps.compute_metrics(
                pipeline.lake_uri, partition, pipeline.min_visibility, pipeline.metrics_landmarks
            )
        yield dg.MaterializeResult(
            asset_key=METRICS.key,
            metadata=metadata.metrics(context, pipeline, measured, time.perf_counter() - started),
        )
    if EXPORTS.key in selected:
        started = time.perf_counter()
        with user_errors(EXPORTS.key.to_user_string()):
            exported = write_exports(pipeline.lake_uri, partition)
        yield dg.MaterializeResult(
            asset_key=EXPORTS.key,
            metadata=metadata.exports(context, pipeline, exported, time.perf_counter() - started),
        )
    steps.end_writing(pipeline.lake_uri, partition)


PROCESS_VIDEO_ASSETS = [pose, derived]
VIDEO_ASSET_KEYS = [spec.key for spec in (FRAMES, LANDMARKS, OVERLAYS, CLEAN_LANDMARKS, METRICS, EXPORTS)]
