"""The per-video assets under Kubernetes, as one graph: two pods for a short video, a GPU pod per frame range
for a long one.

- ``pose`` (GPU pod): ``frames``, then pose inference of the first range of at most
  ``BODYSCRIPT_POSE_RANGE_FRAMES`` frames (and its overlay segment); the further ranges of a long video become
  dynamic outputs.
- ``infer_pose_range`` (GPU pod each): one further range, side by side.
- ``derived`` (CPU pod): merges the ranges in frame order with one person tracker into ``landmarks``, then
  computes ``overlays``, ``clean_landmarks`` (and its checks), ``metrics`` and ``exports``, as the local
  ``derived`` step does.

Only small typed records pass between the pods, through the IO manager: a ``FrameRange`` to each further range's
step, a ``RangeRecord`` (where the range's files are, what it found) from each range to the merge.

The graph runs subsets, as the local steps do: a run that makes neither ``frames`` nor ``landmarks`` (a
reprocessing of derived assets) passes no range on, so its pose pod ends at once and the merge is skipped.
"""

from collections.abc import Iterator
from typing import Any, Optional

import dagster as dg

from assets import metadata
from assets.derived import DERIVED_STEP, derive
from assets.partitions import videos_partitions
from assets.pods import op_tags
from assets.pose import POSE_POOL, POSE_STEP, make_frames
from assets.runs import STEP_RETRY, lineage, only_run_of_partition, user_errors
from assets.source_video import VIDEO_GROUP, source_video
from assets.video_specs import FRAMES, LANDMARKS, QUALITY_CHECKS, VIDEO_SPECS, versioned
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.writing import begin_writing
from bodyscript_pipeline.pose.ranges import FrameRange, plan_ranges
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import load_probe
from bodyscript_pipeline.steps.landmarks import RangeRecord, infer_landmark_range, merge_landmark_ranges
from resources import PipelineResource

RANGE_STEP = "infer_pose_range"
GRAPH = "video_graph"
CHECK_OUTPUTS = {f"{spec.asset_key.to_python_identifier()}_{spec.name}": spec for spec in QUALITY_CHECKS}


def _output(spec: dg.AssetSpec) -> str:
    return spec.key.path[-1]


def video_assets_by_range(settings: Settings) -> dg.AssetsDefinition:
    """The graph-backed per-video assets, each step's pod placed by ``settings`` (assets/pods.py)."""

    @dg.op(
        name=POSE_STEP,
        ins={"source_video": dg.In(dg.Nothing)},
        # "rest" is required: with no further range it is empty, and derived runs with an empty list (an optional
        # dynamic output left empty would skip it).
        out={
            "frames": dg.Out(dg.Nothing, is_required=False),
            "first": dg.Out(Optional[RangeRecord]),  # noqa: UP045 - Dagster's type of the output
            "rest": dg.DynamicOut(FrameRange),
        },
        tags=op_tags(POSE_STEP, settings),
        retry_policy=STEP_RETRY,
        pool=POSE_POOL,
    )
    def pose_first_range(
        context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> Iterator[object]:
        yield from frames_and_first_range(context, pipeline)

    @dg.op(name=RANGE_STEP, tags=op_tags(RANGE_STEP, settings), retry_policy=STEP_RETRY, pool=POSE_POOL)
    def infer_pose_range(
        context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource], pose_range: FrameRange
    ) -> RangeRecord:
        return infer_range(context, pipeline, pose_range)

    @dg.op(
        name=DERIVED_STEP,
        out={
            **{_output(spec): dg.Out(dg.Nothing, is_required=not spec.skippable) for spec in VIDEO_SPECS[1:]},
            **{name: dg.Out(is_required=False) for name in CHECK_OUTPUTS},
        },
        tags=op_tags(DERIVED_STEP, settings),
        retry_policy=STEP_RETRY,
    )
    def derived_from_ranges(
        context: dg.OpExecutionContext,
        pipeline: dg.ResourceParam[PipelineResource],
        first: Optional[RangeRecord],  # noqa: UP045 - Dagster's type of the input
        rest: list[RangeRecord],
    ) -> Iterator[object]:
        yield from merge_and_derive(context, pipeline, [first, *rest] if first is not None else [])

    @dg.graph(
        name=GRAPH,
        out={
            **{_output(spec): dg.GraphOut() for spec in VIDEO_SPECS},
            **{name: dg.GraphOut() for name in CHECK_OUTPUTS},
        },
    )
    def video_graph(source_video: None) -> dict[str, Any]:
        frames, first, rest = pose_first_range(source_video)
        derived = derived_from_ranges(first, rest.map(infer_pose_range).collect())
        return {"frames": frames, **{name: getattr(derived, name) for name in derived_from_ranges.output_dict}}

    return dg.AssetsDefinition.from_graph(
        video_graph,
        keys_by_input_name={"source_video": source_video.key},
        keys_by_output_name={_output(spec): spec.key for spec in VIDEO_SPECS},
        internal_asset_deps={_output(spec): {dep.asset_key for dep in spec.deps} for spec in VIDEO_SPECS},
        partitions_def=videos_partitions,
        group_name=VIDEO_GROUP,
        descriptions_by_output_name={_output(spec): spec.description or "" for spec in VIDEO_SPECS},
        code_versions_by_output_name={_output(spec): spec.code_version for spec in versioned(VIDEO_SPECS, settings)},
        tags_by_output_name={
            _output(spec): {f"dagster/kind/{kind}": "" for kind in spec.kinds} for spec in VIDEO_SPECS
        },
        check_specs=QUALITY_CHECKS,
        can_subset=True,
    )


def infer_range(context: dg.OpExecutionContext, pipeline: PipelineResource, frame_range: FrameRange) -> RangeRecord:
    with user_errors(LANDMARKS.key.to_user_string()):
        return infer_landmark_range(
            pipeline.settings.lake_uri,
            context.partition_key,
            pipeline.model(),
            frame_range,
            pipeline.pose_options,
            pipeline.overlay_style,
        )


def frames_and_first_range(context: dg.OpExecutionContext, pipeline: PipelineResource) -> Iterator[object]:
    """``frames``, then the first range's record, then each further range as a dynamic output; of a run that
    makes neither (a reprocessing of derived assets), nothing: the pod ends at once and no range runs."""
    lake_uri = pipeline.settings.lake_uri
    selected = context.selected_asset_keys
    if not {FRAMES.key, LANDMARKS.key} & selected:
        yield dg.Output(None, "first")
        return
    only_run_of_partition(context)
    begin_writing(lake_uri, context.partition_key, context.run_id)
    if FRAMES.key in selected:
        frames, shown, version = make_frames(context, pipeline)
        yield dg.Output(None, "frames", metadata=shown, data_version=version)
        frame_count = frames.probe.frame_count
        if LANDMARKS.key not in selected:
            yield dg.Output(None, "first")
            return
    else:
        frame_count = load_probe(VideoLake(lake_uri, context.partition_key)).frame_count
    first, *rest = plan_ranges(frame_count, pipeline.settings.pose_range_frames)
    yield dg.Output(infer_range(context, pipeline, first), "first")
    for frame_range in rest:
        yield dg.DynamicOutput(
            frame_range, output_name="rest", mapping_key=f"frames_{frame_range.start}_{frame_range.stop}"
        )


def merge_and_derive(
    context: dg.OpExecutionContext, pipeline: PipelineResource, ranges: list[RangeRecord]
) -> Iterator[object]:
    """``landmarks`` merged from every range's record (where the run makes them), then what the local
    ``derived`` step computes."""
    if LANDMARKS.key not in context.selected_asset_keys:
        yield from derive(context, pipeline)
        return
    with user_errors(LANDMARKS.key.to_user_string()):
        model = pipeline.model()
        result = merge_landmark_ranges(
            pipeline.settings.lake_uri,
            context.partition_key,
            model,
            ranges,
            pipeline.pose_options,
            pipeline.overlay_style,
        )
    lineage(context, pipeline.settings, LANDMARKS.key)
    landmarks = metadata.landmarks(context, pipeline, result, model)
    yield dg.MaterializeResult(asset_key=LANDMARKS.key, metadata={**landmarks, "pose_ranges": len(ranges)})
    yield from derive(context, pipeline)
