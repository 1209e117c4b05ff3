"""The deploy files as a cluster and a registry would take them: NetworkPolicies, the image's locks and pins.

The NetworkPolicies are checked against the Kubernetes schema and then evaluated: a small evaluator of the
NetworkPolicy rules (selectors, peers, ports, ipBlocks) answers "may pod A open a connection to B on port P"
for pods labelled as the official Dagster Helm chart and dagster-k8s label them. Nothing here needs a network.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ipaddress
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.repo import REPO

K8S_VERSION = "1.30"  # the schema tests/assets/test_pods.py validates Jobs against
NAMESPACE = "bodyscript"
RELEASE = "bodyscript"  # helm upgrade --install bodyscript dagster/dagster (deploy/helm/values.yaml)
RUNTIME_LOCK = REPO / "requirements-runtime.lock"
DEV_LOCK = REPO / "requirements.lock"
# registry[:port]/path:tag@sha256:digest, the form the chart's "<repository>:<tag>" must come out as.
IMAGE_BY_DIGEST = r"[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+:\w[\w.-]{0,127}@sha256:[0-9a-f]{64}"
METADATA_ENDPOINTS = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))


@functools.cache
def manifests() -> list[tuple[str, dict]]:
    documents = []
    for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml")):
        documents += [(f"{path.name}#{i}", doc) for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc]
    return documents


@functools.cache
def network_policies() -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(("where", "doc"), manifests(), ids=[where for where, _ in manifests()])
def test_every_manifest_is_valid_kubernetes(where: str, doc: dict) -> None:
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION, where


# --- a NetworkPolicy evaluator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict = field(hash=False)
    ip: str


@dataclass(frozen=True)
class External:
    name: str
    ip: str


@functools.cache
def namespace_labels() -> dict[str, dict[str, str]]:
    """Every namespace carries kubernetes.io/metadata.name (set by the API server); ours also its own labels."""
    (ours,) = [doc for _, doc in manifests() if doc["kind"] == "Namespace"]
    assert ours["metadata"]["name"] == NAMESPACE
    names = (NAMESPACE, "kube-system", "ingress-nginx", "storage", "elsewhere")
    labels = {name: {"kubernetes.io/metadata.name": name} for name in names}
    labels[NAMESPACE] |= ours["metadata"].get("labels", {})
    return labels


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions, all of them ANDed; {} selects everything."""
    if selector is None:
        return True
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def in_ip_block(block: dict, ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(
        address in ipaddress.ip_network(excluded)
        for excluded in block.get("except") or []
        if ipaddress.ip_network(excluded).version == address.version
    )


def peer_matches(peer: dict, policy_namespace: str, other: Pod | External) -> bool:
    if "ipBlock" in peer:
        # Whether an ipBlock also matches pod IPs depends on the CNI (Calico: yes); assume it does, which
        # only ever lets more through, so a "denied" below holds on every CNI.
        return in_ip_block(peer["ipBlock"], other.ip)
    if isinstance(other, External):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels()[other.namespace]):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        assert isinstance(entry["port"], int), f"named port {entry['port']!r}: this evaluator only knows numbers"
        if entry["port"] <= port <= entry.get("endPort", entry["port"]):
            return True
    return False


def policy_types(policy: dict) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])


def direction_allows(direction: str, pod: Pod, other: Pod | External, port: int, protocol: str) -> bool:
    """Whether the policies let pod send (Egress) to, or receive (Ingress) from, other on port."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    applying = [
        p
        for p in network_policies()
        if p["metadata"]["namespace"] == pod.namespace
        and direction in policy_types(p)
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not applying:
        return True  # not isolated in this direction
    for policy in applying:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if not port_matches(rule.get("ports"), port, protocol):
                continue
            if not peers or any(peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers):
                return True
    return False


def can_connect(source: Pod, target: Pod | External, port: int, protocol: str = "TCP") -> bool:
    if not direction_allows("Egress", source, target, port, protocol):
        return False
    return isinstance(target, External) or direction_allows("Ingress", target, source, port, protocol)


# --- the pods, labelled as the chart and dagster-k8s label them ------------------------------------------------


def job_pod_labels(component: str) -> dict[str, str]:
    """The pod labels of a Job dagster-k8s launches: run workers (K8sRunLauncher) and steps (k8s_job_executor)."""
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image="registry.example.com/bodyscript:1.0", dagster_home="/opt/dagster"),
        args=["dagster", "api", "execute_run"],
        job_name=f"dagster-{component.replace('_', '-')}-0123456789abcdef",
        component=component,
        labels={"dagster/run-id": "0123456789abcdef"},
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]["template"]["metadata"]["labels"]


def user_deployment_name() -> str:
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    return values["dagster-user-deployments"]["deployments"][0]["name"]


def chart_labels(**extra: str) -> dict[str, str]:
    """The Dagster chart's selector labels (templates/_helpers.tpl) plus a component's own labels."""
    return {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": RELEASE, **extra}


class Pods:
    webserver = Pod("webserver", NAMESPACE, chart_labels(component="dagster-webserver"), "10.244.0.10")
    daemon = Pod("daemon", NAMESPACE, chart_labels(component="dagster-daemon", deployment="daemon"), "10.244.0.11")
    code_server = Pod(
        "code-server",
        NAMESPACE,
        chart_labels(component="user-deployments", deployment=user_deployment_name()),
        "10.244.0.12",
    )
    run_worker = Pod("run-worker", NAMESPACE, job_pod_labels("run_worker"), "10.244.0.13")
    step_worker = Pod("step-worker", NAMESPACE, job_pod_labels("step_worker"), "10.244.0.14")
    # The chart's PostgreSQL: bitnami/postgresql 8.1.0 labels its pods app/release/role.
    postgresql = Pod(
        "postgresql",
        NAMESPACE,
        {"app": "postgresql", "release": RELEASE, "role": "master", "chart": "postgresql-8.1.0", "heritage": "Helm"},
        "10.244.0.15",
    )
    # Anything else that lands in the namespace: a debug pod, a compromised sidecar, a later addition.
    stranger = Pod("stranger", NAMESPACE, {"app": "debug", "run": "shell"}, "10.244.0.16")
    elsewhere = Pod("elsewhere", "elsewhere", {"app": "other-team"}, "10.244.9.9")
    ingress_controller = Pod(
        "ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, "10.244.8.8"
    )
    kube_dns = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.7.7")
    minio = Pod("minio", "storage", {"app": "minio"}, "10.244.6.6")


DAGSTER = (Pods.webserver, Pods.daemon, Pods.code_server, Pods.run_worker, Pods.step_worker)
EVERY_POD_HERE = (*DAGSTER, Pods.postgresql, Pods.stranger)
S3 = External("s3.amazonaws.com", "52.216.8.10")
S3_V6 = External("s3 over ipv6", "2600:1fa0:80b4:db49::1")
API_SERVER_KUBEADM = External("kubeadm api server", "192.168.10.5")  # port 6443
API_SERVER_MANAGED = External("managed api server", "172.20.0.1")  # port 443
METADATA = [External("instance metadata", str(ip)) for ip in METADATA_ENDPOINTS]


def test_the_namespace_denies_everything_by_default() -> None:
    deny_all = [
        p
        for p in network_policies()
        if p["metadata"]["namespace"] == NAMESPACE
        and p["spec"]["podSelector"] in ({}, None)
        and set(policy_types(p)) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny_all, "no default-deny (ingress and egress) NetworkPolicy for the namespace"
    for port in (22, 80, 443, 3030, 5432, 8080, 9000):
        for target in (*EVERY_POD_HERE, Pods.minio, Pods.elsewhere):
            if target is not Pods.stranger:
                assert not can_connect(Pods.stranger, target, port), (target.name, port)
            assert not can_connect(Pods.elsewhere, Pods.stranger, port), port
        assert not can_connect(Pods.stranger, S3, port), port


def test_the_code_server_accepts_only_the_webserver_the_daemon_and_run_workers() -> None:
    allowed = {Pods.webserver, Pods.daemon, Pods.run_worker}
    for source in (*EVERY_POD_HERE, Pods.elsewhere, Pods.ingress_controller):
        if source is Pods.code_server:
            continue
        assert can_connect(source, Pods.code_server, 3030) == (source in allowed), source.name
        # The code server's own policy, whatever the caller's egress says: a pod with open egress gets no further.
        assert direction_allows("Ingress", Pods.code_server, source, 3030, "TCP") == (source in allowed), source.name
    for port in (22, 80, 443, 5432, 8080):
        for source in allowed:
            assert not can_connect(source, Pods.code_server, port), (source.name, port)


def test_postgresql_accepts_only_dagster_components() -> None:
    for source in (*EVERY_POD_HERE, Pods.elsewhere, Pods.ingress_controller):
        if source is Pods.postgresql:
            continue
        assert can_connect(source, Pods.postgresql, 5432) == (source in DAGSTER), source.name
        assert direction_allows("Ingress", Pods.postgresql, source, 5432, "TCP") == (source in DAGSTER), source.name
    # A later chart labels its pods the recommended way; the same components still reach it.
    recommended = Pod(
        "postgresql-recommended-labels",
        NAMESPACE,
        {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": RELEASE},
        "10.244.0.17",
    )
    for source in (*DAGSTER, Pods.stranger):
        assert can_connect(source, recommended, 5432) == (source in DAGSTER), source.name
        assert direction_allows("Ingress", recommended, source, 5432, "TCP") == (source in DAGSTER), source.name


def test_a_managed_postgresql_is_reached_by_dagster_components_only() -> None:
    # deploy/helm/values.yaml may point at a database outside the cluster (postgresql.enabled: false,
    # postgresqlHost): a private VPC address, reached on 5432 by the same components and no one else.
    managed = External("managed postgresql", "10.20.30.40")
    for source in EVERY_POD_HERE:
        assert can_connect(source, managed, 5432) == (source in DAGSTER), source.name
    for source in DAGSTER:
        assert not can_connect(source, External("a public address", "52.216.8.10"), 5432), source.name
        assert not can_connect(source, managed, 22), source.name


def test_the_webserver_is_reached_only_from_the_ingress_controller() -> None:
    assert can_connect(Pods.ingress_controller, Pods.webserver, 80)
    for source in (*EVERY_POD_HERE, Pods.elsewhere):
        if source is not Pods.webserver:
            assert not can_connect(source, Pods.webserver, 80), source.name
            assert not direction_allows("Ingress", Pods.webserver, source, 80, "TCP"), source.name


def test_the_metadata_endpoint_is_excluded_from_every_egress_ip_block() -> None:
    blocks = [
        peer["ipBlock"]
        for policy in network_policies()
        for rule in policy["spec"].get("egress") or []
        for peer in rule.get("to") or []
        if "ipBlock" in peer
    ]
    assert blocks, "no egress to addresses outside the cluster (S3, the API server)"
    for block in blocks:
        for endpoint in METADATA_ENDPOINTS:
            if endpoint.version == ipaddress.ip_network(block["cidr"]).version:
                assert not in_ip_block(block, str(endpoint)), (block, str(endpoint))
    covered = {ipaddress.ip_network(block["cidr"]) for block in blocks}
    assert ipaddress.ip_network("0.0.0.0/0") in covered and ipaddress.ip_network("::/0") in covered
    for policy in network_policies():
        for rule in policy["spec"].get("egress") or []:
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule open to every address"
    for source in EVERY_POD_HERE:
        for target in METADATA:
            for port in (80, 443, 8775):
                assert not can_connect(source, target, port), (source.name, target.ip, port)


def test_every_pod_resolves_names_through_kube_dns_only() -> None:
    for source in EVERY_POD_HERE:
        for protocol in ("UDP", "TCP"):
            assert can_connect(source, Pods.kube_dns, 53, protocol), (source.name, protocol)
            assert not can_connect(source, External("public resolver", "8.8.8.8"), 53, protocol), source.name
            assert not can_connect(source, Pods.elsewhere, 53, protocol), source.name


def test_object_storage_and_the_api_server_only_for_the_components_that_use_them() -> None:
    # S3 (lake, drop zone, compute logs) and MinIO: every Dagster component (the webserver reads compute logs,
    # the daemon writes backfill logs, the code server's sensor lists the drop zone); nothing else.
    for source in EVERY_POD_HERE:
        needs = source in DAGSTER
        assert can_connect(source, S3, 443) == needs, source.name
        assert can_connect(source, S3_V6, 443) == needs, source.name
        assert can_connect(source, Pods.minio, 9000) == needs, source.name
        assert not can_connect(source, S3, 80), source.name
        assert not can_connect(source, Pods.minio, 9001), source.name  # the MinIO console
    # The API server: the daemon (run Jobs), run workers (step Jobs), the webserver (terminating runs).
    creates_jobs = {Pods.daemon, Pods.run_worker, Pods.webserver}
    for source in EVERY_POD_HERE:
        assert can_connect(source, API_SERVER_KUBEADM, 6443) == (source in creates_jobs), source.name
    for source in creates_jobs:
        assert can_connect(source, API_SERVER_MANAGED, 443), source.name
    # PostgreSQL talks to no one.
    for target in (S3, Pods.minio, API_SERVER_MANAGED, Pods.code_server):
        for port in (443, 9000, 3030):
            assert not can_connect(Pods.postgresql, target, port), (target.name, port)


# --- the image: its locks, its base, its reference in the Helm values ------------------------------------------


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip requirements file; every requirement must be name==version."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = {}
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)((?:\s+--hash=\S+)*)", line)
        assert match, f"{path.name}: not an exact pin with hashes only: {line[:120]!r}"
        name = canonicalize_name(match[1])
        assert name not in entries, f"{path.name}: {name} twice"
        entries[name] = (match[2], match[3].split())
    return entries


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def dependency_closure(requirements: list[str]) -> set[str]:
    """Names of requirements and all they need on this interpreter (Python 3.11, Linux), extras followed."""
    names: set[str] = set()
    done: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        names.add(name)
        for extra in {"", *requirement.extras} - {e for n, e in done if n == name}:
            done.add((name, extra))
            for requirement_text in importlib.metadata.distribution(name).requires or []:
                needed = Requirement(requirement_text)
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    todo.append(needed)
    return names


def test_the_runtime_lock_has_a_hash_for_every_requirement() -> None:
    entries = lock_entries(RUNTIME_LOCK)
    assert len(entries) > 50
    for name, (_, hashes) in entries.items():
        assert hashes, f"{name} has no hash"
        for item in hashes:
            assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", item), (name, item)


def test_the_runtime_lock_pins_what_requirements_lock_pins() -> None:
    runtime, dev = lock_entries(RUNTIME_LOCK), lock_entries(DEV_LOCK)
    build = {canonicalize_name(Requirement(r).name) for r in pyproject()["build-system"]["requires"]}
    assert set(runtime) - set(dev) <= build, "in the runtime lock but not in requirements.lock"
    for name in set(runtime) & set(dev):
        assert runtime[name][0] == dev[name][0], f"{name}: {runtime[name][0]} here, {dev[name][0]} in requirements.lock"
    # Exactly what the image needs: pyproject's runtime dependencies, all they need, and the build backend
    # (pip install --no-deps installs nothing else, so anything missing here would be missing in the image).
    wanted = dependency_closure(pyproject()["project"]["dependencies"]) | build
    assert set(runtime) == wanted, (sorted(set(runtime) - wanted), sorted(wanted - set(runtime)))


def test_the_runtime_lock_has_no_test_or_dev_package() -> None:
    runtime = set(lock_entries(RUNTIME_LOCK))
    dev_roots = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["optional-dependencies"]["dev"]}
    tools = {"pytest", "moto", "ruff", "playwright", "kubernetes-validate", "uv", "pip-tools", "mypy", "coverage"}
    only_for_tests = set(lock_entries(DEV_LOCK)) - dependency_closure(pyproject()["project"]["dependencies"])
    assert {"pytest", "moto", "ruff", "kubernetes-validate", "flask", "cfn-lint"} <= dev_roots | only_for_tests
    assert not runtime & (dev_roots | tools | only_for_tests), sorted(runtime & (dev_roots | tools | only_for_tests))


def test_the_runtime_lock_has_one_opencv() -> None:
    opencv = {name for name in lock_entries(RUNTIME_LOCK) if name.startswith("opencv")}
    assert opencv == {"opencv-contrib-python"}


def dockerfile_instructions() -> list[str]:
    text = re.sub(r"\\\n", " ", (REPO / "deploy" / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_dockerfile_pins_its_base_by_digest_and_installs_only_hashed_packages() -> None:
    instructions = dockerfile_instructions()
    stages: set[str] = set()
    froms = [i for i in instructions if i.split()[0].upper() == "FROM"]
    assert froms
    for instruction in froms:
        words = [w for w in instruction.split()[1:] if not w.startswith("--")]
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2])
        if image in stages:
            continue
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", image), f"not pinned by digest: {instruction}"
    runs = [i for i in instructions if i.split()[0].upper() == "RUN"]
    installs = [part for run in runs for part in re.split(r"&&|;", run) if re.search(r"\bpip3? install\b", part)]
    assert installs
    hashed = [
        part
        for part in installs
        if "--require-hashes" in part.split()
        and "--no-deps" in part.split()
        and re.search(r"-r\s+requirements-runtime\.lock\b", part)
    ]
    assert hashed, "no pip install --require-hashes --no-deps -r requirements-runtime.lock"
    for part in installs:
        if part in hashed:
            continue
        # The project itself, from the build context: no dependencies, no build backend fetched from an index.
        words = part.split()
        assert words[-1] == "." and {"--no-deps", "--no-build-isolation"} <= set(words), part
    assert any(re.match(r"COPY\s+.*\brequirements-runtime\.lock\b", i) for i in instructions)
    assert not any("requirements.lock" in i for i in instructions), "the dev/test lock has no place in the image"


def test_the_helm_values_reference_the_user_code_image_by_digest() -> None:
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    deployments = values["dagster-user-deployments"]["deployments"]
    assert deployments
    for deployment in deployments:
        image = deployment["image"]
        # The chart renders "<repository>:<tag>" (dagster.dagsterImage.name), for the code server and, through
        # DAGSTER_CURRENT_IMAGE, for every run and step Job: the digest rides in the tag.
        reference = f"{image['repository']}:{image['tag']}"
        assert re.fullmatch(IMAGE_BY_DIGEST, reference), reference
        assert image["pullPolicy"] in ("IfNotPresent", "Always")


def test_make_lock_regenerates_both_locks() -> None:
    plan = subprocess.run(["make", "-n", "lock"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "> requirements.lock" in plan
    assert "requirements-runtime.lock" in plan and "--generate-hashes" in plan
    assert plan.index("> requirements.lock") < plan.index("requirements-runtime.lock"), (
        "the runtime lock is constrained by requirements.lock, so comes after it"
    )
