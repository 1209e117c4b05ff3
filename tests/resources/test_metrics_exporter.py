"""The Prometheus exporter (`bodyscript monitor`) against real parts: a Dagster instance with real runs, the real
daemon and drop-zone sensor, and a real Prometheus server that scrapes it and answers the dashboard's queries."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from assets.jobs import PROCESS_VIDEO_JOB
from bodyscript_pipeline.drop_zone.listing import DropObject
from bodyscript_pipeline.drop_zone.scan import NewVersion, ScanResult, ScanState
from bodyscript_pipeline.monitoring.families import PipelineMetrics
from bodyscript_pipeline.monitoring.lake_usage import bytes_per_table
from bodyscript_pipeline.monitoring.scan_summary import ScanCounts, parse_scan_summary
from bodyscript_pipeline.settings import Settings
from resources.metrics_exporter import InstanceMetrics, ReadLimits, step_name
from tests.support.observed_runs import install_dagster_yaml
from tests.support.repo import REPO
from tests.support.video_factory import clip_of
from tests.support.waits import wait_for

MONITORING = REPO / "deploy" / "monitoring"
BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
PROMETHEUS = Path("/usr/bin/prometheus")  # Debian's package `prometheus` (.ci/run installs it)
K8S_VERSION = "1.30"
CLIP_FRAMES = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def metric_families() -> PipelineMetrics:
    return PipelineMetrics.create(["pose", "derived"], ["frames", "landmarks"])


def sample(metrics: PipelineMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


# --- the drop-zone scan summary -----------------------------------------------------------------------------


def test_scan_summary_reads_back_every_count_of_describe() -> None:
    """The counts come back from the sensor's own text; a changed wording fails here, not silently in production."""
    found = NewVersion(DropObject("lab/a.mp4", "file:///drop/lab/a.mp4", 10, 1.0, None), "v1")
    result = ScanResult(
        new=[found, found, found], state=ScanState(after="lab/z.mp4"), listed=41, ignored=5, skipped=1,
        settling=7, pages=2, over_quota=11, over_global_quota=13,
    )  # fmt: skip
    counts = parse_scan_summary(result.describe())
    assert counts == ScanCounts(new=3, listed=41, settling=7, over_prefix_quota=11, over_global_quota=13)
    assert counts.backlog == {"settling": 7, "prefix_quota": 11, "global_quota": 13}
    assert parse_scan_summary("Sensor function returned an empty result") is None


# --- the lake -------------------------------------------------------------------------------------------------


def test_lake_bytes_per_table_and_a_table_gone(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "landmarks" / "video=a").mkdir(parents=True)
    (lake / "landmarks" / "video=a" / "part-0.parquet").write_bytes(b"x" * 1000)
    (lake / "landmarks" / "video=b").mkdir()
    (lake / "landmarks" / "video=b" / "part-0.parquet").write_bytes(b"x" * 234)
    (lake / "overlays" / "video=a").mkdir(parents=True)
    (lake / "overlays" / "video=a" / "overlay.mp4").write_bytes(b"x" * 5000)
    (lake / "stray.txt").write_bytes(b"not a table")
    assert bytes_per_table(f"file://{tmp_path}/missing") == {}
    usage = bytes_per_table(f"file://{lake}")
    assert usage == {"landmarks": 1234, "overlays": 5000}

    metrics = metric_families()
    metrics.set_lake_bytes(usage)
    shutil.rmtree(lake / "overlays")
    metrics.set_lake_bytes(bytes_per_table(f"file://{lake}"))
    assert sample(metrics, "bodyscript_lake_bytes", table="landmarks") == 1234
    assert metrics.registry.get_sample_value("bodyscript_lake_bytes", {"table": "overlays"}) is None


def test_step_names_drop_graph_prefix_and_mapping_key() -> None:
    assert step_name("pose") == "pose"
    assert step_name("video_assets_by_range.infer_pose_range[frames_9000_18000]") == "infer_pose_range"


# --- bounded cost ---------------------------------------------------------------------------------------------

# Queued runs need an origin to be launched from; these are never launched.
QUEUED_ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("bodyscript"), "__repository__"), PROCESS_VIDEO_JOB
)


def add_finished_run(instance: dg.DagsterInstance, job: str, success: bool) -> None:
    """A run with its real RUN_START and RUN_SUCCESS or RUN_FAILURE events (each run has its own SQLite shard,
    which makes these cost about half a second each)."""
    run = instance.add_run(dg.DagsterRun(job_name=job, run_id=str(uuid.uuid4())))
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=job), run.run_id)
    if success:
        instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=job), run.run_id)
    else:
        instance.report_run_failed(run)


def test_a_refresh_reads_a_bounded_number_of_records_whatever_the_history() -> None:
    limit = 2
    # Per refresh at most: 4 event types x limit events, a run record for each of their runs, the oldest queued run.
    bound = 4 * limit + 4 * limit + 1
    with dg.instance_for_test() as instance:
        for _ in range(300):  # a long queue: the refresh counts it, never reads it
            queued = dg.DagsterRun(job_name=PROCESS_VIDEO_JOB, status=dg.DagsterRunStatus.QUEUED,
                                   remote_job_origin=QUEUED_ORIGIN)  # fmt: skip
            instance.add_run(queued)
        add_finished_run(instance, "fleet_summary_job", success=True)
        for i in range(5):
            add_finished_run(instance, PROCESS_VIDEO_JOB, success=i % 4 != 0)
        add_finished_run(instance, "fleet_summary_job", success=True)  # another job: read, not counted

        reader = InstanceMetrics(instance, metric_families(), ReadLimits(events=limit, backfill=limit))
        metrics = reader.metrics
        first = reader.refresh()
        assert 0 < first <= bound
        assert sample(metrics, "bodyscript_queue_depth") == 300
        assert sample(metrics, "bodyscript_queue_oldest_wait_seconds") > 0
        # The first refresh reads only the newest `backfill` events of each type: of the starts and successes, the
        # last fleet_summary_job run's and the last video run's; both video failures.
        assert sample(metrics, "bodyscript_video_runs_total", outcome="success") == 1
        assert sample(metrics, "bodyscript_video_runs_total", outcome="failure") == 2
        assert sample(metrics, "bodyscript_queue_wait_seconds_count") == 1
        assert reader.refresh() == 1, "nothing new: only the oldest queued run is read"

        for i in range(7):
            add_finished_run(instance, PROCESS_VIDEO_JOB, success=i % 4 != 0)
        reads = [reader.refresh()]
        while reads[-1] > 1:
            reads.append(reader.refresh())
        assert max(reads) <= bound
        assert len(reads) > 7 // limit, "the new runs were read a page at a time"
        assert sample(metrics, "bodyscript_video_runs_total", outcome="success") == 1 + 5
        assert sample(metrics, "bodyscript_video_runs_total", outcome="failure") == 2 + 2
        assert sample(metrics, "bodyscript_queue_wait_seconds_count") == 1 + 7
        assert sample(metrics, "bodyscript_video_processing_seconds_count") == 1 + 5
        assert sample(metrics, "bodyscript_exporter_records_read_total") == first + 1 + sum(reads)


# --- a real Prometheus --------------------------------------------------------------------------------------


def prometheus_binary() -> Path:
    if PROMETHEUS.is_file():
        return PROMETHEUS
    if os.environ.get("CI"):
        pytest.fail(f"{PROMETHEUS} missing: install Debian's package prometheus (.ci/run does)")
    pytest.skip(f"{PROMETHEUS} missing: apt-get install prometheus")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def daemon(bodyscript_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """`dagster-daemon run` on the repo's workspace and dagster.yaml, scanning the drop zone every 2 s under a
    global quota of one video an hour. The instance's storage is made here first: processes that create it at
    the same time can collide."""
    monkeypatch.setenv("BODYSCRIPT_SENSOR_INTERVAL_S", "2")
    monkeypatch.setenv("BODYSCRIPT_SETTLE_S", "1")
    monkeypatch.setenv("BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR", "1")
    home = bodyscript_home.dagster_home
    install_dagster_yaml(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        log = (bodyscript_home.home / "daemon.log").open("wb")
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
            cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield instance
        finally:
            stop(process)
            log.close()


@pytest.fixture
def exporter_url(daemon: dg.DagsterInstance, bodyscript_home: Settings) -> Iterator[str]:
    """`bodyscript monitor` on the daemon's instance, reading it every second."""
    port = free_port()
    log = (bodyscript_home.home / "monitor.log").open("wb")
    args = ["monitor", "--port", str(port), "--interval", "1", "--lake-interval", "1"]
    process = subprocess.Popen([BODYSCRIPT, *args], stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                               start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: process.poll() is not None or reachable(url), 60, "the exporter")
        assert process.poll() is None, (bodyscript_home.home / "monitor.log").read_text()
        yield url
    finally:
        stop(process)
        log.close()


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


@pytest.fixture
def prometheus(exporter_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on loopback with the shipped scrape config, pointed at the exporter every second."""
    binary = prometheus_binary()
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    job["scrape_timeout"] = "1s"
    job["static_configs"] = [{"targets": [urllib.parse.urlsplit(exporter_url).netloc]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [str(binary), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or reachable(f"{api}/-/ready"), 60, "Prometheus")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield api
    finally:
        stop(process)
        log.close()


def query(api: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    assert answer["data"]["resultType"] == "vector", expr
    return answer["data"]["result"]


def values(api: str, expr: str) -> list[float]:
    return [float(series["value"][1]) for series in query(api, expr)]


def test_every_dashboard_query_answers_from_a_real_prometheus(
    daemon: dg.DagsterInstance,
    prometheus: str,
    bodyscript_home: Settings,
    demo_video: Path,
    tmp_path: Path,
) -> None:
    """Two videos dropped under a global quota of one an hour: the first is processed by a real run the daemon
    launched, the second waits over the quota. Every panel's query then answers with figures."""
    wait_for(lambda: values(prometheus, 'up{job="bodyscript"}') == [1.0], 60, "Prometheus to scrape the exporter")
    clip = clip_of(demo_video, tmp_path / "clip.mp4", CLIP_FRAMES, size=(884, 496))
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://")) / "lab"
    drop.mkdir(parents=True)
    shutil.copyfile(clip, drop / "a.mp4")
    shutil.copyfile(clip, drop / "b.mp4")

    def succeeded() -> list[float]:
        return values(prometheus, 'bodyscript_video_runs_total{outcome="success"}')

    wait_for(lambda: succeeded() == [1.0], 300, "the run of the first video, scraped")
    wait_for(lambda: values(prometheus, "sum(bodyscript_lake_bytes)") not in ([], [0.0]), 30, "the lake's bytes")
    time.sleep(3)  # a few more scrapes after the run

    (run,) = daemon.get_runs(dg.RunsFilter(job_name=PROCESS_VIDEO_JOB))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert values(prometheus, 'bodyscript_drop_zone_backlog{reason="global_quota"}') == [1.0], "b.mp4 waits"
    assert values(prometheus, 'bodyscript_drop_zone_quota_refusals_total{quota="global"}')[0] >= 1
    assert values(prometheus, "bodyscript_drop_zone_new_versions_total") == [1.0]
    assert values(prometheus, 'bodyscript_pose_delegate_total{delegate="cpu"}') == [1.0]
    assert values(prometheus, 'bodyscript_step_seconds_count{step="pose"}') == [1.0]
    assert values(prometheus, "bodyscript_queue_wait_seconds_count") == [1.0], "the daemon's run came through the queue"
    assert values(prometheus, 'bodyscript_frames_per_second_count{asset="landmarks"}') == [1.0]
    assert values(prometheus, "bodyscript_video_estimated_cost_sum")[0] > 0
    assert values(prometheus, 'bodyscript_lake_bytes{table="landmarks"}')[0] > 0

    queries = dashboard_queries()
    assert len(queries) >= 14
    for title, expr in queries:
        answered = values(prometheus, expr)
        assert answered, f"{title}: no data for {expr}"
        assert any(math.isfinite(value) for value in answered), f"{title}: {expr} gave {answered}"


def test_monitor_on_a_busy_port_fails_in_one_line(bodyscript_home: Settings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([BODYSCRIPT, "monitor", "--port", str(port)], capture_output=True, text=True,
                              timeout=120, env=os.environ.copy())  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"bodyscript: error: cannot serve metrics on 127.0.0.1:{port}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- deploy/monitoring ----------------------------------------------------------------------------------------


def test_dashboard_queries_only_name_exported_metrics() -> None:
    exported = exported_names()
    functions = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "time", "le"}
    for title, expr in dashboard_queries():
        names = set(re.findall(r"\b(bodyscript_[a-z_]+)", expr))
        assert names, f"{title}: {expr} reads no bodyscript metric"
        assert names <= exported, f"{title}: {sorted(names - exported)} are not exported"
        words = set(re.findall(r"\b([a-z_]+)\s*\(", expr))
        assert words <= functions, f"{title}: unexpected functions {words - functions}"


def exported_names() -> set[str]:
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count", ""]}
    families = metric_families().registry.collect()
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def test_the_readme_names_only_exported_metrics() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Monitoring") : text.index("## Architecture")]
    names = set(re.findall(r"`(bodyscript_[a-z_]+)", section)) - {"bodyscript_exporter_"}
    assert len(names) >= 15
    assert names <= exported_names(), sorted(names - exported_names())


def test_the_dagster_free_half_loads_without_dagster() -> None:
    modules = ["families", "lake_usage", "refresh_loop", "scan_summary"]
    code = "; ".join(f"import bodyscript_pipeline.monitoring.{m}" for m in modules)
    code += "; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


def test_exporter_manifests_are_valid_and_locked_down() -> None:
    documents = [doc for path in sorted(MONITORING.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    for doc in documents:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION, doc["metadata"]["name"]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    (service,) = [doc for doc in documents if doc["kind"] == "Service"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"][:2] == ["bodyscript", "monitor"]
    assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", container["image"]), "the image is pinned by digest"
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    port = container["ports"][0]
    assert container["command"][container["command"].index("--port") + 1] == str(port["containerPort"])
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    target = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert target["targets"] == [f"{name}.{namespace}.svc:{service['spec']['ports'][0]['port']}"]
