"""Step records (the pickles k8s pods pass to each other) live outside the lake, where only the pipeline may
write, and go when their run ends: real Dagster runs through the project's step IO manager on moto's S3, then
the cleanup sensor, as the daemon would tick it."""

from __future__ import annotations

import json
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import Settings
from resources import step_io_manager
from sensors.step_records import STEP_RECORDS_SENSOR, build_step_records_sensor
from tests.support.repo import REPO
from tests.support.s3_server import S3Server

LAKE = "s3://lake/bodyscript"
RECORDS_PREFIX = "bodyscript-dagster-io"
FAIL = "BODYSCRIPT_TEST_FAIL_USE_RECORD"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), **env})


def test_step_records_default_beside_the_lake_never_inside(tmp_path: Path) -> None:
    on_s3 = settings(tmp_path, BODYSCRIPT_LAKE_URI=LAKE, BODYSCRIPT_EXECUTOR="k8s")
    assert on_s3.step_records_uri == f"s3://lake/{RECORDS_PREFIX}" and on_s3.step_records_on_s3
    own = settings(tmp_path, BODYSCRIPT_LAKE_URI=LAKE, BODYSCRIPT_STEP_RECORDS_URI="s3://records/io/")
    assert own.step_records_uri == "s3://records/io"
    local = settings(tmp_path, BODYSCRIPT_EXECUTOR="k8s")
    assert local.step_records_uri == "" and not local.step_records_on_s3, "local runs keep them in DAGSTER_HOME"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"BODYSCRIPT_STEP_RECORDS_URI": "file:///tmp/io"}, "s3://bucket/prefix"),
        ({"BODYSCRIPT_STEP_RECORDS_URI": f"{LAKE}/dagster-io"}, "BODYSCRIPT_LAKE_URI"),
        ({"BODYSCRIPT_STEP_RECORDS_URI": "s3://lake"}, "BODYSCRIPT_LAKE_URI"),
        ({"BODYSCRIPT_STEP_RECORDS_URI": "s3://drop/incoming/io"}, "BODYSCRIPT_DROP_URI"),
        ({"BODYSCRIPT_LAKE_URI": "s3://lake", "BODYSCRIPT_EXECUTOR": "k8s"}, "whole bucket"),
    ],
)
def test_step_records_inside_the_lake_or_drop_zone_stop_start_up(
    tmp_path: Path, env: dict[str, str], names: str
) -> None:
    base = {"BODYSCRIPT_LAKE_URI": LAKE, "BODYSCRIPT_DROP_URI": "s3://drop/incoming"}
    with pytest.raises(BodyscriptError) as raised:
        settings(tmp_path, **{**base, **env})
    assert str(raised.value).startswith("BODYSCRIPT_STEP_RECORDS_URI") and names in str(raised.value)


@dg.op
def make_record() -> dict[str, int]:
    return {"start": 0, "stop": 12}


@dg.op
def use_record(record: dict[str, int]) -> None:
    if os.environ.get(FAIL):
        raise RuntimeError("failing on purpose")


def records_job_from_env() -> dg.JobDefinition:
    """Two ops whose record passes through the project's step IO manager, as between k8s pods."""

    @dg.job(resource_defs={"io_manager": step_io_manager(Settings.from_env())}, executor_def=dg.in_process_executor)
    def step_records_job() -> None:
        use_record(make_record())

    return step_records_job


@pytest.fixture
def k8s_on_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("BODYSCRIPT_HOME", str(tmp_path))
    monkeypatch.setenv("BODYSCRIPT_EXECUTOR", "k8s")
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", LAKE)
    monkeypatch.delenv("BODYSCRIPT_STEP_RECORDS_URI", raising=False)
    monkeypatch.delenv(FAIL, raising=False)
    client = s3.client()
    client.create_bucket(Bucket="lake")
    return client


def keys(client: Any, prefix: str = "") -> set[str]:
    listed = client.list_objects_v2(Bucket="lake", Prefix=prefix).get("Contents", [])
    return {item["Key"] for item in listed}


def run_records(client: Any, run_id: str) -> set[str]:
    return keys(client, f"{RECORDS_PREFIX}/storage/{run_id}/")


class Ticks:
    """The cleanup sensor ticked like the daemon does, keeping its cursor."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.sensor = build_step_records_sensor(Settings.from_env())
        self.cursor: str | None = None

    def __call__(self) -> str:
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor) as context:
            result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return str(result.skip_reason)


def test_records_of_a_finished_run_are_removed(k8s_on_s3: Any) -> None:
    client = k8s_on_s3
    client.put_object(Bucket="lake", Key=f"{RECORDS_PREFIX}/storage/another-run/pose/first", Body=b"x")
    with dg.instance_for_test() as instance:
        tick = Ticks(instance)
        result = dg.execute_job(dg.reconstructable(records_job_from_env), instance=instance)
        assert result.success
        written = run_records(client, result.run_id)
        assert written == {f"{RECORDS_PREFIX}/storage/{result.run_id}/make_record/result"}, keys(client)
        assert not keys(client, "bodyscript/"), "nothing of the step records inside the lake"
        assert "1 run" in tick()
        assert run_records(client, result.run_id) == set()
        assert keys(client) == {f"{RECORDS_PREFIX}/storage/another-run/pose/first"}, "other runs' records stay"
        assert "no finished run" in tick(), "each run is looked at once"

        canceled = instance.create_run_for_job(records_job_from_env())
        record = f"{RECORDS_PREFIX}/storage/{canceled.run_id}/make_record/result"
        client.put_object(Bucket="lake", Key=record, Body=b"x")
        instance.report_run_canceled(canceled)
        tick()
        assert run_records(client, canceled.run_id) == set()


def test_records_a_retry_needs_stay_until_the_retry_ends(k8s_on_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed run the daemon will retry from failure: its retry reads the first step's record from the failed
    run's prefix, so the records go only once the retry has ended, together."""
    client = k8s_on_s3
    retries = {"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": True}}
    with dg.instance_for_test(overrides=retries) as instance:
        tick = Ticks(instance)
        monkeypatch.setenv(FAIL, "1")
        failed = dg.execute_job(dg.reconstructable(records_job_from_env), instance=instance, raise_on_error=False)
        assert not failed.success
        assert instance.get_run_by_id(failed.run_id).tags.get("dagster/will_retry") == "true"  # type: ignore[union-attr]
        tick()
        assert run_records(client, failed.run_id), "kept for the retry"

        monkeypatch.delenv(FAIL)
        options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        retry = dg.execute_job(dg.reconstructable(records_job_from_env), instance=instance, reexecution_options=options)
        assert retry.success, "the retry found the failed run's record"
        instance.delete_run(failed.run_id)  # run retention may purge the failed run first
        tick()
        assert run_records(client, failed.run_id) == set() and run_records(client, retry.run_id) == set()


def test_the_sensor_runs_where_step_records_are_on_s3(tmp_path: Path) -> None:
    from bodyscript_pipeline.definitions import build_definitions

    on_s3 = build_definitions(settings(tmp_path, BODYSCRIPT_LAKE_URI=LAKE, BODYSCRIPT_EXECUTOR="k8s"))
    sensor = on_s3.resolve_sensor_def(STEP_RECORDS_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    local = build_definitions(settings(tmp_path))
    assert STEP_RECORDS_SENSOR not in {s.name for s in local.sensors or []}


def allows(policy: dict[str, Any], action: str, arn: str, prefix: str | None = None) -> list[str]:
    """The statements of an identity policy that allow an action on a resource (and listing prefix)."""
    sids = []
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        if statement["Effect"] != "Allow" or action not in statement["Action"]:
            continue
        if not any(fnmatchcase(arn, pattern) for pattern in resources):
            continue
        wanted = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if wanted is not None and not (prefix is not None and any(fnmatchcase(prefix, p) for p in wanted)):
            continue
        sids.append(statement["Sid"])
    return sids


def test_only_the_pipelines_step_records_statement_reaches_them() -> None:
    policy = json.loads((REPO / "deploy" / "iam-policy.json").read_text())
    records = f"arn:aws:s3:::LAKE_BUCKET/{RECORDS_PREFIX}/storage/run/pose/first"
    (writer,) = allows(policy, "s3:PutObject", records)
    assert allows(policy, "s3:GetObject", records) == allows(policy, "s3:DeleteObject", records) == [writer]
    assert "StepRecords" in writer
    lake_writer = allows(policy, "s3:PutObject", "arn:aws:s3:::LAKE_BUCKET/bodyscript/videos/video=a/part-0.parquet")
    assert lake_writer and writer not in lake_writer, "a grant on the lake prefix does not reach the records"
    for prefix in (RECORDS_PREFIX, f"{RECORDS_PREFIX}/storage/run/"):  # the IO manager's check, the cleanup
        assert allows(policy, "s3:ListBucket", "arn:aws:s3:::LAKE_BUCKET", prefix)
    compose_lake = "s3://bodyscript-lake/bodyscript"  # deploy/compose.yaml's, the policy's prefixes
    assert Settings.from_env({"BODYSCRIPT_LAKE_URI": compose_lake}).step_records_uri.endswith(f"/{RECORDS_PREFIX}")
