"""A bounded partition set: the retention job removes the partitions of videos past retention (processed, nothing
written for BODYSCRIPT_RETENTION_DAYS) from ``videos``, at most BODYSCRIPT_RETENTION_PARTITION_BATCH per run,
while their lineage stays queryable in the lake; fresh, never processed and busy videos stay. The bulk delete
on a real SQLite instance removes exactly the keys asked, of exactly one definition."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets import videos_partitions
from assets.partitions import PARTITION_TAG
from bodyscript_pipeline import analytics
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.lineage import write_lineage
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, KEPT_TABLES
from bodyscript_pipeline.retention.partitions import last_written, past_retention
from bodyscript_pipeline.settings import Settings
from sensors import RETENTION_JOB
from sensors.partition_removal import BULK, STATEMENT_KEYS, delete_partitions
from sensors.retention import PARTITIONS_OP
from tests.support.lineage_lake import lineage_row
from tests.support.s3_server import S3Server

DAY = 86400


def local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def processed(settings: Settings, partition: str, days: float, lineage: bool = True) -> None:
    """A video registered (and, with ``lineage``, processed: derived artifacts and lineage) ``days`` ago."""
    register_source(settings.lake_uri, partition, f"file:///videos/{partition}.mp4", version="v1")
    video = VideoLake(settings.lake_uri, partition)
    if lineage:
        for table in DERIVED_TABLES:
            local(video.folder(table)).mkdir(parents=True)
            (local(video.folder(table)) / "part-0.parquet").write_bytes(b"x" * 100)
        write_lineage(settings.lake_uri, partition, lineage_row("frames", settings))
    when = time.time() - days * DAY
    for table in (*DERIVED_TABLES, *KEPT_TABLES):
        for file in local(video.folder(table)).rglob("*"):
            os.utime(file, (when, when))


def registered(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_dynamic_partitions(videos_partitions.name))


def run_retention(settings: Settings, instance: dg.DagsterInstance) -> dict:
    """The retention job as the schedule runs it; the partition step's metadata."""
    defs = build_definitions(settings)
    result = defs.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance, resources=defs.resources)
    assert result.success
    (step,) = [e for e in result.all_events if e.is_successful_output and e.step_key == PARTITIONS_OP]
    return {k: v.value for k, v in step.event_specific_data.metadata.items()}


def lineage_videos(settings: Settings) -> set[str]:
    con = analytics.connect(settings.lake_uri, [LINEAGE])
    return set(analytics.query(con, "SELECT DISTINCT video FROM lineage")["video"].to_list())


def running_run(instance: dg.DagsterInstance, partition: str) -> None:
    run = dg.DagsterRun(
        job_name="process_video",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={PARTITION_TAG: partition},
    )
    instance.add_run(run)


def test_aged_videos_leave_the_partition_set_and_their_lineage_stays(bodyscript_home: Settings) -> None:
    settings = bodyscript_home
    for partition in ("aged-a", "aged-b", "aged-c", "aged-busy"):
        processed(settings, partition, days=45)
    processed(settings, "fresh", days=2)
    processed(settings, "never-processed", days=45, lineage=False)  # registered, its run never wrote anything
    processed(settings, "not-registered", days=45)  # in the lake, not in the partition set
    keys = ["aged-a", "aged-b", "aged-c", "aged-busy", "fresh", "never-processed"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, keys)
        running_run(instance, "aged-busy")  # its run would find no partition

        report = run_retention(settings, instance)

        assert registered(instance) == {"aged-busy", "fresh", "never-processed"}
        assert report["partitions_removed"] == 3 and report["removed"] == "aged-a, aged-b, aged-c"
        assert (report["partitions_before"], report["past_retention"], report["in_flight"]) == (6, 4, 1)
        assert (report["left_for_next_runs"], report["partitions_after"]) == (0, 3)
        assert report["method"] == BULK and report["dry_run"] is False
        assert lineage_videos(settings) == {*keys[:5], "not-registered"}, "their lineage stays queryable"
        assert local(VideoLake(settings.lake_uri, "aged-a").source_record).is_file(), "and their registry entry"
        assert not local(VideoLake(settings.lake_uri, "aged-a").folder("landmarks")).exists()

        again = run_retention(settings, instance)
        assert again["partitions_removed"] == 0 and registered(instance) == {"aged-busy", "fresh", "never-processed"}


def test_a_run_removes_at_most_a_batch(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_RETENTION_PARTITION_BATCH", "2")
    settings = Settings.from_env()
    keys = [f"aged-{i}" for i in range(5)]
    for partition in keys:
        processed(settings, partition, days=45)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, [*keys, "fresh"])
        processed(settings, "fresh", days=1)
        removed = []
        for left in (3, 1, 0, 0):
            report = run_retention(settings, instance)
            assert report["batch_size"] == 2 and report["partitions_removed"] <= 2
            assert report["left_for_next_runs"] == left
            removed.append(report["partitions_removed"])
        assert removed == [2, 2, 1, 0]
        assert registered(instance) == {"fresh"}
        assert lineage_videos(settings) == {*keys, "fresh"}


def test_a_dry_run_removes_no_partition(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_RETENTION_DRY_RUN", "true")
    settings = Settings.from_env()
    processed(settings, "aged", days=45)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["aged"])
        report = run_retention(settings, instance)
        assert report["dry_run"] is True and report["partitions_removed"] == 1 and report["removed"] == "aged"
        assert report["partitions_after"] == 1 and registered(instance) == {"aged"}


def test_a_new_registration_keeps_an_aged_video(bodyscript_home: Settings) -> None:
    """A new version of an old video registers before its run is requested: it is no longer past retention."""
    processed(bodyscript_home, "aged", days=45)
    register_source(bodyscript_home.lake_uri, "aged", "file:///videos/aged.mp4", version="v2")
    written = last_written(bodyscript_home.lake_uri)
    assert past_retention(written, ["aged"], older_than_days=30) == []
    assert past_retention(written, ["aged"], older_than_days=30, now=time.time() + 31 * DAY) == ["aged"]


def test_past_retention_on_an_s3_lake(s3: S3Server, bodyscript_home: Settings) -> None:
    """S3 listings' LastModified: objects written now are past retention once the age has gone by."""
    s3.client().create_bucket(Bucket="lake")
    lake_uri = "s3://lake/bodyscript"
    write_lineage(lake_uri, "clip", lineage_row("frames", bodyscript_home))
    register_source(lake_uri, "unprocessed", "s3://drop/unprocessed.mp4", version="v1")
    written = last_written(lake_uri)
    assert set(written) == {"clip", "unprocessed"} and written["clip"].lineage
    assert past_retention(written, ["clip", "unprocessed", "other"], older_than_days=30) == []
    later = time.time() + 31 * DAY
    assert past_retention(written, ["clip", "unprocessed", "other"], older_than_days=30, now=later) == ["clip"]


def test_the_bulk_delete_removes_exactly_the_keys_of_one_definition() -> None:
    keys = [f"clip-{i:05d}" for i in range(2 * STATEMENT_KEYS + 34)]  # three DELETE statements
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, keys)
        instance.add_dynamic_partitions("other", keys[:10])
        gone = keys[: 2 * STATEMENT_KEYS + 1]
        assert delete_partitions(instance, videos_partitions.name, [*gone, "never-added"]) == BULK
        assert instance.get_dynamic_partitions(videos_partitions.name) == keys[2 * STATEMENT_KEYS + 1 :]
        assert instance.get_dynamic_partitions("other") == keys[:10]
        assert not instance.has_dynamic_partition(videos_partitions.name, keys[0])
        instance.add_dynamic_partitions(videos_partitions.name, keys[:1])  # a key removed may come back
        assert instance.has_dynamic_partition(videos_partitions.name, keys[0])
