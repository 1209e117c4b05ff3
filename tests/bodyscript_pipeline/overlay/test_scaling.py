"""Frames brought to the overlay's size: by block means where a whole factor fits the cap, by swscale else."""

from __future__ import annotations

import av
import numpy as np
import pytest

from bodyscript_pipeline.overlay.scaling import OverlayScaler, frame_planes
from bodyscript_pipeline.overlay.size import overlay_size, whole_factor


@pytest.mark.parametrize(
    ("size", "limit", "factor"),
    [((1768, 994), 540, 2), ((1920, 1080), 540, 2), ((3840, 2160), 540, 4), ((2560, 1440), 540, 3),
     ((1080, 1920), 540, 2), ((1280, 720), 540, None), ((1920, 1200), 540, None), ((640, 480), 540, 1),
     ((1768, 994), 0, 1)],
)  # fmt: skip
def test_whole_factor_only_where_it_lands_near_the_cap(size: tuple[int, int], limit: int, factor: int | None) -> None:
    """Halving 720p for a 540p cap would give 360p, so 720p is scaled to the cap instead."""
    assert whole_factor(*size, limit) == factor


def random_frame(width: int, height: int, seed: int = 0) -> av.VideoFrame:
    """A yuv420p frame of noise, odd sizes too (chroma rounded up), rows padded in memory."""
    frame = av.VideoFrame(width, height, "yuv420p")
    rng = np.random.default_rng(seed)
    for plane in frame_planes(frame):
        plane[:] = rng.integers(0, 256, plane.shape, dtype=np.uint8)
    return frame


def block_means(plane: np.ndarray, factor: int, rows: int, columns: int) -> np.ndarray:
    blocks = plane[: rows * factor, : columns * factor].astype(np.float64)
    return blocks.reshape(rows, factor, columns, factor).mean(axis=(1, 3))


@pytest.mark.parametrize(("width", "height", "limit"), [(1768, 994, 540), (211, 149, 50), (300, 180, 45)])
def test_a_whole_factor_averages_each_block(width: int, height: int, limit: int) -> None:
    """Every plane of the new frame is the mean of the source's factor x factor blocks, rounded, the source
    cropped to the multiple (odd sizes: a row or column left out). The source frame is left as it was."""
    factor = whole_factor(width, height, limit)
    assert factor is not None and factor > 1
    size = overlay_size(width, height, limit)
    source = random_frame(width, height)
    before = [plane.copy() for plane in frame_planes(source)]

    scaled = OverlayScaler(size, factor, threads=1)(source)

    assert (scaled.format.name, scaled.width, scaled.height) == ("yuv420p", *size)
    for plane, original, (columns, rows) in zip(
        frame_planes(scaled), before, [size, (size[0] // 2, size[1] // 2), (size[0] // 2, size[1] // 2)], strict=True
    ):
        assert plane.shape == (rows, columns)
        assert np.abs(plane - block_means(original, factor, rows, columns)).max() <= 0.5 + 1e-9, "rounded means"
    assert all(np.array_equal(a, b) for a, b in zip(frame_planes(source), before, strict=True))


def test_other_frames_are_resampled_to_the_size() -> None:
    """swscale takes what block means cannot: another pixel format, another ratio, a frame of another size than
    the probe's. A frame at the size already is returned as it is."""
    size = (100, 56)
    scaler = OverlayScaler(size, 2, threads=1)
    rgb = np.zeros((112, 200, 3), np.uint8)
    rgb[:, 100:] = 200
    for frame in [
        av.VideoFrame.from_ndarray(rgb, format="rgb24"),
        av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p"),
        random_frame(320, 180),
    ]:
        scaled = scaler(frame)
        assert (scaled.format.name, scaled.width, scaled.height) == ("yuv420p", *size)
    grey = scaler(av.VideoFrame.from_ndarray(rgb, format="rgb24")).to_ndarray(format="rgb24")
    assert grey[:, :45].max() <= 2 and grey[:, 55:].min() >= 198, "the picture, not just the size"
    at_size = random_frame(*size)
    assert scaler(at_size) is at_size
    assert OverlayScaler((84, 48), None, threads=1)(random_frame(200, 112)).width == 84
