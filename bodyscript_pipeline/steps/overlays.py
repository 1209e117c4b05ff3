"""The ``overlays`` asset's work: the browser-ready skeleton overlay MP4 and its thumbnail."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.parquet import (
    file_metadata,
    iter_batches,
    whole_frames,
)
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import IMAGE_COLUMNS
from bodyscript_pipeline.overlay.size import overlay_size
from bodyscript_pipeline.overlay.video import OverlayEncoder, OverlayStyle, frame_at, join_segments
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS
from bodyscript_pipeline.steps.frames import frame_video_uri, load_frame_index, load_probe
from bodyscript_pipeline.steps.progress import Progress, no_progress
from bodyscript_pipeline.video.io import decode_limits, iter_decoded

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"


def _poses_by_frame(
    landmarks_uri: str, batch_rows: int = NUM_LANDMARKS * 2048
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, person ids, array (persons, 33, 3) of x, y, visibility) for frames with detections.

    Each frame comes whole, even where a read batch splits it (see ``whole_frames``)."""
    columns = ["frame_index", "person", *IMAGE_COLUMNS]
    for frames in whole_frames(iter_batches(landmarks_uri, columns, batch_size=batch_rows)):
        yield from _frame_poses(frames.filter(pc.is_valid(frames["person"])))


def _frame_poses(table: pa.Table) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    if not table.num_rows:
        return
    frame = table["frame_index"].to_numpy()
    values = np.stack([table[c].to_numpy(zero_copy_only=False) for c in IMAGE_COLUMNS], axis=-1)
    starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    person = table["person"].to_numpy()
    for s, e in zip(starts, ends, strict=True):
        yield int(frame[s]), person[s:e:NUM_LANDMARKS], values[s:e].reshape(-1, NUM_LANDMARKS, 3)


@dataclass(frozen=True)
class OverlayResult:
    uri: str
    thumbnail_uri: str
    frames: int
    width: int
    height: int
    seconds: float
    frames_drawn: int  # frames drawn by this step; the others came from the pose workers' segments
    faces_blurred: bool
    thumbnail: bytes  # the thumbnail's JPEG, for the UI


def render_overlay(
    lake_uri: str, partition: str, style: OverlayStyle, progress: Progress = no_progress
) -> OverlayResult:
    """The browser-ready overlay MP4 and its thumbnail: the segments the pose workers drew with the final
    person ids and this ``style``, joined with the ranges drawn here from the source and the landmarks."""
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    index = load_frame_index(lake)
    started = time.perf_counter()
    landmarks_uri = lake.table_part("landmarks")
    ranges = _overlay_ranges(file_metadata(landmarks_uri), style, len(index))
    poses = _poses_by_frame(landmarks_uri)
    pending = next(poses, None)
    empty = np.empty((0, NUM_LANDMARKS, 3), dtype=np.float32)
    no_ids = np.empty(0, dtype=np.uint16)
    drawn = 0
    with (
        storage.local_copy(frame_video_uri(lake)) as video,
        storage.staged_output(lake.overlay) as out_path,
        tempfile.TemporaryDirectory(prefix="bodyscript-overlay-") as workdir,
        ExitStack() as stored,
    ):
        parts: list[Path] = []
        for start, stop, segment_uri in ranges:
            if segment_uri is not None:  # read where it lies (downloaded only from object storage)
                parts.append(stored.enter_context(storage.local_copy(segment_uri)))
                continue
            part = Path(workdir) / f"part-{start:07d}.mp4"
            with OverlayEncoder(part, probe, style, first_pts=index.pts[start]) as encoder:
                for i, pts, frame in iter_decoded(video, index, start, stop, decode_limits(probe)):
                    people, ids = empty, no_ids
                    while pending is not None and pending[0] <= i:
                        if pending[0] == i:
                            ids, people = pending[1], pending[2]
                        pending = next(poses, None)
                    encoder.add(frame, pts, people, ids)
                    drawn += 1
                    if drawn % 64 == 0:
                        progress(min(drawn, len(index)), len(index))
            parts.append(part)
        offsets = [index.pts[start] - probe.start_pts for start, _, _ in ranges]
        frames_written = join_segments(parts, offsets, probe.time_base, out_path)
        thumbnail = _write_thumbnail(lake.thumbnail, frame_at(out_path, len(index) // 2))
        size = overlay_size(probe.width, probe.height, style.max_resolution)
    storage.delete_tree(lake.overlay_segments)
    progress(len(index), len(index))
    seconds = time.perf_counter() - started
    return OverlayResult(
        lake.overlay, lake.thumbnail, frames_written, *size, seconds, drawn, style.blur_faces, thumbnail
    )


def _overlay_ranges(
    landmarks_meta: dict[str, str], style: OverlayStyle, frame_count: int
) -> list[tuple[int, int, str | None]]:
    """Consecutive frame ranges covering the video, each with the stored segment to use (drawn by the pose
    workers with the final ids and this style, and still there) or ``None`` where it must be drawn."""
    segments: list[dict[str, object]] = []
    if landmarks_meta.get("bodyscript.overlay_style") == style.to_json():
        segments = json.loads(landmarks_meta.get("bodyscript.overlay_segments", "[]"))
    ranges: list[tuple[int, int, str | None]] = []
    position = 0
    for segment in sorted(segments, key=lambda s: int(str(s["start"]))):
        start, stop, uri = int(str(segment["start"])), int(str(segment["stop"])), str(segment["uri"])
        if start < position or not storage.exists(uri):
            continue
        if start > position:
            ranges.append((position, start, None))
        ranges.append((start, stop, uri))
        position = stop
    if position < frame_count:
        ranges.append((position, frame_count, None))
    return ranges


def _write_thumbnail(uri: str, image: np.ndarray, max_side: int = 480) -> bytes:
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("thumbnail could not be encoded")
    jpeg = encoded.tobytes()
    storage.write_bytes(uri, jpeg)
    return jpeg
