"""Stored precision: float columns rounded to their documented mantissa bits, nothing else changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bodyscript_pipeline.lake.parquet import write_table
from bodyscript_pipeline.lake.precision import round_array, round_mantissa
from bodyscript_pipeline.lake.schemas import LANDMARKS, STORED_MANTISSA_BITS


@pytest.mark.parametrize("bits", [5, 7, 10, 16])
def test_relative_error_is_bounded_and_rounding_is_idempotent(bits: int) -> None:
    rng = np.random.default_rng(bits)
    values = (rng.normal(size=10_000) * 10.0 ** rng.integers(-6, 4, size=10_000)).astype(np.float32)
    rounded = round_mantissa(values, bits)
    relative = np.abs(rounded.astype(np.float64) - values) / np.abs(values)
    assert relative.max() <= 2.0 ** -(bits + 1) * (1 + 1e-6)
    assert relative.mean() > 2.0 ** -(bits + 4), "values really are rounded"
    assert np.array_equal(round_mantissa(rounded, bits), rounded)
    low_bits = rounded.view(np.uint32) & np.uint32((1 << (23 - bits)) - 1)
    assert not low_bits.any()


def test_special_values_and_nulls_survive() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    assert np.array_equal(round_mantissa(values, 6), values, equal_nan=True)
    array = pa.array([0.3, None, 0.7], pa.float32())
    rounded = round_array(array, 6)
    assert rounded.null_count == 1 and rounded.is_null().to_pylist() == [False, True, False]


def test_landmarks_file_stores_rounded_floats_split_by_byte(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = 33 * 100
    columns = {
        "frame_index": pa.array(np.repeat(np.arange(100), 33), pa.uint32()),
        "timestamp_ms": pa.array(np.repeat(np.arange(100) * 33, 33), pa.int64()),
        "person": pa.array(np.zeros(rows), pa.uint8()),
        "landmark_id": pa.array(np.tile(np.arange(33), 100), pa.uint8()),
        "landmark": pa.array(["nose"] * rows).dictionary_encode().cast(LANDMARKS.field("landmark").type),
    }
    floats = {name: rng.uniform(0.01, 1.0, rows).astype(np.float32) for name in STORED_MANTISSA_BITS["landmarks"]}
    columns.update({name: pa.array(values) for name, values in floats.items()})
    target = tmp_path / "part-0.parquet"
    write_table("landmarks", f"file://{target}", pa.table(columns, schema=LANDMARKS))
    stored = pq.read_table(target)
    for name, bits in STORED_MANTISSA_BITS["landmarks"].items():
        values = stored[name].to_numpy()
        assert np.array_equal(values, round_mantissa(floats[name], bits)), name
    assert stored["frame_index"].to_numpy().tolist() == columns["frame_index"].to_numpy().tolist()
    chunk = pq.ParquetFile(target).metadata.row_group(0)
    encodings = {chunk.column(i).path_in_schema: chunk.column(i).encodings for i in range(chunk.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings["x"]
    assert chunk.column(0).compression == "ZSTD"
