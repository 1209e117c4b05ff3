"""Checks on outputs that several tests share: MP4 structure and decoded timing."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order."""
    data = path.read_bytes()
    boxes: list[str] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        assert size >= 8, f"malformed box {kind!r} at {offset}"
        boxes.append(kind.decode("ascii"))
        offset += size
    assert offset == len(data), "boxes do not tile the file"
    return boxes


def frame_at(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, decoded to RGB."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(f"{path} has fewer than {index + 1} frames")


def decoded_video(path: Path) -> tuple[str, str, int, int, list[int]]:
    """(codec, pix_fmt, width, height, each frame's time in ms) of a video, by decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [round(frame.time * 1000) for frame in container.decode(stream)]
        ctx = stream.codec_context
        return ctx.name, ctx.pix_fmt, ctx.width, ctx.height, times
