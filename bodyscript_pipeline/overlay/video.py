"""The skeleton overlay video: frames drawn on as they are decoded, encoded as browser-ready H.264 at a
capped size, in frame-range segments joined afterwards without re-encoding.

The pose workers draw their own frame range while they infer it, so each frame is decoded once for both.
With one person per frame nothing drawn depends on person ids, so every segment is the overlay of its
range. With several, people are labelled with the ids of the worker's own tracker: a segment whose ids all
equal the merged video's is kept as it is, any other range is drawn again from the source
(``steps.overlays.render_overlay``).

With ``blur_faces`` (the default), each person's head is blurred before the skeleton is drawn on it
(``face_blur``); the landmarks themselves were measured on the unblurred frames.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bodyscript_pipeline.overlay.drawing import Yuv420p, draw_skeletons_yuv420p
from bodyscript_pipeline.overlay.face_blur import blur_faces_yuv420p
from bodyscript_pipeline.overlay.scaling import OverlayScaler, frame_planes
from bodyscript_pipeline.overlay.size import MAX_RESOLUTION, overlay_size, whole_factor
from bodyscript_pipeline.video.io import H264Writer, Probe

BACKGROUND_FRAMES = 8  # decoded frames waiting for a background encoder at most: memory stays bounded


@dataclass(frozen=True)
class OverlayStyle:
    """How the overlay is drawn: its short side at most ``max_resolution`` pixels (540p by default; 0 keeps the
    source's size), landmarks below ``min_visibility`` left out, and with ``label_people`` (for several
    people per frame) each person in their id's colour with a ``P<id>`` label; without, one colour. With
    ``blur_faces``, every person's head is blurred under the skeleton."""

    max_resolution: int = MAX_RESOLUTION
    min_visibility: float = 0.5
    label_people: bool = False
    blur_faces: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def rotate_yuv420p(planes: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation to yuv420p planes (shape (height * 3 / 2, width)), as
    :func:`bodyscript_pipeline.video.io.upright` does to RGB."""
    k = rotation // 90 % 4
    if not k:
        return planes
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    luma = np.rot90(planes[:height], k)
    out = np.empty((luma.shape[0] * 3 // 2, luma.shape[1]), dtype=planes.dtype)
    out[: luma.shape[0]] = luma
    out_chroma = out[luma.shape[0] :].reshape(2, luma.shape[0] // 2, luma.shape[1] // 2)
    out_chroma[0] = np.rot90(chroma[0], k)
    out_chroma[1] = np.rot90(chroma[1], k)
    return out


class OverlayEncoder:
    """Draws skeletons on decoded frames (any pixel format and orientation) and encodes them: brought to the
    overlay size as yuv420p (:class:`OverlayScaler`), rotated upright, drawn on, encoded with the source's
    timestamps. ``threads`` is the scaler's and the encoder's (0: automatic; 1 where processes already fill the
    cores).

    A segment's timestamps start at zero, from its ``first_pts`` (default: the video's first frame): MP4
    keeps a later start only as an edit list in milliseconds, which would shift its frames.
    :func:`join_segments` puts each segment back in its place."""

    def __init__(
        self,
        path: Path,
        probe: Probe,
        style: OverlayStyle,
        first_pts: int | None = None,
        threads: int = 0,
        background: bool = False,
    ) -> None:
        self.width, self.height = overlay_size(probe.width, probe.height, style.max_resolution)
        self._rotation = probe.rotation
        swapped = probe.rotation in (90, 270)
        coded_size = (self.height, self.width) if swapped else (self.width, self.height)
        self._start_pts = probe.start_pts if first_pts is None else first_pts
        self._min_visibility = style.min_visibility
        self._label_people = style.label_people
        self._blur_faces = style.blur_faces
        self._writer = H264Writer(path, self.width, self.height, probe.time_base, probe.fps, threads=threads)
        factor = whole_factor(probe.width, probe.height, style.max_resolution)
        self._scaler = OverlayScaler(coded_size, factor, threads or None)  # swscale's threads too (None: its own)
        # With ``background``, frames are drawn and encoded by a thread of their own, beside whatever the
        # caller does next (pose inference of the next frame): OpenCV and x264 work without the GIL.
        self._queue: queue.Queue[tuple[av.VideoFrame, int, np.ndarray, np.ndarray] | None] | None = None
        self._failure: BaseException | None = None
        if background:
            self._queue = queue.Queue(maxsize=BACKGROUND_FRAMES)
            self._thread = threading.Thread(target=self._drain, name="overlay-encoder", daemon=True)
            self._thread.start()

    def add(self, frame: av.VideoFrame, pts: int, people: np.ndarray, ids: np.ndarray) -> None:
        """Draw ``people`` ((persons, 33, 3) of normalized x, y, visibility) on ``frame``, labelled with
        their ``ids`` where the style says so, and encode it."""
        if self._queue is None:
            self._draw(frame, pts, people, ids)
            return
        if self._failure is not None:
            raise self._failure
        self._queue.put((frame, pts, people, ids))

    def _drain(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._draw(*item)
                except BaseException as exc:  # handed to the caller by add() or close()
                    self._failure = exc

    def _draw(self, frame: av.VideoFrame, pts: int, people: np.ndarray, ids: np.ndarray) -> None:
        scaled = self._scaler(frame)
        if scaled is frame or self._rotation:
            # Copied: the decoder's own frame stays as it is, and a rotation makes new planes anyway.
            planes = rotate_yuv420p(scaled.to_ndarray(), self._rotation)
            self._mark(Yuv420p.of(planes), people, ids)
            self._writer.write_yuv420p(planes, pts - self._start_pts)
        else:
            # The scaler's frame is new and this encoder's own: drawn on in place and encoded as it is, which
            # spares two copies of every frame (about 0.25 ms at 540p).
            self._mark(frame_planes(scaled), people, ids)
            self._writer.write_frame(scaled, pts - self._start_pts)

    def _mark(self, planes: Yuv420p, people: np.ndarray, ids: np.ndarray) -> None:
        if self._blur_faces and len(people):
            blur_faces_yuv420p(planes, people, self._min_visibility)
        draw_skeletons_yuv420p(planes, people, self._min_visibility, ids if self._label_people else None)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        self._writer.close()
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> OverlayEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def opencv_threads(threads: int | None) -> Iterator[None]:
    """OpenCV's threads for this process, for the duration (``None``: left as they are). One where processes
    already fill the cores: blurring and drawing then stay on the caller's thread."""
    if threads is None:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def join_segments(segments: list[Path], offsets: list[int], time_base: Fraction, target: Path) -> int:
    """Join H.264 segments of consecutive frame ranges into one faststart MP4, packets copied as they are,
    each segment's timestamps shifted by its offset (in ``time_base``) from the video's first frame.

    Segments from :class:`OverlayEncoder` with one style share their codec parameters and each starts on a
    keyframe, so the joined stream decodes like one encoding. Returns the number of frames."""
    frames = 0
    with av.open(str(segments[0])) as first:
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(template)
            for path, offset in zip(segments, offsets, strict=True):
                with av.open(str(path)) as segment:
                    source = segment.streams.video[0]
                    if source.codec_context.extradata != extradata:
                        raise ValueError(f"{path.name} was encoded with other parameters than {segments[0].name}")
                    shift = round(offset * time_base / source.time_base)
                    for packet in segment.demux(source):
                        if packet.size:
                            packet.pts = None if packet.pts is None else packet.pts + shift
                            packet.dts = None if packet.dts is None else packet.dts + shift
                            packet.stream = stream
                            out.mux(packet)
                            frames += 1
    return frames


def frame_at(path: Path, number: int) -> np.ndarray:
    """Frame ``number`` (in presentation order) of a video, as upright RGB."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        target = pts[min(max(number, 0), len(pts) - 1)]
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts >= target:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    raise ValueError(f"{path.name} has no frame {number}")
