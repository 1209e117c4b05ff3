"""Helpers turning core results into the metadata the Dagster UI shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from bodyscript_pipeline import storage
from resources import PipelineResource


def location(uri: str) -> dg.MetadataValue:
    """A local path for ``file://`` outputs (the UI offers to copy it), the URI otherwise."""
    local = storage.local_path(uri)
    return dg.MetadataValue.path(str(local) if local is not None else uri)


def output_locations(pipeline: PipelineResource, **uris: str) -> dict[str, dg.MetadataValue]:
    """Each output's location and, on S3, a presigned expiring download link beside it (``<name>_download``)."""
    metadata: dict[str, dg.MetadataValue] = {}
    for name, uri in uris.items():
        metadata[name] = location(uri)
        link = pipeline.download_link(uri)
        if link is not None:
            metadata[f"{name}_download"] = dg.MetadataValue.url(link)
    return metadata


def preview(rows: Sequence[dict[str, Any]], limit: int = 10) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.text("(no rows)")
    records = [
        dg.TableRecord({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
        for row in rows[:limit]
    ]
    return dg.MetadataValue.table(records)
