"""The reprocessing sensor: its tick logic evaluated directly against a real instance (budget, busy and forgotten
videos, skip reasons, default status), and the real daemon reprocessing three videos after a settings change as
a trickle of one run at a time, exactly the affected assets."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from assets import videos_partitions
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.settings import REPROCESS_PRIORITY, Settings
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS
from sensors.reprocess import (
    PRIORITY_TAG,
    REPROCESS_SENSOR,
    REPROCESS_TAG,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    build_reprocess_sensor,
    target_digest,
)
from tests.support.observed_runs import process, running_daemon
from tests.support.repo import REPO
from tests.support.video_factory import clip_of
from tests.support.waits import wait_for

HOME = {"BODYSCRIPT_HOME": "/nonexistent/bodyscript-reprocess"}
CUTOFF = "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"


def settings_with(**env: str) -> Settings:
    return Settings.from_env({**HOME, **env})


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as made:
        made.add_dynamic_partitions(videos_partitions.name, ["a", "b", "c", "d", "e"])
        yield made


def tick(
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    stale: dict[str, dict[str, str]],
    settings: Settings | None = None,
    reads_lake: bool = True,
) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of the sensor, the lake's answer to ``stale_partitions`` being ``stale`` (asked exactly once,
    or never where ``reads_lake`` is false)."""
    settings = settings or settings_with(BODYSCRIPT_REPROCESS_MAX_RUNS="2")
    asked: list[str] = []

    def stale_partitions(lake_uri: str, given: Settings) -> dict[str, dict[str, str]]:
        asked.append(lake_uri)
        assert given is settings
        return stale

    monkeypatch.setattr("sensors.reprocess.stale_partitions", stale_partitions)
    sensor = build_reprocess_sensor(settings)
    with dg.build_sensor_context(instance=instance) as context:
        result = sensor(context)
    assert asked == ([settings.lake_uri] if reads_lake else [])
    return result


def add_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, **tags: str) -> str:
    """A run record of ``process_video`` in ``status`` (a queued run needs the origin the run queue launches)."""
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="bodyscript_pipeline.definitions")),
            "__repository__",
        ),
        "process_video",
    )
    run = dg.DagsterRun(
        job_name="process_video", run_id=str(uuid.uuid4()), status=status, tags=tags, remote_job_origin=origin
    )
    instance.add_run(run)
    return run.run_id


def in_flight_reprocessing(instance: dg.DagsterInstance, partition: str, status: dg.DagsterRunStatus) -> str:
    return add_run(
        instance,
        status,
        **{SENSOR_NAME_TAG: REPROCESS_SENSOR, REPROCESS_TAG: "clean_landmarks: x", "dagster/partition": partition},
    )


def test_nothing_stale_is_a_skip_that_says_so(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    result = tick(instance, monkeypatch, {})
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("nothing stale")


def test_requests_at_most_the_budget_sorted_with_exactly_the_affected_assets(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = {
        "c": {"landmarks": "BODYSCRIPT_MODEL_SHA256 aa -> bb"},
        "a": {"clean_landmarks": CUTOFF},
        "b": {"overlays": "code version 1 -> 2", "metrics": "code version 1 -> 2"},
    }
    result = tick(instance, monkeypatch, stale)
    assert isinstance(result, dg.SensorResult)
    first, second = result.run_requests
    assert (first.partition_key, second.partition_key) == ("a", "b"), "sorted, at most BODYSCRIPT_REPROCESS_MAX_RUNS"
    assert [k.to_user_string() for k in first.asset_selection] == ["clean_landmarks", "metrics", "exports"]
    assert [k.to_user_string() for k in second.asset_selection] == ["overlays", "metrics", "exports"]
    settings = settings_with(BODYSCRIPT_REPROCESS_MAX_RUNS="2")
    assert first.run_key == f"reprocess:a:{target_digest(['clean_landmarks', 'metrics', 'exports'], settings)}"
    assert first.tags == {REPROCESS_TAG: f"clean_landmarks: {CUTOFF}", PRIORITY_TAG: str(REPROCESS_PRIORITY)}
    assert second.tags[REPROCESS_TAG] == "overlays: code version 1 -> 2; metrics: code version 1 -> 2"
    assert result.skip_reason is None

    # A model change: the landmarks and everything made from them, never the frames.
    (third,) = tick(instance, monkeypatch, {"c": stale["c"]}).run_requests
    assert [k.to_user_string() for k in third.asset_selection] == list(VIDEO_ASSETS[1:])

    # The run key follows the target versions: another cutoff is another run.
    again = tick(instance, monkeypatch, {"a": stale["a"]}, settings_with(BODYSCRIPT_SMOOTH_CUTOFF_HZ="9"))
    assert again.run_requests[0].run_key != first.run_key


def test_runs_in_flight_use_the_budget(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = {p: {"clean_landmarks": CUTOFF} for p in "abcde"}
    in_flight_reprocessing(instance, "x", dg.DagsterRunStatus.QUEUED)
    add_run(instance, dg.DagsterRunStatus.STARTED, **{"dagster/partition": "y"})  # a fresh drop: not counted
    add_run(  # an ended reprocessing run: not counted
        instance, dg.DagsterRunStatus.SUCCESS, **{SENSOR_NAME_TAG: REPROCESS_SENSOR, REPROCESS_TAG: "x"}
    )
    (request,) = tick(instance, monkeypatch, stale).run_requests
    assert request.partition_key == "a"

    in_flight_reprocessing(instance, "z", dg.DagsterRunStatus.STARTED)
    result = tick(instance, monkeypatch, stale, reads_lake=False)  # no room for a run: the lake is not read
    assert isinstance(result, dg.SkipReason)
    assert "2 reprocessing run(s) queued or running" in result.skip_message
    assert "budget of 2" in result.skip_message


def test_busy_forgotten_and_failed_videos_are_passed_over(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video with a run queued or running waits for it; one no longer registered (forgotten) is not
    reprocessed; one whose reprocessing to these versions already ran (and failed) holds no place in the budget."""
    settings = settings_with(BODYSCRIPT_REPROCESS_MAX_RUNS="1")
    stale = {p: {"clean_landmarks": CUTOFF} for p in ("a", "b", "c", "gone")}
    add_run(instance, dg.DagsterRunStatus.QUEUED, **{"dagster/partition": "a"})  # a fresh drop's run
    key_b = f"reprocess:b:{target_digest(['clean_landmarks', 'metrics', 'exports'], settings)}"
    add_run(
        instance,
        dg.DagsterRunStatus.FAILURE,
        **{SENSOR_NAME_TAG: REPROCESS_SENSOR, REPROCESS_TAG: "x", RUN_KEY_TAG: key_b, "dagster/partition": "b"},
    )
    (request,) = tick(instance, monkeypatch, stale, settings).run_requests
    assert request.partition_key == "c"

    result = tick(instance, monkeypatch, {p: stale[p] for p in ("a", "b", "gone")}, settings)
    assert isinstance(result, dg.SkipReason)
    message = result.skip_message
    assert "3 video(s) stale" in message and "1 with a run queued or running" in message
    assert "1 whose reprocessing to these versions already ran and failed" in message
    assert "1 no longer registered" in message


def test_under_kubernetes_a_reprocessing_run_selects_exactly_the_affected_assets(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-video assets are one graph there, and it runs a subset: the run selects what changed and what is
    downstream of it, and that selection is a valid run of the job (tests/assets/test_pose_ranges.py runs one)."""
    settings = settings_with(BODYSCRIPT_EXECUTOR="k8s", BODYSCRIPT_LAKE_URI="s3://lake/bodyscript")
    (request,) = tick(instance, monkeypatch, {"a": {"clean_landmarks": CUTOFF}}, settings).run_requests
    assert [k.to_user_string() for k in request.asset_selection] == ["clean_landmarks", "metrics", "exports"]
    assert request.tags[REPROCESS_TAG] == f"clean_landmarks: {CUTOFF}"
    job = build_definitions(settings).resolve_job_def("process_video")
    assert job.get_subset(asset_selection=set(request.asset_selection)) is not None


@pytest.mark.parametrize(("flag", "status"), [("true", "RUNNING"), ("false", "STOPPED")])
def test_default_status_follows_the_setting(flag: str, status: str) -> None:
    """Operators who review first set BODYSCRIPT_REPROCESS=false and start the sensor in the UI."""
    settings = settings_with(BODYSCRIPT_REPROCESS=flag, BODYSCRIPT_REPROCESS_INTERVAL_S="45")
    sensor = build_reprocess_sensor(settings)
    assert sensor.default_status.name == status
    assert sensor.minimum_interval_seconds == 45
    assert sensor.job_name == "process_video"


# The real daemon.

CLIPS = 3
CLIP_FRAMES = 12


def reprocess_ticks(instance: dg.DagsterInstance) -> list[dg.InstigationTick]:
    states = [s for s in instance.all_instigator_state() if s.name == REPROCESS_SENSOR]
    return instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id) if states else []


def finished_ticks_after(instance: dg.DagsterInstance, after: float) -> list[dg.InstigationTick]:
    """The sensor's ticks that began after ``after`` and have ended (one still being evaluated is left out)."""
    return [t for t in reprocess_ticks(instance) if t.timestamp > after and t.status != TickStatus.STARTED]


def test_daemon_reprocesses_a_settings_change_one_run_at_a_time(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Three videos processed; the daemon started with another smoothing cut-off, at most one reprocessing run
    at a time: each video gets exactly one run that makes clean_landmarks, metrics and exports again (and nothing
    else), never two at once; then the sensor requests nothing."""
    sources = [
        clip_of(demo_video, tmp_path / f"clip-{i}.mp4", CLIP_FRAMES, size=(320 + 32 * i, 180 + 18 * i))
        for i in range(CLIPS)
    ]
    partitions = sorted(partition_key_for(source.name, identity=str(source)) for source in sources)
    home = bodyscript_home.dagster_home
    with _instance(home) as instance:
        for source in sources:
            process(bodyscript_home, instance, partition_key_for(source.name, identity=str(source)), source)

        def count(asset: str, partition: str) -> int:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=10
            ).records
            return len(records)

        assert all(count(asset, p) == 1 for asset in VIDEO_ASSETS for p in partitions)

        def reprocess_runs() -> list[dg.DagsterRun]:
            return [r for r in instance.get_runs() if REPROCESS_TAG in r.tags]

        env = {
            **os.environ,
            "BODYSCRIPT_SMOOTH_CUTOFF_HZ": "8",
            "BODYSCRIPT_REPROCESS_MAX_RUNS": "1",
            "BODYSCRIPT_REPROCESS_INTERVAL_S": "5",
            "BODYSCRIPT_SENSOR_INTERVAL_S": "3600",  # the drop zone stays idle (and empty)
        }
        started = time.monotonic()
        with running_daemon(home, env, bodyscript_home.home / "daemon.log"):
            wait_for(
                lambda: (
                    all(count("clean_landmarks", p) == 2 for p in partitions)
                    and len(reprocess_runs()) == CLIPS
                    and all(r.is_finished for r in reprocess_runs())
                ),
                300,
                "every video's clean_landmarks made again",
            )
            took = time.monotonic() - started
            ended = max(instance.get_run_record_by_id(r.run_id).end_time or 0 for r in reprocess_runs())
            wait_for(
                lambda: len(finished_ticks_after(instance, ended)) >= 2,
                60,
                "two more reprocessing ticks",
            )
            runs = reprocess_runs()
        after = finished_ticks_after(instance, ended)

        for partition in partitions:
            counts = {asset: count(asset, partition) for asset in VIDEO_ASSETS}
            assert counts == {"frames": 1, "landmarks": 1, "overlays": 1, "clean_landmarks": 2, "metrics": 2,
                              "exports": 2}, (partition, counts)  # fmt: skip
        assert len(runs) == CLIPS
        assert sorted(r.tags["dagster/partition"] for r in runs) == partitions
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
            assert run.tags[REPROCESS_TAG] == f"clean_landmarks: {CUTOFF}"
            assert run.tags[PRIORITY_TAG] == str(REPROCESS_PRIORITY)
            assert run.tags[SENSOR_NAME_TAG] == REPROCESS_SENSOR
            assert {k.to_user_string() for k in run.asset_selection or ()} == {"clean_landmarks", "metrics", "exports"}
        records = sorted((instance.get_run_record_by_id(r.run_id) for r in runs), key=lambda r: r.create_timestamp)
        for earlier, later in itertools.pairwise(records):
            assert earlier.end_time is not None and later.start_time is not None
            assert later.create_timestamp.timestamp() >= earlier.end_time, "two reprocessing runs in flight at once"
            assert later.start_time >= earlier.end_time
        assert all(t.status == TickStatus.SKIPPED and not t.run_ids for t in after), [
            (t.status, t.skip_reason) for t in after
        ]
        assert all((t.skip_reason or "").startswith("nothing stale") for t in after)
        timing = [(r.create_timestamp.timestamp(), r.start_time, r.end_time) for r in records]
        print(f"reprocessed {CLIPS} videos in {took:.0f} s; runs (created, started, ended): {timing}")


def _instance(home: Path) -> dg.DagsterInstance:
    """The instance of ``home`` with the repo's dagster.yaml (as the daemon will use it)."""
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_bytes((REPO / "dagster.yaml").read_bytes())
    return dg.DagsterInstance.from_config(str(home))


def test_a_clean_check_is_trusted_until_the_versions_change(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A steady deployment reads no lineage: after a tick found nothing stale, the next ticks at the same versions
    skip without asking the lake; new versions (a changed setting) make the next tick check every video again."""
    asked: list[Settings] = []

    def stale_partitions(lake_uri: str, given: Settings) -> dict[str, dict[str, str]]:
        asked.append(given)
        return {}

    monkeypatch.setattr("sensors.reprocess.stale_partitions", stale_partitions)
    settings = settings_with()
    cursor = None
    for _ in range(3):
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            result = build_reprocess_sensor(settings)(context)
            cursor = context.cursor
        assert isinstance(result, dg.SkipReason) and result.skip_message.startswith("nothing stale")
    assert asked == [settings], "checked once, then trusted"
    changed = settings_with(BODYSCRIPT_SMOOTH_CUTOFF_HZ="8")
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        build_reprocess_sensor(changed)(context)
    assert asked == [settings, changed]
