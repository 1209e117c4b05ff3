"""Partitions end to end through the real k8s_job_executor, each step a Job run by a simulated cluster:
a short video takes two pods (pose on the GPU pool, the rest on the CPU pool); a long one adds a GPU pod
per further frame range."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from kubernetes.client import V1Job

from assets import videos_partitions
from assets.pods import GPU_RESOURCE, STEP_SERVICE_ACCOUNT, k8s_config
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from tests.support.simulated_cluster import SimulatedCluster, run_partition, simulated_k8s
from tests.support.video_factory import clip_of

VIDEO_ASSETS = ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports")


def check_jobs(cluster: SimulatedCluster, dagster_home: Path) -> None:
    for job, step in zip(cluster.step_jobs(), cluster.steps(), strict=True):
        pod = job.body.spec.template.spec
        assert pod.service_account_name == STEP_SERVICE_ACCOUNT and pod.automount_service_account_token is False
        (container,) = pod.containers
        assert container.args[:3] == ["dagster", "api", "execute_step"]
        assert container.image == "registry.example.com/bodyscript:1.0"
        on_gpu = step in ("pose", "infer_pose_range")
        assert (GPU_RESOURCE in container.resources.limits) == on_gpu, step
        env = {e.name: e.value for e in container.env}
        assert env["DAGSTER_HOME"] == str(dagster_home)
        assert (env.get("BODYSCRIPT_POSE_DELEGATE") == "gpu") == on_gpu, step
        assert job.process is not None and job.process.returncode == 0, "ran with no token, as restricted"


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
        assert result.success, cluster.logs()
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


def test_a_reprocessing_of_derived_assets_runs_no_pose_inference(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph runs a subset: a run of clean_landmarks, metrics and exports (a changed cut-off) makes exactly
    those again; its pose pod ends at once, no range runs, and frames, landmarks and overlays keep one
    materialization each."""
    monkeypatch.setenv("BODYSCRIPT_EXECUTOR", "k8s")
    monkeypatch.setenv("BODYSCRIPT_POSE_WORKERS", "1")
    monkeypatch.setenv("BODYSCRIPT_POSE_RANGE_FRAMES", "5")  # 12 frames: the first run has three ranges
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 12, size=(442, 248))
    reprocessed = [dg.AssetKey(name) for name in ("clean_landmarks", "metrics", "exports")]
    with simulated_k8s(tmp_path, bodyscript_home.dagster_home) as (cluster, instance):
        instance.add_dynamic_partitions(videos_partitions.name, ["k8s-clip"])
        register_source(bodyscript_home.lake_uri, "k8s-clip", f"file://{clip}")
        assert run_partition(instance, "k8s-clip").success, cluster.logs()
        first = cluster.steps()
        again = run_partition(instance, "k8s-clip", asset_selection=reprocessed)
        cluster.wait()
        assert again.success, cluster.logs()
        counts = {
            name: len(instance.fetch_materializations(dg.AssetKey(name), limit=10).records) for name in VIDEO_ASSETS
        }
    assert counts == {"frames": 1, "landmarks": 1, "overlays": 1, "clean_landmarks": 2, "metrics": 2, "exports": 2}
    assert sorted(first) == ["derived", "infer_pose_range", "infer_pose_range", "pose"]
    assert sorted(cluster.steps()[len(first) :]) == ["derived", "pose"], "no range inferred again"


def step_pod(tmp_path: Path) -> dict:
    return k8s_config("derived", Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)}))


def pod_job(tmp_path: Path, name: str, code: str, pod: dict) -> V1Job:
    """A Job running ``code`` in Python, built by dagster-k8s with a step's container and ``pod`` as pod settings."""
    config = UserDefinedDagsterK8sConfig(container_config=step_pod(tmp_path)["container_config"], pod_spec_config=pod)
    return construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example.com/bodyscript:1.0", instance_config_map="dagster-instance"),
        args=[sys.executable, "-c", code],
        job_name=name,
        user_defined_k8s_config=config,
    )


def test_simulated_pods_hold_credentials_only_with_a_token_and_must_be_restricted(tmp_path: Path) -> None:
    """The cluster the executor tests run on is as strict as the real one: a pod without a service account token
    cannot load the cluster's credentials, one with it can, and a pod the namespace's Pod Security level forbids
    never runs."""
    restricted = step_pod(tmp_path)["pod_spec_config"]
    load = "import kubernetes; kubernetes.config.load_kube_config()"
    with simulated_k8s(tmp_path, tmp_path / "dagster") as (cluster, _):
        cluster.create_namespaced_job("bodyscript", pod_job(tmp_path, "no-token", load, restricted))
        cluster.create_namespaced_job(
            "bodyscript", pod_job(tmp_path, "token", load, {**restricted, "automount_service_account_token": True})
        )
        privileged = {**restricted, "host_pid": True}
        cluster.create_namespaced_job("bodyscript", pod_job(tmp_path, "host-pid", "print('ran')", privileged))
        cluster.wait()
    codes = {name: job.process.returncode for name, job in cluster.jobs.items() if job.process}
    assert codes["no-token"] != 0 and "kube-config" in cluster.jobs["no-token"].log.read_text()
    assert codes["token"] == 0
    assert codes["host-pid"] != 0 and "hostPID" in cluster.jobs["host-pid"].log.read_text()
