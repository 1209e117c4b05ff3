"""The job that materializes every derived asset of one video partition."""

import dagster as dg

from assets.partitions import videos_partitions
from assets.video_specs import VIDEO_ASSET_KEYS

PROCESS_VIDEO_JOB = "process_video"

process_video_job = dg.define_asset_job(
    PROCESS_VIDEO_JOB,
    selection=dg.AssetSelection.assets(*VIDEO_ASSET_KEYS),
    partitions_def=videos_partitions,
    description="Every derived asset of one video partition: frames, landmarks, overlays, clean_landmarks, metrics, "
    "exports.",
)
