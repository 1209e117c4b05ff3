"""Input limits, checked before the expensive work: object size before reading (and while reading), the
container's header before decoding, and the real frame count, each frame's size and the pixels decoded while
decoding. Each rejection is a one-line ``VideoError``."""

from __future__ import annotations

from dataclasses import dataclass

from bodyscript_pipeline.errors import VideoError


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 8 * 1024**3
    max_duration_s: float = 2 * 3600.0
    max_pixels: int = 8192 * 8192
    max_frames: int = 500_000
    # Decoded pixels over the whole video (frames x width x height): 2 h of 1080p at 60 fps.
    max_total_pixels: int = 1920 * 1080 * 60 * 7200


def check_size(name: str, size: int, limits: Limits) -> None:
    if size == 0:
        raise VideoError(f"{name}: empty file (0 bytes)")
    check_bytes(name, size, limits.max_bytes)


def check_bytes(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise VideoError(f"{name}: {size / 1e9:.1f} GB is over the {max_bytes / 1e9:.1f} GB limit")


def check_dimensions(name: str, width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise VideoError(f"{name}: video stream has no frame size")
    if width * height > limits.max_pixels:
        raise VideoError(f"{name}: {width}x{height} frames exceed the limit of {limits.max_pixels:,} pixels")


def check_duration(name: str, duration_s: float | None, limits: Limits) -> None:
    if duration_s is not None and duration_s > limits.max_duration_s:
        raise VideoError(f"{name}: {duration_s:,.0f} s long, over the {limits.max_duration_s:,.0f} s limit")


def check_frame_count(name: str, frames: int, limits: Limits) -> None:
    if frames > limits.max_frames:
        raise VideoError(f"{name}: more than {limits.max_frames:,} frames, over the limit")


def check_pixel_budget(name: str, pixels: int, limits: Limits, what: str) -> None:
    """``what`` says which pixels were counted: estimated from the header, or decoded by some frame."""
    if pixels > limits.max_total_pixels:
        raise VideoError(f"{name}: {pixels:,} {what}, over the budget of {limits.max_total_pixels:,}")
