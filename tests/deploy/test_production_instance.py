"""deploy/dagster.yaml as a real instance: PostgreSQL storage, S3 compute logs (moto), and a run on it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.settings import Settings
from sensors import RETENTION_JOB
from tests.support.postgres_server import Postgres, running_postgres
from tests.support.repo import REPO
from tests.support.s3_server import S3Server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


def test_production_instance_runs_on_postgres(
    postgres: Postgres, s3: S3Server, bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BODYSCRIPT_LOG_BUCKET", "bodyscript-logs")
    s3.client().create_bucket(Bucket="bodyscript-logs")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 20

        defs = build_definitions(bodyscript_home)
        job = defs.resolve_job_def(RETENTION_JOB)
        result = job.execute_in_process(instance=instance, resources=defs.resources)
        assert result.success
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert any(e.dagster_event.is_step_success for e in instance.all_logs(result.run_id) if e.is_dagster_event)
