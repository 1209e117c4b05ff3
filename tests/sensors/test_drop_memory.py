"""The drop-zone scan's memory in a run storage's key-value table, on SQLite and on PostgreSQL: through one upsert
per write, and through Dagster's ``set_cursor_values`` alone (the storages without an upsert)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.runs.base import RunStorage
from dagster_postgres.run_storage import PostgresRunStorage

from sensors.drop_memory import BATCH, KeyValueScanMemory
from tests.support.postgres_server import Postgres, running_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStorage]:
    if request.param == "sqlite":
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            yield instance.run_storage
    else:
        server: Postgres = request.getfixturevalue("postgres")
        yield PostgresRunStorage(f"postgresql://{server.user}@{server.host}:{server.port}/{server.database}")


@pytest.mark.parametrize("upsert", [True, False], ids=["upsert", "set_cursor_values"])
def test_a_write_mixing_new_and_stored_keys_keeps_them_all(storage: RunStorage, upsert: bool) -> None:
    """Over a batch of keys, some stored and some not, every value is written (SQLite's ``set_cursor_values``
    alone would drop the new ones); each memory object is new, as each tick's is."""
    mark = f"{upsert}-{type(storage).__name__}"  # one PostgreSQL database serves every case
    stored = {f"{mark}-{i:05d}": "old" for i in range(0, 3 * BATCH, 2)}
    KeyValueScanMemory(storage, upsert=upsert).remember(stored)
    everything = {f"{mark}-{i:05d}": f"new-{i}" for i in range(3 * BATCH)}
    KeyValueScanMemory(storage, upsert=upsert).remember(everything)

    memory = KeyValueScanMemory(storage, upsert=upsert)
    assert memory.recall(set(everything) | {f"{mark}-missing"}) == everything
    memory.remember({f"{mark}-00001": "after a recall"})
    assert KeyValueScanMemory(storage).recall({f"{mark}-00001"}) == {f"{mark}-00001": "after a recall"}
