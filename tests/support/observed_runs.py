"""Videos processed in tests as the pipeline processes them: the source registered and observed (as the drop-zone
sensor and ``bodyscript process`` observe it), then its assets materialized in-process on a given instance; and
the real daemon on the repo's workspace and dagster.yaml."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml

from assets import process_video_assets, source_video, videos_partitions
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from tests.support.repo import REPO


def observe(instance: dg.DagsterInstance, settings: Settings, partition: str, source: Path) -> str:
    """Register the source and report its version as ``source_video``'s data version; returns the version."""
    record = register_source(settings.lake_uri, partition, f"file://{source}")
    instance.report_runless_asset_event(
        dg.AssetObservation(
            source_video.key,
            partition=partition,
            metadata={"uri": record.uri, "version": record.version},
            tags={"dagster/data_version": record.version},
        )
    )
    return record.version


def materialize(
    settings: Settings, instance: dg.DagsterInstance, partition: str, selection: list[str] | None = None
) -> dg.ExecuteInProcessResult:
    """The selected per-video assets of one partition (default: all), which must succeed."""
    result = dg.materialize(
        [source_video, *process_video_assets(settings)],
        instance=instance,
        partition_key=partition,
        resources={"pipeline": PipelineResource.from_settings(settings)},
        selection=selection,
    )
    assert result.success
    return result


def process(settings: Settings, instance: dg.DagsterInstance, partition: str, source: Path) -> None:
    """A new video: its partition added, its source observed, every asset materialized."""
    instance.add_dynamic_partitions(videos_partitions.name, [partition])
    observe(instance, settings, partition, source)
    materialize(settings, instance, partition)


RUN_WORKER_IDLE_S = 20.0  # every test has its own instance, so its own warm run worker: let each go soon


def install_dagster_yaml(dagster_home: Path, **overrides: dict[str, object]) -> None:
    """The repo's dagster.yaml in ``dagster_home``, its run worker idling briefly, top-level sections replaced
    by ``overrides``."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_launcher"]["config"]["idle_seconds"] = RUN_WORKER_IDLE_S
    config.update(overrides)
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@contextmanager
def running_daemon(
    dagster_home: Path, env: dict[str, str], log: Path, **overrides: dict[str, object]
) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the repo's workspace.yaml, with the repo's dagster.yaml in ``dagster_home``
    (``install_dagster_yaml``) and ``env`` as its whole environment; stopped (its process group) on exit."""
    install_dagster_yaml(dagster_home, **overrides)
    # The instance's SQLite tables made first: a test opening the instance while the daemon starts would race it
    # to create them ("table ... already exists").
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass
    with dagster_process(["dagster-daemon", "run"], dagster_home, env, log) as process:
        yield process


@contextmanager
def dagster_process(
    command: list[str], dagster_home: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """One of the venv's Dagster commands on the repo's workspace.yaml, ``env`` its whole environment and
    ``dagster_home`` its instance, output appended to ``log``; stopped (its process group) on exit."""
    program, *arguments = command
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name(program)), *arguments, "-w", "workspace.yaml"],
            cwd=REPO,
            env={**env, "DAGSTER_HOME": str(dagster_home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
