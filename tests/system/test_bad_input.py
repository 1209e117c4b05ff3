"""Bad input gets one clear line, on that video alone, and the source is never touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets import process_video_assets, videos_partitions
from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.lake.partition_keys import is_valid_partition_key
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks
from bodyscript_pipeline.steps.metrics import compute_metrics
from bodyscript_pipeline.video.io import probe_video
from bodyscript_pipeline.video.limits import Limits
from resources import PipelineResource
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import harness_for
from tests.support.video_factory import clip_of, pattern_video, write_video


def one_line_error(path: Path, limits: Limits | None = None) -> str:
    with pytest.raises(VideoError) as failure:
        probe_video(path, limits)
    message = str(failure.value)
    assert "\n" not in message and path.name in message
    return message


def test_jpeg_renamed_mp4(tmp_path: Path) -> None:
    _, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(jpeg.tobytes())
    assert "still image" in one_line_error(fake)


def test_audio_only_mp4(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert "no video stream (only audio)" in one_line_error(path)


def test_truncated_without_index(tmp_path: Path) -> None:
    """An upload cut short before the MP4 index (moov, written last by default) was sent."""
    whole = pattern_video(tmp_path / "whole.mp4", count=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    assert "incomplete MP4" in one_line_error(cut)


def test_truncated_mid_stream_keeps_what_decodes(tmp_path: Path) -> None:
    """Index first (faststart), media cut: the frames before the cut are kept, and the probe says so."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(60):
            noise = np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
            frame = av.VideoFrame.from_ndarray(noise, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    probe, index = probe_video(cut)
    assert 0 < probe.frame_count < 60 == probe_video(whole)[0].frame_count
    assert len(index) == probe.frame_count


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (Limits(max_pixels=1000), "64x48 frames exceed the limit of 1,000 pixels"),
        (Limits(max_duration_s=0.2), "over the 0 s limit"),
        (Limits(max_frames=5), "more than 5 frames"),
        (Limits(max_total_pixels=64 * 48 * 5), "36,864 pixels to decode (12 frames of 64x48), over the budget"),
    ],
)
def test_limits_reject_before_or_while_decoding(tmp_path: Path, limits: Limits, expected: str) -> None:
    video = pattern_video(tmp_path / "clip.mp4", count=12)
    assert expected in one_line_error(video, limits)


def test_size_limit_and_empty_file_checked_before_reading(bodyscript_home: Settings, tmp_path: Path) -> None:
    video = pattern_video(tmp_path / "clip.mp4", count=12)
    register_source(bodyscript_home.lake_uri, "big", f"file://{video}")
    with pytest.raises(VideoError, match="GB limit"):
        extract_frames(bodyscript_home.lake_uri, "big", Limits(max_bytes=100))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    register_source(bodyscript_home.lake_uri, "empty", f"file://{empty}")
    with pytest.raises(VideoError, match="empty file"):
        extract_frames(bodyscript_home.lake_uri, "empty")
    assert video.stat().st_size > 100 and empty.exists()


def test_one_frame_with_nobody_in_view(
    bodyscript_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody in view: the raw and cleaned layers and the overlay are written, and the blocking quality check
    (at its default threshold) fails with its reason, so no metrics or exports pretend to measure anyone."""
    monkeypatch.delenv("BODYSCRIPT_QUALITY_MIN_DETECTION_RATE")
    video = write_video(tmp_path / "still.mp4", [np.full((96, 128, 3), 90, np.uint8)])
    resources = {"pipeline": PipelineResource.from_settings(Settings.from_env())}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["still"])
        register_source(bodyscript_home.lake_uri, "still", f"file://{video}")
        result = dg.materialize(
            process_video_assets(bodyscript_home),
            instance=instance,
            partition_key="still",
            resources=resources,
            raise_on_error=False,
        )
    assert not result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"frames", "landmarks", "overlays", "clean_landmarks"}
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "pose_detection"]
    assert not check.passed and check.description == "detection rate 0.0% is below 50.0%"
    lake = Path(bodyscript_home.lake_uri.removeprefix("file://"))
    landmarks = pl.read_parquet(lake / "landmarks" / "video=still" / "part-0.parquet")
    assert landmarks.height == 1 and landmarks["person"].null_count() == 1, "one explicit undetected frame"
    quality = pl.read_parquet(lake / "quality" / "video=still" / "part-0.parquet").row(0, named=True)
    assert (quality["frames"], quality["detected_frames"], quality["detection_rate"]) == (1, 0, 0.0)
    assert not (lake / "frame_metrics" / "video=still").exists()


def test_bad_video_fails_alone(bodyscript_home: Settings, demo_video: Path, tmp_path: Path) -> None:
    """In the same instance, a broken upload fails with its reason; the next video still runs."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    good = clip_of(demo_video, tmp_path / "good.mp4", 10, size=(442, 248))
    resources = {"pipeline": PipelineResource.from_settings(bodyscript_home)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["broken", "good"])
        register_source(bodyscript_home.lake_uri, "broken", f"file://{bad}")
        register_source(bodyscript_home.lake_uri, "good", f"file://{good}")
        failed = dg.materialize(
            process_video_assets(bodyscript_home),
            instance=instance,
            partition_key="broken",
            resources=resources,
            raise_on_error=False,
        )
        assert not failed.success
        (failure,) = [e for e in failed.all_events if e.is_step_failure]
        reason = failure.step_failure_data.user_failure_data.description
        assert reason.startswith("broken.mp4: not a readable video") and "\n" not in reason
        assert failure.step_failure_data.user_failure_data.metadata["reason"].value == reason
        worked = dg.materialize(
            process_video_assets(bodyscript_home), instance=instance, partition_key="good", resources=resources
        )
        assert worked.success
    assert bad.read_bytes().startswith(b"\x00\x00\x00\x18ftypmp42"), "the source stays as it was"


def test_hostile_object_keys_on_s3(bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spaces, unicode, '..' and very long names: each its own partition, each read back as itself."""
    keys = ["with space.mp4", "ünïcødé 视频.mp4", "x/../evil.mp4", "evil.mp4", "l" * 900 + ".mp4"]
    with harness_for(monkeypatch, s3) as harness:
        for key in keys:
            harness.put(key, key.encode())
        requests = harness.tick().run_requests
        assert len({r.partition_key for r in requests}) == len(keys)
        for request in requests:
            uri = request.tags["bodyscript/source_uri"]
            key = uri.removeprefix("s3://drop/incoming/")
            assert storage.read_bytes(uri) == key.encode(), f"{uri} reads its own object"
            assert is_valid_partition_key(request.partition_key)


def test_local_names_with_spaces_and_unicode(bodyscript_home: Settings, demo_video: Path) -> None:
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://")) / "séance 1"
    drop.mkdir(parents=True)
    shutil.copyfile(demo_video, drop / "saut à la corde.mp4")
    from bodyscript_pipeline.drop_zone.listing import lister_for
    from bodyscript_pipeline.drop_zone.scan import ScanState, scan

    result = scan(lister_for(bodyscript_home.drop_uri), ScanState(), max_pages=5, max_new=5, settle_seconds=0,
                  now=float("inf"))  # fmt: skip
    (found,) = result.new
    assert found.obj.key == "séance 1/saut à la corde.mp4"
    assert storage.size_of(found.obj.uri) == demo_video.stat().st_size


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "playlist.mp4",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n",
        ),
        ("concat.mp4", b"ffconcat version 1.0\nfile /etc/passwd\n"),
        ("sdp.mp4", b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 9 RTP/AVP 96\n"),
    ],
)
def test_decoder_never_follows_references_in_file_contents(tmp_path: Path, name: str, content: bytes) -> None:
    """Playlists, concat lists and SDP files name other files or URLs; only the local file itself is read."""
    path = tmp_path / name
    path.write_bytes(content)
    message = one_line_error(path)
    assert "not a readable video" in message or "no video stream" in message


def test_rematerializing_gives_the_same_content(bodyscript_home: Settings, demo_video: Path, tmp_path: Path) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 20, size=(442, 248))
    register_source(bodyscript_home.lake_uri, "again", f"file://{clip}")
    from bodyscript_pipeline.pose.model import ensure_model

    model = ensure_model(bodyscript_home)
    tables = []
    for _ in range(2):
        extract_frames(bodyscript_home.lake_uri, "again")
        result = estimate_landmarks(bodyscript_home.lake_uri, "again", model)
        compute_metrics(bodyscript_home.lake_uri, "again", 0.5)
        lake = Path(bodyscript_home.lake_uri.removeprefix("file://"))
        tables.append(
            (
                pl.read_parquet(result.uri.removeprefix("file://")),
                pl.read_parquet(lake / "frame_metrics" / "video=again" / "part-0.parquet"),
            )
        )
    assert tables[0][0].equals(tables[1][0]) and tables[0][1].equals(tables[1][1])


def test_header_declaring_20000x20000_frames(tmp_path: Path) -> None:
    """A header claiming gigantic frames is refused from the header alone, before any frame is decoded."""
    import struct

    small = tmp_path / "small.avi"
    with av.open(str(small), "w", format="avi") as out:
        stream = out.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "gray"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16), np.uint8), format="gray")):
                out.mux(packet)
    data = small.read_bytes().replace(struct.pack("<ii", 16, 16), struct.pack("<ii", 20000, 20000))
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(data)
    message = one_line_error(huge)
    assert "no frame size" in message or "exceed the limit" in message
