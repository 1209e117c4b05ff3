"""Several people on the real clip, with the real model: two people found, each keeping one id."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline import pose_chunks, steps
from bodyscript_pipeline.model import ensure_model
from bodyscript_pipeline.overlay_video import OverlayStyle
from bodyscript_pipeline.pose import PoseOptions, tiles_for
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.sources import register_source
from tests.video_factory import clip_of


def test_tiles_cover_the_frame_with_overlap() -> None:
    assert tiles_for(1768, 994, num_poses=1) == tiles_for(1768, 994, num_poses=1, tiles=1)
    assert len(tiles_for(1768, 994, num_poses=1)) == 1, "one person: the whole frame, as before"
    wide = tiles_for(1896, 746, num_poses=3)
    assert len(wide) == 3 and wide[0].x0 == 0 and wide[-1].x0 + wide[-1].width == 1896
    assert all(t.width == t.height == 746 for t in wide)
    assert all(a.x0 + a.width - b.x0 >= 0.2 * 746 for a, b in itertools.pairwise(wide)), "20 % overlap"
    tall = tiles_for(720, 1600, num_poses=2)
    assert tall[0].y0 == 0 and tall[-1].y0 + tall[-1].height == 1600 and tall[0].width == 720
    assert len(tiles_for(1000, 900, num_poses=4)) == 1, "a near-square frame is not tiled"


def test_two_people_tracked_on_the_real_clip(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames 0-159 of the demo clip: a man standing on a box (left) and a woman walking in from the left
    from frame 39, in two chunks. Each keeps one id, across the chunks too: no jump of a person's hips
    between consecutive frames. The labelled overlay is drawn again exactly where a chunk's own ids differ
    from the merged ones."""
    clip = clip_of(demo_video, tmp_path / "two.mp4", 160, size=(884, 497))
    lake_uri = bodyscript_home.lake_uri
    register_source(lake_uri, "two", f"file://{clip}")
    steps.extract_frames(lake_uri, "two")
    options = PoseOptions(num_poses=2, track_max_gap=15)
    style = OverlayStyle(max_resolution=480, label_people=True)
    monkeypatch.setattr(pose_chunks, "MIN_CHUNK_FRAMES", 70)  # 160 frames -> chunks 0-79 and 80-159
    model = ensure_model(bodyscript_home)
    result = steps.estimate_landmarks(lake_uri, "two", model, workers=2, options=options, overlay=style)
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

    # The first chunk's tracker saw what the merge saw, so its segment is always kept.
    assert result.overlay_segments == 2 and result.overlay_segments_kept >= 1
    overlay = steps.render_overlay(lake_uri, "two", style)
    assert overlay.frames == 160 and overlay.frames_drawn == 80 * (2 - result.overlay_segments_kept)
