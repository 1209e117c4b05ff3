"""The ``landmarks_clean`` table and the ``quality`` scores, computed from the raw ``landmarks`` window by
window so that memory does not grow with the video.

Each window of ``WINDOW_FRAMES`` frames is read with ``margin`` frames on both sides; gaps are filled and
tracks smoothed over the whole read, and only the window's own frames are written. The margin is longer
than any filled gap and than the filter's settling time (a few frames at 6 Hz), so results match a
whole-video pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.cleaning.filters import CleaningOptions, fill_gaps, smooth
from bodyscript_pipeline.cleaning.quality import QualityAccumulator, QualityScores
from bodyscript_pipeline.lake.parquet import read_frame_range, read_table, table_writer, write_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import LANDMARK_VALUES
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from bodyscript_pipeline.steps.frames import load_probe
from bodyscript_pipeline.video.io import Probe

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"

WINDOW_FRAMES = 1024
MIN_MARGIN_FRAMES = 64
COORDINATES = [i for i, name in enumerate(LANDMARK_VALUES) if name != "visibility"]
_VIS = LANDMARK_VALUES.index("visibility")


@dataclass(frozen=True)
class CleanResult:
    uri: str
    quality_uri: str
    rows: int
    filled_frames: int
    seconds: float
    scores: tuple[QualityScores, ...]  # as stored: the video's, then each person's

    @property
    def video_scores(self) -> QualityScores:
        return self.scores[0]

    @property
    def quality(self) -> list[dict[str, Any]]:
        """The ``quality`` rows as dicts (what the Dagster layer shows)."""
        return [row.to_row() for row in self.scores]

    @property
    def video_quality(self) -> dict[str, Any]:
        return self.video_scores.to_row()


def stored_video_quality(lake_uri: str, partition: str) -> dict[str, Any]:
    """The video's quality scores as the cleaned layer last stored them (the row without a person)."""
    table = read_table(VideoLake(lake_uri, partition).table_part("quality"))
    return next(row.to_row() for row in QualityScores.rows(table) if row.person is None)


def clean_landmarks(lake_uri: str, partition: str, options: CleaningOptions) -> CleanResult:
    lake = VideoLake(lake_uri, partition)
    probe = load_probe(lake)
    started = time.perf_counter()
    times_ms = read_table(lake.frame_index, columns=["timestamp_ms"])["timestamp_ms"].to_numpy()
    margin = max(MIN_MARGIN_FRAMES, options.fill_max_gap + 16)
    quality = QualityAccumulator(frames=len(times_ms))
    filled_frames = 0
    meta = {
        "bodyscript.fill_max_gap": str(options.fill_max_gap),
        "bodyscript.smoothing": f"butterworth zero-phase, cutoff {options.smooth_cutoff_hz:g} Hz"
        if options.smooth_cutoff_hz
        else "none",
    }
    uri = lake.table_part("landmarks_clean")
    with (
        storage.local_copy(lake.table_part("landmarks")) as raw_path,
        table_writer("landmarks_clean", uri, meta) as out,
    ):
        for start in range(0, len(times_ms), WINDOW_FRAMES):
            stop = min(start + WINDOW_FRAMES, len(times_ms))
            lo, hi = max(0, start - margin), min(len(times_ms), stop + margin)
            window = _read_frames(raw_path, lo, hi)
            mine = pc.and_(pc.greater_equal(window["frame_index"], start), pc.less(window["frame_index"], stop))
            quality.frames_detected += len(np.unique(window.filter(mine)["frame_index"].to_numpy()))
            columns, filled = _clean_window(window, times_ms[lo:hi] / 1000.0, lo, start, stop, probe, options, quality)
            filled_frames += filled
            if columns is not None:
                out.write_batch(pa.RecordBatch.from_pydict(columns, schema=out.schema))
        rows = out.rows
    quality_table = quality.table()
    write_table("quality", lake.table_part("quality"), quality_table)
    return CleanResult(
        uri,
        lake.table_part("quality"),
        rows,
        filled_frames,
        time.perf_counter() - started,
        tuple(QualityScores.rows(quality_table)),
    )


def _read_frames(path: Path, lo: int, hi: int) -> pa.Table:
    """The detected rows of frames ``[lo, hi)``."""
    table = read_frame_range(path, ["frame_index", "person", "landmark_id", *LANDMARK_VALUES], lo, hi)
    return table.filter(pc.is_valid(table["person"]))


def _clean_window(
    window: pa.Table,
    times_s: np.ndarray,
    lo: int,
    start: int,
    stop: int,
    probe: Probe,
    options: CleaningOptions,
    quality: QualityAccumulator,
) -> tuple[dict[str, object] | None, int]:
    """The cleaned rows of frames ``[start, stop)`` for every person in ``window`` (frames ``lo`` on)."""
    if not window.num_rows:
        return None, 0
    frame = window["frame_index"].to_numpy().astype(np.int64)
    person = window["person"].to_numpy(zero_copy_only=False).astype(np.int64)
    landmark = window["landmark_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    values = np.stack([window[c].to_numpy(zero_copy_only=False) for c in LANDMARK_VALUES], axis=-1).astype(np.float64)
    span = len(times_s)
    keep = slice(start - lo, stop - lo)
    scale = np.array([probe.width, probe.height], dtype=np.float64)
    pieces = []
    filled_total = 0
    for p in np.unique(person):
        rows = person == p
        dense = np.full((span, NUM_LANDMARKS, len(LANDMARK_VALUES)), np.nan)
        dense[frame[rows] - lo, landmark[rows]] = values[rows]
        detected = np.isfinite(dense[:, 0, 0])
        flat, _ = fill_gaps(dense.reshape(span, -1), times_s, options.fill_max_gap)
        dense = flat.reshape(dense.shape)
        present = np.isfinite(dense[:, 0, 0])
        smoothed_mask = np.zeros((span, NUM_LANDMARKS), dtype=bool)
        raw_xy = dense[:, :, :2].copy()
        if options.smooth_cutoff_hz > 0 and probe.fps > 0:
            coords = dense[:, :, COORDINATES].reshape(span, -1)
            out, mask = smooth(coords, probe.fps, options.smooth_cutoff_hz)
            dense[:, :, COORDINATES] = out.reshape(span, NUM_LANDMARKS, len(COORDINATES))
            smoothed_mask = mask.reshape(span, NUM_LANDMARKS, len(COORDINATES)).any(axis=-1)
        kept = np.zeros(span, dtype=bool)
        kept[keep] = True
        emit = np.flatnonzero(present & kept)
        was_filled = present & ~detected & kept
        filled_total += int(was_filled.sum())
        seen = detected & kept
        visible = dense[seen, :, _VIS] >= options.min_visibility
        jitter = np.hypot(*((raw_xy[seen] - dense[seen, :, :2]) * scale).transpose(2, 0, 1))[visible]
        quality.add(int(p), np.flatnonzero(seen) + lo, int(was_filled.sum()), dense[seen, :, _VIS], jitter)
        if len(emit):
            pieces.append((int(p), emit, dense[emit], ~detected[emit], smoothed_mask[emit]))
    if not pieces:
        return None, filled_total
    return _columns(pieces, lo, times_s), filled_total


Piece = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # person, frames, values, filled, smoothed


def _columns(pieces: list[Piece], lo: int, times_s: np.ndarray) -> dict[str, object]:
    frame = np.concatenate([np.repeat(e + lo, NUM_LANDMARKS) for _, e, _, _, _ in pieces])
    person = np.concatenate([np.full(len(e) * NUM_LANDMARKS, p) for p, e, _, _, _ in pieces])
    order = np.lexsort((person, frame))  # stable: landmarks stay in id order within a pose
    values = np.concatenate([v.reshape(-1, len(LANDMARK_VALUES)) for _, _, v, _, _ in pieces])[order]
    local = frame[order] - lo
    columns: dict[str, object] = {
        "frame_index": frame[order].astype(np.uint32),
        "timestamp_ms": np.round(times_s[local] * 1000.0).astype(np.int64),
        "person": person[order].astype(np.uint16),
        "landmark_id": np.tile(np.arange(NUM_LANDMARKS, dtype=np.uint8), len(order) // NUM_LANDMARKS),
        "landmark": np.tile(np.array(LANDMARK_NAMES, dtype=object), len(order) // NUM_LANDMARKS).tolist(),
        "filled": np.concatenate([np.repeat(f, NUM_LANDMARKS) for _, _, _, f, _ in pieces])[order],
        "smoothed": np.concatenate([s.reshape(-1) for _, _, _, _, s in pieces])[order],
    }
    for i, name in enumerate(LANDMARK_VALUES):
        columns[name] = values[:, i].astype(np.float32)
    return columns
