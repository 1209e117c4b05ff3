"""`bodyscript forget` and the `forget` job: after two real videos are processed, one is forgotten and a fresh scan
of the lake, the instance and every stored byte finds nothing of it, while the other video is untouched; the S3
lifecycle rules shipped in deploy/ are a valid configuration that agrees with the retention settings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import DynamicPartitionsRequestResult, TickData, TickStatus

from assets import videos_partitions
from bodyscript_pipeline import storage
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.lineage import read_lineage
from bodyscript_pipeline.lake.parquet import read_table
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake, fleet_summary_uri
from bodyscript_pipeline.retention.artifacts import ARCHIVE_PREFIX, DERIVED_TABLES, apply_retention
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.lineage import record_lineage
from sensors import DROP_ZONE_SENSOR
from sensors.forget import FORGET_JOB, FORGET_OP
from tests.support.repo import REPO
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import DROP_BUCKET, LAKE_BUCKET, harness_for
from tests.support.video_factory import clip_of

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))

LIFECYCLE = REPO / "deploy" / "s3-lifecycle.json"
# The forgotten key is a prefix of the kept one: nothing may match one for the other.
GONE, KEPT = "athlete-7", "athlete-7-b"
CHECKS = [dg.AssetCheckKey(dg.AssetKey("clean_landmarks"), name) for name in ("pose_detection", "pose_stability")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, demo_video: Path) -> Path:
    return clip_of(demo_video, tmp_path_factory.mktemp("clips") / "clip.mp4", 12, size=(320, 180))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BODYSCRIPT, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())


def process(source: str, key: str) -> None:
    done = cli("process", source, "--partition", key, "--json")
    assert done.returncode == 0, done.stderr


def instance_of(settings: Settings) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(settings.dagster_home))


def rebuild_fleet(settings: Settings) -> None:
    """The fleet summary as its automation builds it: a run of its own, whose metadata previews both videos."""
    defs = build_definitions(settings)
    with instance_of(settings) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("fleet_summary")])
    assert result.success
    assert set(read_table(fleet_summary_uri(settings.lake_uri))["video"].to_pylist()) == {GONE, KEPT}


@dataclass(frozen=True)
class Held:
    """What the instance holds of one partition."""

    runs: frozenset[str]
    partition: bool
    materializations: int
    observations: int
    check_executions: int


def held(instance: dg.DagsterInstance, key: str, run_ids: frozenset[str] | None = None) -> Held:
    runs = frozenset(r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": key})))
    run_ids = runs if run_ids is None else run_ids
    materializations = observations = 0
    for asset in instance.get_asset_keys():
        records = dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key])
        materializations += len(instance.fetch_materializations(records, limit=100).records)
        observations += len(instance.fetch_observations(records, limit=100).records)
    checks = sum(
        1
        for check in CHECKS
        for record in instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
        if record.run_id in run_ids
    )
    has_partition = instance.has_dynamic_partition(videos_partitions.name, key)
    return Held(runs, has_partition, materializations, observations, checks)


def lake_files(lake_uri: str) -> dict[str, bytes]:
    """Every object of the lake, by path relative to it, with its bytes."""
    fs, root = storage.filesystem(lake_uri)
    root = root.rstrip("/")
    return {path.removeprefix(root + "/"): bytes(fs.cat_file(path)) for path in fs.find(root)}


def local_files(home: Path) -> dict[str, bytes]:
    """Every file BodyScript and Dagster keep under the home (the pose model aside)."""
    models = home / "models"
    return {str(path): path.read_bytes() for path in home.rglob("*") if path.is_file() and models not in path.parents}


def naming(files: dict[str, bytes], key: str, *texts: str) -> list[str]:
    """The files whose bytes name the partition (as a whole word) or contain one of the texts."""
    word = re.compile(rb"(?<![a-z0-9-])" + re.escape(key.encode()) + rb"(?![a-z0-9-])")
    return sorted(n for n, data in files.items() if word.search(data) or any(t.encode() in data for t in texts))


def of_partition(files: dict[str, bytes], key: str) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if f"/video={key}/" in f"/{path}"}


def check_forgotten(instance: dg.DagsterInstance, lake_uri: str, before: Held, kept: Held) -> None:
    """Nothing of GONE is left in the lake or the instance; KEPT is as it was."""
    files = lake_files(lake_uri)
    assert not of_partition(files, GONE)
    assert not any(f"/storage/{run_id}/" in f"/{path}" for path in files for run_id in before.runs)
    assert read_table(fleet_summary_uri(lake_uri))["video"].to_pylist() == [KEPT]
    assert held(instance, GONE, before.runs) == Held(frozenset(), False, 0, 0, 0)
    assert held(instance, KEPT) == kept


def check_audit(lake_uri: str, *clear: str) -> list[dict]:
    """The audit records name no partition, file or URI; each digest is the salted digest of a partition."""
    files = {path: data for path, data in lake_files(lake_uri).items() if path.startswith("audit/erasure/")}
    assert files, "an audit record is written"
    records = []
    for data in files.values():
        text = data.decode()
        assert not any(word in text for word in (*clear, "video=", ".mp4", ".parquet", "://", "/")), text
        records.append(json.loads(text))
    return records


def digest_of(record: dict, key: str) -> bool:
    return hashlib.sha256(f"{record['salt']}:{key}".encode()).hexdigest() in record["partition_digests"]


@pytest.fixture
def two_local_videos(bodyscript_home: Settings, clip: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two videos of two uploaders processed with the CLI; the forgotten one's overlays archived by retention;
    a fleet summary of both."""
    uploads = tmp_path / "uploads"
    gone, kept = uploads / "uploader-7" / "a.mp4", uploads / "uploader-70" / "b.mp4"
    for source in (gone, kept):
        source.parent.mkdir(parents=True)
        shutil.copyfile(clip, source)
    process(str(gone), GONE)
    process(str(kept), KEPT)
    rebuild_fleet(bodyscript_home)
    overlays = Path(storage.local_path(VideoLake(bodyscript_home.lake_uri, GONE).folder("overlays")) or "")
    old = time.time() - 40 * 86400
    for file in overlays.iterdir():
        os.utime(file, (old, old))
    report = apply_retention(bodyscript_home.lake_uri, 30, "archive", dry_run=False)
    assert [(a.table, a.partition) for a in report.artifacts] == [("overlays", GONE)]
    yield gone, kept


def test_forget_a_partition_on_a_local_lake(bodyscript_home: Settings, two_local_videos: tuple[Path, Path]) -> None:
    gone_source, kept_source = two_local_videos
    lake = bodyscript_home.lake_uri
    with instance_of(bodyscript_home) as instance:
        before, kept = held(instance, GONE), held(instance, KEPT)
    assert len(before.runs) == 1 and before.partition and before.materializations and before.observations
    assert before.check_executions == 2
    files = lake_files(lake)
    assert f"{ARCHIVE_PREFIX}/overlays/video={GONE}/overlay.mp4" in files
    kept_files = of_partition(files, KEPT)
    for asset in ("frames", "landmarks"):  # what made it (the Dagster layer records it at each materialization)
        record_lineage(lake, GONE, asset, bodyscript_home, next(iter(before.runs)))

    done = cli("forget", GONE, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    removed = report["partitions"][GONE]["removed"]
    in_place = [table for table in (*DERIVED_TABLES, "sources") if table != "overlays"]  # overlays: archived
    assert {f"{lake}/{table}/video={GONE}" for table in in_place} <= set(removed)
    assert f"{lake}/{LINEAGE}/video={GONE}" in removed and read_lineage(lake, GONE) == {}, "its lineage too"
    assert f"{lake}/{ARCHIVE_PREFIX}/overlays/video={GONE}" in removed
    assert f"{fleet_summary_uri(lake)} (1 row(s))" in removed
    assert [f"run {run_id}" for run_id in before.runs] == [line for line in removed if line.startswith("run ")]
    assert report["removed"]["redacted_records"] >= 1, "the fleet summary's preview named it"
    assert report["remaining"] == [] and report["removed"]["runs"] == 1

    with instance_of(bodyscript_home) as instance:
        check_forgotten(instance, lake, before, kept)
    assert of_partition(lake_files(lake), KEPT) == kept_files, "the other video's files are untouched"
    # Not a byte anywhere: lake, run storage, event log (vacuumed), logs.
    assert naming(local_files(bodyscript_home.home), GONE, str(gone_source)) == []
    assert naming(local_files(bodyscript_home.home), KEPT, str(kept_source))
    assert gone_source.read_bytes() == kept_source.read_bytes(), "without --include-source the source stays"
    (record,) = check_audit(lake, GONE, "uploader", "a.mp4")
    assert record["verified"] and record["partitions"] == 1 and digest_of(record, GONE)
    assert record["removed"]["runs"] == 1 and record["removed"]["fleet_rows"] == 1

    # By source, with the source itself; then nothing of either video is left.
    done = cli("forget", "--source", str(kept_source), "--include-source")
    assert done.returncode == 0, done.stderr
    assert f"removed {kept_source.as_uri()}" in done.stdout and not kept_source.exists()
    assert "forgot 1 partition(s)" in done.stdout
    assert not [path for path in lake_files(lake) if "video=" in path]
    assert naming(local_files(bodyscript_home.home), KEPT, str(kept_source)) == []
    assert gone_source.exists()

    again = cli("forget", "--source", str(kept_source))
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("bodyscript: error: no video is registered from")
    loose = cli("forget", "--source-prefix", "s3://bucket/")
    assert loose.returncode == 1 and "below the bucket" in loose.stderr


def test_forget_a_source_prefix_on_s3(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, clip: Path
) -> None:
    client = s3.client()
    for bucket in (DROP_BUCKET, LAKE_BUCKET):
        client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("BODYSCRIPT_DROP_URI", f"s3://{DROP_BUCKET}/incoming")
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", f"s3://{LAKE_BUCKET}/bodyscript")
    settings = Settings.from_env()
    lake = settings.lake_uri
    sources = {GONE: "incoming/uploader-7/a.mp4", KEPT: "incoming/uploader-70/b.mp4"}
    for key, name in sources.items():
        client.put_object(Bucket=DROP_BUCKET, Key=name, Body=clip.read_bytes())
        process(f"s3://{DROP_BUCKET}/{name}", key)
    rebuild_fleet(settings)
    with instance_of(settings) as instance:
        before, kept = held(instance, GONE), held(instance, KEPT)
    # Step records as the k8s executor leaves them (BODYSCRIPT_STEP_RECORDS_URI, beside the lake) if a run's
    # cleanup has not come yet.
    records = settings.step_records_uri
    assert records == f"s3://{LAKE_BUCKET}/bodyscript-dagster-io"
    for run_id in before.runs | kept.runs:
        storage.write_bytes(f"{records}/storage/{run_id}/pose/result", b"pickled step output")
    kept_files = of_partition(lake_files(lake), KEPT)

    done = cli("forget", "--source-prefix", f"s3://{DROP_BUCKET}/incoming/uploader-7/", "--include-source")
    assert done.returncode == 0, done.stderr
    assert f"removed s3://{DROP_BUCKET}/{sources[GONE]}" in done.stdout
    for run_id in before.runs:
        assert f"removed {records}/storage/{run_id}" in done.stdout
    drop = {item["Key"] for item in client.list_objects_v2(Bucket=DROP_BUCKET)["Contents"]}
    assert drop == {sources[KEPT]}, "only the forgotten uploader's source is deleted"

    with instance_of(settings) as instance:
        check_forgotten(instance, lake, before, kept)
    assert of_partition(lake_files(lake), KEPT) == kept_files, "the other video's files are untouched"
    assert [storage.exists(f"{records}/storage/{run_id}") for run_id in before.runs | kept.runs] == [
        run_id in kept.runs for run_id in before.runs | kept.runs
    ]
    buckets = {**lake_files(f"s3://{LAKE_BUCKET}"), **lake_files(f"s3://{DROP_BUCKET}")}
    everything = {**buckets, **local_files(bodyscript_home.home)}
    assert naming(everything, GONE, sources[GONE], "uploader-7/") == []
    assert naming(everything, KEPT, sources[KEPT])
    (record,) = check_audit(lake, GONE, "uploader", "a.mp4")
    assert record["request"] == "prefix" and record["removed"]["sources"] == 1 and digest_of(record, GONE)


def test_forget_job_does_what_the_cli_does(bodyscript_home: Settings, two_local_videos: tuple[Path, Path]) -> None:
    gone_source, _ = two_local_videos
    lake = bodyscript_home.lake_uri
    defs = build_definitions(bodyscript_home)
    job = defs.resolve_job_def(FORGET_JOB)

    def launch(config: dict) -> dg.ExecuteInProcessResult:
        with instance_of(bodyscript_home) as instance:
            return job.execute_in_process(
                instance=instance, run_config={"ops": {FORGET_OP: {"config": config}}}, raise_on_error=False
            )

    with instance_of(bodyscript_home) as instance:
        before, kept = held(instance, GONE), held(instance, KEPT)
    files = lake_files(lake)
    for config, reason in [
        ({"partition": GONE, "prefix": str(gone_source.parent) + "/"}, "name exactly one of"),
        ({}, "name exactly one of"),
        ({"partition": "Athlete 7"}, "is not valid"),
        ({"prefix": "s3://drop"}, "must end with '/'"),
    ]:
        refused = launch(config)
        (failure,) = [e.step_failure_data for e in refused.all_events if e.is_step_failure]
        assert not refused.success and failure.user_failure_data.description.startswith("refused: ")
        assert reason in failure.user_failure_data.description
    assert lake_files(lake) == files, "a refused request removes nothing"

    result = launch({"partition": GONE})
    assert result.success
    with instance_of(bodyscript_home) as instance:
        check_forgotten(instance, lake, before, kept)
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
        run_config = instance.get_run_by_id(result.run_id).run_config
    removals = [line for line in logs if line.startswith("removed ")]
    assert (
        f"removed {lake}/landmarks/video=[erased]" in removals and "removed run " + next(iter(before.runs)) in removals
    )
    assert any(line.startswith("forgot 1 partition(s)") for line in logs)
    assert not any(GONE in line for line in logs), "the run's logs say what went, not whose it was"
    # The job's own run config is the request: the one record left that names the partition.
    assert run_config["ops"][FORGET_OP]["config"]["partition"] == GONE
    assert naming(local_files(bodyscript_home.home), GONE, str(gone_source)) == [
        str(bodyscript_home.dagster_home / "history" / "runs.db")
    ]
    (record,) = check_audit(lake, GONE, "uploader", "a.mp4")
    assert record["via"] == "forget job" and digest_of(record, GONE)


def test_a_forgotten_source_is_not_taken_again_until_a_new_version(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop-zone sensor remembers the object's version in its cursor, which forgetting leaves alone."""
    with harness_for(monkeypatch, s3) as harness:
        harness.put("uploader-7/a.mp4", b"first version")
        harness.put("uploader-70/b.mp4", b"another video")
        first = harness.tick()
        requested = {r.partition_key: r for r in first.run_requests}
        (gone,) = [key for key in requested if key.startswith("uploader-7-a-mp4-")]
        # The tick as the daemon stores it: its run requests name the source.
        tick = harness.instance.create_tick(
            TickData(
                instigator_origin_id="drop-zone-origin",
                instigator_name=DROP_ZONE_SENSOR,
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.SUCCESS,
                timestamp=time.time(),
                run_ids=[],
                run_keys=[r.run_key for r in first.run_requests],
                run_requests=first.run_requests,
                dynamic_partitions_request_results=[
                    DynamicPartitionsRequestResult(videos_partitions.name, list(requested), None, [])
                ],
                cursor=harness.cursor,
                selector_id="drop-zone-selector",
            )
        )
        uri = f"s3://{DROP_BUCKET}/incoming/uploader-7/a.mp4"
        job = harness.defs.resolve_job_def(FORGET_JOB)
        result = job.execute_in_process(
            instance=harness.instance,
            resources=harness.defs.resources,
            run_config={"ops": {FORGET_OP: {"config": {"source_uri": uri}}}},
        )
        assert result.success
        assert harness.instance.get_dynamic_partitions(videos_partitions.name) == [k for k in requested if k != gone]
        (stored,) = harness.instance.get_ticks("drop-zone-origin", "drop-zone-selector")
        assert stored.tick_id == tick.tick_id and stored.tick_data.cursor == harness.cursor, "the cursor is kept"
        assert [r.partition_key for r in stored.tick_data.run_requests] == [k for k in requested if k != gone]
        text = json.dumps(stored.tick_data._asdict(), default=str)
        assert gone not in text and "uploader-7/a.mp4" not in text and "uploader-70-b-mp4-" in text

        assert harness.tick().run_requests == [], "the same version is not taken again"
        harness.put("uploader-7/a.mp4", b"second version")
        (again,) = harness.tick().run_requests
        assert again.partition_key == gone and again.run_key != requested[gone].run_key


def test_lifecycle_rules_are_valid_and_match_the_retention_settings(s3: S3Server, tmp_path: Path) -> None:
    rules = json.loads(LIFECYCLE.read_text())
    client = s3.client()
    client.create_bucket(Bucket=LAKE_BUCKET)
    client.put_bucket_lifecycle_configuration(Bucket=LAKE_BUCKET, LifecycleConfiguration=rules)
    stored = client.get_bucket_lifecycle_configuration(Bucket=LAKE_BUCKET)["Rules"]
    assert sorted(rule["ID"] for rule in stored) == sorted(rule["ID"] for rule in rules["Rules"])

    lake = f"s3://{LAKE_BUCKET}/bodyscript"  # the README's lake: the rules' prefixes are "bodyscript/..."
    defaults = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_LAKE_URI": lake})
    by_prefix = {rule["Filter"]["Prefix"]: rule for rule in rules["Rules"]}
    assert all(rule["Status"] == "Enabled" for rule in rules["Rules"])
    for table in DERIVED_TABLES:  # warm: what retention leaves in the lake past BODYSCRIPT_RETENTION_DAYS
        (step,) = by_prefix[f"bodyscript/{table}/"]["Transitions"]
        assert (step["StorageClass"], step["Days"]) == ("STANDARD_IA", defaults.retention_days)
    archive = by_prefix[f"bodyscript/{ARCHIVE_PREFIX}/"]["Transitions"]  # cold, then archive
    assert [(step["StorageClass"], step["Days"]) for step in archive] == [("GLACIER_IR", 0), ("DEEP_ARCHIVE", 180)]
    records_prefix = defaults.step_records_uri.removeprefix(f"s3://{LAKE_BUCKET}/") + "/"
    step_records = by_prefix[records_prefix]["Expiration"]  # at the latest with their runs' records
    assert step_records["Days"] == defaults.run_retention_days
    lake = by_prefix["bodyscript/"]
    assert lake["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1, "a forgotten object leaves no old version"
    covered = [prefix for prefix in by_prefix if prefix != "bodyscript/"]
    for kept_hot in ("sources/", "audit/", "fleet_summary/", f"{LINEAGE}/"):  # lineage outlives the artifacts
        assert not any(f"bodyscript/{kept_hot}".startswith(prefix) for prefix in covered)


def test_fleet_rows_of_other_videos_are_kept_by_value(bodyscript_home: Settings) -> None:
    """A fleet-wide file keeps every other row and its schema when one video's row goes."""
    from bodyscript_pipeline.retention.erasure import remove_fleet_rows

    uri = fleet_summary_uri(bodyscript_home.lake_uri)
    frame = pl.DataFrame({"video": [GONE, KEPT, None], "frames": [1, 2, 3]})
    with storage.staged_output(uri) as local:
        frame.write_parquet(local)
    assert remove_fleet_rows(uri, GONE) == 1
    assert pl.read_parquet(storage.local_path(uri)).to_dicts() == [
        {"video": KEPT, "frames": 2},
        {"video": None, "frames": 3},
    ]
    assert remove_fleet_rows(uri, GONE) == 0


def test_sqlite_files_keep_no_deleted_rows(tmp_path: Path) -> None:
    """Where SQLite is built without secure_delete, a deleted row stays in a free page until the file is vacuumed."""
    import contextlib
    import sqlite3

    from sensors.erasure import compact_sqlite

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(videos_partitions.name, [KEPT])
        index = next(tmp_path.rglob("index.db"))
        with contextlib.closing(sqlite3.connect(index)) as conn:
            conn.execute("CREATE TABLE probe (n INTEGER, text TEXT)")
            conn.executemany("INSERT INTO probe VALUES (?, ?)", [(n, f"video={GONE} " * 100) for n in range(50)])
            conn.commit()
        with contextlib.closing(sqlite3.connect(index)) as conn:
            conn.execute("PRAGMA secure_delete = OFF")
            conn.execute("DELETE FROM probe WHERE n >= 0")
            conn.commit()
        assert f"video={GONE}".encode() in index.read_bytes(), "the deleted rows are still in the file"
        assert compact_sqlite(instance)
        assert f"video={GONE}".encode() not in index.read_bytes()
        assert instance.get_dynamic_partitions(videos_partitions.name) == [KEPT]
