"""A stand-in for the Kubernetes batch and core APIs that runs each Job's container as a local process.

dagster-k8s builds the real Job objects (image, command, environment, labels, resources, security context,
volumes) and polls their status through these clients; here, creating a Job starts its container's command with
its environment, and the Job's status follows the process. Everything the executor produces is exercised, not
only rendered. As the real API server and kubelet would:

- a pod template that is not valid (two volumes of one name, a mount of no volume, two mounts at one path) is
  refused with 422;
- the namespace enforces the ``restricted`` Pod Security Standard (deploy/k8s/namespace.yaml): the Job is
  accepted, but a pod that violates it never starts, and the Job fails with the violations in its log;
- a pod holds the cluster's credentials only where it mounts a service account token (here: a kubeconfig in
  ``KUBECONFIG``; a pod with ``automountServiceAccountToken: false`` gets none);
- an environment variable that names an ``emptyDir`` mount (``TMPDIR=/staging``) names that pod's own folder.

Run workers (``app.kubernetes.io/component: run_worker``) are recorded, not run: the run worker is the test's own
process, which holds the cluster's client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob
from kubernetes.client import V1Container, V1Job, V1JobStatus, V1ObjectMeta, V1PodSpec

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: simulated, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: simulated, user: {token: unused}}]
contexts: [{name: simulated, context: {cluster: simulated, user: simulated, namespace: bodyscript}}]
current-context: simulated
"""
RUN_WORKER = "run_worker"

# The restricted Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards, v1.30), with
# the baseline controls it includes. Windows-only fields are left out: these pods are Linux.
ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
CONFINED_PROFILES = frozenset({"RuntimeDefault", "Localhost"})


def containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every container of a pod spec (API field names): init, regular and ephemeral."""
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or []), *(pod.get("ephemeralContainers") or [])]


def _pod_level_violations(pod: Mapping[str, Any], annotations: Mapping[str, str]) -> list[str]:
    found = [f"{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    context = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume.get('name')}: {', '.join(sorted(kinds - ALLOWED_VOLUME_TYPES))}")
    found += [f"sysctl {s.get('name')}" for s in context.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if context.get("runAsUser") == 0:
        found.append("pod runAsUser: 0")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod hostProcess")
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("pod seccompProfile: Unconfined")
    if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append("pod appArmorProfile: Unconfined")
    found += _selinux("pod", context.get("seLinuxOptions"))
    found += [
        f"annotation {key}: {value}"
        for key, value in annotations.items()
        if key.startswith("container.apparmor.security.beta.kubernetes.io/")
        and value != "runtime/default"
        and not value.startswith("localhost/")
    ]
    return found


def _selinux(where: str, options: Mapping[str, Any] | None) -> list[str]:
    options = options or {}
    found = [f"{where} seLinuxOptions.{key}" for key in ("user", "role") if options.get(key)]
    if options.get("type") and options["type"] not in SELINUX_TYPES:
        found.append(f"{where} seLinuxOptions.type: {options['type']}")
    return found


def _container_violations(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    name = container.get("name")
    context = container.get("securityContext") or {}
    found = []
    if context.get("privileged"):
        found.append(f"{name}: privileged")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{name}: hostProcess")
    found += [f"{name}: hostPort {p['hostPort']}" for p in container.get("ports") or [] if p.get("hostPort")]
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append(f"{name}: capabilities do not drop ALL")
    found += [f"{name}: adds capability {c}" for c in capabilities.get("add") or [] if c != "NET_BIND_SERVICE"]
    if context.get("allowPrivilegeEscalation") is not False:
        found.append(f"{name}: allowPrivilegeEscalation is not false")
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
        found.append(f"{name}: runAsNonRoot is not true")
    if context.get("runAsUser") == 0:
        found.append(f"{name}: runAsUser: 0")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in CONFINED_PROFILES:
        found.append(f"{name}: seccompProfile {seccomp or 'unset'}")
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, *CONFINED_PROFILES):
        found.append(f"{name}: appArmorProfile {apparmor}")
    if context.get("procMount") not in (None, "Default"):
        found.append(f"{name}: procMount {context['procMount']}")
    return found + _selinux(str(name), context.get("seLinuxOptions"))


def restricted_violations(pod: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> list[str]:
    """Where a pod spec (API field names) breaks the restricted Pod Security Standard; empty when it meets it."""
    context = pod.get("securityContext") or {}
    found = _pod_level_violations(pod, annotations or {})
    for container in containers_of(pod):
        found += _container_violations(container, context)
    return found


def invalid_pod(pod: Mapping[str, Any]) -> list[str]:
    """What the API server's validation refuses in a pod spec's volumes and mounts."""
    names = [v["name"] for v in pod.get("volumes") or []]
    found = [f"volume {n} defined twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for container in containers_of(pod):
        mounts = container.get("volumeMounts") or []
        paths = [m["mountPath"] for m in mounts]
        found += [f"{container['name']}: two mounts at {p}" for p in sorted({p for p in paths if paths.count(p) > 1})]
        found += [f"{container['name']}: mounts no volume {m['name']}" for m in mounts if m["name"] not in names]
    return found


def serialized(job: V1Job) -> dict[str, Any]:
    """The Job as the API server receives it (API field names)."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@dataclass
class SimulatedJob:
    body: V1Job
    process: subprocess.Popen[bytes] | None  # None: a run worker, recorded only
    log: Path

    @property
    def template(self) -> dict[str, Any]:
        return serialized(self.body)["spec"]["template"]


@dataclass
class SimulatedCluster:
    workdir: Path
    jobs: dict[str, SimulatedJob] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """The credentials a pod holds when it mounts a service account token."""
        return self.workdir / "kubeconfig"

    def create_namespaced_job(self, namespace: str, body: V1Job, **_: Any) -> V1Job:
        template = serialized(body)["spec"]["template"]
        invalid = invalid_pod(template["spec"])
        if invalid:
            raise kubernetes.client.rest.ApiException(status=422, reason="Invalid: " + "; ".join(invalid))
        name = body.metadata.name
        log = self.workdir / f"{name}.log"
        if body.metadata.labels.get("app.kubernetes.io/component") == RUN_WORKER:
            self.jobs[name] = SimulatedJob(body, None, log)
            return body
        pod = body.spec.template.spec
        (container,) = pod.containers
        command = _command(container, restricted_violations(template["spec"], template["metadata"].get("annotations")))
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=self._env(name, pod, container), stdout=out, stderr=subprocess.STDOUT
            )
        self.jobs[name] = SimulatedJob(body, process, log)
        return body

    def _env(self, name: str, pod: V1PodSpec, container: V1Container) -> dict[str, str]:
        """The container's environment: a value naming an emptyDir mount names this Job's own folder, and the
        cluster's credentials are there only where the pod mounts a service account token."""
        scratch = {v.name for v in pod.volumes or [] if v.empty_dir is not None}
        folders = {}
        for mount in container.volume_mounts or []:
            if mount.name in scratch:
                folders[mount.mount_path] = self.workdir / name / mount.name / (mount.sub_path or "")
                folders[mount.mount_path].mkdir(parents=True, exist_ok=True)
        env = {e.name: e.value for e in container.env or [] if e.value is not None}
        env = {key: str(folders.get(value, value)) for key, value in env.items()}
        token = pod.automount_service_account_token is not False
        env["KUBECONFIG"] = str(self.kubeconfig if token else self.workdir / "no-service-account-token")
        return {**os.environ, **env}

    def read_namespaced_job_status(self, name: str, namespace: str, **_: Any) -> V1Job:
        job = self.jobs.get(name)
        if job is None:
            raise kubernetes.client.rest.ApiException(status=404, reason="Not Found")
        code = job.process.poll() if job.process else None
        status = V1JobStatus(
            active=1 if code is None else None,
            succeeded=1 if code == 0 else None,
            failed=1 if code not in (None, 0) else None,
        )
        return V1Job(metadata=V1ObjectMeta(name=name, namespace=namespace), status=status)

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> None:
        job = self.jobs.get(name)
        if job is not None and job.process is not None and job.process.poll() is None:
            job.process.kill()

    def list_namespaced_job(self, namespace: str, **_: Any) -> Any:
        return kubernetes.client.V1JobList(items=[j.body for j in self.jobs.values()])

    # Core API: pods and events exist only as far as the executor asks about failed steps.
    def list_namespaced_pod(self, namespace: str, **_: Any) -> Any:
        return kubernetes.client.V1PodList(items=[])

    def list_namespaced_event(self, namespace: str, **_: Any) -> Any:
        return kubernetes.client.CoreV1EventList(items=[])

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: Any) -> str:
        return ""

    def step_jobs(self) -> list[SimulatedJob]:
        return [job for job in self.jobs.values() if job.process is not None]

    def wait(self) -> None:
        for job in self.step_jobs():
            job.process.wait(timeout=600)  # type: ignore[union-attr]

    def steps(self) -> list[str]:
        """The step of each step Job started, in order (``derived``, ``pose``, ``infer_pose_range``...)."""
        return [step_of(job) for job in self.step_jobs()]

    def logs(self) -> str:
        return "\n".join(job.log.read_text(errors="replace")[-2000:] for job in self.step_jobs())


def _command(container: V1Container, violations: list[str]) -> list[str]:
    """The container's command; where the pod violates the namespace's Pod Security level, the Job is accepted
    but its pod is refused: it never runs, and the Job fails with the violations."""
    if violations:
        refusal = "violates PodSecurity restricted: " + "; ".join(violations)
        return [sys.executable, "-c", f"raise SystemExit({refusal!r})"]
    command = [*(container.command or []), *(container.args or [])]
    if command and command[0] == "dagster":
        command[0] = str(Path(sys.executable).with_name("dagster"))
    return command


def step_of(job: SimulatedJob) -> str:
    label = job.body.metadata.labels["dagster/op"]  # e.g. video_graph.infer_pose_range-frames_6_12
    return label.rpartition(".")[2].partition("-")[0]


def process_video_on_k8s() -> dg.JobDefinition:
    """Reconstructable in each step's process: the definitions with BODYSCRIPT_EXECUTOR=k8s."""
    from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions
    from bodyscript_pipeline.settings import Settings

    return build_definitions(Settings.from_env()).resolve_job_def(PROCESS_VIDEO_JOB)


def fleet_summary_on_k8s() -> dg.JobDefinition:
    """Reconstructable: a run of ``fleet_summary`` alone, as its automation condition launches it."""
    from bodyscript_pipeline.definitions import build_definitions
    from bodyscript_pipeline.settings import Settings

    job = dg.define_asset_job("fleet_summary_alone", selection=[dg.AssetKey("fleet_summary")])
    defs = dg.Definitions.merge(build_definitions(Settings.from_env()), dg.Definitions(jobs=[job]))
    return defs.resolve_job_def(job.name)


def in_code_location(job: ReconstructableJob, container_context: Mapping[str, Any]) -> ReconstructableJob:
    """``job`` as a code server started with ``--container-context`` serves it: the Helm chart passes each user
    deployment's pod settings this way, and dagster-k8s merges them into run and step pods."""
    return job._replace(repository=job.repository._replace(container_context=dict(container_context)))


@contextmanager
def simulated_k8s(
    workdir: Path, dagster_home: Path, launcher: Mapping[str, Any] | None = None
) -> Iterator[tuple[SimulatedCluster, dg.DagsterInstance]]:
    """A simulated cluster behind dagster-k8s's client, and an instance whose run launcher targets it, with
    ``launcher`` added to the run launcher's config (as the Helm chart renders it into dagster.yaml). The caller
    sets BODYSCRIPT_EXECUTOR=k8s. Yields the cluster and the instance. This process, the run worker, holds the
    cluster's credentials."""
    from dagster_k8s import client as k8s_client
    from kubernetes.config import kube_config

    cluster = SimulatedCluster(workdir)
    cluster.kubeconfig.write_text(KUBECONFIG)
    original = k8s_client.DagsterKubernetesClient.production_client
    original_kubeconfig = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    k8s_client.DagsterKubernetesClient.production_client = staticmethod(  # type: ignore[method-assign]
        lambda batch_api_override=None, core_api_override=None: k8s_client.DagsterKubernetesClient(
            cluster, cluster, print, lambda _: None, time.time
        )
    )
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    config = {
        "service_account_name": "bodyscript-dagster",
        "job_image": "registry.example.com/bodyscript:1.0",
        "dagster_home": str(dagster_home),
        "instance_config_map": "dagster-instance",
        "load_incluster_config": False,
        "job_namespace": "bodyscript",
        **(launcher or {}),
    }
    dagster_home.mkdir(parents=True, exist_ok=True)
    launcher_yaml = {"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(launcher_yaml, sort_keys=False))
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            yield cluster, instance
    finally:
        k8s_client.DagsterKubernetesClient.production_client = original  # type: ignore[method-assign]
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = original_kubeconfig


def run_partition(
    instance: dg.DagsterInstance,
    partition: str,
    job: ReconstructableJob | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
) -> dg.ExecutionResult:
    """The product's process_video job for one partition (its ``asset_selection``, default all), through the
    real k8s_job_executor (which takes its cluster settings from the instance's K8sRunLauncher: its own config is
    locked)."""
    return dg.execute_job(
        job or dg.reconstructable(process_video_on_k8s),
        instance=instance,
        tags={"dagster/partition": partition},
        asset_selection=asset_selection,
    )
