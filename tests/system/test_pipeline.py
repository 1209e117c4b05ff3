"""Every asset of one video materialized by Dagster on the real clip with the real model."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from dagster._core.definitions.data_version import compute_logical_data_version

from assets import process_video_assets
from bodyscript_pipeline.lake import schemas
from bodyscript_pipeline.pose.model import MODEL_VARIANTS
from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, angle_column
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES
from bodyscript_pipeline.steps.versions import asset_version
from tests.support.demo_run import DEMO_FRAMES, DemoRun
from tests.support.lake_checks import decoded_video, frame_at, top_level_boxes


def test_every_asset_materializes(demo_run: DemoRun) -> None:
    assert demo_run.result.success
    keys = {e.asset_key.to_user_string() for e in demo_run.result.get_asset_materialization_events()}
    assert keys == {"frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports"}


def test_two_steps_materialize_every_asset_with_its_own_metadata_checks_and_data_version(demo_run: DemoRun) -> None:
    """``pose`` and ``derived`` are the run's only steps, yet each asset gets one materialization of its own,
    with its own metadata and data version, and the quality checks run on clean_landmarks."""
    events = demo_run.result.all_events
    assert sorted({e.step_key for e in events if e.is_step_success}) == ["derived", "pose"]
    by_asset = {}
    for event in demo_run.result.get_asset_materialization_events():
        assert event.asset_key.to_user_string() not in by_asset, "one materialization per asset"
        by_asset[event.asset_key.to_user_string()] = event.materialization
    expected_steps = {"frames": "pose", "landmarks": "pose", "overlays": "derived", "clean_landmarks": "derived",
                      "metrics": "derived", "exports": "derived"}  # fmt: skip
    for event in demo_run.result.get_asset_materialization_events():
        assert event.step_key == expected_steps[event.asset_key.to_user_string()]
    for name, materialization in by_asset.items():
        assert materialization.partition == demo_run.partition
        assert materialization.tags.get("dagster/data_version"), f"{name} has a data version"
        assert {"step_seconds", "bytes_stored", "estimated_cost"} <= materialization.metadata.keys(), name
    # The source's version flows into frames' data version with frames' code version, as Dagster computes it.
    source = {dg.AssetKey("source_video"): dg.DataVersion(demo_run.metadata("frames")["source_version"])}
    expected = compute_logical_data_version(asset_version("frames", demo_run.settings), source)
    assert by_asset["frames"].tags["dagster/data_version"] == expected.value
    assert by_asset["frames"].tags["dagster/code_version"] == asset_version("frames", demo_run.settings)
    assert by_asset["frames"].metadata["frame_count"].value == DEMO_FRAMES
    assert by_asset["frames"].metadata["checked_by"].value == "pose's decoding", "a short clip, begun ahead"
    assert by_asset["landmarks"].metadata["frames"].value == DEMO_FRAMES
    assert by_asset["landmarks"].metadata["pose_head_start"].value is True, "pose began while frames checked"
    assert by_asset["overlays"].metadata["codec"].value == "h264"
    assert by_asset["clean_landmarks"].metadata["quality"].value is not None
    assert by_asset["metrics"].metadata["landmarks"].value == "cleaned"
    checks = {c.check_name: c for c in demo_run.result.get_asset_check_evaluations()}
    assert set(checks) == {"pose_detection", "pose_stability"}
    assert all(c.asset_key.to_user_string() == "clean_landmarks" for c in checks.values())


def test_cleaned_layer_quality_and_exports_on_the_real_clip(demo_run: DemoRun) -> None:
    checks = {c.check_name: c for c in demo_run.result.get_asset_check_evaluations()}
    assert checks["pose_detection"].passed, checks["pose_detection"].description
    quality = pl.read_parquet(demo_run.path(demo_run.lake.table_part("quality")))
    video = quality.filter(pl.col("person").is_null()).row(0, named=True)
    assert video["detection_rate"] == pytest.approx(demo_run.metadata("landmarks")["detection_rate"])
    assert 0 < video["jitter_px"] < 20 and 0 <= video["filled_fraction"] < 0.1
    cleaned = pl.read_parquet(demo_run.path(demo_run.lake.table_part("landmarks_clean")))
    assert cleaned["smoothed"].mean() > 0.9
    assert cleaned["frame_index"].n_unique() >= demo_run.metadata("landmarks")["detected_frames"]
    exports = demo_run.metadata("exports")
    tracked = quality.filter(pl.col("person").is_not_null() & (pl.col("detected_frames") >= 10))["person"]
    assert exports["people"] == tracked.to_list() and 0 in exports["people"]
    assert exports["angle_plots"].count("data:image/png;base64,") == 5
    assert all(Path(f).is_file() for f in exports["files"])


def test_overlay_colours_the_person_by_id(demo_run: DemoRun) -> None:
    """Person 0's torso bone is drawn in person 0's colour (RGB, within H.264's loss), not another person's:
    patches a third and two thirds along the left shoulder-hip bone, in frames across the clip."""
    from bodyscript_pipeline.overlay.drawing import person_colour

    landmarks = pl.read_parquet(demo_run.path(demo_run.lake.table_part("landmarks")))
    palette = np.array([person_colour(p) for p in range(8)])
    best_colours = []
    for number in range(40, 200, 20):
        ends = landmarks.filter((pl.col("frame_index") == number) & (pl.col("person") == 0) & pl.col(
            "landmark").cast(pl.String).is_in(["left_shoulder", "left_hip"])).sort("landmark_id")  # fmt: skip
        if ends.height != 2 or ends["visibility"].min() < 0.5:
            continue
        frame = frame_at(demo_run.path(demo_run.lake.overlay), number).astype(int)
        height, width = frame.shape[:2]
        for along in (1 / 3, 2 / 3):
            x = ends["x"][0] + along * (ends["x"][1] - ends["x"][0])
            y = ends["y"][0] + along * (ends["y"][1] - ends["y"][0])
            cx, cy = round(x * width), round(y * height)
            patch = frame[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3)
            nearest = np.abs(patch[:, None, :] - palette[None, :, :]).sum(axis=2).min(axis=0)  # per colour
            best_colours.append(int(nearest.argmin()))
    assert len(best_colours) >= 8
    assert best_colours.count(0) >= 0.8 * len(best_colours), f"person 0's colour in only {best_colours}"


def test_frames_probe_and_index(demo_run: DemoRun) -> None:
    meta = demo_run.metadata("frames")
    assert meta["frame_count"] == DEMO_FRAMES
    assert (meta["width"], meta["height"], meta["codec"], meta["rotation"]) == (1768, 994, "vp9", 0)
    assert meta["fps"] == pytest.approx(30.0, rel=1e-3)
    index = pl.read_parquet(demo_run.path(demo_run.lake.frame_index))
    assert index["frame_index"].to_list() == list(range(DEMO_FRAMES))
    assert index["timestamp_ms"][0] == 0
    assert np.all(np.diff(index["timestamp_ms"].to_numpy()) > 0)
    assert index["timestamp_ms"][-1] == round((DEMO_FRAMES - 1) * 1000 / 30)


def test_landmarks_detection_rate_and_schema(demo_run: DemoRun) -> None:
    meta = demo_run.metadata("landmarks")
    assert meta["detection_rate"] >= 0.9
    assert meta["model_sha256"] == MODEL_VARIANTS["full"].sha256
    path = demo_run.path(demo_run.lake.table_part("landmarks"))
    assert pq.read_schema(path).remove_metadata() == schemas.LANDMARKS
    table = pl.read_parquet(path)
    detected = table.filter(pl.col("person").is_not_null())
    assert sorted(detected["landmark"].unique().to_list()) == sorted(LANDMARK_NAMES)
    assert detected["landmark"].n_unique() == 33
    per_frame = detected.group_by("frame_index").len()
    assert per_frame["len"].unique().to_list() == [33], "each detected frame has all 33 landmarks once"
    undetected = table.filter(pl.col("person").is_null())
    assert undetected["frame_index"].n_unique() == undetected.height, "one explicit row per undetected frame"
    all_frames = sorted(table["frame_index"].unique().to_list())
    assert all_frames == list(range(DEMO_FRAMES)), "every frame is present exactly once (detected or not)"
    assert per_frame.height == meta["detected_frames"] == round(meta["detection_rate"] * DEMO_FRAMES)
    world = detected.select(pl.col("world_y").abs().max()).item()
    assert 0.3 < world < 2.5, "world coordinates are metres around the hips"
    index = pl.read_parquet(demo_run.path(demo_run.lake.frame_index))
    joined = table.unique("frame_index").join(index, on="frame_index", suffix="_index")
    assert (joined["timestamp_ms"] == joined["timestamp_ms_index"]).all()


def test_overlay_plays_in_a_browser(demo_run: DemoRun) -> None:
    meta = demo_run.metadata("overlays")
    overlay = demo_run.path(demo_run.lake.overlay)
    codec, pix_fmt, width, height, times = decoded_video(overlay)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert (width, height) == (884, 496), "1768 x 994 halved: short side at most BODYSCRIPT_OVERLAY_MAX_RESOLUTION=540"
    assert len(times) == DEMO_FRAMES == meta["frames"]
    index = pl.read_parquet(demo_run.path(demo_run.lake.frame_index))
    assert times == index["timestamp_ms"].to_list(), "same timing as the source"
    boxes = top_level_boxes(overlay)
    assert boxes.index("moov") < boxes.index("mdat"), "faststart: the index precedes the media"
    assert demo_run.path(demo_run.lake.thumbnail).read_bytes()[:2] == b"\xff\xd8"


def test_metrics_tables(demo_run: DemoRun) -> None:
    frames = pl.read_parquet(demo_run.path(demo_run.lake.table_part("frame_metrics")))
    cleaned = pl.read_parquet(demo_run.path(demo_run.lake.table_part("landmarks_clean")))
    assert frames.height == cleaned["frame_index"].n_unique(), "one row per measured (detected or filled) frame"
    for joint in JOINT_NAMES:
        angles = frames[angle_column(joint)].drop_nulls()
        assert angles.len() > 0.5 * frames.height, joint
        assert angles.min() >= -90 and angles.max() <= 180, joint
    per_joint = pl.read_parquet(demo_run.path(demo_run.lake.table_part("video_metrics")))
    people = per_joint["person"].n_unique()
    assert sorted(per_joint["joint"].unique().to_list()) == sorted(JOINT_NAMES)
    assert per_joint.height == people * len(JOINT_NAMES)
    knees = per_joint.filter(pl.col("joint").str.ends_with("_knee") & (pl.col("person") == 0))
    assert (knees["range_of_motion_deg"] > 30).all(), "the person in the clip bends their knees"
    video = pl.read_parquet(demo_run.path(demo_run.lake.table_part("videos"))).row(0, named=True)
    assert video["frame_count"] == DEMO_FRAMES
    assert video["detection_rate"] == pytest.approx(demo_run.metadata("landmarks")["detection_rate"])
    assert video["pose_frames_per_s"] > 0
    assert video["model_sha256"] == MODEL_VARIANTS["full"].sha256
    assert video["metrics_landmarks"] == "cleaned" and demo_run.metadata("metrics")["landmarks"] == "cleaned"


def test_materializations_carry_code_versions_and_locations(demo_run: DemoRun) -> None:
    for asset in process_video_assets(demo_run.settings):
        assert all(asset.code_versions_by_key[key] is not None for key in asset.keys)
    assert Path(demo_run.metadata("landmarks")["uri"]).is_file()
    assert Path(demo_run.metadata("overlays")["uri"]).is_file()
    assert Path(demo_run.metadata("metrics")["uri"]).is_file()


def test_operational_figures_are_numeric_metadata(demo_run: DemoRun) -> None:
    for asset in ("frames", "landmarks", "overlays", "clean_landmarks", "metrics"):
        meta = demo_run.metadata(asset)
        assert meta["step_seconds"] > 0 and meta["frames_per_s"] > 0, asset
        assert meta["bytes_stored"] > 1000 and meta["estimated_cost"] > 0 and meta["queue_wait_s"] >= 0, asset
    landmarks = demo_run.metadata("landmarks")
    assert landmarks["pose_delegate"] == "cpu" and "pose_delegate_fallback" not in landmarks
    assert landmarks["frames_per_s"] < 1000, "pose's seconds count from when its ranges began, before the step"
    expected = landmarks["step_seconds"] / 3600 * 1.00  # the GPU pool's default price per pod-hour
    assert landmarks["estimated_cost"] == pytest.approx(expected, abs=0.0005 / 3600)  # step_seconds is rounded
