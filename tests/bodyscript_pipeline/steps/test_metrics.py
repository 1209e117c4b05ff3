"""The metrics step on a generated partition: which landmarks it measured, and windows that change nothing."""

from __future__ import annotations

import polars as pl
import pytest

from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.steps import clean_landmarks as cleaned_layer
from bodyscript_pipeline.steps.metrics import compute_metrics
from tests.support.synthetic_partition import GAP_SHORT


def test_metrics_say_which_landmarks_they_measured(lake: VideoLake) -> None:
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    raw = compute_metrics(lake.lake_uri, lake.partition, 0.5, "raw")
    assert raw.video_row["metrics_landmarks"] == "raw"
    raw_rows = raw.frame_rows
    clean = compute_metrics(lake.lake_uri, lake.partition, 0.5, "cleaned")
    assert clean.video_row["metrics_landmarks"] == "cleaned"
    assert clean.frame_rows == raw_rows + len(GAP_SHORT), "filled frames are measured too"
    videos = pl.read_parquet(lake.table_part("videos").removeprefix("file://"))
    assert videos["metrics_landmarks"].to_list() == ["cleaned"]


@pytest.mark.parametrize("source", ["raw", "cleaned"])
def test_metrics_windows_match_one_pass(lake: VideoLake, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Metrics stream in frame windows; a velocity only needs its neighbours, so windows change nothing."""
    from bodyscript_pipeline.steps import metrics as metrics_step

    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))

    def tables() -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        result = compute_metrics(lake.lake_uri, lake.partition, 0.5, source)
        frames = pl.read_parquet(lake.table_part("frame_metrics").removeprefix("file://"))
        joints = pl.read_parquet(lake.table_part("video_metrics").removeprefix("file://"))
        row = {k: v for k, v in result.video_row.items() if k != "processed_at_ms"}
        return frames, joints, row

    whole = tables()
    monkeypatch.setattr(metrics_step, "METRICS_WINDOW_FRAMES", 37)
    windowed = tables()
    assert windowed[0].equals(whole[0]) and windowed[0].height > 500
    assert windowed[1].equals(whole[1])
    assert windowed[2] == whole[2]
