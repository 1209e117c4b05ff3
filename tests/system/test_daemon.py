"""The real Dagster daemon on the local default: a dropped video is processed; the same bytes again are not."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.lake.paths import VideoLake, fleet_summary_uri
from bodyscript_pipeline.settings import Settings
from resources.run_worker import worker_of
from sensors import DROP_ZONE_SENSOR
from tests.support.observed_runs import install_dagster_yaml, running_daemon
from tests.support.repo import REPO
from tests.support.video_factory import clip_of
from tests.support.waits import wait_for

CLIP_FRAMES = 20


@pytest.fixture
def daemon(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """`dagster-daemon run` on the repo's workspace and dagster.yaml, with a fast sensor interval."""
    monkeypatch.setenv("BODYSCRIPT_SENSOR_INTERVAL_S", "2")
    monkeypatch.setenv("BODYSCRIPT_SETTLE_S", "1")
    home = bodyscript_home.dagster_home
    with (
        running_daemon(home, os.environ.copy(), bodyscript_home.home / "daemon.log"),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        yield instance


def sensor_ticks(instance: dg.DagsterInstance) -> list[dg.InstigationTick]:
    states = [s for s in instance.all_instigator_state() if s.name == DROP_ZONE_SENSOR]
    return instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id) if states else []


def test_daemon_processes_a_drop_once(
    daemon: dg.DagsterInstance, bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", CLIP_FRAMES, size=(884, 496))
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://"))
    (drop / "lab").mkdir(parents=True)
    shutil.copyfile(clip, drop / "lab" / "jump.mp4")

    def video_runs() -> list[dg.DagsterRun]:
        return [r for r in daemon.get_runs() if "dagster/partition" in r.tags]

    def finished(runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
        return [r for r in runs if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]

    wait_for(lambda: len(finished(video_runs())) == 1, 300, "the dropped video's run to finish")
    (run,) = video_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    key = partition_key_for("lab/jump.mp4")
    assert run.tags["dagster/partition"] == key
    lake = VideoLake(bodyscript_home.lake_uri, key)
    videos = pl.read_parquet(lake.table_part("videos").removeprefix("file://"))
    assert videos["frame_count"].to_list() == [CLIP_FRAMES]
    assert Path(lake.overlay.removeprefix("file://")).is_file()
    assert (drop / "lab" / "jump.mp4").read_bytes() == clip.read_bytes(), "the source stays where it was"
    pose = daemon.get_latest_materialization_event(dg.AssetKey("landmarks"))
    assert pose is not None and pose.asset_materialization is not None
    assert pose.asset_materialization.metadata["pose_head_start"].value is True, "pose began while frames checked"

    # The fleet summary follows: its automation sensor launches a rebuild that includes the new video.
    summary = Path(fleet_summary_uri(bodyscript_home.lake_uri).removeprefix("file://"))
    wait_for(lambda: summary.is_file() and key in pl.read_parquet(summary)["video"].to_list(), 180, "fleet summary")

    # The same bytes copied again keeping size and mtime (`cp -p`, `rsync -t`): further ticks run, no new run.
    ticks_before = len(sensor_ticks(daemon))
    dropped = (drop / "lab" / "jump.mp4").stat()
    shutil.copyfile(clip, drop / "lab" / "jump.mp4")
    os.utime(drop / "lab" / "jump.mp4", ns=(dropped.st_atime_ns, dropped.st_mtime_ns))
    wait_for(lambda: len(sensor_ticks(daemon)) >= ticks_before + 4, 120, "four more sensor ticks")
    assert len(video_runs()) == 1


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_daemon_killed_mid_burst_loses_nothing_and_duplicates_nothing(
    bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the daemon while a burst of drops is being taken (a crash anywhere between sensor
    evaluation and run launch), then a restart: every object gets exactly one run."""
    monkeypatch.setenv("BODYSCRIPT_SENSOR_INTERVAL_S", "1")
    monkeypatch.setenv("BODYSCRIPT_SETTLE_S", "0")
    monkeypatch.setenv("BODYSCRIPT_SCAN_MAX_NEW", "2")
    home = bodyscript_home.dagster_home
    install_dagster_yaml(home)
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://")) / "burst"
    drop.mkdir(parents=True)
    names = [f"clip-{i:02d}.mp4" for i in range(6)]
    for name in names:
        (drop / name).write_bytes(f"not a video: {name}".encode())  # each run fails fast, at frames
    log = bodyscript_home.home / "daemon.log"
    env = os.environ.copy()
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def dropped() -> list[dg.DagsterRun]:
            """The runs of the drop zone's objects (and their retries), not lake maintenance's."""
            return [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == DROP_ZONE_SENSOR]

        daemon = start_daemon(env, log)
        try:
            wait_for(lambda: len(dropped()) >= 2, 120, "the first runs of the burst")
        finally:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        at_crash = dropped()
        caught = {r.run_id for r in at_crash if not r.is_finished}
        assert len(at_crash) < len(names), "the crash came mid-burst"
        daemon = start_daemon(env, log)
        try:
            wait_for(
                lambda: len(dropped()) >= len(names) and all(r.is_finished for r in dropped()),
                300,
                "every dropped object's run to finish",
            )
            time.sleep(5)  # a few more ticks: nothing else may be launched
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        runs = dropped()
    # A run the crash caught before it finished is failed by run monitoring and retried once (dagster.yaml's
    # run_retries): a retry carries its parent's id; every other run is the sensor's, one per object.
    requested = [r for r in runs if "dagster/parent_run_id" not in r.tags]
    retries = [r for r in runs if "dagster/parent_run_id" in r.tags]
    keys = sorted(partition_key_for(f"burst/{name}") for name in names)
    assert sorted(r.tags["dagster/partition"] for r in requested) == keys, "one run per object, none lost or doubled"
    assert len({r.tags["dagster/run_key"] for r in requested}) == len(names)
    assert {r.tags["dagster/parent_run_id"] for r in retries} <= {r.run_id for r in requested}
    parents = [r.tags["dagster/parent_run_id"] for r in retries]
    assert set(parents) <= caught, "only a run the crash caught is retried"
    assert len(parents) == len(set(parents)), "a caught run is retried once"


def test_burst_with_a_broken_video_fails_it_alone(
    daemon: dg.DagsterInstance, bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Three videos dropped at once, one of them not a video: its run fails with its own one-line reason; the
    two others succeed, each asset materialized on its own partition, with progress per asset in the run's
    log (what the UI and `bodyscript process` show)."""
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://")) / "burst"
    drop.mkdir(parents=True)
    clip = clip_of(demo_video, tmp_path / "clip.mp4", CLIP_FRAMES, size=(442, 248))
    (tmp_path / "broken.mp4").write_bytes(b"these bytes are not a video\n")
    for name, source in (("good-1.mp4", clip), ("broken.mp4", tmp_path / "broken.mp4"), ("good-2.mp4", clip)):
        shutil.copyfile(source, drop / name)
    keys = {name: partition_key_for(f"burst/{name}") for name in ("good-1.mp4", "broken.mp4", "good-2.mp4")}

    def runs() -> dict[str, dg.DagsterRun]:
        return {r.tags["dagster/partition"]: r for r in daemon.get_runs() if "dagster/partition" in r.tags}

    wait_for(lambda: len(runs()) == 3 and all(r.is_finished for r in runs().values()), 300, "the burst's runs")
    finished = runs()
    workers = [worker_of(run) for run in finished.values()]
    assert all(workers), "every run was forked from the warm run worker (dagster.yaml's run launcher)"
    assert len({w["pid"] for w in workers if w}) == 3, "each run in a process of its own"
    assert finished[keys["broken.mp4"]].status == dg.DagsterRunStatus.FAILURE
    failures = [
        e.dagster_event.step_failure_data
        for e in daemon.all_logs(finished[keys["broken.mp4"]].run_id)
        if e.is_dagster_event and e.dagster_event.is_step_failure
    ]
    (user,) = [f.user_failure_data for f in failures if f.user_failure_data]
    assert user.description.startswith("broken.mp4: ") and "\n" not in user.description, user.description
    assert user.metadata["asset"].value == "frames"
    for name in ("good-1.mp4", "good-2.mp4"):
        run = finished[keys[name]]
        assert run.status == dg.DagsterRunStatus.SUCCESS, name
        for asset in ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports"):
            records = daemon.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[keys[name]]), limit=5
            ).records
            assert [r.run_id for r in records] == [run.run_id], (name, asset)
        progress = {
            e.user_message.rpartition("(")[2].rstrip(")")
            for e in daemon.all_logs(run.run_id)
            if e.user_message.startswith("progress: ")
        }
        assert progress == {"landmarks", "overlays"}, progress


def test_a_file_overwritten_while_its_pose_step_runs_ends_as_the_new_version_alone(
    daemon: dg.DagsterInstance, bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """A long clip is overwritten by a short one while its run's pose step runs. Runs of one partition never
    overlap; whatever the old run ends as, the partition ends holding exactly the new version's results, equal to
    processing the new file alone, and nothing of the old version."""
    old = clip_of(demo_video, tmp_path / "old.mp4", 230, size=(884, 496))
    new = clip_of(demo_video, tmp_path / "new.mp4", CLIP_FRAMES, size=(320, 240), crop_x=(0.2, 0.7))
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://"))
    drop.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(old, drop / "take.mp4")
    key = partition_key_for("take.mp4")

    def runs() -> list[dg.DagsterRun]:
        return sorted(daemon.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": key})), key=lambda r: r.run_id)

    def pose_running() -> bool:
        return any(
            e.user_message.startswith("progress: ") and "(landmarks)" in e.user_message
            for r in runs()
            for e in daemon.all_logs(r.run_id)
        )

    wait_for(pose_running, 300, "the old clip's pose step")
    shutil.copyfile(new, drop / "take.mp4")
    taken = (drop / "take.mp4").stat()
    new_version = storage.file_version(taken.st_size, taken.st_mtime)
    wait_for(lambda: len(runs()) >= 2 and all(r.is_finished for r in runs()), 300, "both versions' runs")
    first, second = sorted(runs(), key=lambda r: daemon.get_run_record_by_id(r.run_id).create_timestamp)
    assert second.tags["bodyscript/source_version"] == new_version
    assert second.status == dg.DagsterRunStatus.SUCCESS
    one, two = (daemon.get_run_record_by_id(r.run_id) for r in (first, second))
    assert one.end_time is not None and two.start_time is not None and one.end_time <= two.start_time, "overlap"
    if first.status == dg.DagsterRunStatus.FAILURE:  # it had not copied the source yet: it says why, in one line
        reasons = [
            e.dagster_event.step_failure_data.user_failure_data.description
            for e in daemon.all_logs(first.run_id)
            if e.is_dagster_event and e.dagster_event.is_step_failure
        ]
        assert any("changed since this run was launched" in r for r in reasons), reasons

    # The new file processed alone, in a lake of its own.
    alone_home = tmp_path / "alone"
    env = {**os.environ, "BODYSCRIPT_HOME": str(alone_home), "DAGSTER_HOME": str(alone_home / "dagster")}
    cli = Path(sys.executable).with_name("bodyscript")
    subprocess.run([str(cli), "process", str(new), "--partition", key], env=env, check=True, timeout=300)
    lake = VideoLake(bodyscript_home.lake_uri, key)
    alone = VideoLake(Settings.from_env(env).lake_uri, key)

    def table(where: VideoLake, name: str, uri: str | None = None) -> pl.DataFrame:
        return pl.read_parquet((uri or where.table_part(name)).removeprefix("file://"))

    assert table(lake, "frames", lake.frame_index).equals(table(alone, "frames", alone.frame_index))
    got, want = table(lake, "landmarks"), table(alone, "landmarks")
    assert got.height == want.height == CLIP_FRAMES * 33
    assert got.select("frame_index", "person", "landmark_id").equals(
        want.select("frame_index", "person", "landmark_id")
    )
    assert (got["x"] - want["x"]).abs().max() < 1e-4
    assert table(lake, "videos")["source_version"].to_list() == [new_version]
    assert table(lake, "videos")["frame_count"].to_list() == [CLIP_FRAMES]
    for name in ("landmarks_clean", "frame_metrics", "quality"):
        assert table(lake, name).height == table(alone, name).height, name

    def files(where: VideoLake) -> set[str]:
        root = Path(where.lake_uri.removeprefix("file://"))
        found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and f"video={key}" in str(p)}
        return {f for f in found if not f.startswith("sources/")}

    assert files(lake) == files(alone), "no output of the old version remains, none is missing"
    assert not Path(lake.writing.removeprefix("file://")).exists(), "the views show the partition again"
    overlay = Path(lake.overlay.removeprefix("file://"))
    import av

    with av.open(str(overlay)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (320, 240)
        assert sum(1 for _ in container.decode(stream)) == CLIP_FRAMES
