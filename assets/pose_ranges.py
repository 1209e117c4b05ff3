"""The per-video assets under Kubernetes, as one graph: two pods for a short video, a GPU pod per frame range
for a long one.

- ``pose`` (GPU pod): ``frames``, then pose inference of the first range of at most
  ``BODYSCRIPT_POSE_RANGE_FRAMES`` frames (and its overlay segment); the further ranges of a long video become
  dynamic outputs.
- ``infer_pose_range`` (GPU pod each): one further range, side by side.
- ``derived`` (CPU pod): merges the ranges in frame order with one person tracker into ``landmarks``, then
  computes ``overlays``, ``clean_landmarks`` (and its checks), ``metrics`` and ``exports``, as the local
  ``derived`` step does.

Only small records (ranges, locations, counts) pass between the pods, through the IO manager.
"""

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import dagster as dg

from assets import metadata
from assets.partitions import videos_partitions
from assets.pods import pod_tags
from assets.video_assets import (
    CLEAN_LANDMARKS,
    DERIVED_STEP,
    EXPORTS,
    FRAMES,
    GROUP,
    LANDMARKS,
    METRICS,
    OVERLAYS,
    POSE_STEP,
    QUALITY_CHECKS,
    STEP_RETRY,
    derive,
    only_run_of_partition,
    pinned_version,
    source_video,
    user_errors,
)
from bodyscript_pipeline import steps
from bodyscript_pipeline.pose_chunks import Chunk, plan_ranges
from resources import PipelineResource

SPECS = [FRAMES, LANDMARKS, OVERLAYS, CLEAN_LANDMARKS, METRICS, EXPORTS]
CHECK_OUTPUTS = {f"{spec.asset_key.to_python_identifier()}_{spec.name}": spec for spec in QUALITY_CHECKS}


def _infer(
    context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource], chunk: Chunk
) -> dict[str, Any]:
    with user_errors(LANDMARKS.key.to_user_string()):
        return steps.infer_landmark_range(
            pipeline.lake_uri,
            context.partition_key,
            pipeline.model(),
            chunk,
            pipeline.pose_options,
            pipeline.overlay_style,
        )


@dg.op(
    name=POSE_STEP,
    ins={"source_video": dg.In(dg.Nothing)},
    # "rest" is required: with no further range it is empty, and derived runs with an empty list (an optional
    # dynamic output left empty would skip it).
    out={"frames": dg.Out(dg.Nothing), "first": dg.Out(dict), "rest": dg.DynamicOut(dict)},
    tags=pod_tags(POSE_STEP),
    retry_policy=STEP_RETRY,
    pool="pose",
)
def pose_first_range(context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource]) -> Iterator[object]:
    import time

    only_run_of_partition(context)
    steps.begin_writing(pipeline.lake_uri, context.partition_key, context.run_id)
    started = time.perf_counter()
    with user_errors(FRAMES.key.to_user_string()):
        frames = steps.extract_frames(
            pipeline.lake_uri, context.partition_key, pipeline.limits, pinned_version(context)
        )
    yield dg.Output(
        None,
        "frames",
        metadata=metadata.frames(context, pipeline, frames, time.perf_counter() - started),
        data_version=dg.DataVersion(frames.source_version),
    )
    first, *rest = plan_ranges(frames.probe.frame_count, pipeline.pose_range_frames)
    yield dg.Output(_infer(context, pipeline, first), "first")
    for chunk in rest:
        yield dg.DynamicOutput(asdict(chunk), output_name="rest", mapping_key=f"frames_{chunk.start}_{chunk.stop}")


@dg.op(tags=pod_tags("infer_pose_range"), retry_policy=STEP_RETRY, pool="pose")
def infer_pose_range(
    context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource], pose_range: dict[str, int]
) -> dict[str, Any]:
    return _infer(context, pipeline, Chunk(**pose_range))


@dg.op(
    name=DERIVED_STEP,
    out={
        **{spec.key.path[-1]: dg.Out(dg.Nothing, is_required=not spec.skippable) for spec in SPECS[1:]},
        **{name: dg.Out(is_required=False) for name in CHECK_OUTPUTS},
    },
    tags=pod_tags(DERIVED_STEP),
    retry_policy=STEP_RETRY,
)
def derived_from_ranges(
    context: dg.OpExecutionContext,
    pipeline: dg.ResourceParam[PipelineResource],
    first: dict[str, Any],
    rest: list[dict[str, Any]],
) -> Iterator[object]:
    with user_errors(LANDMARKS.key.to_user_string()):
        model = pipeline.model()
        result = steps.merge_landmark_ranges(
            pipeline.lake_uri, context.partition_key, model, [first, *rest], pipeline.pose_options,
            pipeline.overlay_style,
        )  # fmt: skip
    landmarks = metadata.landmarks(context, pipeline, result, model)
    yield dg.MaterializeResult(asset_key=LANDMARKS.key, metadata={**landmarks, "pose_ranges": 1 + len(rest)})
    yield from derive(context, pipeline)


@dg.graph(
    out={**{spec.key.path[-1]: dg.GraphOut() for spec in SPECS}, **{name: dg.GraphOut() for name in CHECK_OUTPUTS}}
)
def video_graph(source_video: None) -> dict[str, Any]:
    frames, first, rest = pose_first_range(source_video)
    derived = derived_from_ranges(first, rest.map(infer_pose_range).collect())
    return {"frames": frames, **{name: getattr(derived, name) for name in derived_from_ranges.output_dict}}


video_assets_by_range = dg.AssetsDefinition.from_graph(
    video_graph,
    keys_by_input_name={"source_video": source_video.key},
    keys_by_output_name={spec.key.path[-1]: spec.key for spec in SPECS},
    internal_asset_deps={spec.key.path[-1]: {dep.asset_key for dep in spec.deps} for spec in SPECS},
    partitions_def=videos_partitions,
    group_name=GROUP,
    descriptions_by_output_name={spec.key.path[-1]: spec.description or "" for spec in SPECS},
    code_versions_by_output_name={spec.key.path[-1]: spec.code_version for spec in SPECS},
    tags_by_output_name={spec.key.path[-1]: {f"dagster/kind/{kind}": "" for kind in spec.kinds} for spec in SPECS},
    check_specs=QUALITY_CHECKS,
)
