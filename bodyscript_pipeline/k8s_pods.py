"""Where each step runs under Kubernetes: the one definition of the pod settings of every asset.

Pose inference goes to the GPU pool (the ``pose`` step, and under k8s the further frame ranges of a long video,
``infer_pose_range``): an ``nvidia.com/gpu`` limit, the GPU pool's node selector and a toleration for its taint.
Every other step goes to the CPU pool. Requests and limits are
sized from measured peak memory (benchmarks/throughput.py on this project's 2-core reference machine: pose
workers 370 MB each plus a 190 MB parent; the in-process pipeline 530-600 MB), with headroom.
Pool labels, taints and the image are settings (``BODYSCRIPT_K8S_*``), not literals in code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bodyscript_pipeline.settings import Settings

GPU_RESOURCE = "nvidia.com/gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"


@dataclass(frozen=True)
class PodSize:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    gpus: int = 0


POD_SIZES: dict[str, PodSize] = {
    "pose": PodSize(cpu_request="2", memory_request="1536Mi", cpu_limit="4", memory_limit="3Gi", gpus=1),
    "video": PodSize(cpu_request="1", memory_request="1Gi", cpu_limit="2", memory_limit="2Gi"),
    "table": PodSize(cpu_request="500m", memory_request="512Mi", cpu_limit="1", memory_limit="1Gi"),
}
STEP_POD: dict[str, str] = {
    "pose": "pose",  # frames and landmarks
    "derived": "video",  # overlays, clean_landmarks, metrics, exports
    "fleet_summary": "table",
    # long videos under k8s: further frame ranges of ``landmarks`` as their own steps (assets/pose_ranges.py)
    "infer_pose_range": "pose",
}


def _label(selector: str) -> dict[str, str]:
    """``key=value[,key=value]`` into a node selector."""
    pairs = [part.split("=", 1) for part in selector.split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def k8s_config(step: str, settings: Settings) -> dict[str, Any]:
    """The ``dagster-k8s/config`` of one step's pod."""
    size = POD_SIZES[STEP_POD[step]]
    requests: dict[str, str | int] = {"cpu": size.cpu_request, "memory": size.memory_request}
    limits: dict[str, str | int] = {"cpu": size.cpu_limit, "memory": size.memory_limit}
    pod_spec: dict[str, Any]
    if size.gpus:
        requests[GPU_RESOURCE] = size.gpus
        limits[GPU_RESOURCE] = size.gpus
        pod_spec = {
            "node_selector": _label(settings.k8s_gpu_node_selector),
            "tolerations": [
                {"key": settings.k8s_gpu_taint, "operator": "Exists", "effect": "NoSchedule"},
            ],
        }
        env = [{"name": "BODYSCRIPT_POSE_DELEGATE", "value": "gpu"}]
    else:
        pod_spec = {"node_selector": _label(settings.k8s_cpu_node_selector)}
        env = []
    return {
        "container_config": {"resources": {"requests": requests, "limits": limits}, "env": env},
        "pod_spec_config": pod_spec,
        "job_metadata": {"labels": {"bodyscript/pool": "gpu" if size.gpus else "cpu"}},
    }


def op_tags(step: str, settings: Settings) -> dict[str, str]:
    """Op tags carrying the step's pod settings (Dagster tags are strings: the config is JSON)."""
    return {K8S_CONFIG_TAG: json.dumps(k8s_config(step, settings)), "bodyscript/pool": STEP_POD[step]}
