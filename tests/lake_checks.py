"""Checks on outputs that several tests share: MP4 structure and decoded timing."""

from __future__ import annotations

import struct
from pathlib import Path

import av


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order."""
    boxes = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            size, kind = struct.unpack(">I4s", header)
            header_size = 8
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                header_size = 16
            boxes.append(kind.decode("latin-1"))
            if size == 0:
                break
            handle.seek(size - header_size, 1)
    return boxes


def decoded_video(path: Path) -> tuple[str, str, int, int, list[int]]:
    """(codec, pix_fmt, width, height, each frame's time in ms) of a video, by decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [round(frame.time * 1000) for frame in container.decode(stream)]
        ctx = stream.codec_context
        return ctx.name, ctx.pix_fmt, ctx.width, ctx.height, times
