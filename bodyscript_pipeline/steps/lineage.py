"""The lineage of each per-video asset: at each materialization, one row per video and asset in the lake
(``<lake>/lineage/``, lake/lineage.py) says what it was made from and with: the source version of its frames, the
model behind its landmarks, its versions and the values of the settings that determine it, the run and the time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bodyscript_pipeline.lake.lineage import LineageRow, write_lineage
from bodyscript_pipeline.lake.parquet import file_metadata
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.settings import SETTINGS, Settings
from bodyscript_pipeline.steps import frames
from bodyscript_pipeline.steps.versions import CODE_VERSIONS, asset_version, effective_settings


def lineage_field(env: str) -> str:
    """The field of ``lineage.settings`` that holds a run-scope setting: ``BODYSCRIPT_SMOOTH_CUTOFF_HZ`` ->
    ``smooth_cutoff_hz``."""
    return env.removeprefix("BODYSCRIPT_").lower()


RUN_SETTINGS: tuple[str, ...] = tuple(s.env for s in SETTINGS if s.scope == "run")


def lineage_settings(asset: str, settings: Settings) -> dict[str, Any]:
    """The ``settings`` struct of ``asset``'s lineage row: every run-scope setting's field, the values of those
    that determine it, None for the others."""
    values = effective_settings(asset, settings)
    return {lineage_field(env): values.get(env) for env in RUN_SETTINGS}


def record_lineage(lake_uri: str, partition: str, asset: str, settings: Settings, run_id: str) -> None:
    """Record, once ``asset`` of ``partition`` is written, what it was made from and with (one row, replaced
    atomically): the source version its frames were made from, the model behind its landmarks, its versions and
    determining settings, the run and the time."""
    lake = VideoLake(lake_uri, partition)
    source = frames.frames_source(lake)
    row = LineageRow(
        asset=asset,
        source_uri=source.uri,
        source_version=source.version,
        model_sha256=None if asset == "frames" else _landmarks_model(lake),
        code_version=asset_version(asset, settings),
        step_code_version=CODE_VERSIONS[asset],
        settings=lineage_settings(asset, settings),
        run_id=run_id,
        materialized_at=_now_ms(),
    )
    write_lineage(lake_uri, partition, row)


def _landmarks_model(lake: VideoLake) -> str | None:
    """The model the video's landmarks were estimated with, as their file records it (None without one)."""
    try:
        return file_metadata(lake.table_part("landmarks")).get("bodyscript.model_sha256") or None
    except FileNotFoundError:
        return None


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
