"""video_io on videos generated here: rotation, variable frame rate, odd sizes, exact range reads, H.264 output."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.video.io import (
    ACCEPTED_FORMATS,
    FrameIndex,
    H264Writer,
    Probe,
    RgbConverter,
    iter_decoded,
    probe_video,
    upright,
)
from bodyscript_pipeline.video.limits import Limits
from tests.support.lake_checks import top_level_boxes
from tests.support.video_factory import pattern_frame, pattern_video, write_video

WIDTH, HEIGHT = 64, 48
VFR_PTS_MS = [0, 33, 66, 150, 170, 300, 333, 400, 401, 500]

Quadrants = tuple[tuple[bool, bool], tuple[bool, bool]]
FullRead = tuple[Probe, FrameIndex, list[tuple[int, int, np.ndarray]]]


def upright_frames(
    path: Path, probe: Probe, index: FrameIndex, start: int = 0, stop: int | None = None, limits: Limits | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(frame_index, pts, upright RGB image)`` as the pose step reads frames (pose/ranges.py)."""
    rgb = RgbConverter(probe.rotation)
    for i, pts, frame in iter_decoded(path, index, start, stop, limits):
        yield i, pts, rgb(frame)


def yuv420p(image: np.ndarray, writer: H264Writer) -> np.ndarray:
    """An RGB image as yuv420p planes of the writer's size (cropped, not scaled), as the overlay hands it over."""
    rgb = np.ascontiguousarray(image[: writer.height, : writer.width])
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").to_ndarray(format="yuv420p")


def white_quadrants(image: np.ndarray) -> Quadrants:
    """Which quadrants of an image are mostly bright: ((top-left, top-right), (bottom-left, bottom-right))."""
    height, width = image.shape[:2]
    bright = image.mean(axis=2) > 128
    top, bottom = bright[: height // 2], bright[height // 2 :]

    def white(part: np.ndarray) -> bool:
        return bool(part.mean() > 0.5)

    return (
        (white(top[:, : width // 2]), white(top[:, width // 2 :])),
        (white(bottom[:, : width // 2]), white(bottom[:, width // 2 :])),
    )


def write_gop_video(path: Path, count: int, gop: int) -> Path:
    """Pattern frames with a keyframe every ``gop`` frames and B-frames, so decode order differs from display."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"keyint": str(gop), "min-keyint": str(gop), "sc_threshold": "0", "bframes": "2"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(pattern_frame(WIDTH, HEIGHT, i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_times_ms(path: Path) -> tuple[str, list[str], list[float]]:
    """Codec name, each frame's pixel format and each frame's presentation time in ms, decoded by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        codec = stream.codec_context.name
    assert all(f.pts is not None and f.time_base is not None for f in frames)
    return codec, [f.format.name for f in frames], [float(f.pts * f.time_base * 1000) for f in frames]


# --- rotation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "expected"), [(0, 0), (90, 90), (180, 180), (270, 270), (-90, 270)])
def test_rotation_is_reported_and_applied_like_opencv(tmp_path: Path, written: int, expected: int) -> None:
    path = pattern_video(tmp_path / "rotated.mp4", WIDTH, HEIGHT, 4, rotation=written)

    probe, index = probe_video(path)

    assert probe.rotation == expected
    assert (probe.coded_width, probe.coded_height) == (WIDTH, HEIGHT)
    swapped = expected in (90, 270)
    assert (probe.width, probe.height) == ((HEIGHT, WIDTH) if swapped else (WIDTH, HEIGHT))

    frames = list(upright_frames(path, probe, index))
    assert [i for i, _, _ in frames] == [0, 1, 2, 3]
    assert all(image.shape == (probe.height, probe.width, 3) for _, _, image in frames)
    assert all(image.flags["C_CONTIGUOUS"] for _, _, image in frames)

    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
        ok, bgr = capture.read()
    finally:
        capture.release()
    assert ok
    ours = frames[0][2]
    assert bgr.shape == ours.shape
    assert white_quadrants(ours) == white_quadrants(bgr)
    # Exactly one quadrant is white, so the comparison above is not trivially satisfied.
    assert sum(sum(row) for row in white_quadrants(ours)) == 1


@pytest.mark.parametrize("rotation", [0, 90])
def test_rgb_converter_gives_pyav_rgb_on_any_thread_count(tmp_path: Path, demo_video: Path, rotation: int) -> None:
    """The pose step's converter keeps one swscale context and may run single-threaded: the same pixels as
    ``to_ndarray(format="rgb24")``, on the real clip (BT.709, rows padded by the decoder) and on a rotated one."""
    path = demo_video if not rotation else pattern_video(tmp_path / "rotated.mp4", 70, 46, 6, rotation=rotation)
    probe, index = probe_video(path)
    converters = [RgbConverter(probe.rotation), RgbConverter(probe.rotation, threaded=False)]
    compared = 0
    for _, _, frame in iter_decoded(path, index, 0, 40, threaded=False):
        expected = upright(frame.to_ndarray(format="rgb24"), probe.rotation)
        assert expected.shape == (probe.height, probe.width, 3)
        for convert in converters:
            image = convert(frame)
            assert image.flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(image, expected)
        compared += 1
    assert compared == min(40, len(index))


@pytest.mark.parametrize(
    ("rotation", "quadrants"),
    [
        (90, ((False, False), (True, False))),  # counter-clockwise: top-left goes to bottom-left
        (180, ((False, False), (False, True))),
        (270, ((False, True), (False, False))),
    ],
)
def test_rotation_literal_quadrant(tmp_path: Path, rotation: int, quadrants: Quadrants) -> None:
    path = pattern_video(tmp_path / "rotated.mp4", WIDTH, HEIGHT, 2, rotation=rotation)
    probe, index = probe_video(path)
    _, _, image = next(upright_frames(path, probe, index))
    assert white_quadrants(image) == quadrants


# --- frame rate and timestamps ------------------------------------------------------------------------------


def test_variable_frame_rate_probe_and_timestamps(tmp_path: Path) -> None:
    path = pattern_video(tmp_path / "vfr.mp4", WIDTH, HEIGHT, len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)

    probe, index = probe_video(path)

    assert probe.variable_frame_rate is True
    assert probe.frame_count == len(VFR_PTS_MS) == len(index)
    assert index.keyframe[0] is True
    timestamps = [probe.timestamp_ms(pts) for pts in index.pts]
    assert timestamps == pytest.approx(VFR_PTS_MS, abs=1)
    # Frames read back carry the same pts as the index, in order.
    assert [pts for _, pts, _ in upright_frames(path, probe, index)] == index.pts
    # Mean rate over the real span: 9 intervals in 0.5 s.
    assert probe.fps == pytest.approx(18.0, rel=0.01)


def test_timestamps_count_from_the_first_frame(tmp_path: Path) -> None:
    written = [1000 + ms for ms in VFR_PTS_MS]
    path = pattern_video(tmp_path / "late.mp4", WIDTH, HEIGHT, len(written), pts_ms=written)

    probe, index = probe_video(path)

    assert probe.start_pts == index.pts[0]
    assert float(probe.start_pts * probe.time_base) == pytest.approx(1.0, abs=1e-3)
    assert [probe.timestamp_ms(pts) for pts in index.pts] == pytest.approx(VFR_PTS_MS, abs=1)


def test_constant_frame_rate_probe(tmp_path: Path) -> None:
    path = pattern_video(tmp_path / "cfr.mp4", WIDTH, HEIGHT, 20, fps=30)

    probe, index = probe_video(path)

    assert probe.variable_frame_rate is False
    assert probe.fps == pytest.approx(30.0, rel=0.01)
    assert probe.frame_count == 20 == len(index)
    assert probe.codec == "h264"
    timestamps = [probe.timestamp_ms(pts) for pts in index.pts]
    assert timestamps == pytest.approx([i * 1000 / 30 for i in range(20)], abs=1)
    assert probe.duration_s == pytest.approx(20 / 30, rel=0.01)


# --- odd dimensions -----------------------------------------------------------------------------------------


def test_odd_dimensions_probe_and_even_h264_output(tmp_path: Path) -> None:
    source = pattern_video(tmp_path / "odd.mp4", 63, 47, 5)

    probe, index = probe_video(source)
    assert (probe.width, probe.height) == (63, 47)
    assert (probe.coded_width, probe.coded_height) == (63, 47)

    target = tmp_path / "even.mp4"
    with H264Writer(target, probe.width, probe.height, probe.time_base, probe.fps) as writer:
        assert (writer.width, writer.height) == (62, 46)
        for _, pts, image in upright_frames(source, probe, index):
            assert image.shape == (47, 63, 3)
            writer.write_yuv420p(yuv420p(image, writer), pts)
    assert writer.frames == 5

    with av.open(str(target)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(images) == 5
    assert all(image.shape == (46, 62, 3) for image in images)
    # Cropped, not rescaled: the white quadrant (rows < 23, columns < 31) stays where it was.
    first = images[0].astype(np.float64)
    assert first[2:20, 2:28].mean() > 200
    assert first[2:20, 35:60].mean() < 40
    assert first[26:44, 2:28].mean() < 40


# --- exact range reads --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gop_video(tmp_path_factory.mktemp("gop") / "gop.mp4", count=90, gop=10)


@pytest.fixture(scope="module")
def gop_full_read(gop_video: Path) -> FullRead:
    probe, index = probe_video(gop_video)
    return probe, index, list(upright_frames(gop_video, probe, index))


def test_gop_video_index(gop_video: Path) -> None:
    probe, index = probe_video(gop_video)
    assert len(index) == probe.frame_count == 90
    assert [i for i, key in enumerate(index.keyframe) if key] == list(range(0, 90, 10))
    # Three seconds at 30 fps: a drift of a tenth of a percent would already show at the end.
    timestamps = [probe.timestamp_ms(pts) for pts in index.pts]
    assert timestamps == pytest.approx([i * 1000 / 30 for i in range(90)], abs=1)
    assert probe.duration_s == pytest.approx(3.0, rel=1e-3)


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, 90), (0, 1), (5, 17), (10, 20), (13, 14), (19, 21), (37, 90), (45, 46), (80, 200), (89, 90), (89, None)],
)
def test_range_read_equals_slice_of_full_read(
    gop_video: Path,
    gop_full_read: FullRead,
    start: int,
    stop: int | None,
) -> None:
    probe, index, full = gop_full_read
    assert [i for i, _, _ in full] == list(range(90))
    assert [pts for _, pts, _ in full] == index.pts

    part = list(upright_frames(gop_video, probe, index, start, stop))

    expected = full[start:stop]
    assert [i for i, _, _ in part] == [i for i, _, _ in expected]
    assert [pts for _, pts, _ in part] == [pts for _, pts, _ in expected]
    for (i, _, got), (_, _, want) in zip(part, expected, strict=True):
        assert np.array_equal(got, want), f"pixels of frame {i} differ"


def test_range_read_frames_are_the_right_frames(gop_video: Path) -> None:
    """Independent of the full read: the frame number drawn in the red channel matches the index (± codec noise)."""
    probe, index = probe_video(gop_video)
    for i, _, image in upright_frames(gop_video, probe, index, 33, 48):
        red = float(image[HEIGHT * 3 // 4 - 4 : HEIGHT * 3 // 4 + 4, WIDTH * 3 // 4 - 4 : WIDTH * 3 // 4 + 4, 0].mean())
        assert red == pytest.approx((i * 7) % 256, abs=6), f"frame {i}"


@pytest.mark.parametrize(("start", "stop"), [(30, 30), (40, 20), (90, 100)])
def test_empty_range_yields_nothing(gop_video: Path, start: int, stop: int) -> None:
    probe, index = probe_video(gop_video)
    assert list(upright_frames(gop_video, probe, index, start, stop)) == []


# --- H.264 writer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pts_ms", [None, VFR_PTS_MS], ids=["constant", "variable"])
def test_h264_writer_keeps_timestamps_and_is_faststart(tmp_path: Path, pts_ms: list[int] | None) -> None:
    count = len(VFR_PTS_MS)
    source = pattern_video(tmp_path / "source.mp4", WIDTH, HEIGHT, count, pts_ms=pts_ms)
    probe, index = probe_video(source)
    source_ms = [probe.timestamp_ms(pts) for pts in index.pts]

    target = tmp_path / "out.mp4"
    with H264Writer(target, probe.width, probe.height, probe.time_base, probe.fps) as writer:
        for _, pts, image in upright_frames(source, probe, index):
            writer.write_yuv420p(yuv420p(image, writer), pts)

    codec, pix_fmts, times_ms = decoded_times_ms(target)
    assert codec == "h264"
    assert pix_fmts == ["yuv420p"] * count
    assert len(times_ms) == count
    assert times_ms == pytest.approx(source_ms, abs=1)
    if pts_ms is not None:
        assert times_ms == pytest.approx(pts_ms, abs=1)

    boxes = top_level_boxes(target)
    assert "moov" in boxes
    assert "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes

    out_probe, _ = probe_video(target)
    assert out_probe.variable_frame_rate is (pts_ms is not None)
    assert out_probe.frame_count == count


def test_top_level_boxes_parser_sees_non_faststart_files(tmp_path: Path) -> None:
    """Control for the faststart check: PyAV's default MP4 muxing writes ``mdat`` before ``moov``."""
    path = pattern_video(tmp_path / "plain.mp4", WIDTH, HEIGHT, 3)
    boxes = top_level_boxes(path)
    assert boxes.index("mdat") < boxes.index("moov"), boxes


def test_top_level_boxes_parser_handles_largesize(tmp_path: Path) -> None:
    path = tmp_path / "boxes.mp4"
    payload = b"x" * 4
    path.write_bytes(
        struct.pack(">I4s", 12, b"ftyp")
        + payload
        + struct.pack(">I4sQ", 1, b"moov", 20)
        + payload
        + struct.pack(">I4s", 0, b"mdat")
        + payload
    )
    assert top_level_boxes(path) == ["ftyp", "moov", "mdat"]


# --- not a video --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"hello\nthis is not a video\n" * 40, bytes(range(256)) * 8],
    ids=["zero-byte", "text", "binary-noise"],
)
def test_not_a_video_raises_one_line_video_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)

    with pytest.raises(VideoError) as info:
        probe_video(path)

    message = str(info.value)
    assert message
    assert "\n" not in message
    assert "\r" not in message
    assert message == message.strip()
    assert "clip.mp4" in message


def test_missing_file_raises_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"^missing\.mp4: "):
        probe_video(tmp_path / "missing.mp4")


def test_truncated_video_raises_video_error(tmp_path: Path) -> None:
    """Without faststart the index (``moov``) is at the end; cutting the file in half loses it."""
    path = pattern_video(tmp_path / "whole.mp4", WIDTH, HEIGHT, 10)
    cut = tmp_path / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(VideoError) as info:
        probe_video(cut)
    assert "\n" not in str(info.value)


# --- the frame index read from packets -----------------------------------------------------------------------


def cut_mid_group(source: Path, target: Path, skipped: int) -> Path:
    """``source``'s packets without the first ``skipped`` (in decoding order): the stream begins inside a group of
    pictures, and its frames up to the next keyframe refer to frames it lacks."""
    with av.open(str(source)) as whole, av.open(str(target), "w") as cut:
        stream = whole.streams.video[0]
        out = cut.add_stream_from_template(stream)
        for packet in [packet for packet in whole.demux(stream) if packet.size][skipped:]:
            packet.stream = out
            cut.mux(packet)
    return target


@pytest.mark.parametrize(
    "kind",
    ["constant", "variable frame rate", "rotated", "b-frames", "vp9", "odd size", "cut mid-group", "real clip"],
)
def test_index_from_packets_equals_decoding_every_frame(tmp_path: Path, kind: str, demo_video: Path) -> None:
    """The index is read from packets, decoding only the head and the last group of pictures; it lists the
    same frames, timestamps and rotation as decoding every frame does."""
    from bodyscript_pipeline.video.io import _decoded_index
    from bodyscript_pipeline.video.limits import Limits

    path = tmp_path / "video.mp4"
    if kind == "constant":
        pattern_video(path, WIDTH, HEIGHT, 40)
    elif kind == "variable frame rate":
        pattern_video(path, WIDTH, HEIGHT, len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)
    elif kind == "rotated":
        pattern_video(path, WIDTH, HEIGHT, 12, rotation=90)
    elif kind == "b-frames":
        write_video(path, (pattern_frame(WIDTH, HEIGHT, i) for i in range(300)))  # x264 default: B-frames
    elif kind == "vp9":
        path = write_video(
            tmp_path / "video.webm", (pattern_frame(WIDTH, HEIGHT, i) for i in range(30)), codec="libvpx-vp9"
        )
    elif kind == "odd size":
        pattern_video(path, 33, 21, 10)
    elif kind == "cut mid-group":
        # 50 frames that never decode, more than the head's HEAD_FRAMES, then two groups of 100 with B-frames.
        path = cut_mid_group(write_gop_video(tmp_path / "whole.mp4", 300, 100), path, 50)
    else:
        path = demo_video

    probe, index = probe_video(path)
    decoded, rotation, error = _decoded_index(path, Limits())

    assert index == decoded and len(index) > 1
    assert (probe.rotation, probe.decode_error) == (rotation, error)
    assert probe.frame_count == len(index)
    if kind == "cut mid-group":
        assert len(index) == 200 and index.keyframe[0], "the frames before the first keyframe are left out"
        return
    # Unchecked (a head start's probe), a video that decodes whole gets the very same probe and index.
    assert probe_video(path, checked=False) == (probe, index)


def test_a_listed_frame_that_never_decodes_is_an_error(tmp_path: Path) -> None:
    """Reading a range must give every frame of the index: a frame silently missing would break coverage."""
    path = pattern_video(tmp_path / "video.mp4", WIDTH, HEIGHT, 12)
    probe, index = probe_video(path)
    pts = [*index.pts[:5], index.pts[5] - 1, *index.pts[5:]]  # a timestamp no packet has
    bad = FrameIndex(pts, [*index.keyframe[:5], False, *index.keyframe[5:]])

    with pytest.raises(VideoError, match="1 frames of the index did not decode, the first is frame 5"):
        list(upright_frames(path, probe, bad, 0, 13))


# --- decoder limits: every decoded frame, the pixel budget, the container format -----------------------------


def write_switching_video(path: Path, sizes: list[tuple[int, int]], fmt: str = "matroska") -> Path:
    """Motion JPEG whose header declares the first size while each frame has its own (w, h): every JPEG
    carries its own size, so the decoder follows a frame size that changes mid-stream."""
    time_base = Fraction(1, 30)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("mjpeg", rate=30)
        stream.width, stream.height = sizes[0]
        stream.pix_fmt = "yuvj420p"
        for i, (width, height) in enumerate(sizes):
            encoder = av.CodecContext.create("mjpeg", "w")
            encoder.width, encoder.height, encoder.pix_fmt, encoder.time_base = width, height, "yuvj420p", time_base
            frame = av.VideoFrame.from_ndarray(pattern_frame(width, height, i), format="rgb24")
            frame = frame.reformat(format="yuvj420p")
            frame.pts = i
            for packet in [*encoder.encode(frame), *encoder.encode(None)]:
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, time_base
                out.mux(packet)
    return path


SMALL_THEN_LARGE = [(WIDTH, HEIGHT)] * 6 + [(1280, 720)] * 6
SMALL_LIMITS = Limits(max_pixels=WIDTH * HEIGHT * 4)


@pytest.mark.parametrize("fmt", ["matroska", "avi"])
def test_frame_size_switching_mid_stream_is_refused_by_the_probe(tmp_path: Path, fmt: str) -> None:
    path = write_switching_video(tmp_path / f"switch.{'mkv' if fmt == 'matroska' else 'avi'}", SMALL_THEN_LARGE, fmt)
    with av.open(str(path)) as container:
        declared = container.streams.video[0].codec_context
        assert (declared.width, declared.height) == (WIDTH, HEIGHT), "the header declares the small size"

    with pytest.raises(VideoError) as refused:
        probe_video(path, SMALL_LIMITS)
    assert str(refused.value) == f"{path.name}: 1280x720 frames exceed the limit of 12,288 pixels"


def test_frame_size_switching_between_probed_frames_is_refused_while_reading(tmp_path: Path) -> None:
    """The probe decodes only the first and last groups of pictures; a larger frame between them is refused
    by the read that decodes it."""
    sizes = [(WIDTH, HEIGHT)] * 4 + [(1280, 720)] * 2 + [(WIDTH, HEIGHT)] * 4
    path = write_switching_video(tmp_path / "middle.mkv", sizes)
    probe, index = probe_video(path, SMALL_LIMITS)
    assert (probe.width, probe.height, probe.frame_count) == (WIDTH, HEIGHT, len(sizes))

    with pytest.raises(VideoError) as refused:
        list(upright_frames(path, probe, index, limits=SMALL_LIMITS))
    assert str(refused.value) == f"{path.name}: 1280x720 frames exceed the limit of 12,288 pixels"
    assert [i for i, _, _ in upright_frames(path, probe, index, 0, 4, limits=SMALL_LIMITS)] == [0, 1, 2, 3]


def test_pixel_budget_is_kept_while_decoding(tmp_path: Path) -> None:
    """The header's estimate (10 frames of 64x48) is in budget; the frames decoded are not."""
    sizes = [(WIDTH, HEIGHT)] * 4 + [(1280, 720)] * 2 + [(WIDTH, HEIGHT)] * 4
    path = write_switching_video(tmp_path / "budget.mkv", sizes)
    limits = Limits(max_total_pixels=1280 * 720 + WIDTH * HEIGHT * 8)
    probe, index = probe_video(path, limits)

    with pytest.raises(
        VideoError, match=r"^budget\.mkv: 1,855,488 pixels decoded by frame 5, over the budget of 946,176$"
    ):
        list(upright_frames(path, probe, index, limits=limits))


def write_in_container(path: Path, fmt: str, codec: str = "libx264", count: int = 6) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern_frame(WIDTH, HEIGHT, i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [
        ("clip.mp4", "mp4", "libx264"),
        ("clip.mov", "mov", "libx264"),
        ("clip.m4v", "mp4", "libx264"),
        ("clip.3gp", "3gp", "libx264"),
        ("clip.mkv", "matroska", "libx264"),
        ("clip.webm", "webm", "libvpx-vp9"),
        ("clip.avi", "avi", "mpeg4"),
        ("clip.mpg", "mpeg", "mpeg1video"),
        ("clip.ts", "mpegts", "libx264"),
    ],
)
def test_accepted_container_formats(tmp_path: Path, name: str, fmt: str, codec: str) -> None:
    probe, index = probe_video(write_in_container(tmp_path / name, fmt, codec))
    assert probe.container in ACCEPTED_FORMATS and len(index) == 6


def test_the_real_clip_is_an_accepted_container(demo_video: Path) -> None:
    assert probe_video(demo_video)[0].container == "mov,mp4,m4a,3gp,3g2,mj2"


@pytest.mark.parametrize(("fmt", "codec"), [("nut", "libx264"), ("flv", "flv")])
def test_container_format_outside_the_allow_list_is_refused(tmp_path: Path, fmt: str, codec: str) -> None:
    path = write_in_container(tmp_path / "clip.mp4", fmt, codec)
    with av.open(str(path)) as container:
        assert container.format.name == fmt and container.streams.video, "a video PyAV decodes"

    with pytest.raises(VideoError) as refused:
        probe_video(path)
    message = str(refused.value)
    assert message.startswith(f"clip.mp4: container format '{fmt}' is not accepted (accepted: ")
    assert "\n" not in message and "matroska" in message
