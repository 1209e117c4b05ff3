"""The drop-zone scan's memory of each object, in the Dagster instance's key-value store.

The store is the table where Dagster keeps its daemons' cursors (``kvs`` in the run storage: SQLite locally,
PostgreSQL in production), so the memory lives and goes with the instance, as the sensor's cursor does, and the
cursor stays a constant-size position (``bodyscript_pipeline/drop_zone/scan.py``). Keys are
``bodyscript/drop/<digest>``.

Reads use the storage's ``get_cursor_values``. Writes on SQLite and PostgreSQL are one ``INSERT … ON CONFLICT
DO UPDATE`` executed for the whole batch: ``set_cursor_values`` compiles a statement with a branch per key each
call (about 0.2 s for a page of 1,000 known objects on SQLite, as long as listing the page), and on SQLite its
update after a duplicate key drops the batch's new keys. Other storages get ``set_cursor_values``, one batch of
new keys and one of stored ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from dagster._core.storage.runs.base import RunStorage
from dagster._core.storage.runs.schema import KeyValueStoreTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage
from sqlalchemy.dialects import postgresql, sqlite

PREFIX = "bodyscript/drop/"
BATCH = 1000  # keys per statement: well inside SQLite's limit on bound parameters
INSERTS: dict[str, Callable[[Any], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class KeyValueScanMemory:
    """A ``ScanMemory`` in a run storage's key-value table: one query per recall of a page, one statement per
    write (``upsert=False``: at most three, through ``set_cursor_values`` alone)."""

    def __init__(self, storage: RunStorage, *, upsert: bool = True) -> None:
        self._storage = storage
        self._upsert = upsert and isinstance(storage, SqlRunStorage)
        self._held: set[str] = set()  # stored keys, from the last recall and writes since

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for batch in _batches([PREFIX + key for key in keys]):
            found.update(self._storage.get_cursor_values(set(batch)))
        self._held = set(found)
        return {key.removeprefix(PREFIX): value for key, value in found.items()}

    def remember(self, entries: Mapping[str, str]) -> None:
        values = {PREFIX + key: value for key, value in entries.items()}
        if self._upsert and isinstance(self._storage, SqlRunStorage):
            with self._storage.connect() as conn:
                insert = INSERTS.get(conn.dialect.name)
                if insert is not None:
                    statement = insert(KeyValueStoreTable)
                    statement = statement.on_conflict_do_update(
                        index_elements=[KeyValueStoreTable.c.key], set_={"value": statement.excluded.value}
                    )
                    for batch in _batches(list(values)):
                        conn.execute(statement, [{"key": key, "value": values[key]} for key in batch])
                    return
            self._upsert = False  # another database: the storage's own method
        self._set(values)

    def _set(self, values: dict[str, str]) -> None:
        for batch in _batches(list(values.keys() - self._held)):
            self._held.update(self._storage.get_cursor_values(set(batch)))
        # SQL stores without an upsert insert a batch and, on a duplicate key, update only the keys already stored:
        # each batch here is all new keys or all stored ones.
        new = [key for key in values if key not in self._held]
        stored = [key for key in values if key in self._held]
        for keys in (new, stored):
            for batch in _batches(keys):
                self._storage.set_cursor_values({key: values[key] for key in batch})
        self._held.update(values)


def _batches(keys: list[str]) -> list[list[str]]:
    return [keys[start : start + BATCH] for start in range(0, len(keys), BATCH)]
