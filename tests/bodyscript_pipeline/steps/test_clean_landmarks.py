"""The cleaned layer on a generated lake partition with known ground truth: gaps filled and flagged,
noise reduced, windows seamless, raw landmarks untouched; quality scores."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.cleaning.quality import QualityThresholds
from bodyscript_pipeline.lake.parquet import read_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS
from bodyscript_pipeline.steps import clean_landmarks as cleaned_layer
from tests.support.synthetic_partition import (
    FRAMES,
    GAP_LONG,
    GAP_SHORT,
    NOISE,
    WIDTH,
    cleaned,
    truth,
)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path.removeprefix("file://")).read_bytes()).hexdigest()


def test_gaps_filled_and_flagged_noise_reduced_raw_untouched(lake: VideoLake) -> None:
    raw_hash = sha256(lake.table_part("landmarks"))
    result = cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    assert sha256(lake.table_part("landmarks")) == raw_hash, "the raw layer is never rewritten"
    table = cleaned(lake)
    p0 = table.filter(pl.col("person") == 0)
    frames = set(p0["frame_index"].unique().to_list())
    assert set(GAP_SHORT) <= frames, "a 5-frame gap is filled"
    assert not frames & set(GAP_LONG), "a 30-frame gap (above the maximum) stays missing"
    assert not frames & set(range(280, 300)), "nothing is extrapolated past the last detection"
    filled = set(p0.filter(pl.col("filled"))["frame_index"].unique().to_list())
    assert filled == set(GAP_SHORT) and result.filled_frames == len(GAP_SHORT)
    assert table.filter(pl.col("person") == 1)["filled"].sum() == 0
    assert table["smoothed"].all(), "every run is long enough to be smoothed"
    assert table.height == (frames.__len__() + 280) * NUM_LANDMARKS

    raw = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).drop_nulls("person")
    for source, limit in ((raw, None), (table.filter(~pl.col("filled")), 0.75)):
        ordered = source.filter(pl.col("person") == 0).sort("frame_index", "landmark_id")
        f = ordered["frame_index"].to_numpy()[::NUM_LANDMARKS]
        xy = np.stack([ordered["x"].to_numpy(), ordered["y"].to_numpy()], -1).reshape(-1, NUM_LANDMARKS, 2)
        error = float(np.sqrt(np.mean((xy - truth(f, 0)) ** 2)))
        if limit is None:
            raw_error = error
        else:
            assert error < limit * raw_error, (error, raw_error)
    gap = p0.filter(pl.col("filled")).sort("frame_index", "landmark_id")
    gap_xy = np.stack([gap["x"].to_numpy(), gap["y"].to_numpy()], -1).reshape(-1, NUM_LANDMARKS, 2)
    assert np.abs(gap_xy - truth(np.array(list(GAP_SHORT)), 0)).max() < 4 * NOISE


def test_windows_match_one_pass(lake: VideoLake, monkeypatch: pytest.MonkeyPatch) -> None:
    options = CleaningOptions(10, 6.0, 0.5)
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, options)
    whole = cleaned(lake).sort("frame_index", "person", "landmark_id")
    monkeypatch.setattr(cleaned_layer, "WINDOW_FRAMES", 37)
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, options)
    windowed = cleaned(lake).sort("frame_index", "person", "landmark_id")
    assert windowed.select("frame_index", "person", "landmark_id", "filled").equals(
        whole.select("frame_index", "person", "landmark_id", "filled")
    )
    for c in ("x", "y", "world_x"):
        assert np.allclose(windowed[c].to_numpy(), whole[c].to_numpy(), rtol=2e-3, atol=1e-5), c


def test_quality_scores(lake: VideoLake) -> None:
    result = cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    video, p0, p1 = result.quality
    assert video["person"] is None and video["frames"] == FRAMES
    assert video["detected_frames"] == 280 and video["detection_rate"] == pytest.approx(280 / 300)
    assert p0["person"] == 0 and p0["frames"] == 280 and p0["detected_frames"] == 280 - 35
    assert p0["filled_fraction"] == pytest.approx(5 / 280)
    assert p1["detection_rate"] == 1.0 and p1["filled_fraction"] == 0.0
    expected_px = NOISE * WIDTH  # the noise is what the filter removes (plus a little of the slow sway)
    assert 0.5 * expected_px < p1["jitter_px"] < 1.5 * expected_px
    assert video["mean_visibility"] == pytest.approx(0.9, abs=0.02)
    lenient, strict = QualityThresholds(), QualityThresholds(min_detection_rate=0.95, max_jitter_px=1.0)
    assert lenient.blocking_failures(video) == [] and lenient.warnings(video) == []
    assert strict.blocking_failures(video) == ["detection rate 93.3% is below 95.0%"]
    assert strict.warnings(video)[0].startswith("jitter")
    stored = read_table(result.quality_uri).to_pylist()
    assert stored == result.quality
