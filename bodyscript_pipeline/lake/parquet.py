"""Streaming Parquet writes and reads for the lake's tables, always through their one schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.precision import round_array
from bodyscript_pipeline.lake.schemas import STORED_MANTISSA_BITS, with_table_metadata

ROW_GROUP_ROWS = 256 * 1024
COMPRESSION_LEVEL = 12  # zstd: a few % smaller than 9 for 2.5x the (small) write time, same read speed


Data = pa.Table | pa.RecordBatch


def _kind(t: pa.DataType) -> str:
    """Types a column may be cast between: integers, floats, strings (plain or dictionary-encoded), else the type."""
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    return (
        pa.types.is_null(source)
        or _kind(source) == _kind(target)
        or (_kind(source) == "integer" and _kind(target) == "float")
    )


def conform(table: str, schema: pa.Schema, data: Data) -> Data:
    """``data`` with exactly ``schema``'s columns, types and nullability: a column of another integer, float or
    string type is cast where every value fits (a narrower type always does); anything else raises ValueError
    naming the table and column, so a writer that drifts from schemas.py fails at its first write."""
    names, declared = set(data.schema.names), set(schema.names)
    if missing := [name for name in schema.names if name not in names]:
        raise ValueError(f"{table}: missing column {', '.join(missing)}")
    if extra := [name for name in data.schema.names if name not in declared]:
        raise ValueError(f"{table}: undeclared column {', '.join(extra)}")
    columns = []
    for field in schema:
        column = data.column(field.name)
        if column.type != field.type:
            if not _castable(column.type, field.type):
                raise ValueError(f"{table}.{field.name}: {column.type} is not {field.type}")
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise ValueError(f"{table}.{field.name}: cannot write {column.type} as {field.type}: {error}") from None
        if not field.nullable and column.null_count:
            raise ValueError(f"{table}.{field.name}: null in a non-null column")
        columns.append(column)
    return type(data).from_arrays(columns, schema=schema)


class TableWriter:
    """Appends record batches of one table to a Parquet file in bounded row groups, each conformed to the
    table's schema and its float columns rounded to the table's stored precision."""

    def __init__(self, table: str, writer: pq.ParquetWriter, schema: pa.Schema, precision: dict[str, int]) -> None:
        self.table = table
        self._writer = writer
        self.schema = schema
        self.rows = 0
        self._precision = {schema.get_field_index(name): bits for name, bits in precision.items()}

    def write_columns(self, columns: dict[str, Any]) -> None:
        batch = pa.RecordBatch.from_pydict(columns, schema=self.schema)
        self.write_batch(batch)

    def add_metadata(self, metadata: dict[str, str]) -> None:
        """Key-value metadata known only once the rows are written (timings, counts)."""
        self._writer.add_key_value_metadata(metadata)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        batch = conform(self.table, self.schema, batch)
        if not batch.num_rows:
            return
        if self._precision:
            columns = list(batch.columns)
            for index, bits in self._precision.items():
                columns[index] = round_array(columns[index], bits)
            batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self._writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        self.rows += batch.num_rows


def parquet_writer(local: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The lake's encodings. Floats: byte-stream-split (their bytes compress apart). Dictionaries for strings
    only: small integer columns are smaller and decode faster as plain values under zstd (measured on a 50M-row
    lake)."""
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    return pq.ParquetWriter(
        local,
        schema,
        compression="zstd",
        compression_level=COMPRESSION_LEVEL,
        use_byte_stream_split=floats or False,
        use_dictionary=[f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
        or False,
    )


@contextmanager
def table_writer(table: str, uri: str, extra_metadata: dict[str, str] | None = None) -> Iterator[TableWriter]:
    """Write one table's file; it appears at ``uri`` only once complete."""
    schema = with_table_metadata(table, extra_metadata)
    with storage.staged_output(uri) as local:
        writer = parquet_writer(local, schema)
        try:
            yield TableWriter(table, writer, schema, STORED_MANTISSA_BITS.get(table, {}))
        finally:
            writer.close()


def write_table(table: str, uri: str, data: pa.Table, extra_metadata: dict[str, str] | None = None) -> int:
    with table_writer(table, uri, extra_metadata) as out:
        for batch in conform(table, out.schema, data).to_batches(max_chunksize=ROW_GROUP_ROWS):
            out.write_batch(batch)
        return out.rows


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    with storage.local_copy(uri) as local:
        return pq.read_table(local, columns=columns)


def iter_batches(
    uri: str, columns: Iterable[str] | None = None, batch_size: int = 64 * 1024
) -> Iterator[pa.RecordBatch]:
    with storage.local_copy(uri) as local:
        yield from pq.ParquetFile(local).iter_batches(batch_size=batch_size, columns=list(columns or []) or None)


def read_frame_range(path: Path, columns: list[str], start: int, stop: int) -> pa.Table:
    """Rows of frames ``[start, stop)`` of a local, frame-ordered Parquet file; row-group statistics skip
    the rest of the file."""
    return pq.read_table(path, columns=columns, filters=[("frame_index", ">=", start), ("frame_index", "<", stop)])


def whole_frames(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Frame-ordered batches regrouped so no frame is split: batch sizes do not follow frame boundaries
    (a frame has 33 rows per person, or one when nobody was found), so each batch's last frame is carried
    into the next."""
    carry: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        table = table if carry is None else pa.concat_tables([carry, table])
        if not table.num_rows:
            continue
        frame = table["frame_index"].to_numpy()
        cut = int(np.searchsorted(frame, frame[-1]))
        if cut:
            yield table.slice(0, cut)
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry


def first_rows(uri: str, rows: int) -> pa.Table:
    """The first ``rows`` rows of a file (for previews), without reading the rest."""
    for batch in iter_batches(uri, batch_size=rows):
        return pa.Table.from_batches([batch])
    return read_table(uri).slice(0, 0)


def file_metadata(uri: str) -> dict[str, str]:
    with storage.local_copy(uri) as local:
        meta = pq.read_metadata(local).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}
