"""Where and how each step runs under Kubernetes: the one definition of the pod settings of every asset.

Pose inference goes to the GPU pool (the ``pose`` step, and under k8s the further frame ranges of a long video,
``infer_pose_range``): an ``nvidia.com/gpu`` limit, the GPU pool's node selector and a toleration for its taint.
Every other step goes to the CPU pool. Requests and limits are
sized from measured peak memory (benchmarks/throughput.py on this project's 2-core reference machine: pose
workers 370 MB each plus a 190 MB parent; the in-process pipeline 530-600 MB), with headroom.
Pool labels, taints and the image are settings (``BODYSCRIPT_K8S_*``), not literals in code.

Every pod meets the ``restricted`` Pod Security Standard, which the namespace enforces: the image's non-root
user, no privilege escalation, no capabilities, the runtime's seccomp profile, and a read-only root filesystem.
The processes write only to ``emptyDir`` volumes: the scratch folders below, in every pod, and in step pods the
staging folder (``TMPDIR``) where a step copies the source and writes overlays, sized for the largest source the
limits admit. Step pods decode untrusted video: they run under a service account with no Kubernetes API rights
and without its token. deploy/helm/values.yaml repeats the shared settings for the webserver, daemon, code server
and run workers, and tests/deploy/test_pod_security.py holds it to these.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from bodyscript_pipeline.settings import Settings

GPU_RESOURCE = "nvidia.com/gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"
EPHEMERAL_STORAGE = "ephemeral-storage"
GIB = 1024**3

IMAGE_UID = 10001  # deploy/Dockerfile's user
STEP_SERVICE_ACCOUNT = "bodyscript-steps"  # deploy/k8s/rbac.yaml: bound to no role, its token never mounted

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "run_as_non_root": True,
    "run_as_user": IMAGE_UID,
    "run_as_group": IMAGE_UID,
    "seccomp_profile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "run_as_non_root": True,
    "run_as_user": IMAGE_UID,
    "run_as_group": IMAGE_UID,
    "allow_privilege_escalation": False,
    "read_only_root_filesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccomp_profile": {"type": "RuntimeDefault"},
}

# Where the processes write at run time besides staging, as folders of one emptyDir. A whole run on a read-only
# root wrote only these: HOME (matplotlib's font cache and config, which MediaPipe imports; Dagster's telemetry id;
# Mesa's and NVIDIA's shader caches on GPU nodes), /tmp, DAGSTER_HOME (the instance's local storage), and under
# BODYSCRIPT_HOME run/ (the pose service socket, outside k8s) and logs/ (CLI run logs).
SCRATCH = "scratch"
SCRATCH_GIB = 1
SCRATCH_SIZE = f"{SCRATCH_GIB}Gi"
SCRATCH_PATHS = {
    "tmp": "/tmp",  # noqa: S108 - a private emptyDir, not a shared /tmp
    "home": "/home/bodyscript",
    "dagster-home": "/opt/dagster/dagster_home",
    "run": "/opt/bodyscript/home/run",
    "logs": "/opt/bodyscript/home/logs",
}
SCRATCH_VOLUME: dict[str, Any] = {"name": SCRATCH, "empty_dir": {"size_limit": SCRATCH_SIZE}}
SCRATCH_MOUNTS: list[dict[str, str]] = [
    {"name": SCRATCH, "mount_path": path, "sub_path": folder} for folder, path in SCRATCH_PATHS.items()
]
# Ephemeral storage of the pods that stage no video (webserver, daemon, code server, run workers): the scratch
# volume and the container's logs.
SERVICE_STORAGE = {"requests": "512Mi", "limits": "2Gi"}

# Staging (TMPDIR) of a step pod. Measured with the lake on S3 (each step its own process through the real
# k8s_job_executor, its TMPDIR sampled every 10 ms): sports2d_demo.mp4 (3.97 MB VP9, 7.7 s) peaked at 8.9 MB in
# pose and 13.9 MB in derived, a 30.7 s H.264 clip of it (12.9 MB) at 32.4 MB and 51.8 MB, fleet_summary at
# 8 KB: the source copy plus the overlay segments (pose), plus the joined overlay (derived); the overlay (720p
# then; the 540p default is smaller) grew by 0.63 MB a second in both. The limits take the largest source the
# limits admit (BODYSCRIPT_MAX_BYTES, BODYSCRIPT_MAX_DURATION_S) with half again as much headroom (busier scenes
# encode larger overlays); requests take a representative source, 1 GiB over 10 minutes.
STAGING = "staging"
STAGING_DIR = "/staging"
OVERLAY_BYTES_PER_S = 650_000
STAGING_HEADROOM = 1.5
MIN_STAGING = GIB
TYPICAL_SOURCE = (GIB, 600.0)  # bytes, seconds
LOGS = GIB // 2  # the container's logs, and what scratch typically holds


@dataclass(frozen=True)
class PodSize:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    gpus: int = 0
    staged_sources: int = 0  # copies of the source in staging at the peak
    staged_overlays: int = 0  # copies of the overlay


POD_SIZES: dict[str, PodSize] = {
    "pose": PodSize(
        cpu_request="2",
        memory_request="1536Mi",
        cpu_limit="4",
        memory_limit="3Gi",
        gpus=1,
        staged_sources=1,
        staged_overlays=1,
    ),
    "video": PodSize(
        cpu_request="1", memory_request="1Gi", cpu_limit="2", memory_limit="2Gi", staged_sources=1, staged_overlays=2
    ),
    "table": PodSize(cpu_request="500m", memory_request="512Mi", cpu_limit="1", memory_limit="1Gi"),
}
STEP_POD: dict[str, str] = {
    "pose": "pose",  # frames and landmarks
    "derived": "video",  # overlays, clean_landmarks, metrics, exports
    "fleet_summary": "table",
    "lake_compaction": "table",
    # long videos under k8s: further frame ranges of ``landmarks`` as their own steps (assets/pose_ranges.py)
    "infer_pose_range": "pose",
}


def staged_bytes(size: PodSize, source_bytes: int, seconds: float) -> int:
    """Peak bytes a step stages for one source of ``source_bytes`` lasting ``seconds``."""
    return size.staged_sources * source_bytes + math.ceil(size.staged_overlays * OVERLAY_BYTES_PER_S * seconds)


def _gib(n_bytes: float) -> int:
    return math.ceil(n_bytes / GIB)


def _staging_gib(pod: str, settings: Settings) -> int:
    limits = settings.limits
    peak = staged_bytes(POD_SIZES[pod], limits.max_bytes, limits.max_duration_s)
    return _gib(max(MIN_STAGING, STAGING_HEADROOM * peak))


def staging_size(pod: str, settings: Settings) -> str:
    """The size limit of a step pod's staging volume: the largest admitted source, with headroom."""
    return f"{_staging_gib(pod, settings)}Gi"


def _storage(pod: str, settings: Settings) -> tuple[str, str]:
    """The step container's ephemeral-storage request (a typical source) and limit (full staging and scratch),
    both with the container's logs."""
    typical = staged_bytes(POD_SIZES[pod], *TYPICAL_SOURCE) + LOGS
    largest = (_staging_gib(pod, settings) + SCRATCH_GIB) * GIB + LOGS
    return f"{_gib(typical)}Gi", f"{_gib(largest)}Gi"


def _label(selector: str) -> dict[str, str]:
    """``key=value[,key=value]`` into a node selector."""
    pairs = [part.split("=", 1) for part in selector.split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def k8s_config(step: str, settings: Settings) -> dict[str, Any]:
    """The ``dagster-k8s/config`` of one step's pod."""
    pod = STEP_POD[step]
    size = POD_SIZES[pod]
    storage_request, storage_limit = _storage(pod, settings)
    requests: dict[str, str | int] = {
        "cpu": size.cpu_request,
        "memory": size.memory_request,
        EPHEMERAL_STORAGE: storage_request,
    }
    limits: dict[str, str | int] = {
        "cpu": size.cpu_limit,
        "memory": size.memory_limit,
        EPHEMERAL_STORAGE: storage_limit,
    }
    env = [{"name": "TMPDIR", "value": STAGING_DIR}]
    placement: dict[str, Any]
    if size.gpus:
        requests[GPU_RESOURCE] = size.gpus
        limits[GPU_RESOURCE] = size.gpus
        placement = {
            "node_selector": _label(settings.k8s_gpu_node_selector),
            "tolerations": [
                {"key": settings.k8s_gpu_taint, "operator": "Exists", "effect": "NoSchedule"},
            ],
        }
        env.append({"name": "BODYSCRIPT_POSE_DELEGATE", "value": "gpu"})
    else:
        placement = {"node_selector": _label(settings.k8s_cpu_node_selector)}
    staging = {"name": STAGING, "empty_dir": {"size_limit": staging_size(pod, settings)}}
    return {
        "container_config": {
            "resources": {"requests": requests, "limits": limits},
            "env": env,
            "security_context": CONTAINER_SECURITY_CONTEXT,
            "volume_mounts": [*SCRATCH_MOUNTS, {"name": STAGING, "mount_path": STAGING_DIR}],
        },
        "pod_spec_config": {
            **placement,
            "security_context": POD_SECURITY_CONTEXT,
            "service_account_name": STEP_SERVICE_ACCOUNT,
            "automount_service_account_token": False,
            "volumes": [SCRATCH_VOLUME, staging],
        },
        "job_metadata": {"labels": {"bodyscript/pool": "gpu" if size.gpus else "cpu"}},
    }


def op_tags(step: str, settings: Settings) -> dict[str, str]:
    """Op tags carrying the step's pod settings (Dagster tags are strings: the config is JSON)."""
    return {K8S_CONFIG_TAG: json.dumps(k8s_config(step, settings)), "bodyscript/pool": STEP_POD[step]}
