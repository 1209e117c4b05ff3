"""Retention: aged derived artifacts go, sources stay, deleted sources' partitions are removed, dry runs delete
nothing, old run records are purged."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets import videos_partitions
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.retention import DERIVED_TABLES
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.sources import register_source
from sensors import RETENTION_JOB, SOURCE_CLEANUP_SENSOR

DAY = 86400


def local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    for file in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(file, (when, when))


@pytest.fixture
def lake(bodyscript_home: Settings) -> Iterator[Settings]:
    """Two processed partitions in a local lake (old and fresh), with their sources in the drop zone."""
    drop = local(bodyscript_home.drop_uri)
    drop.mkdir(parents=True)
    for partition, days in (("old-clip", 45), ("new-clip", 2)):
        source = drop / f"{partition}.mp4"
        source.write_bytes(b"source bytes of " + partition.encode())
        register_source(bodyscript_home.lake_uri, partition, "file://" + str(source))
        video = VideoLake(bodyscript_home.lake_uri, partition)
        for table in DERIVED_TABLES:
            folder = local(video.folder(table))
            folder.mkdir(parents=True)
            (folder / "part-0.parquet").write_bytes(b"x" * 100)
            age(folder, days)
        age(source, days)
    yield bodyscript_home


def run_retention(settings: Settings, instance: dg.DagsterInstance, **config: object) -> dict:
    job = build_definitions(settings).resolve_job_def(RETENTION_JOB)
    result = job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "remove_aged_artifacts": {"config": config},
                "purge_old_runs": {"config": {k: v for k, v in config.items() if k != "mode"}},
            }
        },
        resources=build_definitions(settings).resources,
    )
    assert result.success
    (step,) = [e for e in result.all_events if e.is_successful_output and e.step_key == "remove_aged_artifacts"]
    return {k: v.value for k, v in step.event_specific_data.metadata.items()}


def folders(settings: Settings, partition: str) -> list[Path]:
    video = VideoLake(settings.lake_uri, partition)
    return [local(video.folder(table)) for table in DERIVED_TABLES]


def test_dry_run_deletes_nothing(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = run_retention(lake, instance, older_than_days=30, dry_run=True)
    assert report["dry_run"] is True
    assert report["partitions"] == 1 and report["artifact_folders"] == len(DERIVED_TABLES)
    assert all(f.is_dir() for f in folders(lake, "old-clip") + folders(lake, "new-clip"))


def test_aged_artifacts_deleted_sources_kept(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = run_retention(lake, instance, older_than_days=30, dry_run=False, mode="delete")
    assert report["partitions"] == 1 and report["bytes"] == 100 * len(DERIVED_TABLES)
    assert not any(f.exists() for f in folders(lake, "old-clip"))
    assert all(f.is_dir() for f in folders(lake, "new-clip"))
    drop = local(lake.drop_uri)
    assert (drop / "old-clip.mp4").read_bytes() == b"source bytes of old-clip", "the source video is never deleted"
    assert local(VideoLake(lake.lake_uri, "old-clip").source_record).is_file(), "the source registry stays"


def test_archive_mode_moves_to_the_archive_prefix(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        run_retention(lake, instance, older_than_days=30, dry_run=False, mode="archive")
    assert not any(f.exists() for f in folders(lake, "old-clip"))
    archive = local(lake.lake_uri) / "archive"
    for table in DERIVED_TABLES:
        assert (archive / table / "video=old-clip" / "part-0.parquet").read_bytes() == b"x" * 100


def test_old_run_records_are_purged(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        run_retention(lake, instance, older_than_days=1000, dry_run=True)
        run_retention(lake, instance, older_than_days=1000, dry_run=True)
        assert len(instance.get_runs()) == 2
        time.sleep(1.1)
        run_retention(lake, instance, older_than_days=1 / DAY, dry_run=True)
        assert len(instance.get_runs()) == 3, "a dry run purges nothing"
        time.sleep(1.1)
        run_retention(lake, instance, older_than_days=1 / DAY, dry_run=False)
        remaining = instance.get_runs()
        assert len(remaining) == 1, "only the purging run itself is left"


def evaluate_cleanup(settings: Settings, instance: dg.DagsterInstance) -> dg.SensorResult:
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(SOURCE_CLEANUP_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_deleted_sources_partitions_are_removed(lake: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "my-own.mp4"
    outside.write_bytes(b"a file the CLI processed")
    register_source(lake.lake_uri, "cli-clip", "file://" + str(outside))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["old-clip", "new-clip", "cli-clip"])
        (local(lake.drop_uri) / "old-clip.mp4").unlink()
        outside.unlink()
        result = evaluate_cleanup(lake, instance)
        (request,) = result.dynamic_partitions_requests
        assert isinstance(request, dg.DeleteDynamicPartitionsRequest)
        assert list(request.partition_keys) == ["old-clip"], "only drop-zone sources are the sensor's to judge"
        instance.delete_dynamic_partition(videos_partitions.name, "old-clip")
        assert sorted(instance.get_dynamic_partitions(videos_partitions.name)) == ["cli-clip", "new-clip"]


def test_cleanup_dry_run_removes_nothing(lake: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_RETENTION_DRY_RUN", "true")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["old-clip", "new-clip"])
        (local(lake.drop_uri) / "old-clip.mp4").unlink()
        result = evaluate_cleanup(Settings.from_env(), instance)
        assert result.dynamic_partitions_requests == []
        assert result.skip_reason is not None
        assert "would remove 1: old-clip" in (result.skip_reason.skip_message or "")
