"""The lake's lineage table: for each video and per-video asset, one row saying what its output was made from
(source object and version, model) and with (code version, the settings that determine it), by which run, when.

One file per asset, ``<lake>/lineage/video=<partition>/<asset>.parquet`` (schema ``LINEAGE``), replaced
atomically at each materialization; the ``lineage`` view and scan (analytics.py) read them all. What a row is
made of, and what it says about staleness, is up to steps/versions.py: this module only writes and reads rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.parquet import read_table, write_table
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.lake.schemas import TableRow


@dataclass(frozen=True)
class LineageRow(TableRow):
    """One asset's lineage; ``settings`` maps each field of ``LINEAGE_SETTINGS`` to its value (None: the setting
    does not determine this asset)."""

    TABLE = LINEAGE

    asset: str
    source_uri: str
    source_version: str
    model_sha256: str | None
    code_version: str
    step_code_version: str
    settings: dict[str, Any]
    run_id: str
    materialized_at: datetime


def write_lineage(lake_uri: str, partition: str, row: LineageRow) -> None:
    """Write (or replace) the row of ``row.asset``; readers see the old row or the new one, never a partial file."""
    write_table(LINEAGE, VideoLake(lake_uri, partition).lineage(row.asset), LineageRow.table([row]))


def read_lineage(lake_uri: str, partition: str) -> dict[str, LineageRow]:
    """The recorded rows of one video, by asset (empty where none was recorded): from its per-video files, else
    from compacted files, unless a run has written the video since the compaction (its files are the record)."""
    lake = VideoLake(lake_uri, partition)
    folder = lake.folder(LINEAGE)
    fs, path = storage.filesystem(folder)
    try:
        files = sorted(name for name in fs.ls(path, detail=False) if str(name).endswith(".parquet"))
    except FileNotFoundError:
        files = []
    if not files:
        if storage.exists(lake.fresh) or storage.exists(lake.writing):
            return {}
        return {
            row.asset: row
            for table in compaction.video_rows(lake_uri, partition, LINEAGE)
            for row in LineageRow.rows(table)
        }
    rows: dict[str, LineageRow] = {}
    for name in files:
        uri = storage.join(folder, str(name).rstrip("/").rsplit("/", 1)[-1])
        try:
            table = read_table(uri)
        except FileNotFoundError:  # removed since the listing (a new source version, erasure)
            continue
        for row in LineageRow.rows(table):
            rows[row.asset] = row
    return rows


def delete_lineage(lake_uri: str, partition: str) -> None:
    """Remove a video's lineage (its outputs are gone: a new source version, erasure)."""
    storage.delete_tree(VideoLake(lake_uri, partition).folder(LINEAGE))
