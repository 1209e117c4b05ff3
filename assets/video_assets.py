"""Partitioned assets of one video. Each calls the core in ``bodyscript_pipeline.steps`` and reports
what it wrote as metadata; files move through the lake, never through an IO manager."""

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pyarrow.compute as pc

from assets.metadata import location, operations, output_locations, preview
from assets.partitions import videos_partitions
from assets.pods import pod_tags
from bodyscript_pipeline import steps
from bodyscript_pipeline.cleaned_layer import clean_landmarks as clean_landmarks_step
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.model import ModelFile
from bodyscript_pipeline.parquet_io import first_rows
from bodyscript_pipeline.research_exports import write_exports
from resources import PipelineResource

GROUP = "video"
PROGRESS_PREFIX = "progress:"
# Transient faults (storage hiccups, a killed worker) are retried with exponential backoff and jitter;
# expected failures (bad video, missing model) raise Failure(allow_retries=False) and fail at once.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

source_video = dg.AssetSpec(
    "source_video",
    partitions_def=videos_partitions,
    group_name=GROUP,
    description="The dropped video object; observed with its URI and version (ETag, or size and mtime).",
    kinds={"video"},
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures (bad video, missing model) fail the step with their one-line reason and no retry."""
    try:
        yield
    except BodyscriptError as exc:
        raise dg.Failure(description=str(exc), metadata={"reason": str(exc)}, allow_retries=False) from None


def progress_logger(context: dg.AssetExecutionContext, every: int = 10) -> Callable[[int, int], None]:
    """Logs ``progress: done/total frames`` about ``every`` percent; the CLI draws its bar from these."""
    last = [-1]

    def report(done: int, total: int) -> None:
        step = max(1, total * every // 100)
        if done == total or done // step != last[0]:
            last[0] = done // step
            context.log.info(f"{PROGRESS_PREFIX} {done}/{total} frames")

    return report


@dg.asset(
    partitions_def=videos_partitions,
    deps=[source_video],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("frames"),
    kinds={"video", "parquet"},
    description="Probe of the source video and its frame index (frame, pts, ms); the source copied into the lake.",
)
def frames(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    with user_errors():
        result = steps.extract_frames(pipeline.lake_uri, context.partition_key, pipeline.limits)
    seconds = time.perf_counter() - started
    probe = result.probe
    index = first_rows(result.index_uri, 10)
    return dg.MaterializeResult(
        metadata={
            **output_locations(pipeline, uri=result.index_uri, video_uri=result.video_uri),
            **operations(context, pipeline, "frames", seconds, probe.frame_count, result.index_uri, result.video_uri),
            "source_uri": result.source_uri,
            "source_version": result.source_version,
            "frame_count": probe.frame_count,
            "dagster/row_count": probe.frame_count,
            "duration_s": probe.duration_s,
            "fps": probe.fps,
            "codec": probe.codec,
            "width": probe.width,
            "height": probe.height,
            "rotation": probe.rotation,
            "variable_frame_rate": probe.variable_frame_rate,
            **({"warning": probe.decode_error} if probe.decode_error else {}),
            "preview": preview(index.slice(0, 10).to_pylist()),
        },
        data_version=dg.DataVersion(result.source_version),
    )


@dg.asset(
    partitions_def=videos_partitions,
    deps=[frames],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("landmarks"),
    kinds={"mediapipe", "parquet"},
    pool="pose",
    description="MediaPipe PoseLandmarker (VIDEO mode): one row per frame x person x landmark, person ids "
    "tracked across frames; undetected frames are one all-null row.",
)
def landmarks(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    with user_errors():
        model = pipeline.model()
        result = steps.estimate_landmarks(
            pipeline.lake_uri,
            context.partition_key,
            model,
            workers=pipeline.pose_workers,
            progress=progress_logger(context),
            options=pipeline.pose_options,
            overlay=pipeline.overlay_style,
        )
    return dg.MaterializeResult(metadata=landmarks_metadata(context, pipeline, result, model))


def landmarks_metadata(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    pipeline: PipelineResource,
    result: steps.LandmarksResult,
    model: ModelFile,
) -> dict[str, Any]:
    """What the ``landmarks`` materialization shows, whether its ranges ran in one step or in several."""
    if result.delegate_fallback:
        context.log.warning(
            f"pose: {pipeline.pose_delegate} delegate unavailable, ran on CPU: {result.delegate_fallback}"
        )
    sample = first_rows(result.uri, 33 * 8)
    sample = sample.filter(pc.is_valid(sample["person"]))
    return {
        **output_locations(pipeline, uri=result.uri),
        **operations(context, pipeline, "landmarks", result.seconds, result.frames, result.uri),  # type: ignore[arg-type]
        "dagster/row_count": result.rows,
        "frames": result.frames,
        "detected_frames": result.detected_frames,
        "detection_rate": result.detection_rate,
        "pose_seconds": result.seconds,
        "pose_frames_per_s": result.frames_per_s,
        "pose_workers": pipeline.pose_workers,
        "num_poses": pipeline.num_poses,
        "person_ids": result.people,
        "overlay_segments_kept": f"{result.overlay_segments_kept} of {result.overlay_segments}",
        "pose_delegate": result.delegate,
        **({"pose_delegate_fallback": result.delegate_fallback} if result.delegate_fallback else {}),
        "model": model.variant,
        "model_sha256": model.sha256,
        "preview": preview(sample.slice(0, 33).to_pylist(), limit=33),
    }


@dg.asset(
    partitions_def=videos_partitions,
    deps=[landmarks],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("overlays"),
    kinds={"video"},
    description="The skeleton drawn on every frame: H.264, yuv420p, faststart MP4 with the source's timing "
    "(short side at most BODYSCRIPT_OVERLAY_MAX_RESOLUTION), and a thumbnail. Joins the segments the pose "
    "workers drew with the final person ids and draws the rest.",
)
def overlays(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    with user_errors():
        result = steps.render_overlay(
            pipeline.lake_uri, context.partition_key, pipeline.overlay_style, progress=progress_logger(context)
        )
    return dg.MaterializeResult(
        metadata={
            **output_locations(pipeline, uri=result.uri, thumbnail_uri=result.thumbnail_uri),
            **operations(
                context, pipeline, "overlays", result.seconds, result.frames, result.uri, result.thumbnail_uri
            ),
            "frames": result.frames,
            "width": result.width,
            "height": result.height,
            "codec": "h264",
            "encode_seconds": result.seconds,
            "frames_drawn_here": result.frames_drawn,
        }
    )


DETECTION_CHECK = "pose_detection"
STABILITY_CHECK = "pose_stability"


@dg.asset(
    partitions_def=videos_partitions,
    deps=[landmarks],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("clean_landmarks"),
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            DETECTION_CHECK,
            asset="clean_landmarks",
            blocking=True,
            description="Detection rate and mean visibility at or above their thresholds; blocks metrics and "
            "exports of a video whose pose data cannot be trusted.",
        ),
        dg.AssetCheckSpec(
            STABILITY_CHECK,
            asset="clean_landmarks",
            description="Jitter and the fraction of filled frames at or below their thresholds (a warning).",
        ),
    ],
    description="The cleaned layer: short gaps filled, tracks smoothed (zero-phase Butterworth), each value "
    "flagged; the raw landmarks stay untouched. Quality scores per video and person.",
)
def clean_landmarks(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> Iterator[object]:
    with user_errors():
        result = clean_landmarks_step(pipeline.lake_uri, context.partition_key, pipeline.cleaning)
    video = result.video_quality
    scores = {k: v for k, v in video.items() if k != "person" and v is not None}
    yield dg.MaterializeResult(
        metadata={
            **output_locations(pipeline, uri=result.uri, quality_uri=result.quality_uri),
            **operations(
                context,
                pipeline,
                "clean_landmarks",
                result.seconds,
                int(video["frames"]),
                result.uri,  # type: ignore[call-overload]
            ),
            "dagster/row_count": result.rows,
            "filled_frames": result.filled_frames,
            "fill_max_gap": pipeline.fill_max_gap,
            "smoothing": f"butterworth zero-phase, cutoff {pipeline.smooth_cutoff_hz:g} Hz"
            if pipeline.smooth_cutoff_hz
            else "none",
            **{f"quality_{k}": v for k, v in scores.items()},
            "quality": preview(result.quality, limit=20),
        }
    )
    thresholds = pipeline.quality
    yield _check(DETECTION_CHECK, thresholds.blocking_failures(video), dg.AssetCheckSeverity.ERROR, scores,
                 "detection rate and visibility within thresholds", ("detection_rate", "mean_visibility"))  # fmt: skip
    yield _check(STABILITY_CHECK, thresholds.warnings(video), dg.AssetCheckSeverity.WARN, scores,
                 "jitter and filled frames within thresholds", ("jitter_px", "filled_fraction"))  # fmt: skip


def _check(
    name: str,
    failures: list[str],
    severity: dg.AssetCheckSeverity,
    scores: dict[str, object],
    passing: str,
    shown: tuple[str, ...],
) -> dg.AssetCheckResult:
    """A quality check's result: its failures joined as the description, and the scores it judged."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failures,
        severity=severity,
        description="; ".join(failures) or passing,
        metadata={k: v for k, v in scores.items() if k in shown},
    )


@dg.asset(
    partitions_def=videos_partitions,
    deps=[landmarks, clean_landmarks],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("metrics"),
    kinds={"parquet"},
    description="Joint angles and angular velocities per frame and person; range of motion per joint; "
    "the video's summary row.",
)
def metrics(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    with user_errors():
        result = steps.compute_metrics(
            pipeline.lake_uri, context.partition_key, pipeline.min_visibility, pipeline.metrics_landmarks
        )
    seconds = time.perf_counter() - started
    video = result.video_row
    return dg.MaterializeResult(
        metadata={
            **output_locations(
                pipeline,
                uri=result.frame_metrics_uri,
                video_metrics_uri=result.video_metrics_uri,
                videos_uri=result.videos_uri,
            ),
            **operations(
                context,
                pipeline,
                "metrics",
                seconds,
                result.frame_rows,
                result.frame_metrics_uri,
                result.video_metrics_uri,
                result.videos_uri,
            ),
            "dagster/row_count": result.frame_rows,
            "landmarks": pipeline.metrics_landmarks,
            "detection_rate": result.detection_rate,
            "detected_frames": int(video["detected_frames"]),  # type: ignore[call-overload]
            "pose_frames_per_s": video["pose_frames_per_s"],
            "mean_visibility": video["mean_visibility"],
            "range_of_motion": preview(result.joint_rows, limit=len(result.joint_rows)),
        }
    )


@dg.asset(
    partitions_def=videos_partitions,
    deps=[clean_landmarks, metrics],
    group_name=GROUP,
    code_version="1",
    retry_policy=STEP_RETRY,
    op_tags=pod_tags("exports"),
    kinds={"csv", "png"},
    description="Files for research tools: OpenSim .trc (cleaned world landmarks) and .mot (angles) per "
    "person, the long CSV, and a plot per joint of its angles over time.",
)
def exports(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    with user_errors():
        result = write_exports(pipeline.lake_uri, context.partition_key)
    seconds = time.perf_counter() - started
    images = "\n\n".join(
        f"**{kind}**\n\n![{kind}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for kind, png in result.plots.items()
    )
    return dg.MaterializeResult(
        metadata={
            **operations(context, pipeline, "exports", seconds, 0, *result.files),
            "files": dg.MetadataValue.json([str(location(uri).value) for uri in result.files]),
            "people": dg.MetadataValue.json(result.people),
            "angle_plots": dg.MetadataValue.md(images),
        }
    )


PROCESS_VIDEO_ASSETS = [frames, landmarks, overlays, clean_landmarks, metrics, exports]
