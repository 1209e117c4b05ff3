"""The overlay video's size: the default cap on its short side, and a source's size capped by it."""

from __future__ import annotations

# The pose workers draw and encode the overlay on the cores that run pose inference, so its size is pipeline
# time: at 540p (960 x 540 for a 16:9 source) x264 takes 1.9 ms a frame and scaling 0.9 ms, against 4.3 and
# 1.4 ms at 720p (the real clip, one thread each). 540p is what a browser's player shows at its usual size;
# BODYSCRIPT_OVERLAY_MAX_RESOLUTION=720 (or 0, the source's size) draws larger.
MAX_RESOLUTION = 540


def overlay_size(width: int, height: int, max_resolution: int) -> tuple[int, int]:
    """The overlay's upright size: scaled down so its short side is at most ``max_resolution`` (0: not
    scaled), both even as yuv420p needs."""
    scale = min(1.0, max_resolution / min(width, height)) if max_resolution > 0 else 1.0
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
