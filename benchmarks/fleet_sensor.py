"""Drop-zone sensor ticks at fleet scale: the scan and its memory in a real SQLite Dagster instance.

Run by hand (not a test):  .venv/bin/python benchmarks/fleet_sensor.py [--sizes 10000 100000 1000000]

For each size, a synthetic drop zone of that many S3-like objects (an in-process ``DropLister``: listing costs
nothing here, so what is timed is the sensor's own work) and a fresh SQLite instance. A tick is what the
drop-zone sensor does besides its run requests: ``resume`` (the previous tick's takes go to the instance's
key-value store), one bounded scan (``BODYSCRIPT_SCAN_MAX_PAGES`` pages of ``BODYSCRIPT_SCAN_PAGE_SIZE``), and the
cursor's encoding. Printed per size:

- first-pass tick: the ticks that find every object new, taking all of their pages' objects (max_new = pages x
  page size), each with the next tick's commit of its takes to the memory;
- steady tick: the default settings over a drop zone the memory knows (every object's pass number rewritten once
  per pass, as in every steady pass), mean and slowest, per listed page, and the whole pass;
- the cursor's size, steady and at its largest while takes wait in it, and the key-value store's rows.
"""

from __future__ import annotations

import argparse
import bisect
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster._core.storage.runs.base import RunStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bodyscript_pipeline.drop_zone.listing import DropObject, Page
from bodyscript_pipeline.drop_zone.scan import ScanResult, resume, scan
from sensors.drop_memory import PREFIX, KeyValueScanMemory

MAX_PAGES = 20  # the settings' defaults
PAGE_SIZE = 1000
MAX_NEW = 100


class SyntheticLister:
    """``size`` objects in key order, listed page by page after a key, as S3 lists them."""

    def __init__(self, size: int, page_size: int = PAGE_SIZE) -> None:
        self.keys = [f"site-{i // 10_000:03d}/clip-{i:07d}.mp4" for i in range(size)]
        self.page_size = page_size

    def pages(self, after: str) -> Iterator[Page]:
        start = bisect.bisect_right(self.keys, after)
        while True:
            keys = self.keys[start : start + self.page_size]
            start += self.page_size
            last = start >= len(self.keys)
            yield Page(
                [DropObject(k, f"s3://drop/{k}", 1000, 1.7e9, f"{zlib.crc32(k.encode()):08x}") for k in keys], last
            )
            if last:
                return


def tick(lister: SyntheticLister, storage: RunStorage, cursor: str | None, max_new: int) -> tuple[ScanResult, float]:
    """One tick as the sensor runs it (without its run requests): resume, a bounded scan, the cursor encoded."""
    started = time.perf_counter()
    memory = KeyValueScanMemory(storage)
    state = resume(cursor, memory)
    result = scan(
        lister, state, max_pages=MAX_PAGES, max_new=max_new, settle_seconds=2.0, now=time.time(), memory=memory
    )
    result.state.encode()
    return result, time.perf_counter() - started


def commit(storage: RunStorage, cursor: str) -> tuple[str, float]:
    """The start of the tick after: the takes of ``cursor`` handed to the memory."""
    started = time.perf_counter()
    state = resume(cursor, KeyValueScanMemory(storage))
    return state.encode(), time.perf_counter() - started


def kv_rows(root: str) -> int:
    with sqlite3.connect(Path(root) / "history" / "runs.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM kvs WHERE key LIKE ?", (PREFIX + "%",)).fetchone()[0])


def bench(size: int) -> None:
    lister = SyntheticLister(size)
    fill = MAX_PAGES * PAGE_SIZE
    with tempfile.TemporaryDirectory() as root, dg.instance_for_test(temp_dir=root) as instance:
        storage = instance.run_storage
        cursor: str | None = None
        first: list[float] = []  # each with the next tick's commit of its takes
        fill_cursor = 0
        taken = 0
        while True:
            result, seconds = tick(lister, storage, cursor, fill)
            cursor = result.state.encode()
            fill_cursor = max(fill_cursor, len(cursor))
            taken += len(result.new)
            cursor, committed = commit(storage, cursor)
            first.append(seconds + committed)
            if result.pass_completed:
                break
        assert taken == size
        steady: list[float] = []
        pages = 0
        steady_cursor = 0
        while True:  # a whole pass: every known object's pass number rewritten once, as in every steady pass
            result, seconds = tick(lister, storage, cursor, MAX_NEW)
            assert result.new == []
            cursor = result.state.encode()
            steady.append(seconds)
            pages += result.pages
            steady_cursor = max(steady_cursor, len(cursor))
            if result.pass_completed:
                break
        rows = kv_rows(root)
    print(f"{size:,} objects")
    print(f"  first-pass tick: {statistics.mean(first):.2f} s mean, {max(first):.2f} s max ({len(first)} of {fill:,})")
    print(
        f"  steady tick:     {statistics.mean(steady):.2f} s mean, {max(steady):.2f} s max; "
        f"{1000 * sum(steady) / pages:.1f} ms per page; a whole pass {sum(steady):.1f} s ({len(steady)} ticks)"
    )
    print(f"  cursor:          {steady_cursor:,} B steady; {fill_cursor:,} B with {fill:,} takes pending")
    print(f"  KV rows:         {rows:,}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    for size in args.sizes:
        bench(size)


if __name__ == "__main__":
    main()
