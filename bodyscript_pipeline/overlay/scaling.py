"""Decoded frames brought to the overlay's size as yuv420p frames of their own, drawn on in place."""

from __future__ import annotations

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from bodyscript_pipeline.overlay.drawing import Yuv420p


def frame_planes(frame: av.VideoFrame) -> Yuv420p:
    """Writable views of a yuv420p frame's planes (each row's padding left out)."""
    luma, u, v = (
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in frame.planes
    )
    return Yuv420p(luma, u, v)


class OverlayScaler:
    """Frames as yuv420p at ``size`` (width, height as coded, before any rotation): the frame itself where it is
    that already; a yuv420p frame ``factor`` times that size (:func:`overlay.size.whole_factor`), cropped to
    the multiple, by the rounded mean of each factor x factor block (OpenCV's area resize);
    any other by swscale (``threads``: its threads, ``None`` its own choice), whose bilinear filter widens as
    the frame shrinks so fine detail does not alias."""

    def __init__(self, size: tuple[int, int], factor: int | None, threads: int | None) -> None:
        self._size = size
        self._factor = factor or 0
        self._threads = threads
        self._reformatter = VideoReformatter()  # one swscale context for every frame

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        width, height = self._size
        if frame.format.name != "yuv420p":
            return self._resampled(frame)
        if (frame.width, frame.height) == (width, height):
            return frame
        if (
            self._factor > 1
            and _even(frame.width // self._factor) == width
            and _even(frame.height // self._factor) == height
        ):
            return self._averaged(frame)
        return self._resampled(frame)

    def _averaged(self, frame: av.VideoFrame) -> av.VideoFrame:
        factor = self._factor
        out = av.VideoFrame(*self._size, "yuv420p")
        for source, target in zip(frame_planes(frame), frame_planes(out), strict=True):
            rows, columns = target.shape
            written = cv2.resize(
                source[: rows * factor, : columns * factor], (columns, rows), dst=target, interpolation=cv2.INTER_AREA
            )
            if written is not target:  # OpenCV wrote elsewhere: not expected for a writable view of this shape
                target[:] = written
        return out

    def _resampled(self, frame: av.VideoFrame) -> av.VideoFrame:
        width, height = self._size
        return self._reformatter.reformat(
            frame, width=width, height=height, format="yuv420p", interpolation="BILINEAR", threads=self._threads
        )


def _even(pixels: int) -> int:
    return pixels // 2 * 2
