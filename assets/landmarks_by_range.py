"""``landmarks`` under the k8s executor: its frame ranges as separate steps, so separate GPU pods.

A graph asset of three ops: ``plan_pose_ranges`` splits the video into ranges of at most
``BODYSCRIPT_POSE_RANGE_FRAMES`` frames, one ``infer_pose_range`` step per range runs the pose model (and draws
its overlay segment) on the GPU pool and stores its rows in the lake, and ``merge_pose_ranges`` merges them in
frame order with one person tracker, by the same code that merges the local workers' ranges. Between the steps
only small records (ranges, locations, counts) pass through the IO manager.
"""

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import dagster as dg

from assets.partitions import videos_partitions
from assets.pods import pod_tags
from assets.video_assets import GROUP, STEP_RETRY, landmarks_metadata, user_errors
from bodyscript_pipeline import steps
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.pose_chunks import Chunk, plan_ranges
from resources import PipelineResource


@dg.op(
    ins={"frames": dg.In(dg.Nothing)},
    out=dg.DynamicOut(dict),
    tags=pod_tags("plan_pose_ranges"),
    retry_policy=STEP_RETRY,
)
def plan_pose_ranges(context: dg.OpExecutionContext, pipeline: PipelineResource) -> Iterator[dg.DynamicOutput]:
    index = steps.load_frame_index(VideoLake(pipeline.lake_uri, context.partition_key))
    for chunk in plan_ranges(len(index), pipeline.pose_range_frames):
        yield dg.DynamicOutput(asdict(chunk), mapping_key=f"frames_{chunk.start}_{chunk.stop}")


@dg.op(tags=pod_tags("infer_pose_range"), retry_policy=STEP_RETRY, pool="pose")
def infer_pose_range(
    context: dg.OpExecutionContext, pipeline: PipelineResource, pose_range: dict[str, int]
) -> dict[str, Any]:
    with user_errors():
        return steps.infer_landmark_range(
            pipeline.lake_uri,
            context.partition_key,
            pipeline.model(),
            Chunk(**pose_range),
            pipeline.pose_options,
            pipeline.overlay_style,
        )


@dg.op(tags=pod_tags("merge_pose_ranges"), retry_policy=STEP_RETRY)
def merge_pose_ranges(context: dg.OpExecutionContext, pipeline: PipelineResource, ranges: list[dict[str, Any]]) -> None:
    with user_errors():
        model = pipeline.model()
        result = steps.merge_landmark_ranges(
            pipeline.lake_uri, context.partition_key, model, ranges, pipeline.pose_options, pipeline.overlay_style
        )
    context.add_output_metadata({**landmarks_metadata(context, pipeline, result, model), "pose_ranges": len(ranges)})


@dg.graph_asset(
    name="landmarks",
    partitions_def=videos_partitions,
    ins={"frames": dg.AssetIn(dagster_type=dg.Nothing)},
    group_name=GROUP,
    kinds={"mediapipe", "parquet"},
    description="MediaPipe PoseLandmarker (VIDEO mode) in frame ranges, one GPU pod each, merged in frame order: "
    "one row per frame x person x landmark, person ids tracked across frames.",
)
def landmarks_by_range(frames: None) -> None:
    return merge_pose_ranges(plan_pose_ranges(frames=frames).map(infer_pose_range).collect())
