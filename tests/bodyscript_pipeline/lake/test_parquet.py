"""Every table is written with exactly its declared schema (schemas.py): a writer's drift is cast where the
declared type holds every value, and refused with the table and column named otherwise."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bodyscript_pipeline.lake.parquet import read_table, table_writer, write_table
from bodyscript_pipeline.lake.paths import LINEAGE, TABLES, VideoLake, fleet_summary_uri
from bodyscript_pipeline.lake.schemas import QUALITY, SCHEMAS
from bodyscript_pipeline.steps.fleet_summary import build_fleet_summary
from bodyscript_pipeline.steps.lineage import record_lineage
from bodyscript_pipeline.storage import local_path
from tests.support.demo_run import DemoRun


def quality_rows(person: pa.Array) -> dict[str, pa.Array]:
    n = len(person)
    return {
        "person": person,
        "frames": pa.array([10] * n, pa.uint32()),
        "detected_frames": pa.array([5] * n, pa.uint32()),
        "detection_rate": pa.array([0.5] * n),
        "mean_visibility": pa.array([0.9] * n, pa.float32()),
        "jitter_px": pa.array([1.0] * n, pa.float32()),
        "filled_fraction": pa.array([0.0] * n),
    }


def test_a_narrower_type_is_cast_to_the_declared_one(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/quality.parquet"
    write_table("quality", uri, pa.table(quality_rows(pa.array([None, 7], pa.uint8()))))
    stored = read_table(uri)
    assert stored.schema.remove_metadata().equals(QUALITY)
    assert stored["person"].to_pylist() == [None, 7]


Rows = dict[str, pa.Array]
DRIFTS: dict[str, tuple[Callable[[Rows], Rows], str]] = {
    "too-wide": (lambda rows: {**rows, "person": pa.array([70000])}, "quality.person: cannot write int64 as uint16"),
    "missing": (lambda rows: {k: v for k, v in rows.items() if k != "jitter_px"}, "quality: missing column jitter_px"),
    "extra": (lambda rows: {**rows, "video": pa.array(["a"])}, "quality: undeclared column video"),
    "null": (lambda rows: {**rows, "frames": pa.array([None], pa.uint32())}, "quality.frames: null in a non-null"),
    "type": (
        lambda rows: {**rows, "detection_rate": pa.array(["0.5"])},
        "quality.detection_rate: string is not double",
    ),
}


@pytest.mark.parametrize("drift", DRIFTS)
def test_a_drift_is_refused_with_table_and_column_named(tmp_path: Path, drift: str) -> None:
    change, error = DRIFTS[drift]
    uri = f"file://{tmp_path}/quality.parquet"
    with pytest.raises(ValueError, match=re.escape(error)):
        write_table("quality", uri, pa.table(change(quality_rows(pa.array([3], pa.uint16())))))
    assert not (tmp_path / "quality.parquet").exists(), "nothing is written"


def test_streamed_batches_are_checked_too(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/quality.parquet"
    with table_writer("quality", uri) as out:
        out.write_batch(pa.RecordBatch.from_pydict(quality_rows(pa.array([300], pa.int64()))))
        with pytest.raises(ValueError, match=re.escape("quality.person: cannot write int64 as uint16")):
            out.write_batch(pa.RecordBatch.from_pydict(quality_rows(pa.array([-1], pa.int64()))))
    assert read_table(uri)["person"].to_pylist() == [300]


def test_processed_lake_tables_have_their_declared_schemas(demo_run: DemoRun, tmp_path: Path) -> None:
    """The real clip's tables, and the fleet summary over them, as their writers left them."""
    lake = tmp_path / "lake"
    shutil.copytree(demo_run.path(demo_run.settings.lake_uri), lake)
    video = VideoLake(f"file://{lake}", demo_run.partition)
    files = {table: video.table_part(table) for table in TABLES} | {"frames": video.frame_index}
    build_fleet_summary(f"file://{lake}")
    record_lineage(f"file://{lake}", demo_run.partition, "landmarks", demo_run.settings, "run-1")
    files[LINEAGE] = video.lineage("landmarks")
    files["fleet_summary"] = fleet_summary_uri(f"file://{lake}")
    assert set(files) == set(SCHEMAS), "every declared table is checked"
    for table, uri in files.items():
        path = local_path(uri)
        assert path is not None and path.is_file(), table
        stored = read_table(uri)
        assert stored.num_rows, table
        assert stored.schema.metadata[b"bodyscript.table"] == table.encode()
        assert stored.schema.remove_metadata().equals(SCHEMAS[table]), (table, stored.schema)
        for field in SCHEMAS[table]:
            if not field.nullable:
                assert stored[field.name].null_count == 0, f"{table}.{field.name}"
    (lineage,) = read_table(files[LINEAGE]).to_pylist()
    assert lineage["model_sha256"] == demo_run.settings.model_sha256, "the model the landmarks were made with"
    assert lineage["settings"]["model_sha256"] == demo_run.settings.model_sha256
    ids = read_table(files["landmarks"])["person"].to_numpy(zero_copy_only=False)
    assert np.nanmax(ids.astype(float)) >= 0
