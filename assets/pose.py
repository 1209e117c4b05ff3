"""The ``pose`` step (a multi-asset): ``frames``, the frame index, then ``landmarks``, pose inference over it
(worker processes locally, the GPU pool under Kubernetes). Either asset can run alone (``can_subset``); files
move through the lake, never through an IO manager. Under Kubernetes the same step is the first node of
assets/pose_ranges.py's graph instead."""

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import compute_logical_data_version

from assets import metadata
from assets.partitions import videos_partitions
from assets.pods import op_tags
from assets.runs import STEP_RETRY, lineage, only_run_of_partition, pinned_version, progress_logger, user_errors
from assets.source_video import source_video
from assets.video_specs import DERIVED_SPECS, FRAMES, LANDMARKS, POSE_SPECS, versioned
from bodyscript_pipeline.lake.sources import load_source
from bodyscript_pipeline.lake.writing import begin_writing, end_writing
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import FramesResult, extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks, pose_ahead
from resources import PipelineResource

POSE_STEP = "pose"
POSE_POOL = "pose"  # dagster.yaml limits how many steps of this pool run at once


def pose_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``pose`` multi-asset, its pod placed by ``settings`` (assets/pods.py)."""

    @dg.multi_asset(
        name=POSE_STEP,
        specs=versioned(POSE_SPECS, settings),
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
    with _ahead(context, pipeline):
        if FRAMES.key in selected:
            _, shown, version = make_frames(context, pipeline)
            yield dg.MaterializeResult(asset_key=FRAMES.key, metadata=shown, data_version=version)
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
            lineage(context, pipeline.settings, LANDMARKS.key)
            yield dg.MaterializeResult(
                asset_key=LANDMARKS.key, metadata=metadata.landmarks(context, pipeline, result, model)
            )
    if not derived_in_run(context):
        end_writing(lake_uri, context.partition_key)


def _ahead(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> AbstractContextManager[None]:
    """Where the step makes both assets, the source's pose begins in the warm pose service while ``frames``
    checks and copies the source; ``landmarks`` takes it where it matches (pose/head_start.py)."""
    if not {FRAMES.key, LANDMARKS.key} <= context.selected_asset_keys:
        return nullcontext()
    source = load_source(pipeline.settings.lake_uri, context.partition_key)
    return pose_ahead(pipeline.settings, source.uri, pinned_version(context) or source.version)


def make_frames(
    context: dg.OpExecutionContext, pipeline: PipelineResource
) -> tuple[FramesResult, dict[str, Any], dg.DataVersion]:
    """``frames``' work for either pose step (local, or the k8s graph's): the frame index of the pinned source
    version, its lineage recorded; returns the result, what its materialization shows, and its data version."""
    started = time.perf_counter()
    with user_errors(FRAMES.key.to_user_string()):
        frames = extract_frames(
            pipeline.settings.lake_uri,
            context.partition_key,
            pipeline.settings.limits,
            pinned_version(context),
            # A short clip's pose, begun ahead, is waited for here: its progress is shown as the landmarks' own.
            progress_logger(context, LANDMARKS.key.to_user_string()),
        )
    lineage(context, pipeline.settings, FRAMES.key)
    shown = metadata.frames(context, pipeline, frames, time.perf_counter() - started - frames.pose_wait_s)
    return frames, shown, frames_data_version(context, frames.source_version)


def frames_data_version(context: dg.OpExecutionContext, source_version: str) -> dg.DataVersion:
    """``frames``' data version as Dagster computes every other one, from its code version and its input's data
    version: ``source_video``'s, the version this run processed (what the drop-zone sensor and ``bodyscript
    process`` observe). Dagster itself would not see it: for a partitioned input it reads only materializations,
    never observations (1.13, ``DataVersionCache._get_partitions_data_version_from_keys``), so every source
    version would give the same data version and nothing downstream of a changed source would show as stale."""
    code_version = context.assets_def.code_versions_by_key[FRAMES.key]
    assert code_version is not None, "the per-video assets are versioned (assets/video_specs.py: versioned)"
    return compute_logical_data_version(code_version, {source_video.key: dg.DataVersion(source_version)})


def derived_in_run(context: dg.OpExecutionContext) -> bool:
    """Whether a ``derived`` step follows in this run (it ends the writing, once everything is written)."""
    selection = context.run.asset_selection
    return selection is None or any(spec.key in selection for spec in DERIVED_SPECS)


def pose_in_run(context: dg.OpExecutionContext) -> bool:
    """Whether a ``pose`` step ran before this one in this run (it began the writing); not in a run of derived
    assets alone, such as a reprocessing of ``clean_landmarks``."""
    selection = context.run.asset_selection
    return selection is None or any(spec.key in selection for spec in POSE_SPECS)
