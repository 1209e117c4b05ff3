"""Helpers turning core results into the metadata the Dagster UI shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from bodyscript_pipeline import storage


def location(uri: str) -> dg.MetadataValue:
    """A local path for ``file://`` outputs (the UI offers to copy it), the URI otherwise."""
    local = storage.local_path(uri)
    return dg.MetadataValue.path(str(local)) if local is not None else dg.MetadataValue.url(uri)


def preview(rows: Sequence[dict[str, Any]], limit: int = 10) -> dg.MetadataValue:
    records = [
        dg.TableRecord({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
        for row in rows[:limit]
    ]
    return dg.MetadataValue.table(records)
