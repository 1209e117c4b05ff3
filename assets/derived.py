"""The ``derived`` step (a multi-asset): everything computed from the landmarks, ``overlays``,
``clean_landmarks`` with its quality checks, ``metrics`` and ``exports``: cheap CPU work that would cost more in
process or pod start-ups than it does itself. Each asset still gets its own materialization, metadata and
lineage, and any subset can run (``can_subset``). Under Kubernetes assets/pose_ranges.py's last node runs the
same work (:func:`derive`) after merging the frame ranges."""

import time
from collections.abc import Iterator

import dagster as dg

from assets import metadata
from assets.partitions import videos_partitions
from assets.pods import op_tags
from assets.pose import pose_in_run
from assets.runs import STEP_RETRY, lineage, only_run_of_partition, progress_logger, user_errors
from assets.video_specs import (
    CLEAN_LANDMARKS,
    DERIVED_SPECS,
    DETECTION_CHECK,
    EXPORTS,
    METRICS,
    OVERLAYS,
    QUALITY_CHECKS,
    STABILITY_CHECK,
    versioned,
)
from bodyscript_pipeline.lake.writing import begin_writing, end_writing
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.clean_landmarks import clean_landmarks as clean_landmarks_step
from bodyscript_pipeline.steps.clean_landmarks import stored_video_quality
from bodyscript_pipeline.steps.exports import write_exports
from bodyscript_pipeline.steps.metrics import compute_metrics
from bodyscript_pipeline.steps.overlays import render_overlay
from resources import PipelineResource

DERIVED_STEP = "derived"


def derived_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``derived`` multi-asset, its pod placed by ``settings`` (assets/pods.py)."""

    @dg.multi_asset(
        name=DERIVED_STEP,
        specs=versioned(DERIVED_SPECS, settings),
        check_specs=QUALITY_CHECKS,
        partitions_def=videos_partitions,
        can_subset=True,
        retry_policy=STEP_RETRY,
        op_tags=op_tags(DERIVED_STEP, settings),
        description="Everything derived from the landmarks: overlay, cleaned layer and quality checks, metrics, "
        "exports.",
    )
    def derived(context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> Iterator[object]:
        yield from derive(context, pipeline)

    return derived


def derive(context: dg.OpExecutionContext, pipeline: PipelineResource) -> Iterator[object]:
    """The selected derived assets in dependency order; a failed blocking quality check ends the step
    there, so metrics and exports of untrustworthy pose data are never written. In a run of derived assets
    alone (a reprocessing), this step is the run's first writer: it waits for any other run of the partition
    and hides the partition from the lake's views while it writes."""
    selected = context.selected_asset_keys
    partition = context.partition_key
    settings = pipeline.settings
    lake_uri = settings.lake_uri
    if not pose_in_run(context):
        only_run_of_partition(context)
        begin_writing(lake_uri, partition, context.run_id)
    if OVERLAYS.key in selected:
        with user_errors(OVERLAYS.key.to_user_string()):
            overlay = render_overlay(
                lake_uri,
                partition,
                pipeline.overlay_style,
                progress=progress_logger(context, OVERLAYS.key.to_user_string()),
            )
        lineage(context, settings, OVERLAYS.key)
        yield dg.MaterializeResult(asset_key=OVERLAYS.key, metadata=metadata.overlays(context, pipeline, overlay))
    if CLEAN_LANDMARKS.key in selected:
        with user_errors(CLEAN_LANDMARKS.key.to_user_string()):
            cleaned = clean_landmarks_step(lake_uri, partition, pipeline.cleaning)
        lineage(context, settings, CLEAN_LANDMARKS.key)
        yield dg.MaterializeResult(
            asset_key=CLEAN_LANDMARKS.key, metadata=metadata.clean_landmarks(context, pipeline, cleaned)
        )
        checks = metadata.quality_checks(settings.quality, cleaned.video_quality, DETECTION_CHECK, STABILITY_CHECK)
        selected_checks = {key.name for key in context.selected_asset_check_keys}
        yield from (check for check in checks if check.check_name in selected_checks)
        if not checks[0].passed:
            end_writing(lake_uri, partition)
            return
    elif METRICS.key in selected or EXPORTS.key in selected:
        # The cleaned layer is current and not made again here: its blocking check, judged on its stored scores
        # by the current thresholds, still guards what is made from it.
        failures = settings.quality.blocking_failures(stored_video_quality(lake_uri, partition))
        if failures:
            end_writing(lake_uri, partition)
            raise dg.Failure(
                description=f"quality check {DETECTION_CHECK} failed: {'; '.join(failures)}",
                metadata={"asset": CLEAN_LANDMARKS.key.to_user_string()},
                allow_retries=False,
            )
    if METRICS.key in selected:
        started = time.perf_counter()
        with user_errors(METRICS.key.to_user_string()):
            measured = compute_metrics(lake_uri, partition, settings.min_visibility, settings.metrics_landmarks)
        lineage(context, settings, METRICS.key)
        yield dg.MaterializeResult(
            asset_key=METRICS.key,
            metadata=metadata.metrics(context, pipeline, measured, time.perf_counter() - started),
        )
    if EXPORTS.key in selected:
        started = time.perf_counter()
        with user_errors(EXPORTS.key.to_user_string()):
            exported = write_exports(lake_uri, partition)
        lineage(context, settings, EXPORTS.key)
        yield dg.MaterializeResult(
            asset_key=EXPORTS.key,
            metadata=metadata.exports(context, pipeline, exported, time.perf_counter() - started),
        )
    end_writing(lake_uri, partition)
