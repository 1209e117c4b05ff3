"""Priority tiers: the setting's format and errors, the tier of a drop's object key, the drop-zone sensor's run
tags, and the real run queue (QueuedRunCoordinator and its daemon) starting a premium drop, then a standard one,
then a batch one, and only then the reprocessing runs queued before them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator

from assets import videos_partitions
from assets.partitions import PARTITION_TAG
from bodyscript_pipeline.drop_zone.tiers import priority_of, tier_of
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import DEFAULT_TIER, REPROCESS_PRIORITY, TIER_PRIORITIES, Settings
from sensors import DROP_ZONE_SENSOR
from sensors.priority import PRIORITY_TAG, TIER_TAG, drop_run_tags
from sensors.reprocess import REPROCESS_SENSOR, REPROCESS_TAG, SENSOR_NAME_TAG, reprocess_requests
from tests.support.run_queue import enqueue, queue_daemon, queue_instance
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import SensorHarness, harness_for

TIERS = "BODYSCRIPT_PRIORITY_TIERS"
HOME = {"BODYSCRIPT_HOME": "/nonexistent/bodyscript-priority"}


def tiers_of(value: str) -> tuple[tuple[str, str], ...]:
    return Settings.from_env({**HOME, TIERS: value}).priority_tiers


def test_the_tiers_order_the_queue_and_reprocessing_comes_last() -> None:
    premium, standard, batch = (TIER_PRIORITIES[tier] for tier in ("premium", "standard", "batch"))
    assert premium > standard > batch > REPROCESS_PRIORITY
    assert standard == 0 == TIER_PRIORITIES[DEFAULT_TIER], "runs launched by hand (no tag) are standard"


def test_unset_every_folder_is_standard() -> None:
    tiers = Settings.from_env(HOME).priority_tiers
    assert tiers == ()
    assert {tier_of(key, tiers) for key in ("vip/a.mp4", "a.mp4", "bulk/x/y.mp4")} == {"standard"}


def test_a_drop_has_its_top_level_folders_tier() -> None:
    tiers = tiers_of(" vip/ = premium , bulk/=BATCH,lab/=standard")
    assert tiers == (("vip", "premium"), ("bulk", "batch"), ("lab", "standard"))
    assert tier_of("vip/session 1/squat.mp4", tiers) == "premium", "a nested key: its top-level folder decides"
    assert tier_of("bulk/a.mp4", tiers) == "batch"
    assert tier_of("lab/a.mp4", tiers) == "standard"
    assert tier_of("other/a.mp4", tiers) == "standard", "a folder not named"
    assert tier_of("vip.mp4", tiers) == "standard", "an object at the drop root"
    assert tier_of("VIP/a.mp4", tiers) == "standard", "keys are case-sensitive, as on S3"
    assert tier_of("vip-2/a.mp4", tiers) == "standard", "a folder, not a name prefix"
    assert priority_of(tier_of("vip/a.mp4", tiers)) == TIER_PRIORITIES["premium"]


@pytest.mark.parametrize(
    "value",
    [
        "vip=premium",  # a folder ends with '/'
        "vip/premium",  # no '='
        "vip/=gold",  # no such tier
        "vip/=",
        "/=premium",  # the drop root is no folder
        "vip/x/=premium",  # a top-level folder only
        "vip/=premium,",  # an empty pair
        "vip/=premium;bulk/=batch",
    ],
)
def test_an_invalid_value_stops_with_one_line_saying_the_format(value: str) -> None:
    with pytest.raises(BodyscriptError) as raised:
        tiers_of(value)
    message = str(raised.value)
    assert message.startswith(f"{TIERS}={value!r}: "), message
    assert "`<folder>/=<tier>` pairs" in message and "`premium`, `standard`, `batch`" in message, message
    assert "\n" not in message


def test_a_folder_given_twice_is_refused() -> None:
    with pytest.raises(BodyscriptError, match=r"vip/ is given twice"):
        tiers_of("vip/=premium,bulk/=batch,vip/=batch")


def test_run_tags_say_the_priority_and_the_tier() -> None:
    tiers = tiers_of("vip/=premium,bulk/=batch")
    assert drop_run_tags("vip/a.mp4", tiers) == {PRIORITY_TAG: str(TIER_PRIORITIES["premium"]), TIER_TAG: "premium"}
    assert drop_run_tags("bulk/a.mp4", tiers) == {PRIORITY_TAG: str(TIER_PRIORITIES["batch"]), TIER_TAG: "batch"}
    assert drop_run_tags("a.mp4", tiers) == {PRIORITY_TAG: "0", TIER_TAG: "standard"}


@pytest.fixture
def harness(bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[SensorHarness]:
    """The drop-zone sensor with three tiers of folders (and no pose service to warm)."""
    env = {TIERS: "vip/=premium,bulk/=batch", "BODYSCRIPT_POSE_SERVICE_IDLE_S": "0"}
    with harness_for(monkeypatch, s3, **env) as made:
        yield made


def dropped_runs(harness: SensorHarness) -> list[dg.RunRequest]:
    """One tick's run requests after a video lands in a batch, a standard and a premium folder (in key order:
    batch first, premium last)."""
    for key in ("bulk/a.mp4", "lab/a.mp4", "vip/a.mp4"):
        harness.put(key, key.encode())
    return list(harness.tick().run_requests or [])


def test_the_drop_zone_sensor_tags_each_run_with_its_folders_tier(harness: SensorHarness) -> None:
    requests = dropped_runs(harness)
    assert [(r.tags[TIER_TAG], r.tags[PRIORITY_TAG]) for r in requests] == [
        ("batch", str(TIER_PRIORITIES["batch"])),
        ("standard", "0"),
        ("premium", str(TIER_PRIORITIES["premium"])),
    ]
    assert all(r.tags["bodyscript/source_version"] for r in requests), "the sensor's own tags stay"


REPROCESSING_RUNS = 5
CUTOFF = "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"


def test_the_queue_starts_premium_standard_batch_then_reprocessing(harness: SensorHarness, tmp_path: Path) -> None:
    drops = dropped_runs(harness)
    with queue_instance(tmp_path / "queue", max_concurrent_runs=1) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        stale = {f"old-{i}": {"clean_landmarks": CUTOFF} for i in range(REPROCESSING_RUNS)}
        instance.add_dynamic_partitions(videos_partitions.name, list(stale))
        settings = Settings.from_env({**HOME, "BODYSCRIPT_REPROCESS_MAX_RUNS": str(REPROCESSING_RUNS)})
        reprocessing = reprocess_requests(instance, settings, stale, in_flight=0)
        assert isinstance(reprocessing, dg.SensorResult)
        assert len(reprocessing.run_requests or []) == REPROCESSING_RUNS

        # Reprocessing queued first, then the drops in key order (batch, standard, premium): as the daemon tags
        # a sensor's runs, with the sensor's name and the partition.
        queued: dict[str, str] = {}
        for sensor, requests in ((REPROCESS_SENSOR, reprocessing.run_requests), (DROP_ZONE_SENSOR, drops)):
            for request in requests or []:
                tags = {**request.tags, SENSOR_NAME_TAG: sensor, PARTITION_TAG: str(request.partition_key)}
                tier = tags.get(TIER_TAG) or ("reprocess" if REPROCESS_TAG in tags else "?")
                queued[enqueue(instance, tags)] = tier
        assert list(queued.values()) == ["reprocess"] * REPROCESSING_RUNS + ["batch", "standard", "premium"]

        started: list[str] = []
        with queue_daemon(instance) as look:
            for _ in queued:
                (run_id,) = look()  # one slot: one run per look at the queue
                started.append(run_id)
                run = instance.get_run_by_id(run_id)
                assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert look() == []

        tiers_started = [queued[run_id] for run_id in started]
        assert tiers_started == ["premium", "standard", "batch"] + ["reprocess"] * REPROCESSING_RUNS
        reprocessed = [run_id for run_id in queued if queued[run_id] == "reprocess"]
        assert started[3:] == reprocessed, "reprocessing runs among themselves: first queued, first started"
