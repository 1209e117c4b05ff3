"""Partitions end to end through the real k8s_job_executor, each step a Job run by a simulated cluster:
a short video takes two pods (pose on the GPU pool, the rest on the CPU pool); a long one adds a GPU pod
per further frame range."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import videos_partitions
from bodyscript_pipeline.k8s_pods import GPU_RESOURCE
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.sources import register_source
from tests.simulated_cluster import SimulatedCluster, run_partition, simulated_k8s
from tests.video_factory import clip_of

VIDEO_ASSETS = ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports")


def check_jobs(cluster: SimulatedCluster, dagster_home: Path) -> None:
    for job, step in zip(cluster.jobs.values(), cluster.steps(), strict=True):
        (container,) = job.body.spec.template.spec.containers
        assert container.args[:3] == ["dagster", "api", "execute_step"]
        assert container.image == "registry.example.com/bodyscript:1.0"
        on_gpu = step in ("pose", "infer_pose_range")
        assert (GPU_RESOURCE in container.resources.limits) == on_gpu, step
        env = {e.name: e.value for e in container.env}
        assert env["DAGSTER_HOME"] == str(dagster_home)
        assert (env.get("BODYSCRIPT_POSE_DELEGATE") == "gpu") == on_gpu, step
        assert job.process.returncode == 0


@pytest.mark.parametrize(
    ("range_frames", "pods"),
    [
        ("9000", ["pose", "derived"]),  # a short video: two pods on its critical path
        ("5", ["pose", "infer_pose_range", "infer_pose_range", "derived"]),  # 12 frames: ranges of 4
    ],
)
def test_partition_runs_through_k8s_job_executor(
    bodyscript_home: Settings,
    demo_video: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    range_frames: str,
    pods: list[str],
) -> None:
    monkeypatch.setenv("BODYSCRIPT_EXECUTOR", "k8s")
    monkeypatch.setenv("BODYSCRIPT_POSE_WORKERS", "1")
    monkeypatch.setenv("BODYSCRIPT_POSE_RANGE_FRAMES", range_frames)
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 12, size=(442, 248))
    home = bodyscript_home.dagster_home
    with simulated_k8s(tmp_path, home) as (cluster, instance):
        instance.add_dynamic_partitions(videos_partitions.name, ["k8s-clip"])
        register_source(bodyscript_home.lake_uri, "k8s-clip", f"file://{clip}")
        result = run_partition(instance, "k8s-clip")
        cluster.wait()
        logs = "\n".join(job.log.read_text(errors="replace")[-2000:] for job in cluster.jobs.values())
        assert result.success, logs
        for asset in VIDEO_ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None and event.asset_materialization is not None, asset
        landmarks = instance.get_latest_materialization_event(dg.AssetKey("landmarks"))
        meta = landmarks.asset_materialization.metadata  # type: ignore[union-attr]
        assert meta["pose_delegate"].value == "cpu", "the GPU pod asked for the GPU delegate; with none it fell back"
        assert "pose_delegate_fallback" in meta
        assert meta["pose_ranges"].value == len(pods) - 1
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("clean_landmarks"), "pose_detection")]
        )
        assert checks, "the quality check ran in the derived pod"
    assert sorted(cluster.steps()) == sorted(pods), "one Job per step"
    check_jobs(cluster, home)
    lake = VideoLake(bodyscript_home.lake_uri, "k8s-clip")
    videos = pl.read_parquet(lake.table_part("videos").removeprefix("file://"))
    assert videos["frame_count"].to_list() == [12]
    merged = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://"))
    assert merged["frame_index"].unique().sort().to_list() == list(range(12)), "each frame once, from every range"
    assert merged["frame_index"].to_list() == sorted(merged["frame_index"].to_list())
    assert not Path(lake.pose_ranges.removeprefix("file://")).exists(), "the ranges' files are removed once merged"
