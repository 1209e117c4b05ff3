"""Several people on the real clip, with the real model: two people found, each keeping one id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.overlay.video import OverlayStyle
from bodyscript_pipeline.pose import ranges as pose_ranges
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks
from bodyscript_pipeline.steps.overlays import render_overlay
from tests.support.video_factory import clip_of


def test_two_people_tracked_on_the_real_clip(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames 0-159 of the demo clip: a man standing on a box (left) and a woman walking in from the left
    from frame 39, in two ranges. Each keeps one id, across the ranges too: no jump of a person's hips
    between consecutive frames. The labelled overlay is drawn again exactly where a frame_range's own ids differ
    from the merged ones."""
    clip = clip_of(demo_video, tmp_path / "two.mp4", 160, size=(884, 497))
    lake_uri = bodyscript_home.lake_uri
    register_source(lake_uri, "two", f"file://{clip}")
    extract_frames(lake_uri, "two")
    options = PoseOptions(num_poses=2, track_max_gap=15)
    style = OverlayStyle(max_resolution=480, label_people=True)
    monkeypatch.setattr(pose_ranges, "MIN_RANGE_FRAMES", 70)  # 160 frames -> ranges 0-79 and 80-159
    model = ensure_model(bodyscript_home)
    result = estimate_landmarks(lake_uri, "two", model, workers=2, options=options, overlay=style)
    landmarks = pl.read_parquet(result.uri.removeprefix("file://")).drop_nulls("person")
    hips = (
        landmarks.filter(pl.col("landmark").cast(pl.String).is_in(["left_hip", "right_hip"]))
        .group_by("person", "frame_index")
        .agg(pl.col("x").mean(), pl.col("y").mean())
        .sort("person", "frame_index")
    )
    frames_per_person = hips.group_by("person").len().sort("len", descending=True)
    main = frames_per_person.filter(pl.col("len") >= 60)["person"].to_list()
    assert len(main) == 2, frames_per_person
    both = hips.filter(pl.col("person").is_in(main)).group_by("frame_index").len().filter(pl.col("len") == 2)
    assert both.height >= 60, f"both people in only {both.height} frames"
    for person in main:
        track = hips.filter(pl.col("person") == person)
        steps_x = np.abs(np.diff(track["x"].to_numpy()))[np.diff(track["frame_index"].to_numpy()) == 1]
        assert steps_x.max() < 0.05, f"person {person}'s hips jump {steps_x.max():.3f} of the width in one frame"
    man, woman = sorted(main, key=lambda p: hips.filter(pl.col("person") == p)["frame_index"].min())
    assert hips.filter(pl.col("person") == man)["frame_index"].min() < 10
    assert 30 <= hips.filter(pl.col("person") == woman)["frame_index"].min() <= 60
    assert result.people == landmarks["person"].n_unique()

    # The first frame_range's tracker saw what the merge saw, so its segment is always kept.
    assert result.overlay_segments == 2 and result.overlay_segments_kept >= 1
    overlay = render_overlay(lake_uri, "two", style)
    assert overlay.frames == 160 and overlay.frames_drawn == 80 * (2 - result.overlay_segments_kept)
