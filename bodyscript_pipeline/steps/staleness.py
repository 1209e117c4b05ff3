"""What is stale, and why: the lineage a video's assets recorded against the versions the current code and settings
give them (steps/versions.py). :func:`changes` and :func:`asset_states` for one video (``bodyscript process`` and
``bodyscript status``), :func:`stale_partitions` for every video at once, in one query (the reprocessing
sensor)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bodyscript_pipeline import analytics, storage
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.lineage import LineageRow, read_lineage
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.lineage import lineage_field
from bodyscript_pipeline.steps.versions import (
    CODE_VERSIONS,
    DEPENDS_ON,
    VIDEO_ASSETS,
    asset_version,
    effective_settings,
)

# The reasons of :func:`changes` for an asset without a lineage row: never made, or made before lineage was.
MISSING = "missing"


NO_LINEAGE = "no lineage recorded"


def changes(
    lake_uri: str,
    partition: str,
    settings: Settings,
    source_version: str | None = None,
    recorded: Mapping[str, LineageRow] | None = None,
) -> dict[str, str]:
    """The per-video assets of ``partition`` that must be made (again), each with a one-line reason: ``missing``
    (``no lineage recorded`` where its output exists from before lineage), ``source changed: <old> -> <new>``
    (frames, when ``source_version`` is given), one clause per changed determining setting
    (``BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0``), ``code version 1 -> 2``. Direct causes only: what is downstream
    of them is the caller's to add (from the asset graph). Assets not in the answer are current. ``recorded``:
    the partition's lineage rows where the caller has read them already."""
    lake = VideoLake(lake_uri, partition)
    recorded = read_lineage(lake_uri, partition) if recorded is None else recorded
    found: dict[str, str] = {}
    for asset in VIDEO_ASSETS:
        row = recorded.get(asset)
        if row is None:
            found[asset] = NO_LINEAGE if _output_exists(lake, asset) else MISSING
            continue
        reasons = []
        if asset == "frames" and source_version is not None and row.source_version != source_version:
            reasons.append(f"source changed: {row.source_version} -> {source_version}")
        reasons += stale_reasons(asset, row.code_version, row.step_code_version, row.settings, settings)
        if reasons:
            found[asset] = "; ".join(reasons)
    return found


def stale_reasons(
    asset: str, code_version: str, step_code_version: str, recorded: Mapping[str, Any], settings: Settings
) -> list[str]:
    """Why a recorded version of ``asset`` is not the current one (nothing where it is): one clause per changed
    determining setting, then the step's code version."""
    current = asset_version(asset, settings)
    if code_version == current:
        return []
    reasons = [
        f"{env} {_shown(recorded.get(lineage_field(env)))} -> {_shown(value)}"
        for env, value in effective_settings(asset, settings).items()
        if recorded.get(lineage_field(env)) != value
    ]
    if step_code_version != CODE_VERSIONS[asset]:
        reasons.append(f"code version {step_code_version} -> {CODE_VERSIONS[asset]}")
    return reasons or [f"version {code_version} -> {current}"]  # e.g. a setting no longer determines it


def stale_partitions(lake_uri: str, settings: Settings) -> dict[str, dict[str, str]]:
    """Every video with a recorded asset whose version is not the current one: video -> {asset: reason}, in one
    query over the ``lineage`` view. Videos without lineage and assets never recorded are not listed (missing is
    not stale: metrics a failed quality check blocked stay missing), nor videos a run is writing now."""
    current = {asset: asset_version(asset, settings) for asset in VIDEO_ASSETS}
    # Only columns every lineage file has decide (a setting added later is a field the old files lack, and only
    # shows in the reason): no need to read every file's schema before the query.
    con = analytics.connect(lake_uri, tables=(LINEAGE,), by_name=False)
    try:
        rows = con.execute(
            "SELECT l.video, l.asset, l.code_version, l.step_code_version, l.settings FROM lineage AS l "
            "JOIN (SELECT unnest($assets) AS asset, unnest($versions) AS version, unnest($order) AS position) AS c "
            "ON l.asset = c.asset WHERE l.code_version <> c.version ORDER BY l.video, c.position",
            {"assets": list(current), "versions": list(current.values()), "order": list(range(len(current)))},
        ).fetchall()
    finally:
        con.close()
    stale: dict[str, dict[str, str]] = {}
    for video, asset, code_version, step_code_version, recorded in rows:
        reasons = stale_reasons(asset, code_version, step_code_version, recorded or {}, settings)
        stale.setdefault(video, {})[asset] = "; ".join(reasons)
    return {
        video: dict(sorted(assets.items(), key=lambda a: VIDEO_ASSETS.index(a[0]))) for video, assets in stale.items()
    }


# The table of an asset's output, where it has one (the ``metrics`` step writes ``videos`` last).
OUTPUT_TABLES = {
    "frames": "frames",
    "landmarks": "landmarks",
    "clean_landmarks": "landmarks_clean",
    "metrics": "videos",
}


def _output_exists(lake: VideoLake, asset: str) -> bool:
    """Whether ``asset`` has an output in the lake, per-video or compacted (made before lineage was recorded, or
    its row was lost)."""
    table = OUTPUT_TABLES.get(asset)
    if table is not None:
        return storage.exists(lake.table_part(table)) or compaction.holds(lake.lake_uri, lake.partition, table)
    return storage.exists(lake.overlay if asset == "overlays" else lake.folder("exports"))


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class AssetState:
    """One per-video asset's state, ``current``, ``stale`` or ``missing``; why (its own change, or ``upstream
    <asset> stale|missing`` naming where the change came in); and the version the current settings give it."""

    state: str
    reason: str | None
    version: str
    cause: str | None = None  # the asset whose own change makes this one stale

    def describe(self) -> str:
        if self.state == "current":
            return f"current (version {self.version})"
        return f"{self.state}: {self.reason}" if self.reason != self.state else self.state

    def as_json(self) -> dict[str, str | None]:
        return {"state": self.state, "reason": self.reason, "version": self.version}


def asset_states(
    lake_uri: str, partition: str, settings: Settings, source_version: str | None = None
) -> dict[str, AssetState]:
    """Every per-video asset's state, in dependency order: its own change (:func:`changes`), else the first
    upstream asset that is not current, else an upstream asset made again after it (a run that failed half-way,
    or whose blocking quality check stopped it), else current."""
    recorded = read_lineage(lake_uri, partition)
    causes = changes(lake_uri, partition, settings, source_version, recorded)
    made = {asset: row.materialized_at for asset, row in recorded.items()}
    states: dict[str, AssetState] = {}
    for asset in VIDEO_ASSETS:
        version = asset_version(asset, settings)
        if asset in causes:
            state = "missing" if causes[asset] == MISSING else "stale"
            states[asset] = AssetState(state, causes[asset], version, asset)
            continue
        parents = DEPENDS_ON[asset]
        roots = [states[p].cause for p in parents if states[p].state != "current"]
        root = min(roots, key=VIDEO_ASSETS.index) if roots else None
        newer = [p for p in parents if p in made and asset in made and made[p] > made[asset]]
        if root is not None:
            states[asset] = AssetState("stale", f"upstream {root} {states[root].state}", version, root)
        elif newer:
            states[asset] = AssetState("stale", f"upstream {newer[0]} made again since", version, asset)
        else:
            states[asset] = AssetState("current", None, version)
    return states
