"""The per-video asset graph: ``source_video`` -> ``frames`` -> ``landmarks`` -> ``overlays``, ``metrics``."""

from assets.partitions import videos_partitions
from assets.video_assets import PROCESS_VIDEO_ASSETS, frames, landmarks, metrics, overlays, source_video

__all__ = [
    "PROCESS_VIDEO_ASSETS",
    "frames",
    "landmarks",
    "metrics",
    "overlays",
    "source_video",
    "videos_partitions",
]
