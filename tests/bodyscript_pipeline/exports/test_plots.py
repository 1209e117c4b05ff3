"""Angle plots: each series drawn in its colour, broken at NaN, valid PNGs without data."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from bodyscript_pipeline.exports.plots import PALETTE, angle_plot_png


def _decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _plot_area(image: np.ndarray) -> np.ndarray:
    """The inside of the axes box: found as the rows and columns that are mostly black."""
    black = (image == 0).all(axis=2)
    rows = np.flatnonzero(black.sum(axis=1) > image.shape[1] // 2)
    cols = np.flatnonzero(black.sum(axis=0) > (rows[-1] - rows[0]) // 2)
    return image[rows[0] + 1 : rows[-1], cols[0] + 1 : cols[-1]]


def _has_colour(area: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Per column of ``area``: whether any pixel there has colour ``rgb``."""
    return (area == np.array(rgb[::-1], dtype=np.uint8)).all(axis=2).any(axis=0)


def test_plot_draws_each_series_and_breaks_lines_at_nan() -> None:
    times = np.linspace(0.0, 10.0, 201)
    knee = 60 + 30 * np.sin(times)
    hip = 20 + 10 * np.cos(times)
    hip[(times > 4.0) & (times < 6.0)] = np.nan
    colours = {"knee": (200, 30, 30), "hip": (30, 30, 200)}
    png = angle_plot_png("Angles", times, {"knee": knee, "hip": hip}, colours=colours, size=(640, 240))
    assert len(png) < 40_000
    image = _decode(png)
    assert image.shape == (240, 640, 3)
    area = _plot_area(image)
    knee_cols, hip_cols = _has_colour(area, colours["knee"]), _has_colour(area, colours["hip"])
    assert knee_cols.mean() > 0.9
    assert hip_cols.mean() > 0.6
    # The data span the coloured columns of the unbroken series: map the gap (4 s, 6 s) onto them.
    first, last = np.flatnonzero(knee_cols)[[0, -1]]
    gap_lo = first + (4.0 / 10.0) * (last - first)
    gap_hi = first + (6.0 / 10.0) * (last - first)
    inside = np.arange(math.ceil(gap_lo) + 3, math.floor(gap_hi) - 3)
    assert inside.size > 20
    assert not hip_cols[inside].any(), "no hip segment across the NaN gap"
    assert hip_cols[int(gap_lo) - 8 : int(gap_lo) - 2].all() and hip_cols[int(gap_hi) + 3 : int(gap_hi) + 9].all()


def test_plot_default_palette_and_size() -> None:
    times = np.arange(100) / 30.0
    series = {f"s{i}": np.full(100, 12.0 + 8.0 * i) for i in range(3)}
    image = _decode(angle_plot_png("Default", times, series))
    assert image.shape == (260, 720, 3)
    area = _plot_area(image)
    for colour in PALETTE[:3]:
        assert _has_colour(area, colour).mean() > 0.9
    assert len(set(PALETTE)) == len(PALETTE) >= 8


@pytest.mark.parametrize("times", [np.arange(5) / 10.0, np.array([])])
def test_plot_without_data_is_a_valid_png(times: np.ndarray) -> None:
    png = angle_plot_png("Nothing", times, {"knee": np.full(times.shape, np.nan)})
    assert png.startswith(b"\x89PNG")
    assert _decode(png).shape == (260, 720, 3)
    assert _decode(angle_plot_png("Nothing", times, {})).shape == (260, 720, 3)


def test_plot_rejects_mismatched_series() -> None:
    with pytest.raises(ValueError):
        angle_plot_png("Bad", np.arange(5.0), {"knee": np.zeros(4)})
