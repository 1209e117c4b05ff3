"""The compaction in Dagster and around it: the ``lake_compaction`` asset, a run on a compacted video, and
retention and erasure of compacted videos."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets import lake_compaction_asset, process_video_assets
from assets.video_specs import CLEAN_LANDMARKS, METRICS
from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.paths import TABLES, VideoLake
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, apply_retention
from bodyscript_pipeline.retention.erasure import erase_from_lake, remaining_in_lake
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from tests.bodyscript_pipeline.lake.test_compaction import figures, make_video

VIDEOS = ["clip-a", "clip-b", "clip-c"]
BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
DAY = 86400


@pytest.fixture
def settings(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BODYSCRIPT_COMPACTION_MIN_VIDEOS", "2")
    settings = Settings.from_env()
    for seed, video in enumerate(VIDEOS):
        make_video(settings.lake_uri, video, seed)
    return settings


def test_the_asset_compacts_and_a_run_on_a_compacted_video_restores_it(settings: Settings) -> None:
    lake_uri = settings.lake_uri
    before = figures(lake_uri)
    resources = {"pipeline": PipelineResource.from_settings(settings)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", VIDEOS)
        result = dg.materialize([lake_compaction_asset(settings)], instance=instance, resources=resources)
        shown = result.asset_materializations_for_node("lake_compaction")[0].metadata
        assert shown["videos_merged"].value == len(VIDEOS) and shown["fresh_files_deleted"].value == 3 * len(TABLES)
        assert not storage.exists(VideoLake(lake_uri, "clip-a").table_part("landmarks"))

        result = dg.materialize(
            process_video_assets(settings),
            selection=[CLEAN_LANDMARKS.key, METRICS.key],
            partition_key="clip-a",
            instance=instance,
            resources=resources,
        )
        assert result.success
    lake = VideoLake(lake_uri, "clip-a")
    assert all(storage.exists(lake.table_part(table)) for table in TABLES)  # restored, then rewritten
    assert figures(lake_uri) == before  # the same outputs again, each video once
    report = compaction.compact(lake_uri)
    assert report.videos == 1 and figures(lake_uri) == before


def test_too_few_videos_leave_the_lake_as_it_is(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_COMPACTION_MIN_VIDEOS", "0")
    off = Settings.from_env()
    result = dg.materialize([lake_compaction_asset(off)], resources={"pipeline": PipelineResource.from_settings(off)})
    assert "skipped" in result.asset_materializations_for_node("lake_compaction")[0].metadata
    assert not storage.exists(compaction.manifest_uri(off.lake_uri))


@pytest.mark.parametrize("mode", ["delete", "archive"])
def test_retention_ages_compacted_videos_out(settings: Settings, mode: str) -> None:
    lake_uri = settings.lake_uri
    originals = {
        table: pq.read_table(VideoLake(lake_uri, "clip-b").table_part(table).removeprefix("file://"))
        for table in DERIVED_TABLES
        if table in TABLES
    }
    compaction.compact(lake_uri)
    dry = apply_retention(lake_uri, 1, mode, dry_run=True, now=time.time() + 0.5 * DAY)
    assert not dry.artifacts
    report = apply_retention(lake_uri, 1, mode, dry_run=False, now=time.time() + 2 * DAY)
    assert {a.partition for a in report.artifacts if a.table == compaction.COMPACTED} == set(VIDEOS)
    left = figures(lake_uri)
    assert all(not left[table] for table in DERIVED_TABLES if table in TABLES)
    if mode == "archive":
        archive = VideoLake(storage.join(lake_uri, "archive"), "clip-b")
        for table, original in originals.items():
            assert pq.read_table(archive.table_part(table).removeprefix("file://")).equals(original), table


def test_erasure_removes_a_compacted_videos_rows_only(settings: Settings) -> None:
    lake_uri = settings.lake_uri
    before = figures(lake_uri)
    compaction.compact(lake_uri)
    done = erase_from_lake(lake_uri, "clip-c", [], [], None, include_source=False)
    assert done.rows == sum(before[table]["clip-c"][0] for table in TABLES)
    assert remaining_in_lake(lake_uri, "clip-c", [], []) == []
    after = figures(lake_uri)
    for table in TABLES:
        assert after[table] == {v: f for v, f in before[table].items() if v != "clip-c"}
    assert not any(Path(settings.lake_uri.removeprefix("file://")).rglob("*clip-c*"))


def test_bodyscript_export_reads_a_compacted_video(settings: Settings) -> None:
    def export() -> str:
        command = [BODYSCRIPT, "export", "clip-b", "--format", "csv"]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout

    before = export()
    compaction.compact(settings.lake_uri)
    assert not storage.exists(VideoLake(settings.lake_uri, "clip-b").table_part("landmarks"))
    assert export() == before
    assert before.count("\n") > 1000
