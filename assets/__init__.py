"""The per-video asset graph: ``source_video`` -> ``frames`` -> ``landmarks`` -> ``overlays``, and
``landmarks`` -> ``clean_landmarks`` (quality checks) -> ``metrics`` -> ``exports``."""

from assets.fleet_assets import fleet_summary
from assets.jobs import PROCESS_VIDEO_JOB, process_video_job
from assets.partitions import videos_partitions
from assets.video_assets import (
    PROCESS_VIDEO_ASSETS,
    clean_landmarks,
    exports,
    frames,
    landmarks,
    metrics,
    overlays,
    source_video,
)

__all__ = [
    "PROCESS_VIDEO_ASSETS",
    "PROCESS_VIDEO_JOB",
    "clean_landmarks",
    "exports",
    "fleet_summary",
    "frames",
    "landmarks",
    "metrics",
    "overlays",
    "process_video_job",
    "source_video",
    "videos_partitions",
]
