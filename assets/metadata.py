"""What each asset's materialization shows in the Dagster UI, built from the core's results."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pyarrow.compute as pc

from assets.pods import STEP_POD
from bodyscript_pipeline import storage
from bodyscript_pipeline.cleaning.quality import QualityThresholds
from bodyscript_pipeline.lake.parquet import first_rows
from bodyscript_pipeline.pose.model import ModelFile
from bodyscript_pipeline.steps.clean_landmarks import CleanResult
from bodyscript_pipeline.steps.exports import ExportsResult
from bodyscript_pipeline.steps.frames import FramesResult
from bodyscript_pipeline.steps.landmarks import LandmarksResult
from bodyscript_pipeline.steps.metrics import MetricsResult
from bodyscript_pipeline.steps.overlays import OverlayResult
from resources import PipelineResource

Context = dg.AssetExecutionContext | dg.OpExecutionContext


def location(uri: str) -> dg.MetadataValue:
    """A local path for ``file://`` outputs (the UI offers to copy it), the URI otherwise."""
    local = storage.local_path(uri)
    return dg.MetadataValue.path(str(local) if local is not None else uri)


def output_locations(pipeline: PipelineResource, **uris: str) -> dict[str, dg.MetadataValue]:
    """Each output's location and, on S3, a presigned expiring download link beside it (``<name>_download``)."""
    metadata: dict[str, dg.MetadataValue] = {}
    for name, uri in uris.items():
        metadata[name] = location(uri)
        link = pipeline.download_link(uri)
        if link is not None:
            metadata[f"{name}_download"] = dg.MetadataValue.url(link)
    return metadata


def preview(rows: Sequence[dict[str, Any]], limit: int = 10) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.text("(no rows)")
    records = [
        dg.TableRecord({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
        for row in rows[:limit]
    ]
    return dg.MetadataValue.table(records)


def operations(
    context: Context, pipeline: PipelineResource, step: str, seconds: float, frames: int, *uris: str
) -> dict[str, float]:
    """Numeric figures the UI plots over time: seconds, frames/s, queue wait, bytes stored, and the estimated
    cost of those seconds on the pod of ``step`` at its pool's configured price."""
    record = context.instance.get_run_record_by_id(context.run_id)
    queue_wait = 0.0
    if record is not None and record.start_time is not None:
        queue_wait = max(0.0, record.start_time - record.create_timestamp.timestamp())
    price = pipeline.settings.cost_gpu_pod_hour if STEP_POD[step] == "pose" else pipeline.settings.cost_cpu_pod_hour
    return {
        "step_seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "queue_wait_s": round(queue_wait, 3),
        "bytes_stored": float(sum(storage.size_of(uri) for uri in uris)),
        "estimated_cost": seconds / 3600 * price,
    }


def frames(context: Context, pipeline: PipelineResource, result: FramesResult, seconds: float) -> dict[str, Any]:
    probe = result.probe
    index = first_rows(result.index_uri, 10)
    return {
        **output_locations(pipeline, uri=result.index_uri, video_uri=result.video_uri),
        **operations(context, pipeline, "pose", seconds, probe.frame_count, result.index_uri, result.video_uri),
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
        "checked_by": "pose's decoding" if result.checked_by_pose else "probe",
        **({"warning": probe.decode_error} if probe.decode_error else {}),
        "preview": preview(index.slice(0, 10).to_pylist()),
    }


def landmarks(
    context: Context, pipeline: PipelineResource, result: LandmarksResult, model: ModelFile
) -> dict[str, Any]:
    """What the ``landmarks`` materialization shows, whether its ranges ran in one step or in several."""
    if result.delegate_fallback:
        context.log.warning(
            f"pose: {pipeline.settings.pose_delegate} delegate unavailable, ran on CPU: {result.delegate_fallback}"
        )
    sample = first_rows(result.uri, 33 * 8)
    sample = sample.filter(pc.is_valid(sample["person"]))
    return {
        **output_locations(pipeline, uri=result.uri),
        **operations(context, pipeline, "pose", result.seconds, result.frames, result.uri),
        "dagster/row_count": result.rows,
        "frames": result.frames,
        "detected_frames": result.detected_frames,
        "detection_rate": result.detection_rate,
        "pose_seconds": result.seconds,
        "pose_frames_per_s": result.frames_per_s,
        "pose_workers": pipeline.settings.pose_workers,
        "num_poses": pipeline.settings.num_poses,
        "person_ids": result.people,
        "overlay_segments_kept": f"{result.overlay_segments_kept} of {result.overlay_segments}",
        "pose_head_start": result.head_start,
        "pose_delegate": result.delegate,
        **({"pose_delegate_fallback": result.delegate_fallback} if result.delegate_fallback else {}),
        "model": model.variant,
        "model_sha256": model.sha256,
        "preview": preview(sample.slice(0, 33).to_pylist(), limit=33),
    }


def overlays(context: Context, pipeline: PipelineResource, result: OverlayResult) -> dict[str, Any]:
    """The overlay where people look: its thumbnail as an image that opens the video, and a link to it."""
    link = open_link(pipeline, result.uri)
    image = f"![overlay thumbnail](data:image/jpeg;base64,{base64.b64encode(result.thumbnail).decode()})"
    preview_md = f"[{image}]({link})\n\n[Open the overlay video]({link})" if link else image
    return {
        **output_locations(pipeline, uri=result.uri, thumbnail_uri=result.thumbnail_uri),
        **operations(context, pipeline, "derived", result.seconds, result.frames, result.uri, result.thumbnail_uri),
        **({"overlay_url": dg.MetadataValue.url(link)} if link else {}),
        "thumbnail": dg.MetadataValue.md(preview_md),
        "faces_blurred": result.faces_blurred,
        "frames": result.frames,
        "width": result.width,
        "height": result.height,
        "codec": "h264",
        "encode_seconds": result.seconds,
        "frames_drawn_here": result.frames_drawn,
    }


def open_link(pipeline: PipelineResource, uri: str) -> str | None:
    """Where a browser opens an output: a presigned link on S3, its ``file://`` URI on this machine."""
    link = pipeline.download_link(uri)
    if link is None and (local := storage.local_path(uri)) is not None:
        link = local.as_uri()
    return link


def clean_landmarks(context: Context, pipeline: PipelineResource, result: CleanResult) -> dict[str, Any]:
    video = result.video_quality
    scores = {k: v for k, v in video.items() if k != "person" and v is not None}
    frame_count = int(str(video["frames"]))
    return {
        **output_locations(pipeline, uri=result.uri, quality_uri=result.quality_uri),
        **operations(context, pipeline, "derived", result.seconds, frame_count, result.uri),
        "dagster/row_count": result.rows,
        "filled_frames": result.filled_frames,
        "fill_max_gap": pipeline.settings.fill_max_gap,
        "smoothing": f"butterworth zero-phase, cutoff {pipeline.settings.smooth_cutoff_hz:g} Hz"
        if pipeline.settings.smooth_cutoff_hz
        else "none",
        **{f"quality_{k}": v for k, v in scores.items()},
        "quality": preview(result.quality, limit=20),
    }


def quality_checks(
    thresholds: QualityThresholds, video: dict[str, object], detection: str, stability: str
) -> list[dg.AssetCheckResult]:
    """The blocking detection check, then the stability warning, each with the scores it judged."""
    scores = {k: v for k, v in video.items() if k != "person" and v is not None}

    def check(name: str, failures: list[str], severity: dg.AssetCheckSeverity, passing: str, shown: tuple[str, ...]):
        return dg.AssetCheckResult(
            asset_key="clean_landmarks",
            check_name=name,
            passed=not failures,
            severity=severity,
            description="; ".join(failures) or passing,
            metadata={k: v for k, v in scores.items() if k in shown},
        )

    return [
        check(detection, thresholds.blocking_failures(video), dg.AssetCheckSeverity.ERROR,
              "detection rate and visibility within thresholds", ("detection_rate", "mean_visibility")),
        check(stability, thresholds.warnings(video), dg.AssetCheckSeverity.WARN,
              "jitter and filled frames within thresholds", ("jitter_px", "filled_fraction")),
    ]  # fmt: skip


def metrics(context: Context, pipeline: PipelineResource, result: MetricsResult, seconds: float) -> dict[str, Any]:
    video = result.video_row
    uris = (result.frame_metrics_uri, result.video_metrics_uri, result.videos_uri)
    return {
        **output_locations(
            pipeline,
            uri=result.frame_metrics_uri,
            video_metrics_uri=result.video_metrics_uri,
            videos_uri=result.videos_uri,
        ),
        **operations(context, pipeline, "derived", seconds, result.frame_rows, *uris),
        "dagster/row_count": result.frame_rows,
        "landmarks": pipeline.settings.metrics_landmarks,
        "detection_rate": result.detection_rate,
        "detected_frames": int(str(video["detected_frames"])),
        "pose_frames_per_s": video["pose_frames_per_s"],
        "mean_visibility": video["mean_visibility"],
        "range_of_motion": preview(result.joint_rows, limit=len(result.joint_rows)),
    }


def exports(context: Context, pipeline: PipelineResource, result: ExportsResult, seconds: float) -> dict[str, Any]:
    images = "\n\n".join(
        f"**{kind}**\n\n![{kind}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for kind, png in result.plots.items()
    )
    return {
        **operations(context, pipeline, "derived", seconds, 0, *result.files),
        "files": dg.MetadataValue.json([str(location(uri).value) for uri in result.files]),
        "people": dg.MetadataValue.json(result.people),
        "angle_plots": dg.MetadataValue.md(images),
    }
