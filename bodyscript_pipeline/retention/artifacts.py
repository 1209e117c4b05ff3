"""Age-based retention of derived artifacts in the lake: delete them, or move them to an archive prefix.

Only the lake's derived tables are ever considered (see ``DERIVED_TABLES``); the drop zone is not even
known to this module, so a source video can never be deleted by a derived-data policy. The ``sources``
registry is kept too, so an archived or deleted partition can be materialized again from its source, and so is
the ``lineage`` table (``KEPT_TABLES``): a few hundred bytes per asset, and what a researcher asks long after the
artifacts are gone (which model and settings made a published result). Erasure removes it with the rest.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.compaction import COMPACTED
from bodyscript_pipeline.lake.paths import LINEAGE, TABLES

KEPT_TABLES: tuple[str, ...] = (LINEAGE, "sources")  # never aged out: what made each output, and its source
DERIVED_TABLES: tuple[str, ...] = tuple(t for t in (*TABLES, "overlays", "exports") if t not in KEPT_TABLES)
ARCHIVE_PREFIX = "archive"
PARTITION_FOLDER = "video="


@dataclass(frozen=True)
class AgedArtifact:
    table: str
    partition: str
    uri: str
    files: int
    bytes: int
    age_days: float


@dataclass(frozen=True)
class RetentionReport:
    mode: str
    dry_run: bool
    older_than_days: float
    artifacts: list[AgedArtifact]

    @property
    def partitions(self) -> int:
        return len({a.partition for a in self.artifacts})

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)


def aged_artifacts(lake_uri: str, older_than_days: float, now: float | None = None) -> Iterator[AgedArtifact]:
    """Partition folders of derived tables whose newest file is older than ``older_than_days``."""
    now = time.time() if now is None else now
    fs, root = storage.filesystem(lake_uri)
    for table in DERIVED_TABLES:
        table_root = f"{root.rstrip('/')}/{table}"
        folders: dict[str, list[dict[str, Any]]] = {}
        for path, info in fs.find(table_root, detail=True).items():  # one listing (on S3, not one per folder); none: {}
            name = path.removeprefix(table_root + "/").split("/", 1)[0]
            if name.startswith(PARTITION_FOLDER):
                folders.setdefault(name, []).append(info)
        for name, files in sorted(folders.items()):
            newest = max(storage.modified_at(info) for info in files)
            age_days = (now - newest) / 86400
            if age_days > older_than_days:
                yield AgedArtifact(
                    table=table,
                    partition=name.removeprefix(PARTITION_FOLDER),
                    uri=storage.join(lake_uri, table, name),
                    files=len(files),
                    bytes=sum(int(info.get("size") or 0) for info in files),
                    age_days=age_days,
                )


def aged_compacted(
    lake_uri: str, older_than_days: float, now: float, folders: list[AgedArtifact] | None = None
) -> list[AgedArtifact]:
    """Compacted videos whose per-video files were written before the cut-off, unless a per-video folder of
    theirs is younger (made again since: its files hide the compacted rows, and the next compaction drops them).
    ``folders``: every per-video folder with its age, where the caller has listed them already."""
    aged = {
        video: (now - modified) / 86400
        for video, modified in compaction.compacted_videos(lake_uri, DERIVED_TABLES).items()
        if (now - modified) / 86400 > older_than_days
    }
    if not aged:
        return []
    if folders is None:
        folders = list(aged_artifacts(lake_uri, -math.inf, now))
    young = {a.partition for a in folders if a.age_days <= older_than_days}
    uri = compaction.compacted_uri(lake_uri)
    return [
        AgedArtifact(COMPACTED, video, uri, 0, 0, days) for video, days in sorted(aged.items()) if video not in young
    ]


def apply_retention(
    lake_uri: str, older_than_days: float, mode: str, dry_run: bool, now: float | None = None
) -> RetentionReport:
    """Delete (or archive under ``<lake>/archive/``) every aged artifact, compacted videos' rows included (each
    archived as its per-video files); with ``dry_run`` only report."""
    if mode not in ("delete", "archive"):
        raise ValueError(f"retention mode must be delete or archive, not {mode!r}")
    now = time.time() if now is None else now
    folders = list(aged_artifacts(lake_uri, -math.inf, now))  # every folder, listed once
    artifacts = [a for a in folders if a.age_days > older_than_days]
    compacted = aged_compacted(lake_uri, older_than_days, now, folders)
    if not dry_run and compacted:
        videos = [artifact.partition for artifact in compacted]
        if mode == "archive":
            for video in videos:
                compaction.restore(lake_uri, video, DERIVED_TABLES, into=storage.join(lake_uri, ARCHIVE_PREFIX))
        compaction.remove(lake_uri, videos, now, DERIVED_TABLES)  # lineage stays (KEPT_TABLES)
    if not dry_run:
        fs, _ = storage.filesystem(lake_uri)
        for artifact in artifacts:
            _, path = storage.filesystem(artifact.uri)
            if mode == "archive":
                _, target = storage.filesystem(archive_uri(lake_uri, artifact))
                _archive(fs, path.rstrip("/"), target.rstrip("/"))
            else:
                fs.rm(path, recursive=True)
    return RetentionReport(mode, dry_run, older_than_days, artifacts + compacted)


def archive_uri(lake_uri: str, artifact: AgedArtifact) -> str:
    return storage.join(lake_uri, ARCHIVE_PREFIX, artifact.table, PARTITION_FOLDER + artifact.partition)


def _archive(fs: fsspec.AbstractFileSystem, folder: str, target: str) -> None:
    """Move each file of ``folder`` to the same relative path under ``target``, replacing an earlier archive's
    copy. File-to-file moves never nest a folder in an existing one (as a folder ``mv`` does) and work on S3
    (copy each object, then delete the copied originals); an interrupted archive completes on the next run."""
    files = sorted(fs.find(folder))
    local = isinstance(fs, LocalFileSystem)
    for path in files:
        copy = f"{target}/{path.removeprefix(folder + '/')}"
        if local:
            Path(copy).parent.mkdir(parents=True, exist_ok=True)
            Path(path).replace(copy)
        else:
            fs.cp_file(path, copy)
    if not local and files:
        fs.rm(files)
    if local:
        for directory, _, _ in os.walk(folder, topdown=False):
            with contextlib.suppress(OSError):
                Path(directory).rmdir()  # only emptied folders: a file written since the listing stays
