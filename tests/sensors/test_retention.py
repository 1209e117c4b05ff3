"""Retention: aged derived artifacts go, sources stay, deleted sources' partitions are removed, dry runs delete
nothing, old run records are purged."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets import videos_partitions
from bodyscript_pipeline import storage
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.lineage import read_lineage, write_lineage
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, apply_retention
from bodyscript_pipeline.settings import Settings
from sensors import RETENTION_JOB, SOURCE_CLEANUP_SENSOR
from tests.support.lineage_lake import lineage_row
from tests.support.s3_server import S3Server

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


Config = dict[str, object]


def launch_retention(
    settings: Settings, instance: dg.DagsterInstance, artifacts: Config | None = None, runs: Config | None = None
) -> dg.ExecuteInProcessResult:
    """The retention job as a launch from the UI runs it (run config for each step, unset ones empty), or with
    no run config at all as the schedule runs it; under ``settings``."""
    defs = build_definitions(settings)
    ops = {"remove_aged_artifacts": {"config": artifacts or {}}, "purge_old_runs": {"config": runs or {}}}
    return defs.resolve_job_def(RETENTION_JOB).execute_in_process(
        instance=instance,
        run_config=None if artifacts is None and runs is None else {"ops": ops},
        resources=defs.resources,
        raise_on_error=False,
    )


def run_retention(
    settings: Settings, instance: dg.DagsterInstance, artifacts: Config | None = None, runs: Config | None = None
) -> dict:
    result = launch_retention(settings, instance, artifacts, runs)
    assert result.success, failure_message(result)
    (step,) = [e for e in result.all_events if e.is_successful_output and e.step_key == "remove_aged_artifacts"]
    return {k: v.value for k, v in step.event_specific_data.metadata.items()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What the UI shows of the run's failed steps: each one's Failure description."""
    failures = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    return " | ".join(f.user_failure_data.description for f in failures if f.user_failure_data)


def folders(settings: Settings, partition: str) -> list[Path]:
    video = VideoLake(settings.lake_uri, partition)
    return [local(video.folder(table)) for table in DERIVED_TABLES]


def test_dry_run_deletes_nothing(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = run_retention(lake, instance, {"older_than_days": 30, "dry_run": True})
    assert report["dry_run"] is True
    assert report["partitions"] == 1 and report["artifact_folders"] == len(DERIVED_TABLES)
    assert all(f.is_dir() for f in folders(lake, "old-clip") + folders(lake, "new-clip"))


def test_aged_artifacts_deleted_sources_kept(lake: Settings) -> None:
    write_lineage(lake.lake_uri, "old-clip", lineage_row("clean_landmarks", lake))
    age(local(VideoLake(lake.lake_uri, "old-clip").folder(LINEAGE)), 45)
    with dg.instance_for_test() as instance:
        report = run_retention(lake, instance, {"older_than_days": 30, "dry_run": False})
    assert report["partitions"] == 1 and report["bytes"] == 100 * len(DERIVED_TABLES)
    assert list(read_lineage(lake.lake_uri, "old-clip")) == ["clean_landmarks"], "lineage outlives the artifacts"
    assert not any(f.exists() for f in folders(lake, "old-clip"))
    assert all(f.is_dir() for f in folders(lake, "new-clip"))
    drop = local(lake.drop_uri)
    assert (drop / "old-clip.mp4").read_bytes() == b"source bytes of old-clip", "the source video is never deleted"
    assert local(VideoLake(lake.lake_uri, "old-clip").source_record).is_file(), "the source registry stays"


def test_archive_mode_moves_to_the_archive_prefix(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = run_retention(dataclasses.replace(lake, retention_mode="archive"), instance)
    assert report["mode"] == "archive"
    assert not any(f.exists() for f in folders(lake, "old-clip"))
    archive = local(lake.lake_uri) / "archive"
    for table in DERIVED_TABLES:
        assert (archive / table / "video=old-clip" / "part-0.parquet").read_bytes() == b"x" * 100


def test_old_run_records_are_purged(lake: Settings) -> None:
    lake = dataclasses.replace(lake, run_retention_days=1 / DAY)
    with dg.instance_for_test() as instance:
        run_retention(lake, instance, runs={"older_than_days": 1000, "dry_run": True})
        run_retention(lake, instance, runs={"older_than_days": 1000, "dry_run": True})
        assert len(instance.get_runs()) == 2
        time.sleep(1.1)
        run_retention(lake, instance, runs={"older_than_days": 1 / DAY, "dry_run": True})
        assert len(instance.get_runs()) == 3, "a dry run purges nothing"
        time.sleep(1.1)
        run_retention(lake, instance, runs={"older_than_days": 1 / DAY, "dry_run": False})
        remaining = instance.get_runs()
        assert len(remaining) == 1, "only the purging run itself is left"


# --- run config: only harmless knobs (the UI has no authentication) -----------------------------------------


def test_run_config_cannot_delete_younger_artifacts(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        result = launch_retention(lake, instance, {"older_than_days": -1, "dry_run": False})
    message = failure_message(result)
    assert not result.success
    assert "older_than_days" in message and "30" in message, message
    assert all(f.is_dir() for f in folders(lake, "old-clip") + folders(lake, "new-clip"))


def test_run_config_can_keep_more(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = run_retention(lake, instance, {"older_than_days": 60, "dry_run": False})
    assert report["artifact_folders"] == 0
    assert all(f.is_dir() for f in folders(lake, "old-clip"))


def test_run_config_cannot_turn_a_dry_run_deployment_live(lake: Settings) -> None:
    dry = dataclasses.replace(lake, retention_dry_run=True)
    with dg.instance_for_test() as instance:
        result = launch_retention(dry, instance, {"dry_run": False})
        message = failure_message(result)
        assert not result.success
        assert "dry_run" in message and "BODYSCRIPT_RETENTION_DRY_RUN" in message, message
        assert all(f.is_dir() for f in folders(lake, "old-clip") + folders(lake, "new-clip"))
        assert run_retention(dry, instance)["dry_run"] is True, "the deployment's dry run is the default"
        assert all(f.is_dir() for f in folders(lake, "old-clip"))
        assert run_retention(lake, instance, {"dry_run": True})["dry_run"] is True, "a run may turn a dry run on"
    assert all(f.is_dir() for f in folders(lake, "old-clip"))


def test_run_config_cannot_purge_younger_runs(lake: Settings) -> None:
    with dg.instance_for_test() as instance:
        run_retention(lake, instance, {"dry_run": True})
        time.sleep(1.1)
        result = launch_retention(lake, instance, {"dry_run": True}, {"older_than_days": 1 / DAY})
        message = failure_message(result)
        assert not result.success
        assert "older_than_days" in message and "90" in message, message
        assert len(instance.get_runs()) == 2


def test_mode_is_not_run_config(lake: Settings) -> None:
    job = build_definitions(lake).resolve_job_def(RETENTION_JOB)
    fields = job.graph.node_named("remove_aged_artifacts").definition.config_schema.config_type.fields
    assert set(fields) == {"older_than_days", "dry_run"}
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidConfigError, match="mode"):
        launch_retention(lake, instance, {"mode": "delete", "dry_run": False})
    assert all(f.is_dir() for f in folders(lake, "old-clip"))


# --- archive mode: idempotent, locally and on S3 -----------------------------------------------------------


ARTIFACT_FILES = ("part-0.parquet", "overlay-segments/segment-0.mp4")


def write_artifacts(lake_uri: str, partition: str, content: bytes) -> None:
    """Every derived table's files of a partition, nested folder included, as a re-process writes them."""
    video = VideoLake(lake_uri, partition)
    for table in DERIVED_TABLES:
        for name in ARTIFACT_FILES:
            storage.write_bytes(storage.join(video.folder(table), name), content)


def lake_files(lake_uri: str) -> dict[str, bytes]:
    fs, root = storage.filesystem(lake_uri)
    root = root.rstrip("/")
    return {path.removeprefix(root + "/"): fs.cat_file(path) for path in fs.find(root)}


def archive_three_times(lake_uri: str) -> None:
    later = time.time() + 45 * DAY
    for run in range(3):
        write_artifacts(lake_uri, "old-clip", f"run {run}".encode())
        report = apply_retention(lake_uri, 30, "archive", dry_run=False, now=later)
        assert report.partitions == 1 and len(report.artifacts) == len(DERIVED_TABLES)
    expected = {
        f"archive/{table}/video=old-clip/{name}": b"run 2" for table in DERIVED_TABLES for name in ARTIFACT_FILES
    }
    files = {path: data for path, data in lake_files(lake_uri).items() if not path.startswith("sources/")}
    assert files == expected, "one copy of each file, the newest, not nested and nothing left in the tables"


def test_archive_is_idempotent_locally(bodyscript_home: Settings) -> None:
    archive_three_times(bodyscript_home.lake_uri)


def test_archive_is_idempotent_on_s3(s3: S3Server) -> None:
    s3.client().create_bucket(Bucket="lake")
    archive_three_times("s3://lake/bodyscript")


def test_interrupted_archive_completes(bodyscript_home: Settings) -> None:
    lake_uri = bodyscript_home.lake_uri
    write_artifacts(lake_uri, "old-clip", b"copied, not yet deleted")
    for table in DERIVED_TABLES:  # the copy of an interrupted archive is done, the delete is not
        source = local(VideoLake(lake_uri, "old-clip").folder(table))
        target = local(lake_uri) / "archive" / table / "video=old-clip"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
    apply_retention(lake_uri, 30, "archive", dry_run=False, now=time.time() + 45 * DAY)
    assert lake_files(lake_uri) == {
        f"archive/{table}/video=old-clip/{name}": b"copied, not yet deleted"
        for table in DERIVED_TABLES
        for name in ARTIFACT_FILES
    }


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def loud(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


def evaluate_cleanup(
    settings: Settings, instance: dg.DagsterInstance, cursor: str | None = None, log: Records | None = None
) -> dg.SensorResult:
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(SOURCE_CLEANUP_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor) as context:
        if log is not None:
            context.log.addHandler(log)
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


# --- source cleanup refuses to act on a missing drop zone or a mass disappearance -------------------------


def drop_sources(settings: Settings, instance: dg.DagsterInstance, count: int) -> list[str]:
    """``count`` partitions made from drop-zone sources (local or S3), registered as the drop-zone sensor does."""
    keys = [f"clip-{i:02d}" for i in range(count)]
    for key in keys:
        uri = storage.join(settings.drop_uri, f"{key}.mp4")
        storage.write_bytes(uri, b"source bytes")
        register_source(settings.lake_uri, key, uri)
    instance.add_dynamic_partitions(videos_partitions.name, keys)
    return keys


def assert_refused(result: dg.SensorResult, log: Records, cursor: str | None, reason: str) -> None:
    assert result.dynamic_partitions_requests == []
    assert result.cursor == cursor, "the cursor stays, so the same partitions are checked again"
    assert result.skip_reason is not None and reason in (result.skip_reason.skip_message or "")
    assert any(reason in line for line in log.loud()), log.loud()


def test_cleanup_refuses_when_the_local_drop_root_is_missing(lake: Settings) -> None:
    drop = local(lake.drop_uri)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["old-clip", "new-clip"])
        drop.rename(drop.with_name("drop-unmounted"))
        log = Records()
        result = evaluate_cleanup(lake, instance, cursor="0", log=log)
        assert_refused(result, log, "0", "drop zone root")
        assert sorted(instance.get_dynamic_partitions(videos_partitions.name)) == ["new-clip", "old-clip"]


def test_cleanup_refuses_when_the_drop_bucket_is_missing(bodyscript_home: Settings, s3: S3Server) -> None:
    settings = dataclasses.replace(bodyscript_home, drop_uri="s3://drop/videos")
    client = s3.client()
    client.create_bucket(Bucket="drop")
    with dg.instance_for_test() as instance:
        keys = drop_sources(settings, instance, 3)
        client.delete_object(Bucket="drop", Key="videos/clip-00.mp4")
        (request,) = evaluate_cleanup(settings, instance).dynamic_partitions_requests
        assert list(request.partition_keys) == ["clip-00"], "an S3 drop zone is judged object by object"
        for key in keys[1:]:
            client.delete_object(Bucket="drop", Key=f"videos/{key}.mp4")
        client.delete_bucket(Bucket="drop")
        log = Records()
        result = evaluate_cleanup(settings, instance, cursor="0", log=log)
        assert_refused(result, log, "0", "drop zone root")


@pytest.mark.parametrize(("deleted", "refused"), [(5, False), (6, True)])
def test_cleanup_refuses_a_mass_disappearance(bodyscript_home: Settings, deleted: int, refused: bool) -> None:
    """More than CLEANUP_MAX_VANISHED_SHARE of a tick's partitions, and more than a few, vanishing at once
    looks like a broken drop zone, not like users deleting videos."""
    local(bodyscript_home.drop_uri).mkdir(parents=True)
    with dg.instance_for_test() as instance:
        keys = drop_sources(bodyscript_home, instance, 20)
        for key in keys[:deleted]:
            (local(bodyscript_home.drop_uri) / f"{key}.mp4").unlink()
        log = Records()
        result = evaluate_cleanup(bodyscript_home, instance, cursor="0", log=log)
        if refused:
            assert_refused(result, log, "0", f"{deleted} of 20")
        else:
            (request,) = result.dynamic_partitions_requests
            assert list(request.partition_keys) == keys[:deleted]
            assert result.cursor == "20"
