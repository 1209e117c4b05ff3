"""Exports of one video's landmarks for tools that do not read Parquet: a long CSV and a per-frame JSON.

Both stream the ``landmarks`` table in batches, so a long video never sits in memory whole. Undetected
frames are kept (a CSV row with empty values, a JSON frame with no people) so frame counts stay right.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import TextIO

import polars as pl
import pyarrow as pa

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.parquet import iter_batches, whole_frames
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import LANDMARK_FLOATS, LANDMARKS, WORLD_COLUMNS

# Every column of ``landmarks`` but the world coordinates; the pose values of each landmark among them.
LONG_COLUMNS = tuple(name for name in LANDMARKS.names if name not in WORLD_COLUMNS)
POSE_VALUES = tuple(name for name in LANDMARK_FLOATS if name in LONG_COLUMNS)
FLOAT_DIGITS = 6


def _batches(lake_uri: str, partition: str, columns: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    uri = VideoLake(lake_uri, partition).table_part("landmarks")
    if not storage.exists(uri):
        raise BodyscriptError(f"partition {partition!r} has no landmarks in {lake_uri}")
    yield from iter_batches(uri, columns)


def _as_polars(table: pa.Table) -> pl.DataFrame:
    """Floats rounded to ``FLOAT_DIGITS`` as float64, landmark names as plain strings."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        pl.col(pl.Float32).cast(pl.Float64).round(FLOAT_DIGITS), pl.col("landmark").cast(pl.String)
    )


def write_long_csv(lake_uri: str, partition: str, out: TextIO) -> int:
    rows = 0
    for i, batch in enumerate(_batches(lake_uri, partition, LONG_COLUMNS)):
        frame = _as_polars(pa.Table.from_batches([batch]))
        buffer = io.StringIO()
        frame.write_csv(buffer, include_header=i == 0)
        out.write(buffer.getvalue())
        rows += frame.height
    return rows


def write_json(lake_uri: str, partition: str, out: TextIO) -> int:
    """``{"partition": ..., "landmark_names": [...], "frames": [{"frame_index", "timestamp_ms", "people":
    [{"person", "landmarks": [[x, y, z, visibility, presence], ... 33]}]}]}``, streamed frame by frame."""
    from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES

    out.write(json.dumps({"partition": partition, "landmark_names": list(LANDMARK_NAMES)})[:-1])
    out.write(', "frames": [')
    frames = 0
    for group in _frames(lake_uri, partition):
        people = [
            {"person": person, "landmarks": rows.select(POSE_VALUES).rows()}
            for (person,), rows in group.drop_nulls("person").group_by(["person"], maintain_order=True)
        ]
        record = {"frame_index": group["frame_index"][0], "timestamp_ms": group["timestamp_ms"][0], "people": people}
        out.write((", " if frames else "") + json.dumps(record))
        frames += 1
    out.write("]}\n")
    return frames


def _frames(lake_uri: str, partition: str) -> Iterator[pl.DataFrame]:
    """Each frame's rows, whole even when a frame straddles two batches."""
    for frames in whole_frames(_batches(lake_uri, partition, LONG_COLUMNS)):
        for _, group in _as_polars(frames).group_by(["frame_index"], maintain_order=True):
            yield group
