"""Fleet scale: how long a 10,000-video reprocessing takes to queue.

Run by hand (not a test):  .venv/bin/python benchmarks/fleet_reprocess.py [--videos 10000]

A lake of ``--videos`` processed videos (each registered, with a lineage row for every per-video asset, written by
the lake's own writers as ``record_lineage`` writes them) and their partitions in a real SQLite instance with the
repo's dagster.yaml. Then a setting that determines ``clean_landmarks`` changes (BODYSCRIPT_SMOOTH_CUTOFF_HZ), which
makes every video stale from ``clean_landmarks`` on, and the real reprocessing sensor ticks: the seconds until every
stale video is known and the first runs are requested (its budget, BODYSCRIPT_REPROCESS_MAX_RUNS, at most queued or
running at once; later ticks feed the rest as runs end, behind fresh drops: benchmarks/fleet_queue.py), against
Dagster's backfill daemon, which enqueues about one run per second (10,000 videos: about 3 hours). Then the same on
the lake compacted (lake/compaction.py: the lineage files merged), side by side.
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
from bodyscript_pipeline.lake.compaction import compact
from bodyscript_pipeline.lake.lineage import write_lineage
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.staleness import stale_partitions
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS
from sensors.reprocess import build_reprocess_sensor
from tests.support.lineage_lake import lineage_row
from tests.support.observed_runs import install_dagster_yaml


def build_fleet(settings: Settings, videos: int) -> list[str]:
    keys = [f"clip-{i:06d}" for i in range(videos)]
    rows = [lineage_row(asset, settings) for asset in VIDEO_ASSETS]
    for key in keys:
        register_source(settings.lake_uri, key, f"file:///videos/{key}.mp4", version="v1")
        for row in rows:
            write_lineage(settings.lake_uri, key, row)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-reprocess-") as tmp:
        os.environ["BODYSCRIPT_HOME"] = tmp
        before = Settings.from_env()
        started = time.perf_counter()
        keys = build_fleet(before, args.videos)
        print(f"-- a lake of {args.videos} processed videos ({args.videos * len(VIDEO_ASSETS)} lineage rows) "
              f"written in {time.perf_counter() - started:.0f} s")  # fmt: skip
        install_dagster_yaml(before.dagster_home)
        os.environ["BODYSCRIPT_SMOOTH_CUTOFF_HZ"] = "8.0"
        after = Settings.from_env()
        with dg.DagsterInstance.from_config(str(before.dagster_home)) as instance:
            instance.add_dynamic_partitions(videos_partitions.name, keys)
            measure("per-video lineage files", instance, after)
            started = time.perf_counter()
            report = compact(after.lake_uri)
            took = time.perf_counter() - started
            print(f"-- compacted: {report.files_in} files into {report.files_out} in {took:.1f} s")
            measure("compacted lineage", instance, after)
            print(f"   Dagster's backfill daemon at about one run a second: {args.videos / 3600:.1f} h to enqueue")


def measure(label: str, instance: dg.DagsterInstance, after: Settings) -> None:
    """Every stale video found, then one tick of the real sensor (a new cursor: it reads the lineage)."""
    started = time.perf_counter()
    stale = stale_partitions(after.lake_uri, after)
    print(f"   {label}: stale_partitions found {len(stale)} stale videos in {time.perf_counter() - started:.1f} s")
    sensor = build_reprocess_sensor(after)
    started = time.perf_counter()
    with dg.build_sensor_context(instance=instance) as context:
        result = sensor(context)
    seconds = time.perf_counter() - started
    requests = result.run_requests if isinstance(result, dg.SensorResult) else []
    print(f"   {label}: reprocess_sensor tick: {len(stale)} videos queued for reprocessing, the first "
          f"{len(requests or [])} runs requested, in {seconds:.1f} s "
          f"(BODYSCRIPT_REPROCESS_MAX_RUNS {after.reprocess_max_runs})")  # fmt: skip


if __name__ == "__main__":
    main()
