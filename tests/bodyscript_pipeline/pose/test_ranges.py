"""Range-parallel pose inference covers every frame exactly once and agrees with one sequential pass."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.pose import ranges as pose_ranges
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.pose.ranges import MIN_RANGE_FRAMES, WARMUP_FRAMES, plan_ranges, plan_worker_ranges
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import LandmarksResult, estimate_landmarks
from bodyscript_pipeline.steps.overlays import render_overlay


@pytest.mark.parametrize(("frames", "workers"), [(1, 4), (149, 2), (300, 2), (1000, 3), (36_000, 16)])
def test_plan_covers_every_frame_once(frames: int, workers: int) -> None:
    ranges = plan_worker_ranges(frames, workers)
    assert ranges[0].start == 0 and ranges[-1].stop == frames
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    assert len(ranges) == max(1, min(workers, frames // MIN_RANGE_FRAMES))
    runs = [c.stop - c.warmup_start for c in ranges]  # the frames each worker runs, its warm-up included
    assert max(runs) - min(runs) <= 1, "side by side, the workers finish together"
    assert ranges[0].warmup_start == 0
    assert all(c.warmup_start == max(0, c.start - WARMUP_FRAMES) for c in ranges)


@pytest.mark.parametrize(("frames", "most"), [(1, 9000), (12, 6), (9000, 9000), (9001, 9000), (100_000, 9000)])
def test_k8s_ranges_cover_every_frame_once_and_are_bounded(frames: int, most: int) -> None:
    ranges = plan_ranges(frames, most)
    assert ranges[0].start == 0 and ranges[-1].stop == frames
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    assert all(0 < r.stop - r.start <= most for r in ranges)
    assert len(ranges) == -(-frames // most), "as few ranges as the bound allows"


def test_two_ranges_match_one_pass(
    bodyscript_home: Settings, demo_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = bodyscript_home.lake_uri
    register_source(lake, "demo", f"file://{demo_video}")
    extract_frames(lake, "demo")
    model = ensure_model(bodyscript_home)

    def landmarks(workers: int) -> tuple[LandmarksResult, pl.DataFrame]:
        result = estimate_landmarks(lake, "demo", model, workers=workers)
        return result, pl.read_parquet(result.uri.removeprefix("file://"))

    one_result, one = landmarks(1)
    monkeypatch.setattr(pose_ranges, "MIN_RANGE_FRAMES", 100)  # 230 frames -> two ranges of 115
    two_result, two = landmarks(2)

    frames = one_result.frames
    for table in (one, two):
        assert sorted(table["frame_index"].unique().to_list()) == list(range(frames))
        per_frame = table.group_by("frame_index").agg(pl.col("person").null_count().alias("empty"), pl.len())
        assert per_frame.filter((pl.col("empty") == 1) & (pl.col("len") != 1)).height == 0
        assert per_frame.filter((pl.col("empty") == 0) & (pl.col("len") != 33)).height == 0
    assert two["frame_index"].to_list() == sorted(two["frame_index"].to_list()), "merged in frame order"
    assert two_result.frames == frames
    assert abs(two_result.detected_frames - one_result.detected_frames) <= 3, "boundary re-detection tolerance"

    # Well inside each frame_range the tracker has converged: coordinates agree with the sequential pass.
    both = one.join(two, on=["frame_index", "person", "landmark_id"], suffix="_two").drop_nulls("person")
    inner = both.filter(pl.col("frame_index").is_between(20, 100) | pl.col("frame_index").is_between(150, 220))
    error = np.abs(inner["x"].to_numpy() - inner["x_two"].to_numpy())
    assert np.median(error) < 0.01


def test_overlay_drawn_by_the_pose_workers(
    bodyscript_home: Settings, demo_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ranges draw their overlay segments while inferring; the overlay step joins them without drawing a
    frame, and the result shows what drawing every frame from the source and the landmarks shows."""
    from bodyscript_pipeline.lake.paths import VideoLake
    from bodyscript_pipeline.overlay.video import OverlayStyle, frame_at
    from tests.support.lake_checks import decoded_video

    lake_uri = bodyscript_home.lake_uri
    lake = VideoLake(lake_uri, "demo")
    register_source(lake_uri, "demo", f"file://{demo_video}")
    extract_frames(lake_uri, "demo")
    monkeypatch.setattr(pose_ranges, "MIN_RANGE_FRAMES", 100)  # 230 frames -> two ranges of 115
    style = OverlayStyle(max_resolution=480)

    result = estimate_landmarks(lake_uri, "demo", ensure_model(bodyscript_home), workers=2, overlay=style)
    assert (result.overlay_segments, result.overlay_segments_kept) == (2, 2)
    joined = render_overlay(lake_uri, "demo", style)
    assert (joined.frames_drawn, joined.frames, joined.width, joined.height) == (0, 230, 852, 480)
    assert not Path(lake.overlay_segments.removeprefix("file://")).exists(), "segments are removed once joined"
    joined_copy = Path(lake.overlay.removeprefix("file://")).read_bytes()

    drawn = render_overlay(lake_uri, "demo", style)  # no segments left: every frame drawn here
    assert (drawn.frames_drawn, drawn.frames) == (230, 230)
    drawn_path = Path(lake.overlay.removeprefix("file://"))
    joined_path = drawn_path.with_name("joined.mp4")
    joined_path.write_bytes(joined_copy)
    index = pl.read_parquet(lake.frame_index.removeprefix("file://"))
    assert decoded_video(joined_path)[4] == decoded_video(drawn_path)[4] == index["timestamp_ms"].to_list()
    for number in (0, 114, 115, 229):  # the ranges' first and last frames
        difference = np.abs(frame_at(joined_path, number).astype(int) - frame_at(drawn_path, number))
        assert difference.mean() < 4 and np.percentile(difference, 99) < 40, number  # two H.264 encodings


def test_spare_cores_only_while_ranges_leave_some(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pose_ranges.os, "cpu_count", lambda: 2)
    assert pose_ranges.spare_cores(plan_worker_ranges(100, 2)), "a short clip's one range leaves a core free"
    assert not pose_ranges.spare_cores(plan_worker_ranges(1000, 2)), "a range per core: none left"


def test_a_range_gives_the_same_rows_and_overlay_with_and_without_threads(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Threads for decoding and drawing change how the work is scheduled, never what comes out."""
    from bodyscript_pipeline.overlay.video import OverlayStyle
    from bodyscript_pipeline.pose.estimator import PoseOptions
    from bodyscript_pipeline.video.io import probe_video

    probe, index = probe_video(demo_video)
    model = ensure_model(bodyscript_home).path
    frame_range = pose_ranges.FrameRange(1, 60, 100)  # with warm-up frames before it
    outputs = {}
    for threaded in (True, False):
        out = tmp_path / f"threaded-{threaded}" / "range.parquet"
        out.parent.mkdir()
        result = pose_ranges.run_range(
            demo_video, probe, index, model, frame_range, out, PoseOptions(), OverlayStyle(480), threaded
        )  # fmt: skip
        assert result.frames == 40 and result.segment is not None
        outputs[threaded] = (pl.read_parquet(out), result.segment.read_bytes())
    assert outputs[True][0].equals(outputs[False][0])
    assert outputs[True][1] == outputs[False][1], "the overlay segment, byte for byte"
