"""Short clips at the model's speed: the pipeline around the model against the bare model loop, in one run.

Run by hand (not a test):
    .venv/bin/python benchmarks/latency.py [--repeat 3] [--burst 20] [--long 60] [--skip long k8s]

Each clip's bare and process rows run --repeat times in turn, and the medians are shown (for the long clip's
ratio, the median of each pair's own): this machine's speed drifts over minutes, so one run of each, a minute
apart, can be off by more than a change's effect.

Side by side, on this machine, in fresh processes and a fresh BODYSCRIPT_HOME:
  bare            PyAV decode + MediaPipe full loop, as one process: start-up, imports and model load included
  process         `bodyscript process CLIP --json` (every asset through Dagster in one process)
  drop            one clip copied into the drop folder of a running `dagster dev` (what `make dev` starts):
                  seconds from the end of the copy until every per-video asset is materialized
                  (and the long clip, once, against the median of its bare processes)
  burst           --burst short clips (four variants of the real recording, the same number of copies each)
                  copied at once: seconds until all are materialized, against the two-core model ceiling
                  (the sum of their bare processes / 1.7, as two bare processes reach 1.7x one)
  k8s pods        step pods (Jobs) one short video starts under BODYSCRIPT_EXECUTOR=k8s, counted in the
                  simulated cluster of the tests
  peak RSS        the largest VmHWM of any process of each row (for drop and burst: every process of
                  `dagster dev`: webserver, daemon, code server, run workers, pose workers)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import _descendants, _peak_rss_mb, loop_clip  # noqa: E402
from tests.support.video_factory import clip_of  # noqa: E402

SHARED_CLIP = REPO.parent / "shared" / "videos" / "sports2d_demo.mp4"
SHORT_FRAMES = 100
# Four short recordings made from the one real clip: portrait 60 fps (the clip), landscape 720p,
# a phone's rotated portrait, and a tight crop; each 100 frames.
VARIANTS: dict[str, dict[str, object]] = {
    "portrait60": {"size": (1080, 1920), "fps": 60, "crop_x": (0.2, 0.52)},
    "landscape720": {"size": (1280, 720)},
    "rotated": {"size": (1280, 720), "rotation": 90},
    "crop540": {"size": (960, 540), "crop_x": (0.1, 0.7)},
}
VIDEO_ASSETS = ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports")


def bare_process(video: Path) -> dict[str, float]:
    """The bare loop as its own process: wall time from exec to exit, and the loop's own seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--child", "bare", "--video", str(video),
         "--workers", "1"],
        capture_output=True, text=True, check=True, env=os.environ.copy(),
    )  # fmt: skip
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": time.perf_counter() - started, "loop": row["seconds"], "rss": row["rss_mb"]}


def cli_process(video: Path, home: Path) -> dict[str, float]:
    env = {**os.environ, "BODYSCRIPT_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("bodyscript")), "process", str(video), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak = sample_until(process, lambda: process.poll() is not None)
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(err)
    return {"wall": time.perf_counter() - started, "rss": peak, "frames": json.loads(out)["frames"]}


def cpu_busy() -> tuple[int, int]:
    """Busy and total jiffies of all cores so far (/proc/stat): how much of the machine a row used."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def sample_until(root: subprocess.Popen, done: Callable[[], bool], timeout: float = 1800, every: float = 0.1) -> float:
    """Polls ``done`` every ``every`` seconds; returns the largest peak RSS (MB) of ``root`` and its descendants."""
    peak = 0.0
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        peak = max([peak, _peak_rss_mb(root.pid), *(_peak_rss_mb(p) for p in _descendants(root.pid))])
        time.sleep(every)
    return peak


class DagsterDev:
    """`dagster dev` on a fresh home, as `make dev` starts it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dagster_home = home / "dagster"
        self.dagster_home.mkdir(parents=True)
        shutil.copyfile(REPO / "dagster.yaml", self.dagster_home / "dagster.yaml")
        self.drop = home / "drop"
        self.drop.mkdir()
        import dagster as dg

        # The storage is created before `dagster dev` starts: processes creating it at once race.
        self.instance = dg.DagsterInstance.from_config(str(self.dagster_home))
        env = {**os.environ, "BODYSCRIPT_HOME": str(home), "DAGSTER_HOME": str(self.dagster_home)}
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        self.log = (home / "dagster-dev.log").open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml", "-p", str(port)],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_for_sensor(self) -> None:
        """Until the drop-zone sensor has ticked: the code location is loaded and the daemon is running."""
        from sensors import DROP_ZONE_SENSOR

        def ticked() -> bool:
            states = [s for s in self.instance.all_instigator_state() if s.name == DROP_ZONE_SENSOR]
            return bool(states) and bool(self.instance.get_ticks(states[0].instigator_origin_id,
                                                                 states[0].selector_id, limit=1))  # fmt: skip

        sample_until(self.process, ticked, timeout=300)

    def finished(self, keys: list[str]) -> tuple[int, int]:
        """(partitions whose run succeeded, partitions whose run failed): one query of the run storage, so that
        watching costs the machine next to nothing."""
        import dagster as dg

        runs = {r.tags.get("dagster/partition"): r.status for r in reversed(self.instance.get_runs())}  # newest wins
        statuses = [runs.get(key) for key in keys]
        return statuses.count(dg.DagsterRunStatus.SUCCESS), statuses.count(dg.DagsterRunStatus.FAILURE)

    def materialized_at(self, keys: list[str]) -> float:
        """The latest materialization time among every per-video asset of these partitions."""
        import dagster as dg

        latest = 0.0
        for key in keys:
            for asset in VIDEO_ASSETS:
                records = self.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
                ).records
                latest = max([latest, *(r.timestamp for r in records)])
        return latest

    def drop_and_wait(self, clips: dict[str, Path]) -> dict[str, float]:
        from bodyscript_pipeline.lake.partition_keys import partition_key_for

        keys = [partition_key_for(f"bench/{name}") for name in clips]
        (self.drop / "bench").mkdir(exist_ok=True)
        for name, clip in clips.items():
            shutil.copyfile(clip, self.drop / "bench" / name)
        dropped = time.time()
        busy_before = cpu_busy()
        state = {"done": (0, 0)}

        def finished() -> bool:
            state["done"] = self.finished(keys)
            return sum(state["done"]) == len(keys)

        # Every half second: the time reported is the last materialization's own, not the moment this notices.
        peak = sample_until(self.process, finished, every=0.5)
        busy, total = (after - before for after, before in zip(cpu_busy(), busy_before, strict=True))
        done, failed = state["done"]
        latest = self.materialized_at(keys)
        return {"seconds": latest - dropped, "done": done, "failed": failed, "rss": peak, "cpu": busy / total}

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.instance.dispose()
        self.log.close()


def k8s_pods(clip: Path, workdir: Path) -> dict[str, object]:
    """Runs one short video through the real k8s_job_executor on the tests' simulated cluster (each Job's
    container runs as a local process) and counts the step Jobs it started."""
    from bodyscript_pipeline.lake.sources import register_source
    from bodyscript_pipeline.settings import Settings
    from tests.support.simulated_cluster import run_partition, simulated_k8s

    workdir.mkdir(parents=True, exist_ok=True)
    saved = dict(os.environ)
    os.environ.update({"BODYSCRIPT_EXECUTOR": "k8s", "BODYSCRIPT_HOME": str(workdir / "home")})
    os.environ.pop("DAGSTER_HOME", None)
    try:
        settings = Settings.from_env()
        with simulated_k8s(workdir, settings.dagster_home) as (cluster, instance):
            instance.add_dynamic_partitions("videos", ["short"])
            register_source(settings.lake_uri, "short", f"file://{clip}")
            started = time.perf_counter()
            result = run_partition(instance, "short")
            cluster.wait()
            seconds = time.perf_counter() - started
        steps = cluster.steps()
        return {"pods": len(steps), "steps": ", ".join(steps), "seconds": seconds, "success": result.success}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def median(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """The row of the median wall time (the lower middle one of an even count)."""
    ordered = sorted(rows, key=lambda row: row["wall"])
    return ordered[(len(ordered) - 1) // 2]


def walls(rows: Iterable[dict[str, float]]) -> str:
    return ", ".join(f"{row['wall']:.1f} s" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20, help="clips in the burst (a multiple of 4)")
    parser.add_argument("--long", type=float, default=60, help="seconds of the long clip")
    parser.add_argument("--repeat", type=int, default=3, help="bare and process of each clip, in turn")
    parser.add_argument("--drops", type=int, default=3, help="single drops, one after another (median shown)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("long", "drop", "burst", "k8s"))
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; clip source: {SHARED_CLIP.name}")
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        work = Path(tmp)
        clips = {
            name: clip_of(SHARED_CLIP, work / f"{name}.mp4", SHORT_FRAMES, **options)  # type: ignore[arg-type]
            for name, options in VARIANTS.items()
        }
        short = clips["portrait60"]
        bare = {name: bare_process(clip) for name, clip in clips.items()}
        # The short pair, bare then process, --repeat times in turn: this machine's speed drifts over minutes.
        pairs = [(bare["portrait60"], cli_process(short, work / "home-process-0"))]
        for k in range(1, args.repeat):
            pairs.append((bare_process(short), cli_process(short, work / f"home-process-{k}")))
        b = median(row for row, _ in pairs)
        p = median(row for _, row in pairs)
        bare["portrait60"] = b
        print(f"-- one {SHORT_FRAMES}-frame portrait 60 fps clip ({len(pairs)} times each, in turn; the medians)")
        print(f"   bare process    {b['wall']:6.1f} s  (loop alone {b['loop']:.1f} s)  "
              f"peak RSS {b['rss']:4.0f} MB  all: {walls(row for row, _ in pairs)}")  # fmt: skip
        print(f"   process         {p['wall']:6.1f} s  bare + {p['wall'] - b['wall']:.1f} s  "
              f"peak RSS {p['rss']:4.0f} MB  all: {walls(row for _, row in pairs)}")  # fmt: skip
        if "long" not in args.skip:
            long_clip = work / "long.mp4"
            frames = loop_clip(SHARED_CLIP, long_clip, args.long)
            # The long pair in turn as well, --repeat times: one bare run and one process run a minute apart
            # are too few on a machine whose speed drifts.
            long_pairs = [
                (bare_process(long_clip), cli_process(long_clip, work / f"home-long-{k}")) for k in range(args.repeat)
            ]
            lb = median(row for row, _ in long_pairs)
            lp = median(row for _, row in long_pairs)
            # The ratio is each pair's own (its two runs a minute apart), their median shown: the speed drifts less
            # within a pair than across the whole row.
            pair_ratios = [p["wall"] / b["wall"] for b, p in long_pairs]
            each = ", ".join(f"x{r:.2f}" for r in pair_ratios)
            print(f"-- a {args.long:g} s clip ({frames} frames; {len(long_pairs)} times each, in turn; the medians)")
            print(f"   bare process    {lb['wall']:6.1f} s  (loop alone {lb['loop']:.1f} s)  "
                  f"peak RSS {lb['rss']:4.0f} MB  all: {walls(row for row, _ in long_pairs)}")  # fmt: skip
            ratio = sorted(pair_ratios)[(len(pair_ratios) - 1) // 2]
            print(f"   process         {lp['wall']:6.1f} s  x{ratio:.2f} of bare (each pair's: {each})  "
                  f"peak RSS {lp['rss']:4.0f} MB  all: {walls(row for _, row in long_pairs)}")  # fmt: skip
        if "drop" not in args.skip or "burst" not in args.skip:
            dev = DagsterDev(work / "home-dev")
            try:
                dev.wait_for_sensor()
                if "drop" not in args.skip:
                    drops = [dev.drop_and_wait({f"single-{k}.mp4": short}) for k in range(args.drops)]
                    d = sorted(drops, key=lambda row: row["seconds"])[(len(drops) - 1) // 2]
                    every = ", ".join(f"{row['seconds']:.1f} s" for row in drops)
                    print(f"-- `dagster dev` running: one clip copied into the drop folder ({len(drops)} times, one "
                          f"after another; the median)")  # fmt: skip
                    print(f"   drop            {d['seconds']:6.1f} s  bare + {d['seconds'] - b['wall']:.1f} s  "
                          f"cores busy {d['cpu']:4.0%}  peak RSS {d['rss']:4.0f} MB  "
                          f"all: {every}")  # fmt: skip
                    if "long" not in args.skip:
                        ld = dev.drop_and_wait({"long.mp4": long_clip})
                        print(f"-- `dagster dev` running: the {args.long:g} s clip copied into the drop folder")
                        print(f"   drop            {ld['seconds']:6.1f} s  x{ld['seconds'] / lb['wall']:.2f} of bare  "
                              f"cores busy {ld['cpu']:4.0%}  peak RSS {ld['rss']:4.0f} MB")  # fmt: skip
                if "burst" not in args.skip:
                    copies = max(1, args.burst // len(clips))
                    burst = {f"{name}-{k}.mp4": clip for name, clip in clips.items() for k in range(copies)}
                    ceiling = sum(bare[name]["wall"] for name in clips) * copies / 1.7
                    r = dev.drop_and_wait(burst)
                    print(f"-- `dagster dev` running: {len(burst)} short clips copied at once")
                    print(f"   burst           {r['seconds']:6.1f} s  x{r['seconds'] / ceiling:.2f} of the model "
                          f"ceiling ({ceiling:.1f} s)  {r['done']} done, {r['failed']} failed  "
                          f"cores busy {r['cpu']:4.0%}  peak RSS {r['rss']:4.0f} MB")  # fmt: skip
            finally:
                dev.stop()
        if "k8s" not in args.skip:
            pods = k8s_pods(short, work / "k8s")
            print(f"-- k8s (simulated cluster): step pods for one short video: {pods['pods']} ({pods['steps']}); "
                  f"run {'succeeded' if pods['success'] else 'FAILED'}")  # fmt: skip


if __name__ == "__main__":
    main()
