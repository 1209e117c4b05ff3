"""Fleet scale: a fresh drop behind a reprocessing backlog, and the partition set kept bounded by retention.

Run by hand (not a test):  .venv/bin/python benchmarks/fleet_queue.py [--backlog 1000] [--partitions 10000]

(a) A real SQLite instance with the repo's dagster.yaml (QueuedRunCoordinator, three runs at a time) and
Dagster's queue daemon, one iteration at a time (tests/support/run_queue.py: runs of a one-step job, launched
synchronously). ``--backlog`` reprocessing runs are queued with the reprocess sensor's tags; the daemon starts a
first set of them (in flight); then one fresh drop's run is queued (standard tier, the drop-zone sensor's tags).
Prints how many runs the daemon started after the drop was queued and before the drop: 0 is the goal.

(b) ``--partitions`` keys in the ``videos`` partition set of a real SQLite instance: removed one key per call
(``instance.delete_dynamic_partition``, Dagster's API) and in bulk (sensors/partition_removal.py), keys/s each.
Then a lake of as many processed videos (lineage and source registry; 80% untouched for 45 days) and the retention
job run until nothing is left to remove: the partition count after each run, the lineage rows still in the lake.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg

from assets import videos_partitions
from assets.partitions import PARTITION_TAG
from bodyscript_pipeline import analytics
from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.lake.lineage import write_lineage
from bodyscript_pipeline.lake.paths import LINEAGE, VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from sensors import DROP_ZONE_SENSOR, RETENTION_JOB
from sensors.partition_removal import delete_partitions
from sensors.priority import TIER_TAG, drop_run_tags
from sensors.reprocess import REPROCESS_SENSOR, SENSOR_NAME_TAG, reprocess_requests
from sensors.retention import PARTITIONS_OP
from tests.support.lineage_lake import lineage_row
from tests.support.observed_runs import install_dagster_yaml
from tests.support.run_queue import enqueue, queue_daemon, queue_instance

DAY = 86400
CUTOFF = "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"


def queue_backlog(home: Path, backlog: int) -> None:
    with queue_instance(home / "queue", max_concurrent_runs=3) as instance:
        stale = {f"old-{i:05d}": {"clean_landmarks": CUTOFF} for i in range(backlog)}
        instance.add_dynamic_partitions(videos_partitions.name, list(stale))
        settings = Settings.from_env({"BODYSCRIPT_HOME": str(home), "BODYSCRIPT_REPROCESS_MAX_RUNS": str(backlog)})
        started = time.perf_counter()
        result = reprocess_requests(instance, settings, stale, in_flight=0)
        assert isinstance(result, dg.SensorResult)
        for request in result.run_requests or []:
            enqueue(instance, {**request.tags, SENSOR_NAME_TAG: REPROCESS_SENSOR, PARTITION_TAG: request.partition_key})
        print(f"(a) {backlog} reprocessing runs requested and queued in {time.perf_counter() - started:.0f} s")
        with queue_daemon(instance) as look:
            in_flight = look()
            print(f"    first look at the queue: {len(in_flight)} reprocessing run(s) started (in flight at the drop)")
            key = "lab/fresh.mp4"
            drop = enqueue(
                instance,
                {
                    **drop_run_tags(key, settings.priority_tiers),
                    SENSOR_NAME_TAG: DROP_ZONE_SENSOR,
                    PARTITION_TAG: "fresh",
                },
            )
            started = time.perf_counter()
            before: list[str] = []
            while True:
                runs = look()
                if drop in runs:
                    before += runs[: runs.index(drop)]
                    break
                before += runs
            print(
                f"    fresh drop ({drop_run_tags(key, settings.priority_tiers)[TIER_TAG]} tier) queued behind "
                f"{backlog - len(in_flight)} reprocessing runs: started after {len(before)} other run(s) "
                f"(next look, {time.perf_counter() - started:.2f} s for that look with the backlog queued)"
            )


def deletion_rate(home: Path, partitions: int) -> None:
    keys = [f"clip-{i:06d}" for i in range(partitions)]
    with dg.DagsterInstance.from_config(str(_instance_home(home / "deletion"))) as instance:
        instance.add_dynamic_partitions(videos_partitions.name, keys)
        started = time.perf_counter()
        for key in keys:
            instance.delete_dynamic_partition(videos_partitions.name, key)
        per_key = time.perf_counter() - started
        assert instance.get_dynamic_partitions(videos_partitions.name) == []
        instance.add_dynamic_partitions(videos_partitions.name, keys)
        started = time.perf_counter()
        method = delete_partitions(instance, videos_partitions.name, keys)
        bulk = time.perf_counter() - started
        assert instance.get_dynamic_partitions(videos_partitions.name) == []
    print(f"(b) deleting {partitions} partitions on SQLite:")
    print(
        f"    delete_dynamic_partition per key: {per_key:.2f} s ({partitions / per_key:,.0f} keys/s, "
        f"{per_key / partitions * 1000:.2f} ms a key)"
    )
    print(f"    {method}: {bulk:.3f} s ({partitions / bulk:,.0f} keys/s)")


def _instance_home(home: Path) -> Path:
    """``home`` with the repo's dagster.yaml installed."""
    install_dagster_yaml(home)
    return home


def retention_runs(home: Path, partitions: int) -> None:
    os.environ["BODYSCRIPT_HOME"] = str(home / "lake-home")
    settings = Settings.from_env()
    keys = [f"clip-{i:06d}" for i in range(partitions)]
    started = time.perf_counter()
    aged_at = time.time() - 45 * DAY
    for index, key in enumerate(keys):
        register_source(settings.lake_uri, key, f"file:///videos/{key}.mp4", version="v1")
        write_lineage(settings.lake_uri, key, lineage_row("frames", settings))
        if index % 5:  # 80% untouched for 45 days
            for table in (LINEAGE, "sources"):
                for file in Path(VideoLake(settings.lake_uri, key).folder(table).removeprefix("file://")).iterdir():
                    os.utime(file, (aged_at, aged_at))
    print(f"    lake of {partitions} processed videos written in {time.perf_counter() - started:.0f} s")
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(_instance_home(settings.dagster_home))) as instance:
        instance.add_dynamic_partitions(videos_partitions.name, keys)
        job = defs.resolve_job_def(RETENTION_JOB)
        while True:
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance, resources=defs.resources)
            assert result.success
            (step,) = [e for e in result.all_events if e.is_successful_output and e.step_key == PARTITIONS_OP]
            report = {k: v.value for k, v in step.event_specific_data.metadata.items()}
            print(
                f"    retention run: {report['partitions_removed']} removed ({report['method']}), partitions "
                f"{report['partitions_before']} -> {report['partitions_after']}, {report['left_for_next_runs']} "
                f"left for the next runs; run {time.perf_counter() - started:.1f} s"
            )
            if not report["partitions_removed"]:
                break
        count = len(instance.get_dynamic_partitions(videos_partitions.name))
    con = analytics.connect(settings.lake_uri, [LINEAGE])
    rows = analytics.query(con, "SELECT count(DISTINCT video) AS videos FROM lineage")["videos"][0]
    print(f"    partitions after retention: {count}; videos with lineage in the lake: {rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        queue_backlog(Path(tmp), args.backlog)
        deletion_rate(Path(tmp), args.partitions)
        retention_runs(Path(tmp), args.partitions)


if __name__ == "__main__":
    main()
