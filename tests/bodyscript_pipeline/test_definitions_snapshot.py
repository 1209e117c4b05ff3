"""The code location as Dagster sees it, held to checked-in snapshots (after dagster-open-platform's test_defs.py):
for the local executor and for Kubernetes on an S3 lake, every asset (deps, group, kinds, code version,
automation condition, the node computing it, pools), every op (pool, retry policy, tags: the step pod's node
selector, tolerations and resources), the checks, jobs, sensors and schedules. A change to any of them shows as
a readable diff of tests/bodyscript_pipeline/snapshots/definitions_<executor>.json; after a deliberate change,
rewrite them with ``UPDATE_SNAPSHOTS=1 pytest tests/bodyscript_pipeline/test_definitions_snapshot.py`` and review
the diff.

And the definitions follow the settings they are built from, not the environment of the process: built with
non-default node pools, taint and input limits, every step's pod config is the one those settings make."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.pods import K8S_CONFIG_TAG, POD_SIZES, STEP_POD, k8s_config, staging_size
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.settings import Settings

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
# Fixed settings: the snapshot must not depend on the machine or the environment of the test run (a home that
# is never created: building definitions writes nothing).
HOME = "/nonexistent/bodyscript-snapshot"
EXECUTORS: dict[str, dict[str, str]] = {
    "local": {"BODYSCRIPT_HOME": HOME},
    "k8s": {"BODYSCRIPT_HOME": HOME, "BODYSCRIPT_EXECUTOR": "k8s", "BODYSCRIPT_LAKE_URI": "s3://lake/bodyscript"},
}


def condition(cond: dg.AutomationCondition | None) -> str | None:
    """An automation condition by its labels where it has them (``any_deps_updated``), else its operator's
    name over its operands: ``AND(SINCE(any_deps_updated, handled), NOT(in_progress))``."""
    if cond is None:
        return None
    if cond.get_label():
        return cond.get_label()
    children = cond.children
    return f"{cond.name}({', '.join(str(condition(child)) for child in children)})" if children else cond.name


def tags(raw: dict[str, str]) -> dict[str, Any]:
    """Op tags, the pod config (a JSON string in its tag) parsed so its fields read as fields."""
    return {key: json.loads(value) if key == K8S_CONFIG_TAG else value for key, value in sorted(raw.items())}


def retry(policy: dg.RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    backoff, jitter = policy.backoff, policy.jitter
    return {
        "max_retries": policy.max_retries,
        "delay": policy.delay,
        "backoff": backoff.value if backoff else None,
        "jitter": jitter.value if jitter else None,
    }


def nodes(assets_def: dg.AssetsDefinition) -> dict[str, dg.OpDefinition]:
    """The ops computing an assets definition, by node handle (``derived``, ``video_graph.derived``)."""
    node_def = assets_def.node_def
    if isinstance(node_def, dg.OpDefinition):
        return {node_def.name: node_def}
    assert isinstance(node_def, dg.GraphDefinition)
    ops = {}
    for handle in node_def.iterate_node_handles():
        definition = node_def.get_node(handle).definition
        if isinstance(definition, dg.OpDefinition):
            ops[f"{node_def.name}.{handle}"] = definition
    return ops


def producer(assets_def: dg.AssetsDefinition, output: str) -> str:
    """The node handle of the op that yields ``output`` of an assets definition."""
    node_def = assets_def.node_def
    if isinstance(node_def, dg.OpDefinition):
        return node_def.name
    _, handle = node_def.resolve_output_to_origin(output, None)
    return f"{node_def.name}.{handle}"


def users(keys: Any) -> list[str]:
    return sorted(key.to_user_string() for key in keys)


def partitions(definition: dg.PartitionsDefinition | None) -> str | None:
    if isinstance(definition, dg.DynamicPartitionsDefinition):
        return definition.name
    return None if definition is None else str(definition)


def execution(node: Any) -> str:
    if node.is_materializable:
        return "materializable"
    return "observable" if node.is_observable else "external"


def check_names(keys: Any) -> list[str]:
    return sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in keys)


def render(defs: dg.Definitions) -> dict[str, Any]:
    """What the snapshot holds, in a stable order."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        entry: dict[str, Any] = {
            "deps": users(node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "code_version": node.code_version,
            "partitions": partitions(node.partitions_def),
            "automation_condition": condition(node.automation_condition),
            "execution": execution(node),
        }
        assets_def = node.assets_def
        if node.is_executable:
            entry["skippable"] = assets_def.specs_by_key[key].skippable
            entry["node"] = producer(assets_def, assets_def.get_output_name_for_asset_key(key))
            entry["pools"] = sorted(node.pools or ())
            for handle, op in nodes(assets_def).items():
                ops[handle] = {
                    "op": op.name,
                    "pool": op.pool,
                    "retry_policy": retry(op.retry_policy),
                    "tags": tags(dict(op.tags)),
                }
            for output, spec in assets_def.node_check_specs_by_output_name.items():
                checks[f"{spec.asset_key.to_user_string()}:{spec.name}"] = {
                    "asset": spec.asset_key.to_user_string(),
                    "name": spec.name,
                    "blocking": spec.blocking,
                    "node": producer(assets_def, output),
                }
        assets[key.to_user_string()] = entry
    jobs = {
        job.name: {
            "executor": job.executor_def.name,
            "partitions": partitions(job.partitions_def),
            "selection": users(job.asset_layer.executable_asset_keys),
            "checks": check_names(job.asset_layer.asset_graph.asset_check_keys),
            "nodes": sorted(str(handle) for handle in job.graph.iterate_node_handles()),
            "tags": dict(sorted(job.tags.items())),
        }
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__ASSET_JOB")
    }
    sensors = {}
    for sensor in sorted(repo.sensor_defs, key=lambda s: s.name):
        selection = sensor.asset_selection
        sensors[sensor.name] = {
            "type": type(sensor).__name__,
            "jobs": sorted(target.job_name for target in sensor.targets),
            "assets": users(selection.resolve(graph)) if selection is not None else [],
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.name,
        }
    schedules = {
        schedule.name: {
            "cron": schedule.cron_schedule,
            "job": schedule.job_name,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.name,
        }
        for schedule in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    return {
        "resources": sorted(defs.resources or {}),
        "assets": assets,
        "checks": dict(sorted(checks.items())),
        "ops": dict(sorted(ops.items())),
        "jobs": jobs,
        "sensors": sensors,
        "schedules": schedules,
    }


def as_text(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2) + "\n"


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_definitions_match_their_snapshot(executor: str) -> None:
    defs = build_definitions(Settings.from_env(EXECUTORS[executor]))
    dg.Definitions.validate_loadable(defs)
    actual = as_text(render(defs))
    path = SNAPSHOTS / f"definitions_{executor}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.is_file(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 to write it"
    expected = path.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(path), "built"))
    assert actual == expected, f"the definitions changed (UPDATE_SNAPSHOTS=1 rewrites the snapshot):\n{diff}"


def test_snapshots_show_each_step_on_its_pool() -> None:
    """The snapshots say what a reader looks for: pose on the GPU pool, with its toleration; the rest on CPU."""
    for executor in EXECUTORS:
        ops = json.loads((SNAPSHOTS / f"definitions_{executor}.json").read_text())["ops"]
        for handle, op in ops.items():
            pod = op["tags"][K8S_CONFIG_TAG]["pod_spec_config"]
            on_gpu = op["op"] in ("pose", "infer_pose_range")
            assert pod["node_selector"] == {"bodyscript.io/pool": "gpu" if on_gpu else "cpu"}, handle
            assert ("tolerations" in pod) == on_gpu, handle


NON_DEFAULT = {
    "BODYSCRIPT_K8S_GPU_NODE_SELECTOR": "pool=gpu-h100,zone=c",
    "BODYSCRIPT_K8S_CPU_NODE_SELECTOR": "pool=batch",
    "BODYSCRIPT_K8S_GPU_TAINT": "dedicated-gpu",
    "BODYSCRIPT_MAX_BYTES": str(64 * 1024**3),  # staging sized for 64 GiB sources
}


def step_ops(defs: dg.Definitions) -> dict[str, dg.OpDefinition]:
    """Every op of the code location's assets, by name (the step names of assets/pods.py)."""
    graph = defs.resolve_asset_graph()
    ops: dict[str, dg.OpDefinition] = {}
    for key in graph.get_all_asset_keys():
        if graph.get(key).is_executable:
            ops.update({op.name: op for op in nodes(graph.get(key).assets_def).values()})
    return ops


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_pods_follow_the_settings_the_definitions_are_built_from(
    executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings that differ from the environment's (which has none of these variables): each step's pod config
    is the one the given settings make, not the environment's defaults."""
    for name in NON_DEFAULT:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env({**EXECUTORS[executor], **NON_DEFAULT})
    ops = step_ops(build_definitions(settings))
    expected = {"pose", "derived", "fleet_summary", "lake_compaction"} | (
        {"infer_pose_range"} if executor == "k8s" else set()
    )
    assert set(ops) == expected
    for name, op in ops.items():
        config = json.loads(op.tags[K8S_CONFIG_TAG])
        pod = config["pod_spec_config"]
        if STEP_POD[name] == "pose":
            assert pod["node_selector"] == {"pool": "gpu-h100", "zone": "c"}, name
            assert pod["tolerations"] == [{"key": "dedicated-gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert pod["node_selector"] == {"pool": "batch"}, name
            assert "tolerations" not in pod, name
        (staging,) = [volume for volume in pod["volumes"] if volume["name"] == "staging"]
        assert staging["empty_dir"]["size_limit"] == staging_size(STEP_POD[name], settings), name
        if POD_SIZES[STEP_POD[name]].staged_sources:  # sized for the largest source the limits admit
            assert staging_size(STEP_POD[name], settings) != staging_size(STEP_POD[name], Settings.from_env({})), name
        assert config == k8s_config(name, settings), name
