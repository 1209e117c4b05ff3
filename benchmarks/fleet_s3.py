"""Fleet scale on S3: what opening the views and a retention pass cost in object-store round trips.

Run by hand (not a test):  .venv/bin/python benchmarks/fleet_s3.py [--videos 120]

On the S3 test server (moto's, over HTTP on loopback, as the tests use it): a lake of ``--videos`` videos written by
the project's own steps, compacted, then every video made again as a run makes it (its per-video files restored,
then marked fresh at the run's end), as the hour before the next compaction gathers them. Then, side by side with
fsspec's own glob and a lookup per video and table (what the lake did before):
- listing the fresh markers;
- finding the marked videos' per-video files, every table;
- ``analytics.connect`` whole;
- retention's listing of every per-video folder with its age.
moto answers one request at a time, about 10 ms each here: real S3 answers concurrent requests, with more latency.
Opening the views also has DuckDB look up each per-video file it is given once (through fsspec, one after another).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bodyscript_pipeline import storage
from bodyscript_pipeline.analytics import connect
from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.lake.compaction import COMPACTED_TABLES, compact, fresh_for_views
from bodyscript_pipeline.lake.paths import (
    FILE_PATTERNS,
    FRESH,
    TABLES,
    VideoLake,
    marked_partitions,
    marker_pattern,
    partition_of,
)
from bodyscript_pipeline.lake.writing import begin_writing, end_writing
from bodyscript_pipeline.retention.artifacts import DERIVED_TABLES, aged_artifacts
from bodyscript_pipeline.steps.clean_landmarks import clean_landmarks
from bodyscript_pipeline.steps.metrics import compute_metrics
from tests.support.s3_server import running_s3_server
from tests.support.synthetic_partition import make_partition


def timed(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The best of ``repeat`` runs, and the answer."""
    best, answer = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = run()
        best = min(best, time.perf_counter() - started)
    return best, answer


def markers_by_fsspec_glob(lake_uri: str) -> list[str]:
    fs, path = storage.filesystem(marker_pattern(lake_uri, FRESH))
    return sorted(partition_of(p)[0] for p in fs.glob(path))


def fresh_by_lookups(lake_uri: str, videos: list[str]) -> list[str]:
    """Each marked video's file of each table looked up on its own, one after another."""
    found = []
    for table in COMPACTED_TABLES:
        for video in videos:
            lake = VideoLake(lake_uri, video)
            if table in TABLES:
                found += [lake.table_part(table)] if storage.exists(lake.table_part(table)) else []
            else:
                fs, folder = storage.filesystem(lake.folder(table))
                found += [storage.join(lake_uri, p) for p in fs.glob(f"{folder}/{FILE_PATTERNS[table]}")]
    return found


def fresh_by_listing(lake_uri: str, videos: list[str]) -> list[str]:
    return [uri for table in COMPACTED_TABLES for uri in fresh_for_views(lake_uri, table, videos)]


def folders_one_by_one(lake_uri: str) -> int:
    """Retention's listing as it was: each table's folders, then each folder's files."""
    fs, root = storage.filesystem(lake_uri)
    count = 0
    for table in DERIVED_TABLES:
        base = f"{root}/{table}"
        if fs.exists(base):
            count += sum(1 for folder in fs.ls(base, detail=False) if fs.find(folder))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with running_s3_server() as s3:
        os.environ.update(s3.env)
        s3.client().create_bucket(Bucket="lake")
        lake_uri = "s3://lake/fleet"
        started = time.perf_counter()
        videos = [f"clip-{n:05d}" for n in range(args.videos)]
        for seed, video in enumerate(videos):
            make_partition(lake_uri, video, seed)
            clean_landmarks(lake_uri, video, CleaningOptions(10, 6.0, 0.5))
            compute_metrics(lake_uri, video, 0.5, "cleaned")
        print(f"{args.videos} videos written to the S3 test server in {time.perf_counter() - started:.0f} s")
        before_s, counted = timed(lambda: folders_one_by_one(lake_uri), 1)
        after_s, aged = timed(lambda: list(aged_artifacts(lake_uri, -1.0)), 1)
        assert counted == len(aged), "the two listings disagree"  # type: ignore[arg-type]
        retention = ("retention: every per-video folder with its age", before_s, after_s, f"{len(aged)} folders")
        report = compact(lake_uri, min_videos=1)
        print(f"compacted: {report.videos} videos, {report.files_in} files into {report.files_out}")
        for video in videos:  # each made again, as a run does: its files restored, then marked fresh at its end
            begin_writing(lake_uri, video, "benchmark")
            end_writing(lake_uri, video)
        rows = [retention]
        old_s, old = timed(lambda: markers_by_fsspec_glob(lake_uri), args.repeat)
        new_s, new = timed(lambda: marked_partitions(lake_uri, FRESH), args.repeat)
        assert old == new == videos, "the two listings disagree"
        rows.append(("fresh markers listed", old_s, new_s, f"{len(new)} videos"))
        old_s, old = timed(lambda: fresh_by_lookups(lake_uri, videos), 1)
        new_s, new = timed(lambda: fresh_by_listing(lake_uri, videos), args.repeat)
        assert sorted(old) == sorted(new), "the two lookups disagree"  # type: ignore[arg-type]
        rows.append(("marked videos' per-video files found", old_s, new_s, f"{len(new)} files"))  # type: ignore[arg-type]
        new_s, con = timed(lambda: connect(lake_uri), args.repeat)
        count = con.execute("SELECT count(DISTINCT video) FROM landmarks").fetchone()[0]  # type: ignore[attr-defined]
        rows.append(("analytics.connect (the views opened)", float("nan"), new_s, f"{count} videos in landmarks"))
        print(f"\n{'':<48} {'fsspec glob, lookups':>21} {'now':>8}")
        for what, old_s, new_s, note in rows:
            print(f"{what:<48} {old_s:>19.2f} s {new_s:>6.2f} s  {note}")


if __name__ == "__main__":
    main()
