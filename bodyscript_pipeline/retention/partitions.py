"""Which video partitions are past retention, so that they may leave the ``videos`` partition set and keep the
UI's Partitions tab as short as the lake's recent history, not its whole history.

A video is past retention when it was processed (the lake has its lineage) and nothing of it has been written in
the lake for ``older_than_days``: no derived artifact (retention removed or archived the older ones), no lineage
row (no run made anything of it since) and no source registration (a new version registers before its run). Its
lineage and source registry entry stay in the lake (``KEPT_TABLES``), so what made its published results stays
queryable (the ``lineage`` view); a new version dropped later adds its partition again. A video never processed,
or from a lake older than lineage, is never past retention.

The lake is listed once per table (one recursive listing each, not one per video), so the cost is that of
listing the lake's files, whatever the number of partitions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.paths import LINEAGE
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, KEPT_TABLES, PARTITION_FOLDER

DAY_S = 86400


@dataclass(frozen=True)
class Written:
    """When a file of a partition was last written in the lake, and whether it has lineage."""

    newest: float
    lineage: bool


def last_written(lake_uri: str) -> dict[str, Written]:
    """Per partition: when a file of it was last written in a per-video table of the lake, compacted or not (the
    archive is not looked in), and whether it has lineage."""
    fs, root = storage.filesystem(lake_uri)
    found: dict[str, Written] = {}
    for table in (*DERIVED_TABLES, *KEPT_TABLES):
        table_root = f"{root.rstrip('/')}/{table}"
        if not fs.exists(table_root):
            continue
        for path, info in fs.find(table_root, detail=True).items():
            folder = path.removeprefix(table_root + "/").split("/", 1)[0]
            if not folder.startswith(PARTITION_FOLDER):
                continue
            partition = folder.removeprefix(PARTITION_FOLDER)
            before = found.get(partition, Written(0.0, False))
            found[partition] = Written(
                max(before.newest, storage.modified_at(info)), before.lineage or table == LINEAGE
            )
    lineage = compaction.compacted_videos(lake_uri, (LINEAGE,))
    for partition, modified in compaction.compacted_videos(lake_uri).items():  # files merged by compaction
        before = found.get(partition, Written(0.0, False))
        found[partition] = Written(max(before.newest, modified), before.lineage or partition in lineage)
    return found


def past_retention(
    written: Mapping[str, Written], partitions: Iterable[str], older_than_days: float, now: float | None = None
) -> list[str]:
    """Of ``partitions``, those processed and untouched for ``older_than_days``, in key order."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY_S
    return sorted(key for key in partitions if key in written and written[key].lineage and written[key].newest < cutoff)
