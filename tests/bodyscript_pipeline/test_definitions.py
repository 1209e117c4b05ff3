"""The code location loads as Dagster loads it, with every asset on the `videos` dynamic partitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, defs
from resources.run_worker import WarmRunLauncher
from tests.support.repo import REPO

VIDEO_ASSETS = {"frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports"}


def test_defs_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"source_video", *VIDEO_ASSETS, "fleet_summary", "lake_compaction"}
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        if key.to_user_string() in ("fleet_summary", "lake_compaction"):
            assert partitions is None, "the fleet summary and the compaction span every video"
            continue
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "videos"


def test_asset_graph_shape() -> None:
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("frames") == {"source_video"}
    assert parents("landmarks") == {"frames"}
    assert parents("overlays") == {"landmarks"}
    assert parents("clean_landmarks") == {"landmarks"}
    assert parents("metrics") == {"landmarks", "clean_landmarks"}
    assert parents("exports") == {"clean_landmarks", "metrics"}


def test_quality_checks_on_the_cleaned_layer() -> None:
    """The detection check blocks what depends on the cleaned layer; the stability check only warns."""
    specs = {spec.name: spec for spec in defs.resolve_assets_def("clean_landmarks").check_specs}
    assert set(specs) == {"pose_detection", "pose_stability"}
    assert specs["pose_detection"].blocking and not specs["pose_stability"].blocking


def test_process_video_job_selects_every_video_asset() -> None:
    job = defs.resolve_job_def(PROCESS_VIDEO_JOB)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == VIDEO_ASSETS


def test_only_the_code_location_reads_the_environment(tmp_path: Path) -> None:
    """The Dagster layer builds from the settings it is given: with settings the environment cannot even make
    (an unknown executor stops ``Settings.from_env``), every module of it still imports; only
    ``bodyscript_pipeline.definitions``, whose ``defs`` reads them, refuses."""
    env = {**os.environ, "BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_EXECUTOR": "nonsense"}
    layer = "import assets, assets.pose_ranges, resources, resources.metrics_exporter, sensors"
    imported = subprocess.run([sys.executable, "-c", layer], cwd=REPO, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-3000:]
    code_location = "import bodyscript_pipeline.definitions"
    refused = subprocess.run([sys.executable, "-c", code_location], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "BODYSCRIPT_EXECUTOR" in refused.stderr, refused.stderr[-3000:]


def test_dagster_cli_loads_the_workspace(tmp_path: Path) -> None:
    """What `make dev` relies on: Dagster's own loader reads workspace.yaml and the module."""
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "BODYSCRIPT_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bodyscript" in done.stdout + done.stderr


def test_repo_dagster_yaml_queues_runs_and_launches_them_from_the_warm_worker(tmp_path: Path) -> None:
    """Locally the run queue bounds pose steps (three runs at a time, no pool limit: a pool-blocked step would
    spin in the in-process executor); the production instance limits the GPU pool instead."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert isinstance(instance.run_launcher, WarmRunLauncher)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 3
        assert concurrency.pool_config.default_pool_limit is None
    production = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert production["concurrency"]["pools"]["default_limit"] >= 1
    assert defs.resolve_assets_def("landmarks").op.pool == "pose"
    assert defs.resolve_assets_def("overlays").op.pool is None
