"""The ``pose`` step (a multi-asset): ``frames``, the frame index, then ``landmarks``, pose inference over it
(worker processes locally, the GPU pool under Kubernetes). Either asset can run alone (``can_subset``); files
move through the lake, never through an IO manager. Under Kubernetes the same step is the first node of
assets/pose_ranges.py's graph instead."""

import time
from collections.abc import Iterator

import dagster as dg

from assets import metadata
from assets.partitions import videos_partitions
from assets.pods import op_tags
from assets.runs import STEP_RETRY, only_run_of_partition, pinned_version, progress_logger, user_errors
from assets.video_specs import DERIVED_SPECS, FRAMES, LANDMARKS, POSE_SPECS
from bodyscript_pipeline.lake.writing import begin_writing, end_writing
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks
from resources import PipelineResource

POSE_STEP = "pose"
POSE_POOL = "pose"  # dagster.yaml limits how many steps of this pool run at once


def pose_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``pose`` multi-asset, its pod placed by ``settings`` (assets/pods.py)."""

    @dg.multi_asset(
        name=POSE_STEP,
        specs=list(POSE_SPECS),
        partitions_def=videos_partitions,
        can_subset=True,
        retry_policy=STEP_RETRY,
        op_tags=op_tags(POSE_STEP, settings),
        pool=POSE_POOL,
        description="The frame index, then pose inference over it.",
    )
    def pose(
        context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> Iterator[dg.MaterializeResult]:
        yield from materialize_pose(context, pipeline)

    return pose


def materialize_pose(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> Iterator[dg.MaterializeResult]:
    """The selected ones of ``frames`` and ``landmarks``, in that order."""
    selected = context.selected_asset_keys
    lake_uri = pipeline.settings.lake_uri
    only_run_of_partition(context)
    begin_writing(lake_uri, context.partition_key, context.run_id)
    if FRAMES.key in selected:
        started = time.perf_counter()
        with user_errors(FRAMES.key.to_user_string()):
            frames = extract_frames(lake_uri, context.partition_key, pipeline.settings.limits, pinned_version(context))
        yield dg.MaterializeResult(
            asset_key=FRAMES.key,
            metadata=metadata.frames(context, pipeline, frames, time.perf_counter() - started),
            data_version=dg.DataVersion(frames.source_version),
        )
    if LANDMARKS.key in selected:
        with user_errors(LANDMARKS.key.to_user_string()):
            model = pipeline.model()
            result = estimate_landmarks(
                lake_uri,
                context.partition_key,
                model,
                workers=pipeline.settings.pose_workers,
                progress=progress_logger(context, LANDMARKS.key.to_user_string()),
                options=pipeline.pose_options,
                overlay=pipeline.overlay_style,
                service=pipeline.pose_service,
            )
        yield dg.MaterializeResult(
            asset_key=LANDMARKS.key, metadata=metadata.landmarks(context, pipeline, result, model)
        )
    if not derived_in_run(context):
        end_writing(lake_uri, context.partition_key)


def derived_in_run(context: dg.OpExecutionContext) -> bool:
    """Whether a ``derived`` step follows in this run (it ends the writing, once everything is written)."""
    selection = context.run.asset_selection
    return selection is None or any(spec.key in selection for spec in DERIVED_SPECS)
