"""One partition end to end through the real k8s_job_executor, each step a Job run by a simulated cluster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_k8s import client as k8s_client

from assets import PROCESS_VIDEO_JOB, videos_partitions
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.k8s_pods import GPU_RESOURCE
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.sources import register_source
from tests.simulated_cluster import KUBECONFIG, SimulatedCluster
from tests.video_factory import clip_of


def process_video_on_k8s() -> dg.JobDefinition:
    """Reconstructable in each step's process: the definitions with BODYSCRIPT_EXECUTOR=k8s."""
    return build_definitions(Settings.from_env()).resolve_job_def(PROCESS_VIDEO_JOB)


def test_partition_runs_through_k8s_job_executor(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BODYSCRIPT_EXECUTOR", "k8s")
    monkeypatch.setenv("BODYSCRIPT_POSE_WORKERS", "1")
    monkeypatch.setenv("BODYSCRIPT_POSE_RANGE_FRAMES", "6")  # 12 frames -> two pose ranges, two GPU pods
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    cluster = SimulatedCluster(tmp_path)
    monkeypatch.setattr(
        k8s_client.DagsterKubernetesClient,
        "production_client",
        staticmethod(
            lambda batch_api_override=None, core_api_override=None: k8s_client.DagsterKubernetesClient(
                cluster, cluster, print, lambda _: None, __import__("time").time
            )
        ),
    )
    home = bodyscript_home.dagster_home
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(
        f"""
run_launcher:
  module: dagster_k8s
  class: K8sRunLauncher
  config:
    service_account_name: bodyscript-dagster
    job_image: registry.example.com/bodyscript:1.0
    dagster_home: {home}
    instance_config_map: dagster-instance
    load_incluster_config: false
    kubeconfig_file: {kubeconfig}
    job_namespace: bodyscript
"""
    )
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 12, size=(442, 248))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["k8s-clip"])
        register_source(bodyscript_home.lake_uri, "k8s-clip", f"file://{clip}")
        result = dg.execute_job(
            dg.reconstructable(process_video_on_k8s),
            instance=instance,
            tags={"dagster/partition": "k8s-clip"},
            run_config={"execution": {"config": {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}}},
        )
        cluster.wait()
        logs = "\n".join(job.log.read_text(errors="replace")[-2000:] for job in cluster.jobs.values())
        assert result.success, logs
        landmarks = instance.get_latest_materialization_event(dg.AssetKey("landmarks"))
        assert landmarks is not None and landmarks.asset_materialization is not None
        delegate = landmarks.asset_materialization.metadata["pose_delegate"].value
        assert delegate == "cpu", "the GPU pod asked for the GPU delegate; with none here it fell back"
        assert "pose_delegate_fallback" in landmarks.asset_materialization.metadata
    steps = []
    for job in cluster.jobs.values():
        (container,) = job.body.spec.template.spec.containers
        assert container.args[:3] == ["dagster", "api", "execute_step"]
        label = job.body.metadata.labels["dagster/op"]  # e.g. landmarks.infer_pose_range-frames_0_6
        step = label.rpartition(".")[2].partition("-")[0]
        steps.append(step)
        assert container.image == "registry.example.com/bodyscript:1.0"
        assert (GPU_RESOURCE in container.resources.limits) == (step == "infer_pose_range"), step
        env = {e.name: e.value for e in container.env}
        assert env["DAGSTER_HOME"] == str(home)
        assert (env.get("BODYSCRIPT_POSE_DELEGATE") == "gpu") == (step == "infer_pose_range"), step
        assert job.process.returncode == 0
    assert sorted(steps) == sorted(
        ["frames", "plan_pose_ranges", "infer_pose_range", "infer_pose_range", "merge_pose_ranges",
         "overlays", "clean_landmarks", "metrics", "exports"]
    ), "one Job per step; landmarks as one step per frame range"  # fmt: skip
    lake = VideoLake(bodyscript_home.lake_uri, "k8s-clip")
    videos = pl.read_parquet(lake.table_part("videos").removeprefix("file://"))
    assert videos["frame_count"].to_list() == [12]
    merged = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://"))
    assert merged["frame_index"].unique().sort().to_list() == list(range(12)), "each frame once, from both ranges"
    assert merged["frame_index"].to_list() == sorted(merged["frame_index"].to_list())
    assert not Path(lake.pose_ranges.removeprefix("file://")).exists(), "the ranges' files are removed once merged"
