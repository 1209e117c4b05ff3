"""Faults: a pose worker or a whole step process killed mid-inference is retried and the output still has
every frame exactly once; a flaky S3 endpoint is ridden out."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import process_video_assets, videos_partitions
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from tests.support.flaky_proxy import flaky_proxy
from tests.support.jobs_for_tests import process_video_from_env
from tests.support.processes import children_of, server_pids
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import DROP_BUCKET, LAKE_BUCKET, harness_for
from tests.support.video_factory import clip_of


def spawned_workers() -> list[int]:
    """Pids of this process's multiprocessing spawn children: pose workers, or the multiprocess executor's
    step processes."""
    return children_of({os.getpid()}, b"spawn_main")


def service_workers(home: Path) -> list[int]:
    """Pids of the range processes of the warm pose service of ``home``."""
    return children_of(set(server_pids("bodyscript_pipeline.pose.service", str(home))))


@pytest.mark.parametrize("where", ["spawned", "service", "head start"])
def test_killed_pose_worker_is_retried_with_exact_coverage(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """``kill -9`` of one of a video's two pose range processes, freshly spawned or forked by the warm pose
    service: the step fails, its RetryPolicy runs it again, and every frame is there exactly once. Killed while
    they run ahead of the step (a head start, begun as ``frames`` starts), the step runs its own ranges instead,
    without a retry."""
    from bodyscript_pipeline.pose import ranges as pose_ranges

    monkeypatch.setattr(pose_ranges, "MIN_RANGE_FRAMES", 60)  # 230 frames -> two workers
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 230)
    idle = "0" if where == "spawned" else "30"
    settings = Settings.from_env({**os.environ, "BODYSCRIPT_POSE_WORKERS": "2", "BODYSCRIPT_POSE_SERVICE_IDLE_S": idle})
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = spawned_workers() if where == "spawned" else service_workers(settings.home)
            if len(workers) == 2:
                time.sleep(2.5)  # mid-inference, not at start-up
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["faulty"])
        register_source(settings.lake_uri, "faulty", f"file://{clip}")
        assets = process_video_assets(settings)
        resources = {"pipeline": PipelineResource.from_settings(settings)}
        if where != "head start":  # frames on its own first: the pose step then runs its own ranges, none ahead
            frames = dg.materialize(assets, instance=instance, partition_key="faulty", resources=resources,
                                    selection=["frames"])  # fmt: skip
            assert frames.success
        killer.start()
        result = dg.materialize(
            assets,
            instance=instance,
            partition_key="faulty",
            resources=resources,
            selection=None if where == "head start" else dg.AssetSelection.all() - dg.AssetSelection.assets("frames"),
        )
        killer.join(timeout=5)
        assert killed, "a pose worker was killed"
        assert result.success
        retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        (pose,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("landmarks")]
        assert pose.materialization.metadata["pose_head_start"].value is False
        assert retried == ([] if where == "head start" else ["pose"])
    landmarks = pl.read_parquet(VideoLake(settings.lake_uri, "faulty").table_part("landmarks").removeprefix("file://"))
    assert sorted(landmarks["frame_index"].unique().to_list()) == list(range(230))
    per_frame = landmarks.group_by("frame_index").len()
    assert set(per_frame["len"].to_list()) <= {1, 33}, "every frame exactly once: one empty row or 33 landmarks"


def test_killed_step_process_is_retried_with_exact_coverage(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kill -9`` of the process running the ``pose`` step (multiprocess executor, one process per step):
    the executor sees the crash, the step's RetryPolicy runs it again, and the run succeeds with every frame
    exactly once."""
    monkeypatch.setenv("BODYSCRIPT_POSE_WORKERS", "1")
    monkeypatch.setenv("BODYSCRIPT_EXECUTOR", "multiprocess")
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 150, size=(884, 497))
    register_source(bodyscript_home.lake_uri, "killed-step", f"file://{clip}")
    killed: list[int] = []

    def kill_landmarks_step(instance: dg.DagsterInstance) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            runs = instance.get_runs(limit=1)
            if runs:
                logs = instance.all_logs(runs[0].run_id)
                started = any(e.step_key == "pose" and e.user_message.startswith("progress: ") and
                              not e.user_message.startswith("progress: 0/") for e in logs)  # fmt: skip
                steps = spawned_workers()
                if started and len(steps) == 1:  # only landmarks runs now: overlays and the rest wait for it
                    os.kill(steps[0], signal.SIGKILL)
                    killed.append(steps[0])
                    return
            time.sleep(0.05)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["killed-step"])
        killer = threading.Thread(target=kill_landmarks_step, args=(instance,), daemon=True)
        killer.start()
        result = dg.execute_job(
            dg.reconstructable(process_video_from_env),
            instance=instance,
            tags={"dagster/partition": "killed-step"},
        )
        killer.join(timeout=5)
        events = result.all_events
    assert killed, "the landmarks step process was never seen"
    assert result.success
    retried = [e for e in events if e.is_step_up_for_retry]
    assert [e.step_key for e in retried] == ["pose"]
    crash = [e for e in events if e.is_engine_event and "child process for step pose" in (e.message or "")]
    assert crash, "the executor reported the crash"
    lake = VideoLake(bodyscript_home.lake_uri, "killed-step")
    landmarks = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://"))
    assert landmarks["frame_index"].unique().sort().to_list() == list(range(150))
    per_frame = landmarks.group_by("frame_index", "person").len()
    assert (per_frame["len"] == 33).all() or per_frame.filter(pl.col("len") != 33)["person"].is_null().all()
    assert landmarks.group_by("frame_index").agg(pl.col("person").is_null().sum()).filter(
        pl.col("person") > 1).height == 0  # fmt: skip


def test_s3_that_fails_its_first_requests(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, demo_video: Path, tmp_path: Path
) -> None:
    """Drop zone and lake behind an endpoint answering 503 SlowDown to its first requests: the sensor and
    the whole run still succeed, through the S3 clients' retries."""
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 10, size=(442, 248))
    s3.client().create_bucket(Bucket=DROP_BUCKET)
    s3.client().create_bucket(Bucket=LAKE_BUCKET)
    s3.client().put_object(Bucket=DROP_BUCKET, Key="incoming/flaky.mp4", Body=clip.read_bytes())
    with flaky_proxy(s3.endpoint, failures=4) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        with harness_for(monkeypatch, s3) as harness:
            (request,) = harness.tick().run_requests
            result = dg.materialize(
                process_video_assets(Settings.from_env()),
                instance=harness.instance,
                partition_key=request.partition_key,
                resources=harness.defs.resources,
            )
        assert proxy.failed == 4 and proxy.forwarded > 10
    assert result.success
    listed = s3.client().list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"bodyscript/videos/video={request.partition_key}/")
    assert [item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"]] == ["part-0.parquet"]
