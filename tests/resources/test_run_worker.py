"""The warm run worker, dagster.yaml's run launcher, under the real daemon: a run whose process is killed fails and
its retry succeeds; terminating a run cancels it alone; a worker of changed code leaves and the next launch gets
a fresh one. (tests/system/test_daemon.py: runs of a burst each in their own forked process.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.settings import Settings
from resources.run_worker import MODULE, WarmRunLauncher, is_running, worker_of
from tests.support.observed_runs import install_dagster_yaml, running_daemon
from tests.support.processes import server_pids
from tests.support.video_factory import clip_of
from tests.support.waits import wait_for

LAUNCHER = {"module": "resources.run_worker", "class": "WarmRunLauncher"}
ASSETS = ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports")


@pytest.fixture
def daemon(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The real daemon on the repo's dagster.yaml, run monitoring looking every 2 s instead of every minute."""
    monkeypatch.setenv("BODYSCRIPT_SENSOR_INTERVAL_S", "2")
    monkeypatch.setenv("BODYSCRIPT_SETTLE_S", "1")
    home = bodyscript_home.dagster_home
    monitoring = {"enabled": True, "start_timeout_seconds": 180, "poll_interval_seconds": 2}
    log = bodyscript_home.home / "daemon.log"
    with (
        running_daemon(home, os.environ.copy(), log, run_monitoring=monitoring),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        yield instance


def drop(settings: Settings, clips: dict[str, Path]) -> dict[str, str]:
    """Copies clips into the drop folder; their partition keys."""
    folder = Path(settings.drop_uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    for name, clip in clips.items():
        shutil.copyfile(clip, folder / name)
    return {name: partition_key_for(name) for name in clips}


def runs_of(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition})))


def running_in_worker(instance: dg.DagsterInstance, partition: str) -> dg.DagsterRun:
    """The partition's run, once it is in its pose step in a process forked from the worker."""

    def in_pose() -> bool:
        runs = runs_of(instance, partition)
        return (
            len(runs) == 1
            and runs[0].status == dg.DagsterRunStatus.STARTED
            and worker_of(runs[0]) is not None
            and any(e.user_message.startswith("progress: ") for e in instance.all_logs(runs[0].run_id))
        )

    wait_for(in_pose, 300, f"the run of {partition} to reach its pose step")
    (run,) = runs_of(instance, partition)
    return run


def materialized_by(instance: dg.DagsterInstance, partition: str, asset: str) -> list[str]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=5
    ).records
    return [r.run_id for r in records]


def test_a_killed_run_process_fails_its_run_and_the_retry_succeeds(
    daemon: dg.DagsterInstance, bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 200, size=(884, 496))
    key = drop(bodyscript_home, {"crash.mp4": clip})["crash.mp4"]
    run = running_in_worker(daemon, key)
    worker = worker_of(run)
    assert worker is not None and is_running(worker)
    os.kill(worker["pid"], signal.SIGKILL)

    def retried() -> bool:
        return any(r.tags.get("dagster/parent_run_id") == run.run_id and r.is_finished for r in runs_of(daemon, key))

    wait_for(retried, 300, "the killed run's retry to finish")
    failed, retry = sorted(runs_of(daemon, key), key=lambda r: "dagster/parent_run_id" in r.tags)
    assert failed.run_id == run.run_id and failed.status == dg.DagsterRunStatus.FAILURE
    reasons = [e.message for e in daemon.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_run_failure]
    assert any(f"pid {worker['pid']}" in reason and "gone" in reason for reason in reasons), reasons
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    retry_worker = worker_of(retry)
    assert retry_worker is not None and retry_worker["pid"] != worker["pid"], "the retry ran in a process of its own"
    for asset in ("overlays", "clean_landmarks", "metrics", "exports"):
        assert materialized_by(daemon, key, asset) == [retry.run_id], asset


def test_terminating_a_run_cancels_it_alone(
    daemon: dg.DagsterInstance, bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """The UI's Terminate (the launcher's terminate, from another process) ends that run's processes only:
    it ends canceled, and a run of another video beside it succeeds."""
    long_clip = clip_of(demo_video, tmp_path / "long.mp4", 200, size=(884, 496))
    short_clip = clip_of(demo_video, tmp_path / "short.mp4", 20, size=(442, 248))
    keys = drop(bodyscript_home, {"stop.mp4": long_clip, "keep.mp4": short_clip})
    run = running_in_worker(daemon, keys["stop.mp4"])
    assert isinstance(daemon.run_launcher, WarmRunLauncher)
    assert daemon.run_launcher.terminate(run.run_id)

    def both_finished() -> bool:
        runs = [*runs_of(daemon, keys["stop.mp4"]), *runs_of(daemon, keys["keep.mp4"])]
        return len(runs) == 2 and all(r.is_finished for r in runs)

    wait_for(both_finished, 300, "both runs to finish")
    ((stopped,), (kept,)) = runs_of(daemon, keys["stop.mp4"]), runs_of(daemon, keys["keep.mp4"])
    assert stopped.status == dg.DagsterRunStatus.CANCELED
    assert kept.status == dg.DagsterRunStatus.SUCCESS
    assert all(materialized_by(daemon, keys["keep.mp4"], asset) == [kept.run_id] for asset in ASSETS)
    assert not materialized_by(daemon, keys["stop.mp4"], "landmarks"), "the canceled run wrote no landmarks"


def test_a_worker_of_changed_code_leaves_and_the_next_launch_gets_a_fresh_one(tmp_path: Path) -> None:
    location = tmp_path / "location"
    location.mkdir()
    source = location / "tiny_location.py"
    source.write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    home = tmp_path / "dagster"
    install_dagster_yaml(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, WarmRunLauncher)
        # The run ids name no run: each forked process says who it is, then fails alone.
        first = launcher.start_in_worker("no-such-run", "tiny_location", str(location))
        (worker,) = server_pids(MODULE, str(location))
        assert first["pid"] != worker
        again = launcher.start_in_worker("no-such-run", "tiny_location", str(location))
        assert server_pids(MODULE, str(location)) == [worker], "the same worker took the next run"
        assert again["pid"] not in (first["pid"], worker)

        source.write_text("import dagster as dg\n\ndefs = dg.Definitions(assets=[])\n")
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        fresh = launcher.start_in_worker("no-such-run", "tiny_location", str(location))
        wait_for(lambda: len(server_pids(MODULE, str(location))) == 1, 30, "the stale worker to leave")
        (new_worker,) = server_pids(MODULE, str(location))
        assert new_worker != worker, "a worker of the changed code"
        assert fresh["pid"] != new_worker


def test_the_worker_leaves_with_the_process_that_started_it(tmp_path: Path) -> None:
    """Warm for as long as its daemon runs (an hour's idle allowance here), gone soon after the daemon is."""
    home = tmp_path / "dagster"
    install_dagster_yaml(home, run_launcher={**LAUNCHER, "config": {"idle_seconds": 3600.0}})
    location = tmp_path / "location"
    location.mkdir()
    (location / "tiny_location.py").write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    launch = (
        "import sys, dagster as dg\n"
        f"with dg.DagsterInstance.from_config({str(home)!r}) as instance:\n"
        f"    print(instance.run_launcher.start_in_worker('no-such-run', 'tiny_location', {str(location)!r}))\n"
    )
    daemon = subprocess.run([sys.executable, "-c", launch], capture_output=True, text=True, timeout=120, check=True)
    assert "'pid'" in daemon.stdout, "the short-lived launcher handed a run to the worker it started"
    wait_for(lambda: not server_pids(MODULE, str(location)), 30, "the worker to leave with its parent")
