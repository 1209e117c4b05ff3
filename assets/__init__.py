"""The per-video asset graph: ``source_video`` -> ``frames`` -> ``landmarks`` -> ``overlays``, and
``landmarks`` -> ``clean_landmarks`` (quality checks) -> ``metrics`` -> ``exports``, computed in two steps
(``pose`` and ``derived``); ``fleet_summary`` spans every video."""

from assets.fleet_assets import fleet_summary
from assets.jobs import PROCESS_VIDEO_JOB, process_video_job
from assets.partitions import videos_partitions
from assets.video_assets import (
    DERIVED_STEP,
    POSE_STEP,
    PROCESS_VIDEO_ASSETS,
    VIDEO_ASSET_KEYS,
    derived,
    pose,
    source_video,
)

__all__ = [
    "DERIVED_STEP",
    "POSE_STEP",
    "PROCESS_VIDEO_ASSETS",
    "PROCESS_VIDEO_JOB",
    "VIDEO_ASSET_KEYS",
    "derived",
    "fleet_summary",
    "pose",
    "process_video_job",
    "source_video",
    "videos_partitions",
]
