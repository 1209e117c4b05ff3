"""Kubernetes placement, built with dagster-k8s's own code and validated against the Kubernetes schema."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from assets.pods import (
    CONTAINER_SECURITY_CONTEXT,
    GPU_RESOURCE,
    K8S_CONFIG_TAG,
    POD_SECURITY_CONTEXT,
    STEP_SERVICE_ACCOUNT,
    k8s_config,
)
from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions
from bodyscript_pipeline.settings import Settings
from tests.support.repo import REPO

K8S_VERSION = "1.30"
STEPS = ("pose", "infer_pose_range", "derived", "fleet_summary")
GPU_STEPS = ("pose", "infer_pose_range")


def step_op(defs: dg.Definitions, step: str) -> dg.OpDefinition:
    if step == "fleet_summary":
        return defs.resolve_assets_def(step).op
    ops = {op.name: op for op in defs.resolve_job_def(PROCESS_VIDEO_JOB).graph.iterate_op_defs()}
    return ops[step]


def step_job(defs: dg.Definitions, asset: str) -> dict:
    """The Job dagster-k8s would launch for this step, as the API server would receive it."""
    op = step_op(defs, asset)
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image="registry.example.com/bodyscript:1.0",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="dagster-instance",
            image_pull_policy="IfNotPresent",
        ),
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{asset.replace('_', '-')}",
        user_defined_k8s_config=get_user_defined_k8s_config(op.tags),
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.fixture
def defs(tmp_path: Path) -> dg.Definitions:
    return build_definitions(Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_EXECUTOR": "k8s"}))


@pytest.mark.parametrize("asset", STEPS)
def test_step_jobs_place_pose_on_gpu_and_the_rest_on_cpu(defs: dg.Definitions, asset: str) -> None:
    job = step_job(defs, asset)
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job", **job}, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    limits = container["resources"]["limits"]
    requests = container["resources"]["requests"]
    assert {"cpu", "memory", "ephemeral-storage"} <= limits.keys() & requests.keys()
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if asset in GPU_STEPS:
        assert str(limits[GPU_RESOURCE]) == str(requests[GPU_RESOURCE]) == "1"
        assert pod["nodeSelector"] == {"bodyscript.io/pool": "gpu"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert env["BODYSCRIPT_POSE_DELEGATE"] == "gpu"
    else:
        assert GPU_RESOURCE not in limits and GPU_RESOURCE not in requests
        assert pod["nodeSelector"] == {"bodyscript.io/pool": "cpu"}
        assert not pod.get("tolerations")
        assert "BODYSCRIPT_POSE_DELEGATE" not in env


@pytest.mark.parametrize(
    ("executor", "name"), [("k8s", "k8s"), ("multiprocess", "multiprocess"), ("in_process", "in_process")]
)
def test_executor_is_configuration(tmp_path: Path, executor: str, name: str) -> None:
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_EXECUTOR": executor})
    defs = build_definitions(settings)
    for job in (defs.resolve_job_def(PROCESS_VIDEO_JOB), defs.resolve_job_def("retention")):
        assert job.executor_def.name == name


def test_pools_and_taint_are_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BODYSCRIPT_HOME": str(tmp_path),
            "BODYSCRIPT_K8S_GPU_NODE_SELECTOR": "pool=gpu-a10,zone=b",
            "BODYSCRIPT_K8S_CPU_NODE_SELECTOR": "pool=general",
            "BODYSCRIPT_K8S_GPU_TAINT": "gpu-only",
        }
    )
    gpu = k8s_config("pose", settings)["pod_spec_config"]
    assert gpu["node_selector"] == {"pool": "gpu-a10", "zone": "b"}
    assert gpu["tolerations"][0]["key"] == "gpu-only"
    cpu = k8s_config("derived", settings)["pod_spec_config"]
    assert cpu["node_selector"] == {"pool": "general"} and "tolerations" not in cpu


@pytest.mark.parametrize("asset", STEPS)
def test_step_pod_settings_are_in_the_op_tags(defs: dg.Definitions, asset: str) -> None:
    """The security context, account and volumes of each step pod show in its job definition's op tags."""
    config = json.loads(step_op(defs, asset).tags[K8S_CONFIG_TAG])
    container, pod = config["container_config"], config["pod_spec_config"]
    assert container["security_context"] == CONTAINER_SECURITY_CONTEXT
    assert container["security_context"]["read_only_root_filesystem"] is True
    assert pod["security_context"] == POD_SECURITY_CONTEXT
    assert pod["service_account_name"] == STEP_SERVICE_ACCOUNT and pod["automount_service_account_token"] is False
    assert {"ephemeral-storage"} <= container["resources"]["requests"].keys() & container["resources"]["limits"].keys()
    assert [v["name"] for v in pod["volumes"]] == ["scratch", "staging"]


def test_deploy_manifests_are_valid_kubernetes() -> None:
    documents = []
    for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml")):
        documents += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert len(documents) >= 4
    for name, doc in documents:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION, name
