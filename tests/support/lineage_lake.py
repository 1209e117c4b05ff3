"""Small video partitions with what lineage reads (a frame index recording its source version, landmarks recording
their model), written with the lake's own writers, and lineage rows made as ``record_lineage`` makes them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from bodyscript_pipeline.lake.lineage import LineageRow
from bodyscript_pipeline.lake.parquet import write_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import FRAMES, LANDMARKS
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.pose.model import MODEL_VARIANTS
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.lineage import lineage_settings
from bodyscript_pipeline.steps.versions import CODE_VERSIONS, asset_version

FULL_MODEL = MODEL_VARIANTS["full"].sha256
LITE_MODEL = MODEL_VARIANTS["lite"].sha256


def lineage_partition(
    lake_uri: str, partition: str, version: str = "v1", model_sha256: str = FULL_MODEL, landmarks: bool = True
) -> VideoLake:
    """A registered video with a three-frame index made from ``version`` and (optionally) one undetected frame
    of landmarks estimated with ``model_sha256``."""
    lake = VideoLake(lake_uri, partition)
    source = f"file:///videos/{partition}.mp4"
    register_source(lake_uri, partition, source, version=version)
    frames = pa.table(
        {"frame_index": [0, 1, 2], "pts": [0, 1, 2], "timestamp_ms": [0, 33, 67], "keyframe": [True, False, False]},
        schema=FRAMES,
    )
    meta = {"bodyscript.video_uri": lake.source_copy(".mp4"), "bodyscript.source_uri": source}
    write_table("frames", lake.frame_index, frames, {**meta, "bodyscript.source_version": version})
    if landmarks:
        empty = {name: [None] for name in LANDMARKS.names} | {"frame_index": [0], "timestamp_ms": [0]}
        table = pa.table(empty, schema=LANDMARKS)
        write_table("landmarks", lake.table_part("landmarks"), table, {"bodyscript.model_sha256": model_sha256})
    return lake


def lineage_row(asset: str, settings: Settings, run_id: str = "run-1", **changed: Any) -> LineageRow:
    """The row ``record_lineage`` writes for ``asset`` made with ``settings`` (of a ``v1`` source and the full
    model), with ``changed`` columns replaced."""
    row = LineageRow(
        asset=asset,
        source_uri="file:///videos/clip.mp4",
        source_version="v1",
        model_sha256=None if asset == "frames" else FULL_MODEL,
        code_version=asset_version(asset, settings),
        step_code_version=CODE_VERSIONS[asset],
        settings=lineage_settings(asset, settings),
        run_id=run_id,
        materialized_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )
    return dataclasses.replace(row, **changed)
