"""Drop-zone sensor tick time against one bare paginated listing of the same S3 bucket.

Run by hand (not a test):  .venv/bin/python benchmarks/sensor_tick.py [--objects 10000]

Starts moto's S3 server on loopback, fills a drop bucket with N video-named objects, registers them all
(one warm-up tick), then times: a bare ListObjectsV2 pagination of the bucket, and a steady-state sensor
tick (every object listed, nothing new), both best of 3. Prints the cursor size and the per-page cost that
bounds a tick: BODYSCRIPT_SCAN_MAX_PAGES pages at most.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.settings import Settings
from sensors import DROP_ZONE_SENSOR
from tests.support.s3_server import running_s3_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    with running_s3_server() as server, tempfile.TemporaryDirectory() as home:
        os.environ.update(server.env)
        os.environ.update(
            {
                "BODYSCRIPT_HOME": home,
                "BODYSCRIPT_DROP_URI": "s3://drop/incoming",
                "BODYSCRIPT_LAKE_URI": "s3://lake/bodyscript",
                "BODYSCRIPT_SCAN_MAX_NEW": str(args.objects),
                "BODYSCRIPT_SCAN_MAX_PAGES": "1000",
            }
        )
        client = server.client()
        client.create_bucket(Bucket="drop")
        client.create_bucket(Bucket="lake")
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: client.put_object(
                        Bucket="drop", Key=f"incoming/d{i % 50:02d}/c{i:06d}.mp4", Body=b"v%d" % i
                    ),
                    range(args.objects),
                )
            )
        print(f"uploaded {args.objects} objects in {time.perf_counter() - started:.1f} s")

        def bare_listing() -> int:
            count = 0
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="drop", Prefix="incoming/"):
                count += len(page.get("Contents", []))
            return count

        defs = build_definitions(Settings.from_env())
        sensor = defs.resolve_sensor_def(DROP_ZONE_SENSOR)
        with dg.instance_for_test() as instance:
            cursor = None

            def tick() -> dg.SensorResult:
                nonlocal cursor
                with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
                    result = sensor(context)
                cursor = result.cursor
                return result

            started = time.perf_counter()
            first = tick()
            print(f"warm-up tick: {len(first.run_requests)} new versions in {time.perf_counter() - started:.1f} s")
            listing, ticks = [], []
            for _ in range(3):
                started = time.perf_counter()
                assert bare_listing() == args.objects
                listing.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert tick().run_requests == []
                ticks.append(time.perf_counter() - started)
            pages = -(-args.objects // 1000)
            print(f"bare paginated listing of {args.objects} objects: {min(listing):.2f} s (best of 3)")
            print(f"steady-state sensor tick over {args.objects} objects: {min(ticks):.2f} s (best of 3)")
            print(f"cursor size: {len(cursor or ''):,} characters")
            per_page = min(ticks) / pages
            print(
                f"per listed page: {per_page:.2f} s; with the default BODYSCRIPT_SCAN_MAX_PAGES=20 a tick lists at "
                f"most 20,000 objects, about {20 * per_page:.0f} s at this rate, whatever the bucket's size"
            )


if __name__ == "__main__":
    main()
