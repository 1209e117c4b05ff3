"""The Dagster code location: ``dagster dev -m bodyscript_pipeline.definitions`` loads ``defs``."""

from __future__ import annotations

import dagster as dg

from assets import PROCESS_VIDEO_ASSETS, source_video, videos_partitions
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from sensors import SENSORS

PROCESS_VIDEO_JOB = "process_video"

process_video_job = dg.define_asset_job(
    PROCESS_VIDEO_JOB,
    selection=dg.AssetSelection.assets(*PROCESS_VIDEO_ASSETS),
    partitions_def=videos_partitions,
    description="Every derived asset of one video partition: frames, landmarks, overlays, metrics.",
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=[source_video, *PROCESS_VIDEO_ASSETS],
        jobs=[process_video_job],
        sensors=SENSORS,
        resources={"pipeline": PipelineResource.from_settings(settings)},
    )


defs = build_definitions()
