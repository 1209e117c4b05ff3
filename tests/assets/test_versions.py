"""Asset versions from what determines them, held to Dagster's own stale-status resolver on the real clip: the code
version of each per-video asset is ``asset_version`` of the settings the definitions are built from, data versions
flow from the observed source version through every asset, and a changed setting or model makes exactly the
assets it determines stale (and, once those are made again, what is downstream of them); the lake's lineage says
the same."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCauseCategory,
    StaleStatus,
    compute_logical_data_version,
)
from dagster._time import get_current_datetime

from assets import process_video_assets, source_video, videos_partitions
from assets.pose_ranges import video_assets_by_range
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.staleness import stale_partitions
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS, asset_version
from sensors.reprocess import targets
from tests.support.observed_runs import materialize, observe

OTHER_MODEL = "ab" * 32  # a different model identity, at the versioning level only (never loaded)


@dataclass
class VersionedRun:
    """The real clip processed once, its source observed as the drop-zone sensor observes it."""

    instance: dg.DagsterInstance
    env: dict[str, str]
    partition: str
    source: Path
    result: dg.ExecuteInProcessResult

    def settings(self, **changes: str) -> Settings:
        return Settings.from_env({**self.env, **changes})

    def materializations(self, asset: str) -> list[dg.AssetMaterialization]:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[self.partition]), limit=10
        ).records
        return [r.asset_materialization for r in records if r.asset_materialization is not None]


def statuses(run: VersionedRun, settings: Settings) -> dict[str, tuple[StaleStatus, list[tuple[str, str, str]]]]:
    """Each per-video asset's stale status and causes (category, reason, dependency) as Dagster resolves them
    for the definitions built from ``settings``, with the loading context Dagster's own tests build."""
    graph = build_definitions(settings).resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=run.instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(run.instance, graph, view)
    found = {}
    for asset in VIDEO_ASSETS:
        key = dg.AssetKey(asset)
        causes = [
            (c.category.value, c.reason, c.dependency.asset_key.to_user_string() if c.dependency else "")
            for c in resolver.get_stale_causes(key, run.partition)
        ]
        found[asset] = (resolver.get_status(key, run.partition), causes)
    return found


def stale(found: dict[str, tuple[StaleStatus, list[tuple[str, str, str]]]]) -> set[str]:
    return {asset for asset, (status, _) in found.items() if status == StaleStatus.STALE}


@pytest.fixture(scope="module")
def versioned_run(
    tmp_path_factory: pytest.TempPathFactory, model_source: str, demo_video: Path
) -> Iterator[VersionedRun]:
    home = tmp_path_factory.mktemp("versions")
    source = home / "sports2d_demo.mp4"  # a copy: the last test gives it a new version
    shutil.copyfile(demo_video, source)
    # Settings from this mapping alone, never the environment's: every variant differs in exactly one variable.
    env = {
        "BODYSCRIPT_HOME": str(home),
        "BODYSCRIPT_MODEL_SOURCE": model_source,
        "BODYSCRIPT_POSE_SERVICE_IDLE_S": "20",
        **{k: v for k, v in os.environ.items() if not k.startswith("BODYSCRIPT_")},
    }
    settings = Settings.from_env(env)
    with dg.instance_for_test() as instance:
        partition = partition_key_for(source.name, identity=str(source))
        instance.add_dynamic_partitions(videos_partitions.name, [partition])
        observe(instance, settings, partition, source)
        result = materialize(settings, instance, partition)
        yield VersionedRun(instance, env, partition, source, result)


def test_code_versions_are_the_versions_of_what_determines_each_asset() -> None:
    """Every per-video asset, local and under Kubernetes: code version = ``asset_version(asset, settings)``; a
    setting changes the versions of exactly the assets it determines."""
    for env in (
        {"BODYSCRIPT_HOME": "/nonexistent/v"},
        {"BODYSCRIPT_HOME": "/nonexistent/v", "BODYSCRIPT_EXECUTOR": "k8s"},
    ):
        settings = Settings.from_env(env)
        assets_defs = [*process_video_assets(settings), video_assets_by_range(settings)]
        for assets_def in assets_defs:
            for key, version in assets_def.code_versions_by_key.items():
                assert version == asset_version(key.to_user_string(), settings), key
    base = Settings.from_env({"BODYSCRIPT_HOME": "/nonexistent/v"})
    cutoff = Settings.from_env({"BODYSCRIPT_HOME": "/nonexistent/v", "BODYSCRIPT_SMOOTH_CUTOFF_HZ": "8"})
    model = Settings.from_env({"BODYSCRIPT_HOME": "/nonexistent/v", "BODYSCRIPT_MODEL_SHA256": OTHER_MODEL})
    for other, changed in ((cutoff, {"clean_landmarks"}), (model, {"landmarks"})):
        graph, other_graph = (
            build_definitions(base).resolve_asset_graph(),
            build_definitions(other).resolve_asset_graph(),
        )
        differ = {
            a
            for a in VIDEO_ASSETS
            if graph.get(dg.AssetKey(a)).code_version != other_graph.get(dg.AssetKey(a)).code_version
        }
        assert differ == changed


def test_data_versions_flow_from_the_observed_source(versioned_run: VersionedRun) -> None:
    """Each materialization carries its code version and a data version computed from it and its inputs' data
    versions, starting from the source version the drop-zone sensor (here: the test) observed."""
    settings = versioned_run.settings()
    by_asset = {
        e.asset_key.to_user_string(): e.materialization for e in versioned_run.result.get_asset_materialization_events()
    }
    assert set(by_asset) == set(VIDEO_ASSETS)
    for asset, materialization in by_asset.items():
        assert materialization.tags["dagster/code_version"] == asset_version(asset, settings), asset
    source_version = by_asset["frames"].metadata["source_version"].value
    expected = compute_logical_data_version(
        asset_version("frames", settings), {source_video.key: dg.DataVersion(source_version)}
    )
    assert by_asset["frames"].tags["dagster/data_version"] == expected.value
    assert len({m.tags["dagster/data_version"] for m in by_asset.values()}) == len(VIDEO_ASSETS)


def test_after_a_run_every_asset_is_fresh(versioned_run: VersionedRun) -> None:
    found = statuses(versioned_run, versioned_run.settings())
    assert {asset: status for asset, (status, _) in found.items()} == dict.fromkeys(VIDEO_ASSETS, StaleStatus.FRESH)
    assert stale_partitions(versioned_run.settings().lake_uri, versioned_run.settings()) == {}


def test_a_new_smoothing_cutoff_makes_the_cleaned_layer_stale(versioned_run: VersionedRun) -> None:
    """Definitions built with another BODYSCRIPT_SMOOTH_CUTOFF_HZ: clean_landmarks is stale for its new code
    version; frames, landmarks, overlays are fresh. Dagster 1.13 marks an asset stale for its own causes only:
    metrics and exports become stale through clean_landmarks once it is made again (the next test), which is
    why the reprocessing sensor selects them with it."""
    settings = versioned_run.settings(BODYSCRIPT_SMOOTH_CUTOFF_HZ="8")
    found = statuses(versioned_run, settings)
    assert stale(found) == {"clean_landmarks"}
    assert found["clean_landmarks"][1] == [(StaleCauseCategory.CODE.value, "has a new code version", "")]
    for asset in ("frames", "landmarks", "overlays", "metrics", "exports"):
        assert found[asset][0] == StaleStatus.FRESH, asset
    lineage = stale_partitions(settings.lake_uri, settings)
    assert lineage == {versioned_run.partition: {"clean_landmarks": "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"}}
    assert targets(lineage[versioned_run.partition]) == ["clean_landmarks", "metrics", "exports"]


def test_a_new_model_makes_the_landmarks_and_everything_from_them_stale(versioned_run: VersionedRun) -> None:
    settings = versioned_run.settings(BODYSCRIPT_MODEL_SHA256=OTHER_MODEL)
    found = statuses(versioned_run, settings)
    assert stale(found) == {"landmarks"}
    assert found["landmarks"][1] == [(StaleCauseCategory.CODE.value, "has a new code version", "")]
    assert found["frames"][0] == StaleStatus.FRESH
    (reasons,) = stale_partitions(settings.lake_uri, settings).values()
    assert list(reasons) == ["landmarks"] and reasons["landmarks"].startswith("BODYSCRIPT_MODEL_SHA256 ")
    assert targets(reasons) == ["landmarks", "overlays", "clean_landmarks", "metrics", "exports"]


def test_reprocessing_the_cleaned_layer_makes_what_is_downstream_stale_then_fresh(
    versioned_run: VersionedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clean_landmarks made again with the new cutoff: a new data version, so metrics and exports are stale
    through it (DATA, their dependency clean_landmarks); a run of derived assets alone hides the partition while
    it writes, and records their lineage; once metrics and exports are made again everything is fresh, and
    frames, landmarks, overlays were never made again."""
    import assets.derived

    began: list[str] = []
    begin = assets.derived.begin_writing
    monkeypatch.setattr(assets.derived, "begin_writing", lambda *a: (began.append(a[1]), begin(*a))[1])
    settings = versioned_run.settings(BODYSCRIPT_SMOOTH_CUTOFF_HZ="8")
    instance, partition = versioned_run.instance, versioned_run.partition
    before = versioned_run.materializations("clean_landmarks")[0].tags["dagster/data_version"]

    materialize(settings, instance, partition, selection=["clean_landmarks"])
    assert began == [partition], "a run without the pose step begins the writing itself"
    after = versioned_run.materializations("clean_landmarks")[0].tags["dagster/data_version"]
    assert after != before
    found = statuses(versioned_run, settings)
    assert stale(found) == {"metrics", "exports"}
    for asset in ("metrics", "exports"):
        assert ("DATA", "has a new dependency data version", "clean_landmarks") in found[asset][1], found[asset]
    assert stale_partitions(settings.lake_uri, settings) == {}, "the lineage is direct causes only"

    materialize(settings, instance, partition, selection=["metrics", "exports"])
    found = statuses(versioned_run, settings)
    assert {a: s for a, (s, _) in found.items()} == dict.fromkeys(VIDEO_ASSETS, StaleStatus.FRESH)
    counts = {asset: len(versioned_run.materializations(asset)) for asset in VIDEO_ASSETS}
    assert counts == {"frames": 1, "landmarks": 1, "overlays": 1, "clean_landmarks": 2, "metrics": 2, "exports": 2}

    # Made again with unchanged settings and inputs, an asset keeps its data version: nothing downstream is stale.
    materialize(settings, instance, partition, selection=["clean_landmarks"])
    assert versioned_run.materializations("clean_landmarks")[0].tags["dagster/data_version"] == after
    assert stale(statuses(versioned_run, settings)) == set()


def test_a_new_source_version_makes_frames_then_everything_from_them_stale(versioned_run: VersionedRun) -> None:
    """A new version of the source observed: frames is stale (its input's data version changed); frames made
    again gets a new data version, so landmarks is stale through it. Last: it replaces the partition's outputs."""
    settings = versioned_run.settings()
    stat = versioned_run.source.stat()
    os.utime(versioned_run.source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new version (size, mtime)
    observe(versioned_run.instance, settings, versioned_run.partition, versioned_run.source)
    found = statuses(versioned_run, settings)
    assert found["frames"] == (
        StaleStatus.STALE,
        [("DATA", "has a new dependency data version", "source_video")],
    )
    materialize(settings, versioned_run.instance, versioned_run.partition, selection=["frames"])
    found = statuses(versioned_run, settings)
    assert found["frames"][0] == StaleStatus.FRESH
    assert found["landmarks"] == (StaleStatus.STALE, [("DATA", "has a new dependency data version", "frames")])
