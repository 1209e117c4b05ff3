"""Pose begun before its step (``bodyscript process``'s head start): the step takes the results only when they
were made from exactly its own inputs, and they equal what the step makes itself."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import object_version, register_source
from bodyscript_pipeline.pose import head_start
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps import frames
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import (
    LandmarksResult,
    begin_pose,
    estimate_landmarks,
    overlay_style,
    pose_ahead,
)
from bodyscript_pipeline.video.io import probe_video
from tests.support.video_factory import clip_of


@pytest.fixture(autouse=True)
def no_head_start_left() -> None:
    """Each test begins with no head start of an earlier one in this process."""
    head_start._begun.clear()


def landmarks_of(settings: Settings, partition: str) -> pl.DataFrame:
    return pl.read_parquet(VideoLake(settings.lake_uri, partition).table_part("landmarks").removeprefix("file://"))


def step(settings: Settings, partition: str, clip: Path) -> LandmarksResult:
    """What the pose step does for a new video: register it, its frames, then its landmarks."""
    register_source(settings.lake_uri, partition, f"file://{clip}")
    extract_frames(settings.lake_uri, partition)
    return estimate_landmarks(
        settings.lake_uri,
        partition,
        ensure_model(settings),
        workers=settings.pose_workers,
        overlay=overlay_style(settings),
        service=settings.pose_service,
    )


def test_the_step_takes_its_head_start_and_gets_the_same_rows(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    settings = bodyscript_home
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 40, size=(640, 360))
    uri = f"file://{clip}"
    plain = step(settings, "plain", clip)
    assert not plain.head_start, "no head start was begun: the step runs its own ranges"

    begin_pose(settings, uri, object_version(uri))
    early = step(settings, "early", clip)
    assert early.head_start, "the step took the ranges begun for its source"
    assert not head_start.any_begun(), "a head start is taken once"
    assert landmarks_of(settings, "early").equals(landmarks_of(settings, "plain")), "the same rows, ids included"
    assert early.overlay_segments_kept == plain.overlay_segments_kept == 1, "and the overlay segment"
    assert (early.frames, early.detected_frames, early.people) == (plain.frames, plain.detected_frames, plain.people)
    (taken,) = head_start._begun
    assert taken.workdir is not None and taken.workdir.is_dir()
    head_start.end()  # what `bodyscript process` does before it exits
    assert not taken.workdir.exists() and not head_start._begun


def test_a_short_clip_is_checked_by_its_head_starts_decoding(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frames`` takes the probe of a head start whose ranges decoded every frame: the very probe and frame index
    the checked probe gives, without decoding the clip once more. A video of more frames than
    CHECKED_BY_POSE_FRAMES is probed as always."""
    settings = bodyscript_home
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 40, size=(640, 360))
    uri = f"file://{clip}"
    register_source(settings.lake_uri, "plain", uri)
    plain = extract_frames(settings.lake_uri, "plain")
    register_source(settings.lake_uri, "early", uri)
    begin_pose(settings, uri, object_version(uri))
    early = extract_frames(settings.lake_uri, "early")

    assert early.checked_by_pose and not plain.checked_by_pose
    assert early.probe == plain.probe
    frames_of = {key: pl.read_parquet(VideoLake(settings.lake_uri, key).frame_index.removeprefix("file://"))
                 for key in ("plain", "early")}  # fmt: skip
    assert frames_of["early"].equals(frames_of["plain"]) and frames_of["early"].height == 40
    assert head_start.any_begun(), "left for the landmarks step"

    head_start._begun.clear()
    monkeypatch.setattr(frames, "CHECKED_BY_POSE_FRAMES", 39)
    begin_pose(settings, uri, object_version(uri))
    (longer,) = head_start._begun
    register_source(settings.lake_uri, "longer", uri)
    assert not extract_frames(settings.lake_uri, "longer").checked_by_pose
    longer.results.exception()  # its ranges end before the next test


def test_a_run_step_begins_pose_ahead_and_cleans_up(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """A run's ``pose`` step (``pose_ahead``) begins the ranges before it checks the source, takes them, and
    leaves no head start and no files behind; within ``bodyscript process``, which began them already, it begins
    nothing more."""
    settings = bodyscript_home
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 30, size=(640, 360))
    uri = f"file://{clip}"
    with pose_ahead(settings, uri, object_version(uri)):
        (begun,) = head_start._begun
        assert step(settings, "run", clip).head_start
    assert not head_start._begun and begun.workdir is not None and not begun.workdir.exists()

    begin_pose(settings, uri, object_version(uri))  # as `bodyscript process` does before it loads Dagster
    with pose_ahead(settings, uri, object_version(uri)):
        assert len(head_start._begun) == 1, "nothing more begun"
        assert step(settings, "cli", clip).head_start
    assert len(head_start._begun) == 1, "left for `bodyscript process` to end"


def test_a_head_start_of_other_inputs_is_left(bodyscript_home: Settings, demo_video: Path, tmp_path: Path) -> None:
    """Another video, or another version of the same one: the step runs its own ranges."""
    settings = bodyscript_home
    first = clip_of(demo_video, tmp_path / "first.mp4", 30, size=(640, 360))
    second = clip_of(demo_video, tmp_path / "second.mp4", 30, size=(640, 360), crop_x=(0.1, 0.7))
    begin_pose(settings, f"file://{first}", object_version(f"file://{first}"))
    assert not step(settings, "second", second).head_start, "another source object"
    assert head_start.any_begun(), "left for its own step"

    head_start._begun.clear()
    begin_pose(settings, f"file://{first}", "an older version")  # the version the caller saw is not the file's now
    assert not step(settings, "first", first).head_start, "another source version"


def test_a_head_start_on_a_video_cut_short_is_left(bodyscript_home: Settings, tmp_path: Path) -> None:
    """The head start probes without decoding the first and last groups of pictures. Where an upload breaks off
    in the last one, the step's checked probe lists fewer frames: the head start is not taken, and the step's
    rows are its own, up to the break."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:  # the index first, then the media
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(60):
            noise = np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(noise, format="rgb24")))
        out.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    checked, unchecked = probe_video(cut)[0], probe_video(cut, checked=False)[0]
    assert checked.decode_error and checked.frame_count < unchecked.frame_count

    uri = f"file://{cut}"
    begin_pose(bodyscript_home, uri, object_version(uri))
    result = step(bodyscript_home, "cut", cut)
    assert not result.head_start
    assert result.frames == checked.frame_count
    assert landmarks_of(bodyscript_home, "cut")["frame_index"].unique().sort().to_list() == list(range(result.frames))


def test_a_head_start_that_fails_is_not_taken(bodyscript_home: Settings, tmp_path: Path) -> None:
    """Not a video: the head start fails in its thread; nothing is raised there, and taking it gives nothing, so
    the step runs (and reports the error) itself."""
    broken = tmp_path / "notes.mp4"
    broken.write_text("not a video\n")
    uri = f"file://{broken}"
    begun = head_start._begun
    begin_pose(bodyscript_home, uri, object_version(uri))
    (one,) = begun
    with pytest.raises(BodyscriptError, match=r"notes\.mp4"):
        one.identity.result(timeout=60)
    started = time.monotonic()
    assert head_start.take("any identity", lambda done, total: None) is None
    assert time.monotonic() - started < 1


def test_no_head_start_without_a_pose_service_or_for_s3(bodyscript_home: Settings, tmp_path: Path) -> None:
    """Pods (no pose service) and S3 sources (not local) begin nothing."""
    begin_pose(bodyscript_home, "s3://bucket/clip.mp4", "etag:x")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    begin_pose(replace(bodyscript_home, pose_service_idle_s=0), f"file://{clip}", "v1")
    assert not head_start.any_begun()
