"""Overlay segments: scaled, rotated, drawn, encoded in frame ranges and joined into one browser-ready MP4."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.overlay.drawing import Yuv420p, draw_skeletons_yuv420p
from bodyscript_pipeline.overlay.face_blur import blur_faces_yuv420p
from bodyscript_pipeline.overlay.size import overlay_size
from bodyscript_pipeline.overlay.video import (
    OverlayEncoder,
    OverlayStyle,
    frame_at,
    join_segments,
    rotate_yuv420p,
)
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS
from bodyscript_pipeline.steps.overlays import _overlay_ranges
from bodyscript_pipeline.video.io import H264Writer, iter_decoded, probe_video
from tests.support.lake_checks import decoded_video, top_level_boxes
from tests.support.video_factory import pattern_frame, pattern_video

NOBODY = np.empty((0, NUM_LANDMARKS, 3), np.float32)
NO_IDS = np.empty(0, np.uint16)


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [((1768, 994), 720, (1280, 720)), ((1080, 1920), 720, (720, 1280)), ((640, 480), 720, (640, 480)),
     ((1768, 994), 0, (1768, 994)), ((33, 21), 720, (32, 20)), ((3840, 2160), 1080, (1920, 1080)),
     ((1768, 994), 540, (884, 496)), ((1280, 720), 540, (960, 540)), ((2560, 1440), 540, (852, 480))],
)  # fmt: skip
def test_overlay_size_caps_the_short_side(size: tuple[int, int], limit: int, expected: tuple[int, int]) -> None:
    assert overlay_size(*size, limit) == expected


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotating_yuv420p_planes_matches_rotating_rgb(rotation: int) -> None:
    rgb = pattern_frame(64, 48, 5)
    rgb[5:9, 40:60] = (250, 20, 20)
    planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").to_ndarray(format="yuv420p")

    rotated = rotate_yuv420p(planes, rotation)

    back = av.VideoFrame.from_ndarray(rotated, format="yuv420p").to_ndarray(format="rgb24").astype(int)
    expected = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24")
    assert np.abs(back - np.rot90(expected, rotation // 90).astype(int)).max() <= 1


@pytest.mark.parametrize("rotation", [0, 90])
def test_segments_join_into_the_whole_video(tmp_path: Path, rotation: int) -> None:
    """Three ranges of a variable-frame-rate video, encoded apart and joined: every frame once, each at its
    source time, the picture of one encoding of the whole, and a faststart MP4."""
    pts_ms = [round(i * 33.4) + (40 if i > 20 else 0) for i in range(45)]
    source = pattern_video(tmp_path / "source.mp4", 96, 64, 45, pts_ms=pts_ms, rotation=rotation)
    probe, index = probe_video(source)
    style = OverlayStyle(max_resolution=48)

    def encode(path: Path, start: int, stop: int) -> Path:
        with OverlayEncoder(path, probe, style, first_pts=index.pts[start], threads=1) as encoder:
            for _, pts, frame in iter_decoded(source, index, start, stop):
                encoder.add(frame, pts, NOBODY, NO_IDS)
        return path

    bounds = [(0, 10), (10, 31), (31, 45)]
    segments = [encode(tmp_path / f"part-{a}.mp4", a, b) for a, b in bounds]
    joined = tmp_path / "joined.mp4"
    offsets = [index.pts[a] - probe.start_pts for a, _ in bounds]

    assert join_segments(segments, offsets, probe.time_base, joined) == 45

    whole = encode(tmp_path / "whole.mp4", 0, 45)
    codec, pix_fmt, width, height, times = decoded_video(joined)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert (width, height) == ((48, 72) if rotation else (72, 48))
    assert times == [probe.timestamp_ms(p) for p in index.pts] == decoded_video(whole)[4]
    assert top_level_boxes(joined).index("moov") < top_level_boxes(joined).index("mdat")
    for number in (0, 9, 10, 30, 31, 44):
        assert np.abs(frame_at(joined, number).astype(int) - frame_at(whole, number)).mean() < 3, number


def test_segments_of_other_encodings_are_not_joined(tmp_path: Path) -> None:
    source = pattern_video(tmp_path / "source.mp4", 96, 64, 6)
    probe, index = probe_video(source)
    parts = []
    for limit in (48, 32):
        part = tmp_path / f"part-{limit}.mp4"
        with OverlayEncoder(part, probe, OverlayStyle(max_resolution=limit)) as encoder:
            for _, pts, frame in iter_decoded(source, index, 0, 3):
                encoder.add(frame, pts, NOBODY, NO_IDS)
        parts.append(part)

    with pytest.raises(ValueError, match="other parameters"):
        join_segments(parts, [0, 0], probe.time_base, tmp_path / "joined.mp4")


def test_overlay_ranges_reuse_only_matching_present_segments(tmp_path: Path) -> None:
    """The overlay step takes a stored segment only where it was drawn in the same style and still exists;
    every other frame range is drawn again, and the ranges cover the video exactly once."""
    style = OverlayStyle(720, 0.5)
    uris = [f"file://{tmp_path}/seg-{k}.mp4" for k in range(3)]
    for uri in uris[:2]:
        storage.write_bytes(uri, b"segment")
    segments = [{"start": 0, "stop": 40, "uri": uris[0]}, {"start": 70, "stop": 100, "uri": uris[1]},
                {"start": 100, "stop": 130, "uri": uris[2]}]  # fmt: skip
    meta = {"bodyscript.overlay_style": style.to_json(), "bodyscript.overlay_segments": json.dumps(segments)}

    assert _overlay_ranges(meta, style, 150) == [
        (0, 40, uris[0]), (40, 70, None), (70, 100, uris[1]), (100, 150, None),
    ]  # fmt: skip
    assert _overlay_ranges(meta, OverlayStyle(480, 0.5), 150) == [(0, 150, None)]
    assert _overlay_ranges(meta, OverlayStyle(720, 0.5, blur_faces=False), 150) == [(0, 150, None)], "faces shown"
    assert _overlay_ranges({}, style, 150) == [(0, 150, None)]


def test_background_encoder_writes_the_same_video(tmp_path: Path) -> None:
    """Drawing and encoding on the encoder's own thread (beside pose inference) changes nothing in the file,
    and a failure there reaches the caller."""
    source = pattern_video(tmp_path / "source.mp4", 96, 64, count=20)
    probe, index = probe_video(source)
    people = np.full((1, NUM_LANDMARKS, 3), 0.5, np.float32)
    outputs = {}
    for background in (False, True):
        target = tmp_path / f"background-{background}.mp4"
        with OverlayEncoder(target, probe, OverlayStyle(), threads=1, background=background) as encoder:
            for _, pts, frame in iter_decoded(source, index, 0, len(index)):
                encoder.add(frame, pts, people, np.zeros(1, np.uint16))
        outputs[background] = target.read_bytes()
    assert outputs[True] == outputs[False]

    failing = OverlayEncoder(tmp_path / "failing.mp4", probe, OverlayStyle(), threads=1, background=True)
    with pytest.raises(IndexError):  # the drawing's own error, raised by add() or at the latest by close()
        try:
            for _, pts, frame in iter_decoded(source, index, 0, 4):
                failing.add(frame, pts, np.zeros((1, 5, 3), np.float32), NO_IDS)  # not 33 landmarks
        finally:
            failing.close()


def halved(frame: av.VideoFrame) -> np.ndarray:
    """yuv420p planes of half the frame's size, each pixel the rounded mean of a 2 x 2 block."""
    planes = frame.to_ndarray()
    height = frame.height
    luma, chroma = planes[:height].astype(np.int64), planes[height:].reshape(2, height // 2, -1).astype(np.int64)
    means = [(p.reshape(p.shape[0] // 2, 2, -1, 2).sum(axis=(1, 3)) + 2) // 4 for p in [luma, chroma[0], chroma[1]]]
    return np.concatenate([m.ravel() for m in means]).astype(np.uint8).reshape(-1, frame.width // 2)


@pytest.mark.parametrize(
    ("limit", "size", "scaled"),
    [(48, (84, 48), lambda frame: frame.reformat(84, 48, "yuv420p", interpolation="BILINEAR").to_ndarray()),
     (56, (100, 56), halved)],
    ids=["resampled", "halved"],
)  # fmt: skip
def test_scaled_frames_are_drawn_in_place_as_on_a_copy(
    tmp_path: Path, limit: int, size: tuple[int, int], scaled: Callable[[av.VideoFrame], np.ndarray]
) -> None:
    """A frame the scaler made is the encoder's own: blurred and drawn on in place and encoded as it is, the file
    is byte for byte the one made from a copy of its planes (the source's picture types, keyframes every 4 frames
    here, do not reach the encoder), whether swscale resampled it or a whole factor averaged it. A frame used at
    its own size is copied first, so the decoder's frame stays as it decoded."""
    source = pattern_video(tmp_path / "source.mp4", 200, 112, count=12, keyframe_every=4)
    probe, index = probe_video(source)
    assert sum(index.keyframe) == 3
    style = OverlayStyle(max_resolution=limit)  # rows padded in memory (84 or 100 of 96 or 128 bytes)
    assert overlay_size(probe.width, probe.height, limit) == size
    people = np.full((1, NUM_LANDMARKS, 3), 0.5, np.float32)
    ids = np.zeros(1, np.uint16)
    drawn = tmp_path / "drawn.mp4"
    with OverlayEncoder(drawn, probe, style, threads=1) as encoder:
        for _, pts, frame in iter_decoded(source, index, 0, len(index)):
            encoder.add(frame, pts, people, ids)
    copied = tmp_path / "copied.mp4"
    with H264Writer(copied, *size, probe.time_base, probe.fps, threads=1) as writer:
        for _, pts, frame in iter_decoded(source, index, 0, len(index)):
            planes = scaled(frame)
            blur_faces_yuv420p(Yuv420p.of(planes), people, style.min_visibility)
            draw_skeletons_yuv420p(Yuv420p.of(planes), people, style.min_visibility)
            writer.write_yuv420p(planes, pts - probe.start_pts)
    assert drawn.read_bytes() == copied.read_bytes()

    unscaled = OverlayStyle(max_resolution=0)
    with OverlayEncoder(tmp_path / "unscaled.mp4", probe, unscaled, threads=1) as encoder:
        for _, pts, frame in iter_decoded(source, index, 0, len(index)):
            before = frame.to_ndarray()
            encoder.add(frame, pts, people, ids)
            assert np.array_equal(frame.to_ndarray(), before)
    assert len(decoded_video(tmp_path / "unscaled.mp4")[4]) == len(index)
