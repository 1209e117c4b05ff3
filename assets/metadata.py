"""Helpers turning core results into the metadata the Dagster UI shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from bodyscript_pipeline import storage
from bodyscript_pipeline.k8s_pods import ASSET_POD
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


def operations(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, asset: str, seconds: float, frames: int, *uris: str
) -> dict[str, float]:
    """Numeric figures the UI plots over time: step seconds, frames/s, queue wait, bytes stored, and the
    estimated cost of the step's pod-seconds at the pool's configured price."""
    record = context.instance.get_run_record_by_id(context.run_id)
    queue_wait = 0.0
    if record is not None and record.start_time is not None:
        queue_wait = max(0.0, record.start_time - record.create_timestamp.timestamp())
    price = pipeline.cost_gpu_pod_hour if ASSET_POD[asset] == "pose" else pipeline.cost_cpu_pod_hour
    return {
        "step_seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "queue_wait_s": round(queue_wait, 3),
        "bytes_stored": float(sum(storage.size_of(uri) for uri in uris)),
        "estimated_cost": seconds / 3600 * price,
    }
