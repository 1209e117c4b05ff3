"""``fleet_summary``: one row per processed video, unpartitioned, kept up to date as video partitions complete."""

import dagster as dg

from assets.metadata import output_locations, preview
from assets.pods import op_tags
from assets.video_specs import METRICS
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.fleet_summary import LOW_DETECTION_RATE, build_fleet_summary
from resources import PipelineResource

FLEET_GROUP = "fleet"
FLEET_SUMMARY_STEP = "fleet_summary"
FLEET_SUMMARY_KEY = dg.AssetKey("fleet_summary")

# Rebuild whenever any video's metrics were materialized since the last rebuild, once nothing of this asset
# is running. (Dagster's eager() would also wait for every partition to exist, and one failed video would
# then hold the summary back forever.)
FLEET_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled() & ~dg.AutomationCondition.in_progress()
)


def fleet_summary_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``fleet_summary`` asset, its pod placed by ``settings`` (assets/pods.py)."""

    @dg.asset(
        key=FLEET_SUMMARY_KEY,
        deps=[METRICS],
        group_name=FLEET_GROUP,
        code_version="1",
        op_tags=op_tags(FLEET_SUMMARY_STEP, settings),
        kinds={"duckdb", "parquet"},
        automation_condition=FLEET_AUTOMATION,
        description="One row per processed video: detection, visibility, knee range of motion, throughput.",
    )
    def fleet_summary(pipeline: dg.ResourceParam[PipelineResource]) -> dg.MaterializeResult:
        return summarize_fleet(pipeline)

    return fleet_summary


def summarize_fleet(pipeline: PipelineResource) -> dg.MaterializeResult:
    summary = build_fleet_summary(pipeline.settings.lake_uri)
    worst = sorted(summary.table.to_pylist(), key=lambda row: row["detection_rate"])
    return dg.MaterializeResult(
        metadata={
            **output_locations(pipeline, uri=summary.uri),
            "dagster/row_count": summary.videos,
            "videos": summary.videos,
            "frames": summary.frames,
            f"videos_below_{LOW_DETECTION_RATE:.0%}_detection": len(summary.low_detection_videos),
            "lowest_detection": preview(worst, limit=20),
        }
    )
