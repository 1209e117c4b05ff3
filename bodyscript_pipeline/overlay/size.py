"""The overlay video's size: the default cap on its short side, and a source's size capped by it."""

from __future__ import annotations

# The pose workers draw and encode the overlay on the cores that run pose inference, so its size is pipeline
# time: at 540p (960 x 540 for a 16:9 source) x264 takes 1.9 ms a frame and scaling 0.9 ms, against 4.3 and
# 1.4 ms at 720p (the real clip, one thread each). 540p is what a browser's player shows at its usual size;
# BODYSCRIPT_OVERLAY_MAX_RESOLUTION=720 (or 0, the source's size) draws larger.
MAX_RESOLUTION = 540

# A source that a whole factor brings to at least this share of the cap is divided by that factor, not scaled
# to the cap itself: each overlay pixel is the mean of a block of source pixels, which is sharp, free of
# aliasing and about 4x cheaper than swscale's resampling, and x264 has fewer pixels to encode. The real clip
# (1768 x 994) is halved to 884 x 496: scaling and x264 take 1.9 ms a frame against 3.6-3.8 ms at 960 x 540.
WHOLE_FACTOR_MIN_SHARE = 0.85


def whole_factor(width: int, height: int, max_resolution: int) -> int | None:
    """The whole factor the overlay divides the source's size by (1: not scaled), or ``None`` where it is
    scaled by another ratio, because no whole factor brings the short side near enough to ``max_resolution``
    (720p to a 540p cap: halving would give 360p)."""
    short = min(width, height)
    if max_resolution <= 0 or short <= max_resolution:
        return 1
    factor = -(-short // max_resolution)
    return factor if short // factor >= WHOLE_FACTOR_MIN_SHARE * max_resolution else None


def overlay_size(width: int, height: int, max_resolution: int) -> tuple[int, int]:
    """The overlay's upright size: its short side at most ``max_resolution`` (0: the source's size), both even
    as yuv420p needs. The source's size divided by a whole factor where :func:`whole_factor` finds one,
    otherwise scaled so the short side is ``max_resolution``."""
    factor = whole_factor(width, height, max_resolution)
    if factor is not None:
        return max(2, width // factor // 2 * 2), max(2, height // factor // 2 * 2)
    scale = max_resolution / min(width, height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
