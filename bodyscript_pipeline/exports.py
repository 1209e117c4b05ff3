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
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.parquet_io import iter_batches

LONG_COLUMNS = (
    "frame_index",
    "timestamp_ms",
    "person",
    "landmark_id",
    "landmark",
    "x",
    "y",
    "z",
    "visibility",
    "presence",
)
FLOAT_DIGITS = 6


def _batches(lake_uri: str, partition: str, columns: tuple[str, ...]) -> Iterator[pl.DataFrame]:
    uri = VideoLake(lake_uri, partition).table_part("landmarks")
    if not storage.exists(uri):
        raise BodyscriptError(f"partition {partition!r} has no landmarks in {lake_uri}")
    for batch in iter_batches(uri, columns):
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(frame, pl.DataFrame)
        yield frame.with_columns(
            pl.col(pl.Float32).cast(pl.Float64).round(FLOAT_DIGITS), pl.col("landmark").cast(pl.String)
        )


def write_long_csv(lake_uri: str, partition: str, out: TextIO) -> int:
    rows = 0
    for i, frame in enumerate(_batches(lake_uri, partition, LONG_COLUMNS)):
        buffer = io.StringIO()
        frame.write_csv(buffer, include_header=i == 0)
        out.write(buffer.getvalue())
        rows += frame.height
    return rows


def write_json(lake_uri: str, partition: str, out: TextIO) -> int:
    """``{"partition": ..., "landmark_names": [...], "frames": [{"frame_index", "timestamp_ms", "people":
    [{"person", "landmarks": [[x, y, z, visibility, presence], ... 33]}]}]}``, streamed frame by frame."""
    from bodyscript_pipeline.pose_topology import LANDMARK_NAMES

    out.write(json.dumps({"partition": partition, "landmark_names": list(LANDMARK_NAMES)})[:-1])
    out.write(', "frames": [')
    frames = 0
    for group in _frames(lake_uri, partition):
        people = [
            {"person": person, "landmarks": rows.select("x", "y", "z", "visibility", "presence").rows()}
            for (person,), rows in group.drop_nulls("person").group_by(["person"], maintain_order=True)
        ]
        record = {"frame_index": group["frame_index"][0], "timestamp_ms": group["timestamp_ms"][0], "people": people}
        out.write((", " if frames else "") + json.dumps(record))
        frames += 1
    out.write("]}\n")
    return frames


def _frames(lake_uri: str, partition: str) -> Iterator[pl.DataFrame]:
    """Each frame's rows, whole even when a frame straddles two batches."""
    carry: pl.DataFrame | None = None
    for batch in _batches(lake_uri, partition, LONG_COLUMNS):
        if carry is not None:
            batch = pl.concat([carry, batch])
        last = batch["frame_index"][-1]
        carry = batch.filter(pl.col("frame_index") == last)
        complete = batch.filter(pl.col("frame_index") != last)
        for _, group in complete.group_by(["frame_index"], maintain_order=True):
            yield group
    if carry is not None and carry.height:
        yield carry
