"""Every pod of the deployment meets the restricted Pod Security Standard, writes only to size-limited emptyDir
scratch on a read-only root filesystem and declares its ephemeral storage; step pods, which decode untrusted
video, hold no Kubernetes credentials.

The step Jobs and a run worker's Job are the ones dagster-k8s really builds: the real k8s_job_executor and
K8sRunLauncher run against the simulated cluster (which enforces the namespace's Pod Security level as the API
server would), configured as the Helm chart configures them from deploy/helm/values.yaml: its run launcher
settings in the instance, its code-server settings as the code location's container context. The webserver,
daemon and code-server pods are rendered from the values as the chart's templates render them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from dagster._core.launcher import LaunchRunContext
from dagster_k8s.models import k8s_snake_case_dict
from kubernetes.client import V1PodSecurityContext, V1SecurityContext, V1Volume, V1VolumeMount
from kubernetes.utils import parse_quantity

from assets import pods, videos_partitions
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from tests.support.repo import REPO
from tests.support.simulated_cluster import (
    SimulatedCluster,
    containers_of,
    fleet_summary_on_k8s,
    in_code_location,
    invalid_pod,
    process_video_on_k8s,
    restricted_violations,
    run_partition,
    simulated_k8s,
    step_of,
)
from tests.support.video_factory import clip_of

DEPLOY = REPO / "deploy"
VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
K8S_VERSION = "1.30"
NAMESPACE = "bodyscript"
LAUNCHER_ACCOUNT = "bodyscript-dagster"  # deploy/k8s/rbac.yaml: creates Jobs
STEPS = ("pose", "infer_pose_range", "derived", "fleet_summary")
SCRATCH_PATHS = (  # written at run time (a real run on a read-only root wrote HOME: matplotlib, Dagster)
    "/tmp",
    "/home/bodyscript",  # HOME
    "/opt/dagster/dagster_home",  # DAGSTER_HOME
    "/opt/bodyscript/home/run",  # BODYSCRIPT_HOME/run
    "/opt/bodyscript/home/logs",  # BODYSCRIPT_HOME/logs
)


# The chart (dagster 1.13), as far as it shapes pods: templates/helpers/instance/_run-launcher.tpl renders the run
# launcher; dagster-user-deployments' k8sContainerContext helper passes a code server's settings to its runs.
RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def chart_run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    """The K8sRunLauncher config the chart writes into dagster.yaml, its pod-shaping keys."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {"service_account_name": values["global"]["serviceAccountName"]}
    if launcher.get("envSecrets"):
        config["env_secrets"] = [secret["name"] for secret in launcher["envSecrets"]]
    for key, name in {
        "volumes": "volumes",
        "volumeMounts": "volume_mounts",
        "labels": "labels",
        "resources": "resources",
        "securityContext": "security_context",
    }.items():
        if launcher.get(key):
            config[name] = launcher[key]
    if launcher.get("runK8sConfig"):
        config["run_k8s_config"] = {RUN_K8S_CONFIG_KEYS[k]: v for k, v in launcher["runK8sConfig"].items()}
    return config


def user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def chart_container_context(values: dict[str, Any]) -> dict[str, Any]:
    """The container context the chart gives the code server (includeConfigInLaunchedRuns, on by default) and
    so every run and step pod of its code location. Its ``env`` addresses the production buckets: the test's
    own environment stands in for it."""
    deployment = user_deployment(values)
    assert (deployment.get("includeConfigInLaunchedRuns") or {"enabled": True})["enabled"]
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_secrets": [secret["name"] for secret in deployment.get("envSecrets") or []],
        "namespace": NAMESPACE,
        "service_account_name": values["global"]["serviceAccountName"],
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    for key, name in {"volumeMounts": "volume_mounts", "volumes": "volumes", "resources": "resources"}.items():
        if deployment.get(key):
            k8s[name] = deployment[key]
    return {"k8s": k8s}


def chart_pod(component: dict[str, Any], values: dict[str, Any], with_instance: bool) -> dict[str, Any]:
    """The pod spec the chart renders for the webserver or daemon (``with_instance``: the instance and workspace
    config maps, and init containers waiting for the database and each code server) or a code server."""
    dagster_home = values["global"].get("dagsterHome", "/opt/dagster/dagster_home")
    mounts = list(component.get("volumeMounts") or [])
    volumes = list(component.get("volumes") or [])
    init = []
    if with_instance:
        mounts = [
            {"name": "dagster-instance", "mountPath": f"{dagster_home}/dagster.yaml", "subPath": "dagster.yaml"},
            {"name": "dagster-workspace-yaml", "mountPath": "/dagster-workspace/"},
            *mounts,
        ]
        volumes = [
            {"name": "dagster-instance", "configMap": {"name": "bodyscript-dagster-instance"}},
            {"name": "dagster-workspace-yaml", "configMap": {"name": "bodyscript-dagster-workspace-yaml"}},
            *volumes,
        ]
        names = ["check-db-ready", f"init-user-deployment-{user_deployment(values)['name']}"]
        init = [
            {
                "name": name,
                "image": "postgres:14",
                "securityContext": component.get("securityContext") or {},
                "resources": component.get("initContainerResources") or {},
            }
            for name in names
        ]
    container = {
        "name": "dagster",
        "image": "registry.example.com/bodyscript:1.0",
        "securityContext": component.get("securityContext") or {},
        "resources": component.get("resources") or {},
        "volumeMounts": mounts,
    }
    pod = {
        "serviceAccountName": values["global"]["serviceAccountName"],
        "securityContext": component.get("podSecurityContext") or {},
        "containers": [container],
        "volumes": volumes,
    }
    return {**pod, "initContainers": init} if init else pod


# What every pod must also meet, beyond the restricted standard.
def bytes_of(quantity: object) -> int:
    return int(parse_quantity(str(quantity)))


def scratch_problems(pod: dict[str, Any], image_containers: list[dict[str, Any]]) -> list[str]:
    """A read-only root filesystem, ephemeral storage declared, and each place the image's processes write an
    emptyDir whose size limit fits within the pod's ephemeral storage."""
    problems = list(invalid_pod(pod))
    limit = 0
    for container in containers_of(pod):
        name = container["name"]
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            if "ephemeral-storage" not in (resources.get(kind) or {}):
                problems.append(f"{name}: no ephemeral-storage {kind}")
        if container in (pod.get("containers") or []):
            limit += bytes_of((resources.get("limits") or {}).get("ephemeral-storage", 0))
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    for name, empty_dir in empty_dirs.items():
        if "sizeLimit" not in empty_dir:
            problems.append(f"emptyDir {name} has no sizeLimit")
    total = sum(bytes_of(e.get("sizeLimit", 0)) for e in empty_dirs.values())
    if total > limit:
        problems.append(f"emptyDirs of {total} bytes exceed the pod's ephemeral-storage limit of {limit}")
    for container in image_containers:
        scratch = {m["mountPath"].rstrip("/") for m in container.get("volumeMounts") or [] if m["name"] in empty_dirs}
        problems += [f"{container['name']}: {path} is not writable" for path in SCRATCH_PATHS if path not in scratch]
    return problems


def valid_pod(pod: dict[str, Any]) -> None:
    document = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"}, "spec": pod}
    assert kubernetes_validate.validate(document, K8S_VERSION, strict=True) == K8S_VERSION


# The deployment, run once: a 12-frame clip in ranges of 5 (pose, two infer_pose_range, derived), the fleet
# summary, and one run worker.
@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, model_source: str, demo_video: Path
) -> Iterator[SimulatedCluster]:
    workdir = tmp_path_factory.mktemp("deployed")
    home = workdir / "home"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "BODYSCRIPT_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "BODYSCRIPT_MODEL_SOURCE": model_source,
            "BODYSCRIPT_QUALITY_MIN_DETECTION_RATE": "0",
            "BODYSCRIPT_EXECUTOR": "k8s",
            "BODYSCRIPT_POSE_WORKERS": "1",
            "BODYSCRIPT_POSE_RANGE_FRAMES": "5",
        }.items():
            env.setenv(name, value)
        for name in ("BODYSCRIPT_LAKE_URI", "BODYSCRIPT_DROP_URI", "BODYSCRIPT_MODEL", "BODYSCRIPT_MODEL_SHA256"):
            env.delenv(name, raising=False)
        settings = Settings.from_env()
        clip = clip_of(demo_video, workdir / "clip.mp4", 12, size=(442, 248))
        context = chart_container_context(VALUES)
        with simulated_k8s(workdir, settings.dagster_home, chart_run_launcher(VALUES)) as (cluster, instance):
            instance.add_dynamic_partitions(videos_partitions.name, ["clip"])
            register_source(settings.lake_uri, "clip", f"file://{clip}")
            video = in_code_location(dg.reconstructable(process_video_on_k8s), context)
            result = run_partition(instance, "clip", video)
            cluster.wait()
            assert result.success, cluster.logs()
            fleet = dg.execute_job(in_code_location(dg.reconstructable(fleet_summary_on_k8s), context), instance)
            cluster.wait()
            assert fleet.success, cluster.logs()
            run = instance.create_run_for_job(video.get_definition(), job_code_origin=video.get_python_origin())
            instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
            yield cluster


@pytest.mark.parametrize("step", STEPS)
def test_step_pods_are_restricted_and_hold_no_credentials(deployed: SimulatedCluster, step: str) -> None:
    jobs = [job for job in deployed.step_jobs() if step_of(job) == step]
    assert jobs, f"no {step} Job"
    for job in jobs:
        assert job.process is not None and job.process.returncode == 0, job.log.read_text()[-2000:]
        template = job.template
        pod = template["spec"]
        assert restricted_violations(pod, template["metadata"].get("annotations")) == []
        assert scratch_problems(pod, pod["containers"]) == []
        assert pod["serviceAccountName"] == pods.STEP_SERVICE_ACCOUNT
        assert pod["automountServiceAccountToken"] is False, "a decoder exploit must not reach the API"
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        staging = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}.get(env.get("TMPDIR"))
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert staging in volumes and "emptyDir" in volumes[staging], "TMPDIR is the step's staging emptyDir"
        kind = pods.STEP_POD[step]
        assert volumes[staging]["emptyDir"]["sizeLimit"] == pods.staging_size(kind, Settings.from_env())
        valid_pod(pod)


def test_run_worker_pod_is_restricted(deployed: SimulatedCluster) -> None:
    (job,) = [job for job in deployed.jobs.values() if job.process is None]
    pod = job.template["spec"]
    assert job.body.metadata.labels["app.kubernetes.io/component"] == "run_worker"
    assert restricted_violations(pod, job.template["metadata"].get("annotations")) == []
    assert scratch_problems(pod, pod["containers"]) == []
    assert pod["serviceAccountName"] == LAUNCHER_ACCOUNT, "the run worker creates the step Jobs"
    assert pod.get("automountServiceAccountToken") is not False
    valid_pod(pod)


@pytest.mark.parametrize("component", ["dagsterWebserver", "dagsterDaemon", "user-deployment"])
def test_chart_pods_are_restricted(component: str) -> None:
    if component == "user-deployment":
        pod = chart_pod(user_deployment(VALUES), VALUES, with_instance=False)
    else:
        pod = chart_pod(VALUES[component], VALUES, with_instance=True)
    assert restricted_violations(pod) == []
    assert scratch_problems(pod, pod["containers"]) == []
    valid_pod(pod)


def test_chart_renders_no_other_pods() -> None:
    """The chart's other pods would be refused by the namespace: the bundled bitnami/postgresql 8.1.0 sets no
    seccomp profile, capabilities or privilege escalation, and the Celery ones are for another launcher."""
    assert VALUES["postgresql"]["enabled"] is False
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert not (VALUES.get("migrate") or {}).get("enabled")


def snake(model: type, settings: object) -> object:
    return k8s_snake_case_dict(model, settings)  # type: ignore[arg-type]


def test_chart_pod_settings_are_the_ones_of_assets_pods() -> None:
    """One definition: the values repeat assets/pods.py's settings for the pods the chart makes."""
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    chart_pods = {
        "webserver": VALUES["dagsterWebserver"],
        "daemon": VALUES["dagsterDaemon"],
        "code server": user_deployment(VALUES),
        "run worker": {
            "podSecurityContext": launcher["runK8sConfig"]["podSpecConfig"]["securityContext"],
            "securityContext": launcher["securityContext"],
            "resources": launcher["runK8sConfig"]["containerConfig"]["resources"],
            "volumes": launcher["volumes"],
            "volumeMounts": launcher["volumeMounts"],
        },
    }
    for name, pod in chart_pods.items():
        assert snake(V1PodSecurityContext, pod["podSecurityContext"]) == pods.POD_SECURITY_CONTEXT, name
        assert snake(V1SecurityContext, pod["securityContext"]) == pods.CONTAINER_SECURITY_CONTEXT, name
        assert [snake(V1Volume, v) for v in pod["volumes"]] == [pods.SCRATCH_VOLUME], name
        assert [snake(V1VolumeMount, m) for m in pod["volumeMounts"]] == pods.SCRATCH_MOUNTS, name
        for kind, quantity in pods.SERVICE_STORAGE.items():
            assert pod["resources"][kind]["ephemeral-storage"] == quantity, name


def test_namespace_enforces_restricted() -> None:
    (namespace,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "namespace.yaml").read_text()) if d]
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{K8S_VERSION}", "the rules tested here"


def test_only_the_launcher_account_may_create_jobs() -> None:
    documents = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "rbac.yaml").read_text()) if d]
    accounts = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServiceAccount"}
    assert accounts[pods.STEP_SERVICE_ACCOUNT].get("automountServiceAccountToken") is False
    roles = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("Role", "ClusterRole")}
    creators = set()
    for binding in (d for d in documents if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", "no group: it could take in the steps' account"
            assert subject["name"] != pods.STEP_SERVICE_ACCOUNT, "the steps' account has no rights"
            rules = roles[binding["roleRef"]["name"]]["rules"]
            if any("jobs" in r["resources"] and "create" in r["verbs"] for r in rules):
                creators.add(subject["name"])
    assert creators == {LAUNCHER_ACCOUNT}


def test_image_paths_and_user_are_the_dockerfile_ones() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(rf"useradd .*--uid {pods.IMAGE_UID} bodyscript", dockerfile)
    assert re.search(rf"^USER {pods.IMAGE_UID}$", dockerfile, re.MULTILINE)
    assert "BODYSCRIPT_HOME=/opt/bodyscript/home" in dockerfile
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in dockerfile
    assert sorted(m["mount_path"] for m in pods.SCRATCH_MOUNTS) == sorted(SCRATCH_PATHS)


def test_staging_scales_with_the_largest_source(tmp_path: Path) -> None:
    """Staging holds the source copy and the overlays (measured: see k8s_pods); its limit follows
    BODYSCRIPT_MAX_BYTES and BODYSCRIPT_MAX_DURATION_S."""
    small = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)})
    large = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_MAX_BYTES": str(32 * 1024**3)})
    for pod in ("pose", "video"):
        grown = bytes_of(pods.staging_size(pod, large)) - bytes_of(pods.staging_size(pod, small))
        assert grown >= 24 * 1024**3, pod
        peak = pods.staged_bytes(pods.POD_SIZES[pod], small.limits.max_bytes, small.limits.max_duration_s)
        assert bytes_of(pods.staging_size(pod, small)) >= peak * 1.25, pod
    assert bytes_of(pods.staging_size("video", small)) > bytes_of(pods.staging_size("pose", small))


# The checker itself: each published rule, broken once, is reported.
def compliant_pod() -> dict[str, Any]:
    context = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "init", "securityContext": copy.deepcopy(context)}],
        "containers": [{"name": "main", "securityContext": copy.deepcopy(context)}],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
    }


def main(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]["securityContext"]


BROKEN: dict[str, Callable[[dict[str, Any]], object]] = {
    "hostNetwork": lambda p: p.update(hostNetwork=True),
    "hostPID": lambda p: p.update(hostPID=True),
    "hostIPC": lambda p: p.update(hostIPC=True),
    "hostPath": lambda p: p["volumes"].append({"name": "node", "hostPath": {"path": "/"}}),
    "privileged": lambda p: main(p).update(privileged=True),
    "adds capability": lambda p: main(p)["capabilities"].update(add=["SYS_ADMIN"]),
    "do not drop ALL": lambda p: main(p)["capabilities"].update(drop=["NET_RAW"]),
    "allowPrivilegeEscalation": lambda p: main(p).pop("allowPrivilegeEscalation"),
    "runAsNonRoot": lambda p: (main(p).pop("runAsNonRoot"), p["securityContext"].pop("runAsNonRoot")),
    "runAsUser: 0": lambda p: main(p).update(runAsUser=0),
    "seccompProfile Unconfined": lambda p: main(p).update(seccompProfile={"type": "Unconfined"}),
    "seccompProfile unset": lambda p: (main(p).pop("seccompProfile"), p["securityContext"].pop("seccompProfile")),
    "hostPort": lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "sysctl": lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "init: privileged": lambda p: p["initContainers"][0]["securityContext"].update(privileged=True),
    "procMount": lambda p: main(p).update(procMount="Unmasked"),
    "seLinuxOptions.type": lambda p: main(p).update(seLinuxOptions={"type": "spc_t"}),
}


@pytest.mark.parametrize("rule", BROKEN)
def test_checker_reports_each_broken_rule(rule: str) -> None:
    assert restricted_violations(compliant_pod()) == []
    pod = compliant_pod()
    BROKEN[rule](pod)
    violations = restricted_violations(pod)
    assert any(rule in violation for violation in violations), violations


def test_checker_reports_unconfined_apparmor_and_writable_roots() -> None:
    pod = compliant_pod()
    annotations = {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    assert restricted_violations(pod, annotations) == ["annotation " + ": ".join(next(iter(annotations.items())))]
    main(pod)["readOnlyRootFilesystem"] = False
    assert "main: root filesystem is writable" in scratch_problems(pod, [])
    pod["volumes"][0]["emptyDir"] = {}
    assert "emptyDir scratch has no sizeLimit" in scratch_problems(pod, [])
