"""A stand-in for the Kubernetes batch and core APIs that runs each Job's container as a local process.

dagster-k8s builds the real Job objects (image, command, environment, labels, resources) and polls their
status through these clients; here, creating a Job starts its container's command with its environment,
and the Job's status follows the process. Everything the executor produces is exercised, not only rendered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
from kubernetes.client import V1Job, V1JobStatus, V1ObjectMeta

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: simulated, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: simulated, user: {token: unused}}]
contexts: [{name: simulated, context: {cluster: simulated, user: simulated, namespace: bodyscript}}]
current-context: simulated
"""


@dataclass
class SimulatedJob:
    body: V1Job
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class SimulatedCluster:
    workdir: Path
    jobs: dict[str, SimulatedJob] = field(default_factory=dict)

    def create_namespaced_job(self, namespace: str, body: V1Job, **_: Any) -> V1Job:
        (container,) = body.spec.template.spec.containers
        env = {**os.environ, **{e.name: e.value for e in container.env or [] if e.value is not None}}
        command = [*(container.command or []), *(container.args or [])]
        if command and command[0] == "dagster":
            command[0] = str(Path(sys.executable).with_name("dagster"))
        name = body.metadata.name
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.jobs[name] = SimulatedJob(body, process, log)
        return body

    def read_namespaced_job_status(self, name: str, namespace: str, **_: Any) -> V1Job:
        job = self.jobs.get(name)
        if job is None:
            raise kubernetes.client.rest.ApiException(status=404, reason="Not Found")
        code = job.process.poll()
        status = V1JobStatus(
            active=1 if code is None else None,
            succeeded=1 if code == 0 else None,
            failed=1 if code not in (None, 0) else None,
        )
        return V1Job(metadata=V1ObjectMeta(name=name, namespace=namespace), status=status)

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> None:
        job = self.jobs.get(name)
        if job is not None and job.process.poll() is None:
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

    def wait(self) -> None:
        for job in self.jobs.values():
            job.process.wait(timeout=600)

    def steps(self) -> list[str]:
        """The step of each Job started, in order (``derived``, ``pose``, ``infer_pose_range``...)."""
        names = []
        for job in self.jobs.values():
            label = job.body.metadata.labels["dagster/op"]  # e.g. video_graph.infer_pose_range-frames_6_12
            names.append(label.rpartition(".")[2].partition("-")[0])
        return names


def process_video_on_k8s() -> dg.JobDefinition:
    """Reconstructable in each step's process: the definitions with BODYSCRIPT_EXECUTOR=k8s."""
    from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions
    from bodyscript_pipeline.settings import Settings

    return build_definitions(Settings.from_env()).resolve_job_def(PROCESS_VIDEO_JOB)


@contextmanager
def simulated_k8s(workdir: Path, dagster_home: Path) -> Iterator[tuple[SimulatedCluster, dg.DagsterInstance]]:
    """A simulated cluster behind dagster-k8s's client, and an instance whose run launcher targets it.
    The caller sets BODYSCRIPT_EXECUTOR=k8s. Yields the cluster and the instance."""
    from dagster_k8s import client as k8s_client

    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    cluster = SimulatedCluster(workdir)
    original = k8s_client.DagsterKubernetesClient.production_client
    k8s_client.DagsterKubernetesClient.production_client = staticmethod(  # type: ignore[method-assign]
        lambda batch_api_override=None, core_api_override=None: k8s_client.DagsterKubernetesClient(
            cluster, cluster, print, lambda _: None, time.time
        )
    )
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(
        f"""
run_launcher:
  module: dagster_k8s
  class: K8sRunLauncher
  config:
    service_account_name: bodyscript-dagster
    job_image: registry.example.com/bodyscript:1.0
    dagster_home: {dagster_home}
    instance_config_map: dagster-instance
    load_incluster_config: false
    kubeconfig_file: {kubeconfig}
    job_namespace: bodyscript
"""
    )
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            yield cluster, instance
    finally:
        k8s_client.DagsterKubernetesClient.production_client = original  # type: ignore[method-assign]


def run_partition(instance: dg.DagsterInstance, partition: str) -> dg.ExecutionResult:
    """The product's process_video job for one partition, through the real k8s_job_executor (which takes its
    cluster settings from the instance's K8sRunLauncher: its own config is locked)."""
    return dg.execute_job(
        dg.reconstructable(process_video_on_k8s),
        instance=instance,
        tags={"dagster/partition": partition},
    )
