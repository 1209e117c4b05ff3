"""Erasure of one video's data from the lake: finding what to delete, deleting it, and checking nothing is left.

What the lake holds of a video partition:

- a folder ``video=<partition>`` under each table (``TABLES``, ``lineage``, ``overlays``, ``exports``, ``sources``:
  the registry entry), and under ``archive/<table>/`` once retention archived it. Every top-level folder of the lake is
  looked in, so a table added later is erased too;
- one row per video in a fleet-wide table (``fleet_summary/part-0.parquet``): each Parquet file lying directly
  in a table folder that has a ``video`` column is rewritten without the video's rows;
- its rows in compacted files (``compacted/``): those files are rewritten without them (``lake.compaction``);
- the step records of its runs (k8s step IO, ``<step records>/storage/<run id>/``: ``BODYSCRIPT_STEP_RECORDS_URI``,
  and ``<lake>/dagster-io/`` where earlier versions kept them).

The source object itself is deleted only when asked. An audit record ``<lake>/audit/erasure/<time>-<random>.json``
keeps when and how much, with the partitions as salted digests: no partition key, file name or source URI.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.partition_keys import check_partition_key
from bodyscript_pipeline.lake.paths import LINEAGE, TABLES
from bodyscript_pipeline.lake.sources import SourceRecord
from bodyscript_pipeline.retention.artifacts import ARCHIVE_PREFIX, PARTITION_FOLDER

SOURCES = "sources"
# Tables that only ever hold per-video folders: never searched for fleet-wide files.
PER_VIDEO_TABLES = frozenset({*TABLES, LINEAGE, "overlays", "exports", SOURCES})
LEGACY_STEP_RECORDS = "dagster-io"  # <lake>/dagster-io/: step records before BODYSCRIPT_STEP_RECORDS_URI
AUDIT_FOLDER = "audit"
AUDIT_PREFIX = f"{AUDIT_FOLDER}/erasure"
VIDEO_COLUMN = "video"


@dataclass
class LakeErasure:
    """What erasing one partition removed from the lake; ``locations`` is for the operator, never the audit."""

    objects: int = 0
    bytes: int = 0
    rows: int = 0
    sources: int = 0
    locations: list[str] = field(default_factory=list)


def source_uri_of(text: str) -> str:
    """A source as the registry records it: ``file://`` + absolute path for a local path, else the URI."""
    if "://" not in text:
        return "file://" + str(Path(text).expanduser().resolve())
    if not text.startswith(("file://", "s3://")):
        raise BodyscriptError(f"{text}: only local paths, file:// and s3:// URIs are sources")
    return text


def prefix_of(text: str) -> str:
    """A source prefix: a folder (ends with '/', so ``uploader-7/`` does not also match ``uploader-70/``) below
    the bucket or filesystem root."""
    prefix = source_uri_of(text.rstrip("/")) + "/" if "://" not in text else text
    if not prefix.endswith("/"):
        raise BodyscriptError(f"{text}: a source prefix must end with '/' (a folder)")
    scheme, _, rest = prefix.partition("://")
    if len([part for part in rest.split("/") if part]) < (2 if scheme == "s3" else 1):
        raise BodyscriptError(f"{text}: a source prefix must name a folder below the bucket or filesystem root")
    return prefix


def registered_sources(lake_uri: str) -> Iterator[tuple[str, SourceRecord]]:
    """Every registry entry: (partition, source record)."""
    fs, root = storage.filesystem(storage.join(lake_uri, SOURCES))
    if not fs.exists(root):
        return
    for folder in sorted(fs.ls(root, detail=False)):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith(PARTITION_FOLDER):
            continue
        try:
            data = json.loads(bytes(fs.cat_file(f"{folder.rstrip('/')}/source.json")))
        except FileNotFoundError:
            continue
        yield name.removeprefix(PARTITION_FOLDER), SourceRecord(**data)


def registered_source(lake_uri: str, partition: str) -> SourceRecord | None:
    location = storage.join(lake_uri, SOURCES, PARTITION_FOLDER + partition, "source.json")
    try:
        return SourceRecord(**json.loads(storage.read_bytes(location)))
    except FileNotFoundError:
        return None


def partitions_of_source(lake_uri: str, source_uri: str) -> list[str]:
    return [key for key, record in registered_sources(lake_uri) if record.uri == source_uri]


def partitions_under(lake_uri: str, prefix: str) -> list[str]:
    return [key for key, record in registered_sources(lake_uri) if record.uri.startswith(prefix)]


def _folders(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    if not fs.exists(root):
        return []
    entries = fs.ls(root, detail=True)
    return sorted(e["name"].rstrip("/") for e in entries if e.get("type") == "directory")


def _table_folders(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The lake's table folders and its archive's (``archive/<table>``); never the audit records."""
    tables = [f for f in _folders(fs, root) if f.rsplit("/", 1)[-1] not in (AUDIT_FOLDER, ARCHIVE_PREFIX)]
    return tables + _folders(fs, f"{root}/{ARCHIVE_PREFIX}")


def _files_under(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, int]:
    """Files under ``folder`` (only inside it: ``video=a`` never lists ``video=ab``), with their sizes."""
    found = fs.find(folder, detail=True)
    return {p: int(i.get("size") or 0) for p, i in found.items() if p.startswith(folder + "/")}


def partition_files(lake_uri: str, partition: str) -> dict[str, dict[str, int]]:
    """Per ``video=<partition>`` folder of the lake and its archive: the files in it and their sizes."""
    check_partition_key(partition)
    fs, root = storage.filesystem(lake_uri)
    root = root.rstrip("/")
    found = {}
    for table in _table_folders(fs, root):
        folder = f"{table}/{PARTITION_FOLDER}{partition}"
        files = _files_under(fs, folder)
        if files or fs.exists(folder):
            found[folder] = files
    return found


def fleet_files(lake_uri: str) -> list[str]:
    """Parquet files lying directly in a table folder (fleet-wide tables such as ``fleet_summary``)."""
    fs, root = storage.filesystem(lake_uri)
    root = root.rstrip("/")
    files = []
    for table in _table_folders(fs, root):
        if table.rsplit("/", 1)[-1] in PER_VIDEO_TABLES:
            continue
        entries = fs.ls(table, detail=True)
        files += sorted(e["name"] for e in entries if e.get("type") == "file" and e["name"].endswith(".parquet"))
    return [_uri_of(lake_uri, root, path) for path in files]


def _uri_of(lake_uri: str, root: str, path: str) -> str:
    return storage.join(lake_uri, path.removeprefix(root))


def _read_parquet(uri: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def rows_of(table: pa.Table, partition: str) -> pa.Array:
    """A mask of the table's rows that belong to the partition (none without a ``video`` column)."""
    if VIDEO_COLUMN not in table.column_names:
        return pa.array([False] * table.num_rows)
    return pc.fill_null(pc.equal(table[VIDEO_COLUMN].cast(pa.string()), partition), False)


def remove_fleet_rows(uri: str, partition: str) -> int:
    """Rewrite a fleet-wide Parquet file without the partition's rows (atomically); the rows removed."""
    table = _read_parquet(uri)
    mask = rows_of(table, partition)
    removed = pc.sum(mask).as_py() or 0
    if removed:
        with storage.staged_output(uri) as local:
            pq.write_table(table.filter(pc.invert(mask)), local, compression="zstd")
    return int(removed)


def step_record_roots(lake_uri: str, step_records_uri: str) -> list[str]:
    """Where step records of runs may lie: ``BODYSCRIPT_STEP_RECORDS_URI`` (if set) and the lake's old place."""
    return [uri for uri in (step_records_uri, storage.join(lake_uri, LEGACY_STEP_RECORDS)) if uri]


def step_records_of(roots: Iterable[str], run_ids: Iterable[str]) -> list[str]:
    """The step-record folders of these runs that exist."""
    folders = [storage.join(root, "storage", run_id) for root in roots for run_id in run_ids]
    return [folder for folder in folders if storage.exists(folder)]


def erase_from_lake(
    lake_uri: str,
    partition: str,
    run_ids: Sequence[str],
    step_records: Sequence[str],
    source: SourceRecord | None,
    include_source: bool,
) -> LakeErasure:
    """Delete every file of the partition in the lake and its archive, its rows of fleet-wide tables, its runs'
    step records and, with ``include_source``, the source object. The registry entry goes last, and stays when
    the source could not be deleted (no permission), so the erasure can be run again by source."""
    done = LakeErasure()
    fs, root = storage.filesystem(lake_uri)
    root = root.rstrip("/")
    folders = partition_files(lake_uri, partition)
    registry = f"{root}/{SOURCES}/{PARTITION_FOLDER}{partition}"
    for folder, files in folders.items():
        if folder != registry:
            _remove(fs, folder, files, _uri_of(lake_uri, root, folder), done)
    for uri in fleet_files(lake_uri):
        rows = remove_fleet_rows(uri, partition)
        if rows:
            done.rows += rows
            done.locations.append(f"{uri} ({rows} row(s))")
    removal = compaction.remove(lake_uri, [partition])
    if removal.rows:
        done.rows += removal.rows
        done.locations.append(f"{compaction.compacted_uri(lake_uri)} ({removal.rows} row(s))")
    for folder in step_records_of(step_records, run_ids):
        io_fs, path = storage.filesystem(folder)
        _remove(io_fs, path.rstrip("/"), _files_under(io_fs, path.rstrip("/")), folder, done)
    if include_source and source is not None and storage.exists(source.uri):
        size = storage.size_of(source.uri)
        try:
            storage.delete_tree(source.uri)
        except OSError:  # e.g. the pipeline's own credentials may not delete in the drop zone
            return done
        done.bytes += size
        done.sources += 1
        done.locations.append(source.uri)
    if registry in folders:
        _remove(fs, registry, folders[registry], _uri_of(lake_uri, root, registry), done)
    return done


def _remove(fs: fsspec.AbstractFileSystem, folder: str, files: dict[str, int], uri: str, done: LakeErasure) -> None:
    fs.rm(folder, recursive=True)
    done.objects += len(files)
    done.bytes += sum(files.values())
    done.locations.append(uri)


def remaining_in_lake(
    lake_uri: str, partition: str, run_ids: Sequence[str], step_records: Sequence[str], source_uri: str | None = None
) -> list[str]:
    """What is left of the partition, found by a fresh scan of the lake (and the source, if it was to go)."""
    _, root = storage.filesystem(lake_uri)
    left = [_uri_of(lake_uri, root.rstrip("/"), folder) for folder in partition_files(lake_uri, partition)]
    for uri in fleet_files(lake_uri):
        rows = pc.sum(rows_of(_read_parquet(uri), partition)).as_py() or 0
        if rows:
            left.append(f"{uri} ({rows} row(s))")
    compacted = compaction.read_index(lake_uri, compaction.load_manifest(lake_uri), partition)
    if compacted.num_rows:
        left.append(f"{compaction.compacted_uri(lake_uri)} ({pc.sum(compacted['rows']).as_py()} row(s))")
    left += step_records_of(step_records, run_ids)
    if source_uri is not None and storage.exists(source_uri):
        left.append(source_uri)
    return left


def digest(partition: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{partition}".encode()).hexdigest()


def write_audit(
    lake_uri: str, request: str, partitions: Iterable[str], counts: Mapping[str, int], remaining: int, via: str
) -> str:
    """The audit record of one erasure: when, how it was asked (``partition``, ``source`` or ``prefix``), how
    much went, and the partitions as salted SHA-256 digests (the salt is in the record, so whoever knows a
    partition key can check whether it was erased; the record itself names nothing)."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    salt = secrets.token_hex(16)
    keys = sorted(partitions)
    record = {
        "erased_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "via": via,
        "request": request,
        "partitions": len(keys),
        "salt": salt,
        "partition_digests": sorted(digest(key, salt) for key in keys),
        "removed": dict(counts),
        "remaining": remaining,
        "verified": remaining == 0,
    }
    uri = storage.join(lake_uri, AUDIT_PREFIX, f"{stamp}-{secrets.token_hex(4)}.json")
    storage.write_bytes(uri, json.dumps(record, indent=1).encode())
    return uri
