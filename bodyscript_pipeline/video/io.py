"""Video probing, exact frame reading and browser-ready H.264 encoding, with PyAV.

Frames are identified by their presentation timestamp (pts), never by seeking arithmetic: the frame
index maps each frame number to its pts, so any range can be read exactly, whatever the frame rate.
Rotation metadata (the display matrix) is in the probe, and every reader turns decoded frames upright with it
(:func:`upright` for RGB images), so every downstream step sees upright frames.
Only the container formats of ``ACCEPTED_FORMATS`` are opened, and every decoded frame is held to the limits
(its own size, not the header's, and the pixels decoded in all), since a stream can change size mid-way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.video.limits import (
    Limits,
    check_dimensions,
    check_duration,
    check_frame_count,
    check_pixel_budget,
)

# Demuxers of still images: a photo renamed .mp4 opens as a one-frame "video" and is not one.
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "gif", "bmp_pipe", "tiff_pipe"})

# The demuxers (PyAV's ``container.format.name``) of the suffixes in video_names.py, with the names users know.
ACCEPTED_FORMATS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4/mov/m4v/3gp",
    "matroska,webm": "matroska/webm",
    "avi": "avi",
    "mpeg": "mpeg-ps",
    "mpegts": "mpeg-ts",
}

# Variable frame rate: frame intervals that differ from the median by more than this fraction.
VFR_TOLERANCE = 0.1
# How many frames the checked probe decodes from the start: frames before the first decodable keyframe never come
# out of the decoder, and leading pictures (after a keyframe in decoding order, before it in time) lie within the
# decoder's reordering, 16 frames at most (H.264, HEVC). So the first 32 frames decoded show every frame at the
# head that does not decode, without decoding the rest of a long group of pictures (x264's default: 250 frames).
HEAD_FRAMES = 32


@dataclass(frozen=True)
class Probe:
    """What a video is. ``width``/``height`` are upright (after rotation); ``rotation`` is counter-clockwise."""

    container: str
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    fps: float
    duration_s: float
    frame_count: int
    time_base_num: int
    time_base_den: int
    start_pts: int
    variable_frame_rate: bool
    decode_error: str | None = None  # set when decoding stopped early: the frames before it are kept

    @property
    def time_base(self) -> Fraction:
        return Fraction(self.time_base_num, self.time_base_den)

    def timestamp_ms(self, pts: int) -> int:
        return round((pts - self.start_pts) * self.time_base * 1000)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Probe:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class FrameIndex:
    """Every decodable frame in presentation order: its pts and whether it is a keyframe."""

    pts: list[int]
    keyframe: list[bool]

    def __len__(self) -> int:
        return len(self.pts)


def _open(path: Path) -> av.container.InputContainer:
    try:
        # Only the local file itself: no URLs, playlists or other files referenced from its contents.
        container = av.open(str(path), mode="r", options={"protocol_whitelist": "file"})
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path.name}: not a readable video ({_reason(exc)})") from None
    if container.format.name in IMAGE_FORMATS or container.format.name.startswith("image2"):
        container.close()
        raise VideoError(f"{path.name}: a still image ({container.format.name}), not a video")
    if (found := container.format.name) not in ACCEPTED_FORMATS:
        container.close()
        accepted = ", ".join(ACCEPTED_FORMATS.values())
        raise VideoError(f"{path.name}: container format '{found}' is not accepted (accepted: {accepted})")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        mp4 = container.format.name.startswith("mov")
        container.close()
        if mp4 and "audio" not in kinds:
            raise VideoError(f"{path.name}: incomplete MP4, its index (moov) is missing: was the upload cut short?")
        raise VideoError(f"{path.name}: contains no video stream (only {', '.join(kinds)})")
    return container


def _declared_duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else None


def _declared_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    """The header's frame count, else its duration times its frame rate; None where it tells neither."""
    if stream.frames:
        return int(stream.frames)
    duration_s = _declared_duration_s(container, stream)
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    return round(duration_s * rate) if duration_s and rate else None


@dataclass
class FrameCheck:
    """Holds each decoded frame to ``max_pixels`` by its own size, and the pixels decoded so far to the budget."""

    name: str
    limits: Limits
    pixels: int = 0

    def __call__(self, frame: av.VideoFrame, index: int | None = None) -> None:
        width, height = int(frame.width), int(frame.height)
        if width * height > self.limits.max_pixels:
            check_dimensions(self.name, width, height, self.limits)
        self.pixels += width * height
        if self.pixels > self.limits.max_total_pixels:
            by = "" if index is None else f" by frame {index}"
            check_pixel_budget(self.name, self.pixels, self.limits, f"pixels decoded{by}")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__


def normalize_rotation(degrees: float) -> int:
    """Display-matrix rotation (counter-clockwise) rounded to a multiple of 90 in [0, 360)."""
    return round(degrees / 90.0) * 90 % 360


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation, as players do, and return a contiguous array."""
    if rotation:
        image = np.rot90(image, k=rotation // 90)
    # MediaPipe and OpenCV need C-contiguous pixels; PyAV may return padded rows.
    return np.ascontiguousarray(image)


class RgbConverter:
    """Decoded frames as contiguous, upright RGB arrays, the same as ``upright(frame.to_ndarray(format="rgb24"))``.

    One swscale context serves every frame, where ``to_ndarray`` sets one up per frame. Without ``threaded`` it
    converts on the caller's thread alone: where processes already fill the cores, swscale's threads cost more
    CPU than they save (measured on the real clip: 2.0 → 1.2 ms CPU a frame)."""

    def __init__(self, rotation: int, threaded: bool = True) -> None:
        self._reformatter = VideoReformatter()
        self._rotation = rotation
        self._threads = None if threaded else 1

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=self._threads).to_ndarray()
        return upright(rgb, self._rotation)


def probe_video(path: Path, limits: Limits | None = None, checked: bool = True) -> tuple[Probe, FrameIndex]:
    """The real frame count and each frame's pts, read from the container's packets, not the header's claims.

    Reading packets costs a fraction of decoding them, so only what can break is decoded: the head, up to
    ``HEAD_FRAMES`` decoded frames (the rotation, that the stream decodes at all, and leading pictures that refer
    to frames before the start), and the last group of pictures, where a cut upload breaks off. A stream that
    breaks off keeps the frames before the break and says so in ``decode_error``. Packets without timestamps
    (raw streams) fall back to decoding every frame. The header is checked against ``limits`` before anything is
    read (frame size, duration, and frames x size against the pixel budget), the frame count and pixel budget
    while reading, and each decoded frame's own size.

    Without ``checked``, the head is decoded up to its first frame only, and the tail not at all: the probe a
    video that decodes whole has, in a fraction of the time (the real clip: 0.4 s → 0.1 s), for work begun ahead
    (pose/head_start.py) that is used only where it matches the checked probe.
    """
    limits = limits or Limits()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        coded_w, coded_h = int(stream.codec_context.width), int(stream.codec_context.height)
        check_dimensions(path.name, coded_w, coded_h, limits)
        check_duration(path.name, _declared_duration_s(container, stream), limits)
        declared = _declared_frames(container, stream)
        if declared:
            _check_frames_budget(path.name, declared, coded_w, coded_h, limits)
        demuxed = _demuxed_index(path.name, container, stream, limits)
        time_base = stream.time_base or Fraction(1, 1000)
        average_rate = float(stream.average_rate or stream.guessed_rate or 0)
        codec = stream.codec_context.name
        container_name = container.format.name
    finally:
        container.close()
    check = FrameCheck(path.name, limits)
    if demuxed is None:
        index, rotation, decode_error = _decoded_index(path, limits)
    elif not checked:
        index, rotation = _decodable_head(path, demuxed, check, most=1)
        decode_error = None
    else:
        index, decode_error, from_start = _decodable_prefix(path, demuxed, check)
        index, rotation = _decodable_head(path, index, check, from_start)
    pts = index.pts
    intervals = np.diff(np.asarray(pts, dtype=np.int64))
    if len(intervals):
        median = float(np.median(intervals))
        vfr = bool(np.any(np.abs(intervals - median) > VFR_TOLERANCE * median))
        span_s = float((pts[-1] - pts[0]) * time_base)
        fps = len(intervals) / span_s if span_s > 0 else average_rate
        duration_s = span_s + median * float(time_base)
    else:
        vfr = False
        fps = average_rate
        duration_s = 1.0 / fps if fps else 0.0
    swapped = rotation in (90, 270)
    probe = Probe(
        container=container_name,
        codec=codec,
        width=coded_h if swapped else coded_w,
        height=coded_w if swapped else coded_h,
        coded_width=coded_w,
        coded_height=coded_h,
        rotation=rotation,
        fps=fps,
        duration_s=duration_s,
        frame_count=len(pts),
        time_base_num=time_base.numerator,
        time_base_den=time_base.denominator,
        start_pts=pts[0],
        variable_frame_rate=vfr,
        decode_error=decode_error,
    )
    check_duration(path.name, duration_s, limits)
    return probe, index


def _check_frames_budget(name: str, frames: int, width: int, height: int, limits: Limits) -> None:
    what = f"pixels to decode ({frames:,} frames of {width}x{height})"
    check_pixel_budget(name, frames * width * height, limits, what)


def _strictly_increasing(pairs: list[tuple[int, bool]]) -> FrameIndex:
    """Presentation order without duplicate timestamps (a repeated pts is one frame)."""
    pts: list[int] = []
    keyframe: list[bool] = []
    for value, key in sorted(pairs):
        if pts and value <= pts[-1]:
            continue
        pts.append(value)
        keyframe.append(key)
    return FrameIndex(pts, keyframe)


def _demuxed_index(
    name: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: Limits
) -> FrameIndex | None:
    """Each packet's pts and keyframe flag; ``None`` where a packet has no pts. Empty packets and those the
    container marks as discarded (outside an edit list) are not frames. A read error ends the packets. The
    count is held to the frame limit and, at the header's frame size, to the pixel budget."""
    pairs: list[tuple[int, bool]] = []
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    most = min(limits.max_frames, limits.max_total_pixels // max(1, width * height))
    try:
        for packet in container.demux(stream):
            if not packet.size or packet.is_discard:
                continue
            if packet.pts is None:
                return None
            pairs.append((int(packet.pts), bool(packet.is_keyframe)))
            if len(pairs) > most:
                check_frame_count(name, len(pairs), limits)
                _check_frames_budget(name, len(pairs), width, height, limits)
    except av.FFmpegError:
        pass  # the frames read so far are checked by decoding the tail
    if not pairs:
        raise VideoError(f"{name}: no decodable video frame")
    return _strictly_increasing(pairs)


@dataclass(frozen=True)
class Decoded:
    """What decoding from the first frame on gave: each decoded frame's pts in order, the first's rotation,
    and the error that ended it, if any."""

    pts: list[int]
    rotation: int
    error: str | None


def _decodable_prefix(
    path: Path, index: FrameIndex, check: FrameCheck
) -> tuple[FrameIndex, str | None, Decoded | None]:
    """The index up to the first frame that does not decode, found by decoding from the last keyframe on.
    A video of one group of pictures (most short clips) is decoded from its start, which also answers
    :func:`_decodable_head`: returned, so it is not decoded twice."""
    last_key = max((i for i, key in enumerate(index.keyframe) if key), default=0)
    order: list[int] = []
    rotation = 0
    first = not last_key
    error: str | None = None
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if last_key:
            container.seek(index.pts[last_key], stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                check(frame)
                if first:
                    rotation, first = normalize_rotation(frame.rotation), False
                if frame.pts is not None:
                    order.append(frame.pts)
        except av.FFmpegError as exc:
            error = _reason(exc)
    finally:
        container.close()
    decoded = set(order)
    from_start = None if last_key else Decoded(order, rotation, error)
    missing = next((i for i in range(last_key, len(index)) if index.pts[i] not in decoded), None)
    if missing is None:
        return index, None, from_start
    if missing == 0:
        raise VideoError(f"{path.name}: no decodable video frame ({error or 'nothing decoded'})")
    kept = FrameIndex(index.pts[:missing], index.keyframe[:missing])
    return kept, f"decoding stopped after frame {missing - 1}: {error or 'later frames did not decode'}", from_start


def _decodable_head(
    path: Path, index: FrameIndex, check: FrameCheck, from_start: Decoded | None = None, most: int = HEAD_FRAMES
) -> tuple[FrameIndex, int]:
    """The index without leading frames that do not decode (pictures referring to frames before the start),
    found by decoding up to ``most`` frames of the first group of pictures, unless ``from_start`` already
    did; and the first frame's rotation."""
    second_key = next((i for i, key in enumerate(index.keyframe) if key and i), len(index))
    head = min(second_key, most)
    decoded: set[int] = set()
    rotation = 0
    if from_start is not None:
        for pts in from_start.pts:
            decoded.add(pts)
            if len(decoded) >= head:
                break
        rotation = from_start.rotation
        if not decoded and from_start.error:
            raise VideoError(f"{path.name}: no decodable video frame ({from_start.error})")
    else:
        container = _open(path)
        try:
            for frame in container.decode(container.streams.video[0]):
                check(frame)
                if not decoded:
                    rotation = normalize_rotation(frame.rotation)
                if frame.pts is not None:
                    decoded.add(frame.pts)
                if len(decoded) >= head:
                    break
        except av.FFmpegError as exc:
            if not decoded:
                raise VideoError(f"{path.name}: no decodable video frame ({_reason(exc)})") from None
        finally:
            container.close()
    if not decoded:
        raise VideoError(f"{path.name}: no decodable video frame")
    last = max(decoded)
    keep = [i for i, p in enumerate(index.pts) if p in decoded or p > last]
    if len(keep) == len(index):
        return index, rotation
    return FrameIndex([index.pts[i] for i in keep], [index.keyframe[i] for i in keep]), rotation


def _decoded_index(path: Path, limits: Limits) -> tuple[FrameIndex, int, str | None]:
    """Every frame decoded: for streams whose packets carry no timestamps. Returns the index, the rotation
    and where decoding stopped early, if it did."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pairs: list[tuple[int, bool]] = []
        rotation = 0
        decode_error: str | None = None
        check = FrameCheck(path.name, limits)
        try:
            for frame in container.decode(stream):
                check(frame, len(pairs))
                if not pairs:
                    rotation = normalize_rotation(frame.rotation)
                value = frame.pts if frame.pts is not None else (pairs[-1][0] + 1 if pairs else 0)
                pairs.append((value, bool(frame.key_frame)))
                if len(pairs) > limits.max_frames:
                    check_frame_count(path.name, len(pairs), limits)
        except av.FFmpegError as exc:
            if not pairs:
                raise VideoError(f"{path.name}: no decodable video frame ({_reason(exc)})") from None
            decode_error = f"decoding stopped after frame {len(pairs) - 1}: {_reason(exc)}"
        if not pairs:
            raise VideoError(f"{path.name}: no decodable video frame")
        return _strictly_increasing(pairs), rotation, decode_error
    finally:
        container.close()


def decode_limits(probe: Probe) -> Limits:
    """Limits for decoding a probed video: no frame larger than the probed ones (which passed the configured
    limits), no more pixels than the probed frames hold. So a stream that grows mid-way is refused wherever it
    is decoded, without carrying the deployment's limits to every worker."""
    pixels = max(1, probe.coded_width * probe.coded_height)
    return Limits(max_pixels=pixels, max_total_pixels=pixels * max(1, probe.frame_count))


def iter_decoded(
    path: Path,
    index: FrameIndex,
    start: int = 0,
    stop: int | None = None,
    limits: Limits | None = None,
    threaded: bool = True,
) -> Iterator[tuple[int, int, av.VideoFrame]]:
    """Yield ``(frame_index, pts, frame)`` for frames ``start <= i < stop``, exactly: the decoder's own frames,
    in their own pixel format and orientation (:func:`upright` turns an RGB image of one upright).

    Seeks to the keyframe before ``start`` and identifies frames by pts, so a range read returns the same
    frames as a full read. Every decoded frame (those before ``start`` too) is held to ``limits`` (default:
    ``Limits()``). ``threaded=False`` decodes on the caller's thread alone: for readers that already keep
    every core busy, where the decoder's own threads only add switching."""
    stop = len(index) if stop is None else min(stop, len(index))
    if start >= stop:
        return
    position = {p: i for i, p in enumerate(index.pts[start:stop], start)}
    check = FrameCheck(path.name, limits or Limits())
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threaded else "NONE"
        if start > 0:
            container.seek(index.pts[start], stream=stream, backward=True, any_frame=False)
        remaining = stop - start
        try:
            for frame in container.decode(stream):
                i = position.pop(frame.pts, None) if frame.pts is not None else None
                check(frame, i)
                if i is None:
                    continue
                yield i, frame.pts, frame
                remaining -= 1
                if remaining == 0:
                    return
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: decoding stopped at frame {stop - remaining} ({_reason(exc)})") from None
        # Every indexed frame must come out: a frame silently missing would break "each frame exactly once".
        first = min(position.values())
        raise VideoError(f"{path.name}: {remaining} frames of the index did not decode, the first is frame {first}")
    finally:
        container.close()


class H264Writer:
    """Writes yuv420p frames as browser-ready MP4: H.264, ``+faststart``, the source's own timestamps.

    yuv420p needs even dimensions: an odd width or height is rounded down (``width``, ``height``), and frames
    come at that size.
    """

    def __init__(
        self, path: Path, width: int, height: int, time_base: Fraction, fps: float, crf: int = 23, threads: int = 0
    ) -> None:
        self.width = width - width % 2
        self.height = height - height % 2
        self._container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        # ultrafast + zerolatency: no B-frames or lookahead, CAVLC (so Constrained Baseline, which every browser
        # plays). Measured at 1280x720 on one thread: 4.5-5 ms a frame against 7.4-9.5 for superfast, files
        # about 30 % larger (about 3.6 Mbit/s at 30 frames/s). The overlay is encoded while the pose model runs,
        # so encoding time is pipeline time.
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.thread_count = threads  # 0: automatic
        self._stream = stream
        self.frames = 0

    def write_yuv420p(self, planes: np.ndarray, pts: int) -> None:
        """Encode a frame given as yuv420p planes, shape (height * 3 / 2, width): no colour conversion."""
        self.write_frame(av.VideoFrame.from_ndarray(planes, format="yuv420p"), pts)

    def write_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a yuv420p frame of this writer's size as it is. Its picture type is cleared first: a frame made
        from a decoded one (by swscale) keeps the source's, which x264 would take as forced (a keyframe wherever
        the source has one)."""
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.pts = pts
        frame.time_base = self._stream.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
