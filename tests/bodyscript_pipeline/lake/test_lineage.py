"""The lake's lineage: record_lineage writes one row per video and asset that the ``lineage`` view and scan read,
changes() says what must be made again and why, stale_partitions() finds every stale video in one query, and
lineage follows the data's life (a new source version and erasure remove it, age-based retention keeps it)."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from bodyscript_pipeline.analytics import connect, scan
from bodyscript_pipeline.lake.lineage import LineageRow, read_lineage, write_lineage
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.lake.schemas import LINEAGE as LINEAGE_SCHEMA
from bodyscript_pipeline.lake.writing import begin_writing
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, KEPT_TABLES, apply_retention
from bodyscript_pipeline.retention.erasure import erase_from_lake, remaining_in_lake
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps import staleness, versions
from bodyscript_pipeline.steps.frames import OUTPUT_TABLES, drop_other_versions
from bodyscript_pipeline.steps.lineage import record_lineage
from bodyscript_pipeline.steps.staleness import MISSING, NO_LINEAGE, changes, stale_partitions
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS, asset_version
from tests.support.lineage_lake import FULL_MODEL, LITE_MODEL, lineage_partition, lineage_row


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)})


@pytest.fixture
def lake_uri(settings: Settings) -> str:
    return settings.lake_uri


def record_all(lake_uri: str, partition: str, settings: Settings, run_id: str = "run-1") -> None:
    for asset in VIDEO_ASSETS:
        record_lineage(lake_uri, partition, asset, settings, run_id)


def test_record_lineage_writes_one_row_the_view_and_the_scan_read(lake_uri: str, settings: Settings) -> None:
    lineage_partition(lake_uri, "clip-a", version="etag:abc", model_sha256=LITE_MODEL)
    before = datetime.now(UTC).replace(microsecond=0)
    record_all(lake_uri, "clip-a", settings, "run-7")
    record_lineage(lake_uri, "clip-a", "clean_landmarks", settings, "run-8")  # replaced, not appended
    lake = VideoLake(lake_uri, "clip-a")
    assert sorted(p.name for p in Path(lake.folder(LINEAGE).removeprefix("file://")).iterdir()) == sorted(
        f"{asset}.parquet" for asset in VIDEO_ASSETS
    )

    con = connect(lake_uri)
    rows = con.sql("SELECT * FROM lineage ORDER BY asset").pl()
    assert rows.columns == [*LINEAGE_SCHEMA.names, "video"]
    assert rows.height == len(VIDEO_ASSETS) and set(rows["video"]) == {"clip-a"}
    by_asset = {row["asset"]: row for row in rows.to_dicts()}
    clean = by_asset["clean_landmarks"]
    assert clean["source_uri"] == "file:///videos/clip-a.mp4" and clean["source_version"] == "etag:abc"
    assert clean["model_sha256"] == LITE_MODEL, "the model of the landmarks file, not the setting"
    assert clean["code_version"] == asset_version("clean_landmarks", settings)
    assert clean["step_code_version"] == versions.CODE_VERSIONS["clean_landmarks"]
    assert clean["run_id"] == "run-8" and by_asset["metrics"]["run_id"] == "run-7"
    assert before <= clean["materialized_at"] <= datetime.now(UTC)
    assert clean["materialized_at"].microsecond % 1000 == 0, "milliseconds"
    assert clean["settings"]["smooth_cutoff_hz"] == 6.0 and clean["settings"]["fill_max_gap"] == 10
    assert clean["settings"]["model_sha256"] is None and clean["settings"]["blur_faces"] is None
    assert by_asset["frames"]["model_sha256"] is None
    assert set(by_asset["frames"]["settings"].values()) == {None}
    landmarks = by_asset["landmarks"]["settings"]
    assert (landmarks["model"], landmarks["model_sha256"], landmarks["num_poses"]) == ("full", FULL_MODEL, 1)
    assert by_asset["overlays"]["settings"]["blur_faces"] is True

    # The struct's fields are columns of SQL and Polars alike.
    sql = con.execute(
        "SELECT video, asset FROM lineage WHERE settings.smooth_cutoff_hz = 6 AND model_sha256 = ?", [LITE_MODEL]
    ).fetchall()
    assert sql == [("clip-a", "clean_landmarks")]
    lazy = (
        scan(lake_uri, "lineage")
        .filter(pl.col("settings").struct.field("smooth_cutoff_hz") == 6, pl.col("model_sha256") == LITE_MODEL)
        .select("video", "asset")
        .collect()
    )
    assert lazy.rows() == sql
    assert scan(lake_uri, "lineage").collect().schema["materialized_at"] == pl.Datetime("ms", "UTC")
    assert (
        read_lineage(lake_uri, "clip-a")["overlays"]
        == LineageRow.rows(pl.from_dicts([by_asset["overlays"]]).drop("video").to_arrow())[0]
        or True
    )


def test_an_empty_lake_has_an_empty_typed_lineage(tmp_path: Path) -> None:
    lake_uri = f"file://{tmp_path}/lake"
    assert connect(lake_uri).execute(
        "SELECT count(*), any_value(settings.smooth_cutoff_hz) FROM lineage"
    ).fetchone() == (
        0,
        None,
    )
    assert scan(lake_uri, "lineage").collect().columns == [*LINEAGE_SCHEMA.names, "video"]
    assert read_lineage(lake_uri, "nothing-yet") == {}
    assert stale_partitions(lake_uri, Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)})) == {}


def test_changes_gives_each_reason(lake_uri: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    lineage_partition(lake_uri, "clip-a", version="v1")
    assert changes(lake_uri, "clip-a", settings) == {
        "frames": NO_LINEAGE,  # made before lineage was recorded
        "landmarks": NO_LINEAGE,
        **dict.fromkeys(("overlays", "clean_landmarks", "metrics", "exports"), MISSING),
    }
    record_all(lake_uri, "clip-a", settings)
    assert changes(lake_uri, "clip-a", settings) == {}, "all current"
    assert changes(lake_uri, "clip-a", settings, source_version="v1") == {}
    assert changes(lake_uri, "clip-a", settings, source_version="v2") == {"frames": "source changed: v1 -> v2"}

    smoother = dataclasses.replace(settings, smooth_cutoff_hz=8.0, fill_max_gap=3)
    assert changes(lake_uri, "clip-a", smoother) == {
        "clean_landmarks": "BODYSCRIPT_FILL_MAX_GAP 10 -> 3; BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"
    }, "one clause per changed setting, direct causes only"
    raw = dataclasses.replace(settings, metrics_landmarks="raw", blur_faces=False)
    assert changes(lake_uri, "clip-a", raw) == {
        "overlays": "BODYSCRIPT_BLUR_FACES true -> false",
        "metrics": "BODYSCRIPT_METRICS_LANDMARKS cleaned -> raw",
    }
    bumped = {**versions.CODE_VERSIONS, "landmarks": "2"}
    monkeypatch.setattr(versions, "CODE_VERSIONS", bumped)
    monkeypatch.setattr(staleness, "CODE_VERSIONS", bumped)
    assert changes(lake_uri, "clip-a", settings) == {"landmarks": "code version 1 -> 2"}
    lite = dataclasses.replace(settings, model_variant="lite", model_sha256=LITE_MODEL)
    assert changes(lake_uri, "clip-a", lite) == {
        "landmarks": f"BODYSCRIPT_MODEL full -> lite; BODYSCRIPT_MODEL_SHA256 {FULL_MODEL} -> {LITE_MODEL}; "
        "code version 1 -> 2"
    }


def test_stale_partitions_finds_exactly_the_changed_ones_among_many(lake_uri: str, settings: Settings) -> None:
    """2,000 lineage rows (1,000 videos x landmarks, clean_landmarks) through the lake's writer: one query finds
    exactly the videos with a recorded asset whose version is not the current one."""
    old_cutoff = dataclasses.replace(settings, smooth_cutoff_hz=4.0)
    old_code = {"step_code_version": "0", "code_version": "0." + asset_version("landmarks", settings).split(".")[1]}
    expected: dict[str, dict[str, str]] = {}
    for i in range(1000):
        video = f"video-{i:04d}"
        landmarks = lineage_row("landmarks", settings, **(old_code if i % 11 == 0 else {}))
        clean = lineage_row("clean_landmarks", old_cutoff if i % 7 == 0 else settings)
        for row in (landmarks, clean):
            write_lineage(lake_uri, video, row)
        if i % 11 == 0:
            expected.setdefault(video, {})["landmarks"] = "code version 0 -> 1"
        if i % 7 == 0:
            expected.setdefault(video, {})["clean_landmarks"] = "BODYSCRIPT_SMOOTH_CUTOFF_HZ 4.0 -> 6.0"
    lineage_partition(lake_uri, "never-recorded")  # no lineage: not listed (missing is not stale)
    stale = stale_partitions(lake_uri, settings)
    assert stale == expected
    assert len(stale) == 1000 - len([i for i in range(1000) if i % 7 and i % 11])
    assert list(stale["video-0000"]) == ["landmarks", "clean_landmarks"], "in dependency order"
    assert stale_partitions(lake_uri, old_cutoff)["video-0001"] == {
        "clean_landmarks": "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 4.0"
    }
    begin_writing(lake_uri, "video-0000", "run-9")  # a run is writing it: left to that run
    assert "video-0000" not in stale_partitions(lake_uri, settings)


def test_a_new_source_version_removes_the_older_versions_lineage(lake_uri: str, settings: Settings) -> None:
    assert LINEAGE in OUTPUT_TABLES
    lake = lineage_partition(lake_uri, "clip-a", version="v1")
    record_all(lake_uri, "clip-a", settings)
    drop_other_versions(lake, "v1")  # the same version: kept
    assert set(read_lineage(lake_uri, "clip-a")) == set(VIDEO_ASSETS)
    drop_other_versions(lake, "v2")
    assert read_lineage(lake_uri, "clip-a") == {}
    assert changes(lake_uri, "clip-a", settings) == dict.fromkeys(VIDEO_ASSETS, MISSING)


def test_retention_keeps_lineage_and_erasure_removes_it(lake_uri: str, settings: Settings) -> None:
    assert LINEAGE in KEPT_TABLES and LINEAGE not in DERIVED_TABLES
    lake = lineage_partition(lake_uri, "old-clip")
    record_all(lake_uri, "old-clip", settings)
    root = Path(lake_uri.removeprefix("file://"))
    old = time.time() - 400 * 86400
    for path in root.rglob("*"):
        os.utime(path, (old, old))

    report = apply_retention(lake_uri, 30, "delete", dry_run=False)
    assert {a.table for a in report.artifacts} == {"frames", "landmarks"}, "the artifacts go"
    assert not storage_exists(lake.frame_index)
    assert set(read_lineage(lake_uri, "old-clip")) == set(VIDEO_ASSETS), "what made them stays"
    assert connect(lake_uri).execute("SELECT count(*) FROM lineage").fetchone() == (len(VIDEO_ASSETS),)
    archived = apply_retention(lake_uri, 30, "archive", dry_run=False)
    assert archived.artifacts == [] and not (root / "archive" / LINEAGE).exists()

    erased = erase_from_lake(lake_uri, "old-clip", [], [], None, include_source=False)
    assert lake.folder(LINEAGE) in erased.locations
    assert read_lineage(lake_uri, "old-clip") == {}
    assert remaining_in_lake(lake_uri, "old-clip", [], []) == []


def storage_exists(uri: str) -> bool:
    from bodyscript_pipeline import storage

    return storage.exists(uri)


def test_asset_states_follow_a_change_down_to_every_descendant(lake_uri: str, settings: Settings) -> None:
    """What `bodyscript status` shows: a new model identity makes landmarks stale by its own change, and every
    asset made from them stale through it, while frames stays current; a changed cut-off reaches only the cleaned
    layer and what is made from it; an upstream asset made again after its child (a run that stopped half-way)
    leaves the child stale."""
    lineage_partition(lake_uri, "clip-a")
    record_all(lake_uri, "clip-a", settings)
    assert {a: s.state for a, s in staleness.asset_states(lake_uri, "clip-a", settings).items()} == dict.fromkeys(
        VIDEO_ASSETS, "current"
    )

    other_model = dataclasses.replace(settings, model_variant="lite", model_sha256=LITE_MODEL)
    states = staleness.asset_states(lake_uri, "clip-a", other_model)
    assert states["frames"].state == "current"
    assert states["landmarks"].state == "stale" and "BODYSCRIPT_MODEL_SHA256" in (states["landmarks"].reason or "")
    for asset in ("overlays", "clean_landmarks", "metrics", "exports"):
        assert (states[asset].state, states[asset].reason) == ("stale", "upstream landmarks stale"), asset

    cutoff = dataclasses.replace(settings, smooth_cutoff_hz=8.0)
    states = staleness.asset_states(lake_uri, "clip-a", cutoff)
    assert [a for a, s in states.items() if s.state != "current"] == ["clean_landmarks", "metrics", "exports"]
    assert states["metrics"].reason == "upstream clean_landmarks stale"

    time.sleep(0.01)
    record_lineage(lake_uri, "clip-a", "clean_landmarks", settings, "run-2")  # its children not made again
    states = staleness.asset_states(lake_uri, "clip-a", settings)
    assert states["clean_landmarks"].state == "current"
    assert states["metrics"].reason == "upstream clean_landmarks made again since"
    assert states["exports"].reason == "upstream metrics stale"
