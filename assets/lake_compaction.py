"""``lake_compaction``: the lake's per-video Parquet files merged into large files sorted by video, hourly
(bodyscript_pipeline/lake/compaction.py). The views read compacted and fresh files alike, so nothing a reader
does changes; fleet queries open a few dozen files instead of one per video and table."""

import dagster as dg

from assets.fleet_summary import FLEET_GROUP
from assets.pods import op_tags
from assets.video_specs import VIDEO_ASSET_KEYS
from bodyscript_pipeline.lake.compaction import compact, load_manifest
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource

LAKE_COMPACTION_STEP = "lake_compaction"
LAKE_COMPACTION_KEY = dg.AssetKey(LAKE_COMPACTION_STEP)
# Compaction, retention and erasure each replace the lake's compacted manifest: one run of them at a time
# (dagster.yaml and deploy/dagster.yaml limit this tag to 1; a replaced manifest also fails the later writer).
LAKE_MAINTENANCE_TAG = "bodyscript/lake-maintenance"
LAKE_MAINTENANCE_TAGS = {LAKE_MAINTENANCE_TAG: "manifest"}
COMPACTION_CRON = "0 * * * *"
COMPACTION_AUTOMATION = dg.AutomationCondition.cron_tick_passed(COMPACTION_CRON) & ~dg.AutomationCondition.in_progress()


def lake_compaction_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``lake_compaction`` asset, its pod placed by ``settings`` (assets/pods.py)."""

    @dg.asset(
        key=LAKE_COMPACTION_KEY,
        deps=list(VIDEO_ASSET_KEYS),
        group_name=FLEET_GROUP,
        code_version="1",
        op_tags={**op_tags(LAKE_COMPACTION_STEP, settings), **LAKE_MAINTENANCE_TAGS},
        kinds={"parquet"},
        automation_condition=COMPACTION_AUTOMATION,
        description="Hourly: merge the per-video Parquet files of every lake table into large files sorted by video "
        f"(once BODYSCRIPT_COMPACTION_MIN_VIDEOS, here {settings.compaction_min_videos}, videos have some).",
    )
    def lake_compaction(
        context: dg.AssetExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.MaterializeResult:
        minimum = pipeline.settings.compaction_min_videos
        if minimum == 0:
            return dg.MaterializeResult(metadata={"skipped": "BODYSCRIPT_COMPACTION_MIN_VIDEOS is 0"})
        lake_uri = pipeline.settings.lake_uri
        report = compact(lake_uri, min_videos=minimum)
        for kept in report.kept:
            context.log.warning(f"left per-video: {kept}")
        manifest = load_manifest(lake_uri)
        return dg.MaterializeResult(
            metadata={
                "generation": report.generation,
                "videos_merged": report.videos,
                "files_merged": report.files_in,
                "files_written": report.files_out,
                "rows_written": report.rows,
                "fresh_files_deleted": report.deleted,
                "left_per_video": len(report.kept),
                "compacted_files": sum(len(files) for files in manifest.tables.values()),
                "seconds": dg.FloatMetadataValue(round(report.seconds, 3)),
            }
        )

    return lake_compaction
