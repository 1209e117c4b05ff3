"""Erasure of one video partition from the Dagster instance, and the check that nothing of it is left.

Removed: the partition's runs (tag ``dagster/partition``) with their event logs, compute logs and local step
records; every asset event of the partition, from a run or runless (materializations, observations, planned and
failed materializations), its check executions, the asset index's cached latest event and partition status where
they name it; its dynamic partition. Records of other runs and sensor ticks that name the video (the fleet
summary's preview rows, a tick's run requests) keep their place with the partition key and source URI replaced
by ``[erased]``.

Dagster 1.13 has no per-partition wipe for SQL storages (``wipe_asset_partitions`` raises NotImplementedError,
and its ASSET_WIPED event would store the keys again), so the event log's own tables are edited here. SQLite
files are vacuumed afterwards, so deleted rows do not linger in free pages.

Sensor cursors are never touched: the drop-zone sensor remembers each object's version, so a forgotten source
left in the drop zone is not taken again until a new version of it is uploaded.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.scheduler.instigation import InstigatorTick, TickData
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.schedules import SqlScheduleStorage
from dagster._core.storage.schedules.schema import JobTickTable
from dagster_shared.serdes import deserialize_value, serialize_value

from assets.partitions import PARTITION_TAG, VIDEOS_PARTITIONS_NAME
from bodyscript_pipeline.errors import BodyscriptError

ERASED = "[erased]"
RUNLESS = ""  # the run id of events reported outside a run (observations of the drop-zone sensor and the CLI)
BUSY = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
EVENTS = SqlEventLogStorageTable
BATCH = 500


@dataclass(frozen=True)
class Naming:
    """How records name one video: its partition key (as a whole word) and its source URI."""

    partition: str
    source_uri: str | None = None

    def pattern(self) -> re.Pattern[str]:
        """Every mention: the key as a whole word, or the source URI; what redaction replaces."""
        words = [rf"(?<![a-z0-9-]){re.escape(self.partition)}(?![a-z0-9-])"]
        words += [re.escape(form) for form in sorted(self._uri_forms(), key=len, reverse=True)]
        return re.compile("|".join(words))

    def reference(self) -> re.Pattern[str]:
        """A record that refers to the video: the key as a whole JSON string, a run key (``key@version``) or a
        folder (``video=key``), or the source URI. A short key that is also a word (``squat``) in the text of an
        unrelated record does not make that record refer to the video."""
        key = re.escape(self.partition)
        words = [rf'"{key}\\?["@]', rf"video={key}(?![a-z0-9-])"]  # "key" also inside JSON in a JSON string
        words += [re.escape(form) for form in sorted(self._uri_forms(), key=len, reverse=True)]
        return re.compile("|".join(words))

    @property
    def needles(self) -> list[str]:
        """Plain substrings a SQL ``LIKE`` finds candidates by (the pattern decides)."""
        return [self.partition, *self._uri_forms()]

    def _uri_forms(self) -> set[str]:
        """The source URI as JSON stores it: non-ASCII characters escaped or not, '/' escaped or not."""
        if not self.source_uri:
            return set()
        forms = {json.dumps(self.source_uri, ensure_ascii=a)[1:-1] for a in (True, False)}
        return forms | {f.replace("/", "\\/") for f in forms}


@dataclass
class InstanceErasure:
    runs: list[str] = field(default_factory=list)
    asset_events: int = 0
    check_executions: int = 0
    redacted_events: int = 0
    shards: set[str] = field(default_factory=set)  # SQLite event shards whose records were rewritten
    redacted_ticks: int = 0
    partition: bool = False


def event_storage(instance: dg.DagsterInstance) -> SqlEventLogStorage:
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise BodyscriptError(
            f"erasure needs a SQL event log storage (SQLite or PostgreSQL), not {type(storage).__name__}"
        )
    return storage


def partition_runs(
    instance: dg.DagsterInstance, partition: str, statuses: Sequence[dg.DagsterRunStatus] = ()
) -> list[str]:
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: partition}, statuses=list(statuses)))
    return [record.dagster_run.run_id for record in records]


def check_idle(instance: dg.DagsterInstance, partitions: Iterable[str]) -> None:
    """Refuse while a run of one of the partitions is queued or running: it would write outputs again."""
    for partition in partitions:
        busy = partition_runs(instance, partition, BUSY)
        if busy:
            raise BodyscriptError(
                f"partition {partition} has a queued or running run {busy[0]}; try again once it ends"
            )


def erase_from_instance(
    instance: dg.DagsterInstance, naming: Naming, keep_run_id: str | None = None
) -> InstanceErasure:
    done = InstanceErasure()
    storage = event_storage(instance)
    for run_id in partition_runs(instance, naming.partition):
        _delete_run_files(instance, run_id)
        instance.delete_run(run_id)
        if isinstance(storage, SqliteEventLogStorage):
            Path(storage.path_for_shard(run_id)).unlink(missing_ok=True)  # emptied by delete_run
        done.runs.append(run_id)
    done.asset_events, done.check_executions = _delete_asset_events(storage, naming.partition, done.runs)
    done.redacted_events, done.shards = _redact_events(storage, naming, keep_run_id)
    done.redacted_ticks = _redact_ticks(instance, naming)
    done.partition = instance.has_dynamic_partition(VIDEOS_PARTITIONS_NAME, naming.partition)
    instance.delete_dynamic_partition(VIDEOS_PARTITIONS_NAME, naming.partition)
    return done


def _delete_run_files(instance: dg.DagsterInstance, run_id: str) -> None:
    """The run's compute logs (local or S3) and its local step records (``FilesystemIOManager``)."""
    with contextlib.suppress(NotImplementedError):
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    shutil.rmtree(Path(instance.storage_directory()) / run_id, ignore_errors=True)


def _batches(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), BATCH):
        yield values[start : start + BATCH]


def _delete_asset_events(storage: SqlEventLogStorage, partition: str, run_ids: Sequence[str]) -> tuple[int, int]:
    """Every event stored with the partition (the index, and on SQLite the shards holding them), their tags and
    check executions, and the asset index's cached facts that name the partition or a deleted run."""
    with storage.index_connection() as conn:
        rows = conn.execute(db.select(EVENTS.c.id, EVENTS.c.run_id).where(EVENTS.c.partition == partition)).fetchall()
        ids = [row[0] for row in rows]
        for batch in _batches(ids):
            conn.execute(AssetEventTagsTable.delete().where(AssetEventTagsTable.c.event_id.in_(batch)))
        conn.execute(EVENTS.delete().where(EVENTS.c.partition == partition))
        checks = AssetCheckExecutionsTable
        gone = conn.execute(
            checks.delete().where(db.or_(checks.c.partition == partition, checks.c.run_id.in_(list(run_ids))))
        ).rowcount
        keys = AssetKeyTable
        conn.execute(
            keys.update().where(keys.c.last_materialization.contains(partition)).values(last_materialization=None)
        )
        conn.execute(keys.update().where(keys.c.cached_status_data.contains(partition)).values(cached_status_data=None))
        conn.execute(keys.update().where(keys.c.last_run_id.in_(list(run_ids))).values(last_run_id=None))
    if isinstance(storage, SqliteEventLogStorage):
        for shard in {row[1] for row in rows} - set(run_ids):
            with storage.run_connection(shard) as conn:
                conn.execute(EVENTS.delete().where(EVENTS.c.partition == partition))
    return len(ids), max(gone or 0, 0)


def _mentioning(conn: Any, naming: Naming, keep_run_id: str | None) -> list[tuple[int, str, str]]:
    """Rows of the event log whose event refers to the video (``LIKE`` finds candidates, ``reference`` decides)."""
    found = db.or_(*(EVENTS.c.event.contains(needle, autoescape=True) for needle in naming.needles))
    query = db.select(EVENTS.c.id, EVENTS.c.run_id, EVENTS.c.event).where(found)
    refers = naming.reference()
    rows = conn.execute(query).fetchall()
    return [(row[0], row[1], row[2]) for row in rows if row[1] != keep_run_id and refers.search(row[2])]


def _redact_events(storage: SqlEventLogStorage, naming: Naming, keep_run_id: str | None) -> tuple[int, set[str]]:
    """Replace the video's name in other records (a fleet summary's preview rows) with ``[erased]``."""
    pattern = naming.pattern()
    with storage.index_connection() as conn:
        rows = _mentioning(conn, naming, keep_run_id)
        for row_id, _, event in rows:
            conn.execute(EVENTS.update().where(EVENTS.c.id == row_id).values(event=pattern.sub(ERASED, event)))
    if isinstance(storage, SqliteEventLogStorage):
        for shard in {run_id for _, run_id, _ in rows}:
            with storage.run_connection(shard) as conn:
                for row_id, _, event in _mentioning(conn, naming, keep_run_id):
                    conn.execute(EVENTS.update().where(EVENTS.c.id == row_id).values(event=pattern.sub(ERASED, event)))
    return len(rows), {run_id for _, run_id, _ in rows}


def _tick_text(data: TickData) -> str:
    """A tick's record without its cursor (the sensor's own state, never rewritten)."""
    return serialize_value(data._replace(cursor=None))


def _ticks_naming(instance: dg.DagsterInstance, naming: Naming) -> list[InstigatorTick]:
    """Ticks whose record refers to the video (``LIKE`` in the tick table finds candidates, ``reference`` decides)."""
    storage = instance.schedule_storage
    if not isinstance(storage, SqlScheduleStorage):
        return []
    found = db.or_(*(JobTickTable.c.tick_body.contains(needle, autoescape=True) for needle in naming.needles))
    with storage.connect() as conn:
        rows = conn.execute(db.select(JobTickTable.c.id, JobTickTable.c.tick_body).where(found)).fetchall()
    ticks = [InstigatorTick(row[0], deserialize_value(row[1], TickData)) for row in rows]
    refers = naming.reference()
    return [tick for tick in ticks if refers.search(_tick_text(tick.tick_data))]


def _redact_ticks(instance: dg.DagsterInstance, naming: Naming) -> int:
    """Sensor ticks that requested the video: its run requests dropped (their tags name the source), the rest
    of its name replaced with ``[erased]``, the tick's captured log deleted. The tick's cursor is kept."""
    pattern = naming.pattern()
    ticks = _ticks_naming(instance, naming)
    for tick in ticks:
        data: TickData = tick.tick_data
        if data.run_requests is not None:
            data = data._replace(run_requests=[r for r in data.run_requests if r.partition_key != naming.partition])
        redacted = deserialize_value(pattern.sub(ERASED, _tick_text(data)), TickData)
        instance.update_tick(InstigatorTick(tick.tick_id, redacted._replace(cursor=data.cursor)))
        if data.log_key:
            with contextlib.suppress(NotImplementedError):
                instance.compute_log_manager.delete_logs(log_key=data.log_key)
    return len(ticks)


def remaining_in_instance(instance: dg.DagsterInstance, naming: Naming, keep_run_id: str | None = None) -> list[str]:
    """What the instance still holds of the video, found afresh: runs, its dynamic partition, asset events and
    check executions (public API and the event log's index), records and ticks naming it."""
    partition = naming.partition
    left = [f"run {run_id}" for run_id in partition_runs(instance, partition)]
    if instance.has_dynamic_partition(VIDEOS_PARTITIONS_NAME, partition):
        left.append(f"dynamic partition {partition}")
    events = 0
    for key in instance.get_asset_keys():
        records = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition])
        events += len(instance.fetch_materializations(records, limit=1).records)
        events += len(instance.fetch_observations(records, limit=1).records)
    storage = event_storage(instance)
    with storage.index_connection() as conn:
        events += conn.execute(db.select(db.func.count()).where(EVENTS.c.partition == partition)).scalar() or 0
        checks = AssetCheckExecutionsTable
        events += conn.execute(db.select(db.func.count()).where(checks.c.partition == partition)).scalar() or 0
        named = len(_mentioning(conn, naming, keep_run_id))
    if isinstance(storage, SqliteEventLogStorage):
        with storage.run_connection(RUNLESS) as conn:
            events += conn.execute(db.select(db.func.count()).where(EVENTS.c.partition == partition)).scalar() or 0
    if events:
        left.append(f"{events} asset event(s) of partition {partition}")
    if named:
        left.append(f"{named} event log record(s) naming {partition}")
    ticks = len(_ticks_naming(instance, naming))
    if ticks:
        left.append(f"{ticks} sensor tick(s) naming {partition}")
    return left


def compact_sqlite(instance: dg.DagsterInstance, shards: Iterable[str] = ()) -> bool:
    """VACUUM the instance's SQLite files, so deleted rows leave no trace in free pages; False where one could not
    be (busy), True where there is nothing to do (PostgreSQL: its autovacuum reclaims dead rows)."""
    files = []
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        files += [Path(storage.path_for_shard(shard)) for shard in {INDEX_SHARD_NAME, RUNLESS, *shards}]
    for other in (instance.run_storage, instance.schedule_storage):
        url = db.engine.make_url(getattr(other, "_conn_string", None) or "sqlite://")
        if url.get_backend_name() == "sqlite" and url.database:
            files.append(Path(url.database))
    compacted = True
    for path in files:
        if not path.is_file():
            continue
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                conn.execute("VACUUM")
        except sqlite3.Error:
            compacted = False
    return compacted
