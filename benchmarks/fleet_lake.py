"""Fleet queries at 100,000 short videos, on the per-video lake and on the compacted one, side by side.

Run by hand (not a test):

    .venv/bin/python benchmarks/fleet_lake.py [--videos 100000] [--frames 100] [--keep DIR] [--workers 2]

The fleet is built from real pose data by the project's own writers. The landmarks MediaPipe finds in
../shared's real clip (computed once with the real model; cached under ``--keep``) make ``TEMPLATES`` distinct
synthetic videos (time-warped, moved, scaled, jittered, each with its own share of undetected frames), and each
of them goes through the project's step code: ``clean_landmarks`` (landmarks_clean, quality) and
``compute_metrics`` (frame_metrics, video_metrics, videos). Every fleet video is then one template's seven
tables with its own key, source and cheap per-video variation (a shift of the landmarks in the image, a scale
of the angles), written with ``write_table`` to its own Hive folders: one file per video per table.

Then the README's five fleet questions (SQL through ``analytics.connect``, Polars through ``analytics.scan``)
and two more (a ``quality`` question and a one-video lookup on ``landmarks``) run on the per-video lake,
``compaction.compact`` merges it, and the same queries run again: times side by side, the targets, the lake's
files and bytes before and after, and whether every answer is the same.

``--keep DIR`` builds the lake in DIR and keeps it; a later run with the same ``--videos``/``--frames`` reuses
it (after compaction only the compacted half can run again: delete DIR to rebuild). The build prints its CPU
time per video (about 30 ms: 100,000 videos take about 25 minutes on two idle cores) and so does compaction;
at 100,000 videos every per-video query reads 100,000 files, so ``--repeats 1`` (and ``--no-polars``) shorten
the per-video half.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lake_queries import FPS, HEIGHT, SHARED_CLIP, WIDTH, landmarks_table, real_template, synthetic_video
from bodyscript_pipeline import storage
from bodyscript_pipeline.analytics import connect, scan
from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.lake.parquet import file_metadata, read_table, write_table
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.lake.paths import TABLES, VideoLake
from bodyscript_pipeline.lake.schemas import FRAMES, with_table_metadata
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, angle_column, velocity_column
from bodyscript_pipeline.steps.clean_landmarks import clean_landmarks
from bodyscript_pipeline.steps.metrics import compute_metrics
from bodyscript_pipeline.video.io import Probe

TEMPLATES = 16  # distinct videos made by the step code; every fleet video is one of them, varied
MIN_VISIBILITY = 0.5
TIME_BASE = 15360  # pts per second, as an MP4 at 30 fps has
CHUNK = 100  # videos per worker task

PER_VIDEO, LANDMARK_LEVEL, FRAME_LEVEL, LOOKUP = "per-video", "landmark-level", "frame-level", "one video"
TARGETS = {PER_VIDEO: "<= 0.5 s", LANDMARK_LEVEL: "<= 10 s, >= 5x"}
PROBE_VIDEO = partition_key_for("incoming/fleet/000042.mp4")  # the one-video lookup


@dataclass(frozen=True)
class Query:
    name: str
    kind: str
    sql: str
    polars: Callable[[str], pl.DataFrame] | None = None


QUERIES = (
    Query(
        "1 poor detection (videos)",
        PER_VIDEO,
        "SELECT video, detection_rate FROM videos WHERE detection_rate < 0.8 ORDER BY detection_rate",
        lambda lake: (
            scan(lake, "videos")
            .filter(pl.col("detection_rate") < 0.8)
            .select("video", "detection_rate")
            .sort("detection_rate")
            .collect()
        ),
    ),
    Query(
        "2 knee range of motion (video_metrics)",
        PER_VIDEO,
        "SELECT joint, quantile_cont(range_of_motion_deg, [0.1, 0.5, 0.9]) AS q FROM video_metrics "
        "WHERE joint LIKE '%knee' GROUP BY joint",
        lambda lake: (
            scan(lake, "video_metrics")
            .filter(pl.col("joint").str.ends_with("knee"))
            .group_by("joint")
            .agg([pl.col("range_of_motion_deg").quantile(q).alias(f"p{int(q * 100)}") for q in (0.1, 0.5, 0.9)])
            .collect()
        ),
    ),
    Query(
        "3 knee past 90 deg (frame_metrics)",
        FRAME_LEVEL,
        "SELECT video, frame_index, timestamp_ms, right_knee_angle_deg FROM frame_metrics "
        "WHERE right_knee_angle_deg > 90",
        lambda lake: (
            scan(lake, "frame_metrics")
            .filter(pl.col("right_knee_angle_deg") > 90)
            .select("video", "frame_index", "timestamp_ms", "right_knee_angle_deg")
            .collect()
        ),
    ),
    Query(
        "4 visibility per landmark (landmarks)",
        LANDMARK_LEVEL,
        "SELECT landmark, avg(visibility) AS visibility FROM landmarks WHERE landmark IS NOT NULL "
        "GROUP BY landmark ORDER BY visibility",
        lambda lake: (
            scan(lake, "landmarks")
            .drop_nulls("landmark")
            .group_by("landmark")
            .agg(pl.col("visibility").mean())
            .sort("visibility")
            .collect()
        ),
    ),
    Query(
        "5 peak elbow speed (frame_metrics)",
        FRAME_LEVEL,
        "SELECT video, max(abs(right_elbow_velocity_deg_s)) AS peak_deg_s FROM frame_metrics "
        "GROUP BY video ORDER BY peak_deg_s DESC",
        lambda lake: (
            scan(lake, "frame_metrics")
            .group_by("video")
            .agg(pl.col("right_elbow_velocity_deg_s").abs().max().alias("peak_deg_s"))
            .sort("peak_deg_s", descending=True)
            .collect()
        ),
    ),
    Query(
        "6 below quality thresholds (quality)",
        PER_VIDEO,
        "SELECT count(*) AS videos, avg(jitter_px) AS jitter_px FROM quality "
        "WHERE person IS NULL AND (detection_rate < 0.8 OR filled_fraction > 0.05)",
    ),
    Query(
        "7 one video's landmarks (landmarks)",
        LOOKUP,
        "SELECT count(*) AS rows, avg(x) AS x, avg(visibility) AS visibility FROM landmarks "
        f"WHERE video = '{PROBE_VIDEO}'",
    ),
)

# ---------------------------------------------------------------- the fleet


def cached_template(root: Path) -> tuple[np.ndarray, dict[str, str]]:
    """The real clip's landmarks (frames, 33, 8) and the model that found them, computed once per ``root``."""
    poses, meta = root / "template.npy", root / "template.json"
    if poses.exists() and meta.exists():
        return np.load(poses), json.loads(meta.read_text())
    home = root / "template-home"
    template = real_template(home)
    lake = f"file://{home / 'lake'}"
    landmarks = file_metadata(VideoLake(lake, "template").table_part("landmarks"))
    model = {key: landmarks[key] for key in ("bodyscript.model", "bodyscript.model_sha256")}
    np.save(poses, template)
    meta.write_text(json.dumps(model))
    shutil.rmtree(home)
    return template, model


def probe(frames: int) -> Probe:
    return Probe(
        container="mov,mp4,m4a,3gp,3g2,mj2",
        codec="h264",
        width=WIDTH,
        height=HEIGHT,
        coded_width=WIDTH,
        coded_height=HEIGHT,
        rotation=0,
        fps=float(FPS),
        duration_s=frames / FPS,
        frame_count=frames,
        time_base_num=1,
        time_base_den=TIME_BASE,
        start_pts=0,
        variable_frame_rate=False,
    )


def frame_index(frames: int) -> pa.Table:
    pts = np.arange(frames, dtype=np.int64) * (TIME_BASE // FPS)
    columns = {
        "frame_index": np.arange(frames),
        "pts": pts,
        "timestamp_ms": np.round(pts * 1000 / TIME_BASE).astype(np.int64),
        "keyframe": np.arange(frames) % FPS == 0,
    }
    return pa.table({name: pa.array(columns[name], FRAMES.field(name).type) for name in FRAMES.names})


def table_uri(lake: VideoLake, table: str) -> str:
    return lake.frame_index if table == "frames" else lake.table_part(table)


Template = dict[str, pa.Table]  # table name: the video's rows
Metadata = dict[str, dict[str, str]]  # table name: its file's own key-value metadata, as the step wrote it


def own_metadata(table: str, uri: str) -> dict[str, str]:
    common = {k.decode() for k in (with_table_metadata(table).metadata or {})} | {"ARROW:schema"}
    return {k: v for k, v in file_metadata(uri).items() if k not in common}


def make_templates(
    root: Path, poses: np.ndarray, model: dict[str, str], frames: int
) -> list[tuple[Template, Metadata]]:
    """``TEMPLATES`` videos through the project's step code; each one's seven tables and their files' metadata."""
    lake_uri = f"file://{root / 'templates'}"
    shutil.rmtree(root / "templates", ignore_errors=True)
    missing = np.geomspace(0.01, 0.35, TEMPLATES)  # the share of undetected frames: a few videos detect poorly
    templates = []
    for k in range(TEMPLATES):
        partition = f"template-{k:02d}"
        lake = VideoLake(lake_uri, partition)
        video, _ = synthetic_video(poses, frames, seed=k)  # detections drawn below
        detected = np.random.default_rng(1000 + k).random(frames) >= missing[k]
        source = {
            "bodyscript.video_uri": lake.source_copy(".mp4"),
            "bodyscript.source_uri": f"file://{SHARED_CLIP}",
            "bodyscript.source_version": f"template-{k}",
        }
        write_table("frames", lake.frame_index, frame_index(frames), source)
        storage.write_bytes(lake.probe, probe(frames).to_json().encode())
        pose_meta = {**model, "bodyscript.pose_seconds": f"{frames / 40:.6f}"}
        write_table("landmarks", lake.table_part("landmarks"), landmarks_table(video, detected), pose_meta)
        clean_landmarks(lake_uri, partition, CleaningOptions(min_visibility=MIN_VISIBILITY))
        compute_metrics(lake_uri, partition, MIN_VISIBILITY, "raw")
        uris = {table: table_uri(lake, table) for table in TABLES}
        templates.append(
            (
                {table: read_table(uri) for table, uri in uris.items()},
                {table: own_metadata(table, uri) for table, uri in uris.items()},
            )
        )
    return templates


ANGLES = [angle_column(j) for j in JOINT_NAMES]
VELOCITIES = [velocity_column(j) for j in JOINT_NAMES]


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _scaled_angle(column: pa.ChunkedArray, factor: float) -> pa.ChunkedArray:
    return pc.min_element_wise(pc.multiply(column, pa.scalar(factor, pa.float32())), pa.scalar(180.0, pa.float32()))


def varied(template: Template, index: int) -> tuple[str, Template, tuple[str, str]]:
    """Fleet video ``index``: its key, one template's tables with its own variation, and its source and version."""
    rng = np.random.default_rng(index)
    key = partition_key_for(f"incoming/fleet/{index:06d}.mp4")
    source_uri = f"s3://bodyscript-drop/incoming/fleet/{index:06d}.mp4"
    version = f"etag:{rng.bytes(8).hex()}"
    dx, dy = (pa.scalar(float(v), pa.float32()) for v in rng.uniform(-0.05, 0.05, 2))
    scale = float(rng.uniform(0.9, 1.1))
    out = dict(template)
    for name in ("landmarks", "landmarks_clean"):
        table = _set(out[name], "x", pc.add(out[name]["x"], dx))
        out[name] = _set(table, "y", pc.add(table["y"], dy))
    metrics = out["frame_metrics"]
    for column in ANGLES:
        metrics = _set(metrics, column, _scaled_angle(metrics[column], scale))
    for column in VELOCITIES:
        metrics = _set(metrics, column, pc.multiply(metrics[column], pa.scalar(scale, pa.float32())))
    out["frame_metrics"] = metrics
    joints = out["video_metrics"]
    for column in ("min_deg", "max_deg", "mean_deg"):
        joints = _set(joints, column, _scaled_angle(joints[column], scale))
    joints = _set(joints, "range_of_motion_deg", pc.subtract(joints["max_deg"], joints["min_deg"]))
    out["video_metrics"] = _set(
        joints, "max_abs_velocity_deg_s", pc.multiply(joints["max_abs_velocity_deg_s"], pa.scalar(scale, pa.float32()))
    )
    quality = out["quality"]
    out["quality"] = _set(quality, "jitter_px", pc.multiply(quality["jitter_px"], pa.scalar(scale, pa.float32())))
    videos = out["videos"]
    videos = _set(videos, "source_uri", pa.array([source_uri]))
    videos = _set(videos, "source_version", pa.array([version]))
    out["videos"] = _set(videos, "processed_at_ms", pa.array([1_790_000_000_000 + index * 1000], pa.int64()))
    return key, out, (source_uri, version)


_TEMPLATES: list[tuple[Template, Metadata]] = []
_PROBE = b""


def _init_worker(templates: list[tuple[Template, Metadata]], frames: int) -> None:
    global _PROBE
    _TEMPLATES[:] = templates
    _PROBE = probe(frames).to_json().encode()


def write_videos(job: tuple[str, int, int]) -> int:
    """Write fleet videos ``[start, stop)``; their landmark rows."""
    lake_uri, start, stop = job
    rows = 0
    for index in range(start, stop):
        template, metadata = _TEMPLATES[index % len(_TEMPLATES)]
        key, tables, (source_uri, version) = varied(template, index)
        lake = VideoLake(lake_uri, key)
        metadata = {
            **metadata,
            "frames": {
                "bodyscript.video_uri": lake.source_copy(".mp4"),
                "bodyscript.source_uri": source_uri,
                "bodyscript.source_version": version,
            },
        }
        for name, table in tables.items():
            write_table(name, table_uri(lake, name), table, metadata[name])
        # What a run leaves besides the tables: the source registry entry, the probe, the fresh marker.
        register_source(lake_uri, key, source_uri, version)
        storage.write_bytes(lake.probe, _PROBE)
        storage.write_bytes(lake.fresh, b"{}")
        rows += tables["landmarks"].num_rows
    return rows


def build(lake_uri: str, templates: list[tuple[Template, Metadata]], videos: int, workers: int) -> int:
    jobs = [(lake_uri, start, min(start + CHUNK, videos)) for start in range(0, videos, CHUNK)]
    rows, done, started, shown = 0, 0, time.perf_counter(), 0.0
    frames = templates[0][0]["frames"].num_rows
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(templates, frames)) as pool:
        for (_, start, stop), written in zip(jobs, pool.map(write_videos, jobs), strict=True):
            rows += written
            done += stop - start
            took = time.perf_counter() - started
            if took - shown > 30 or done == videos:
                shown = took
                print(f"  {done:,} videos in {took:,.0f} s ({done / took:,.0f} videos/s)", flush=True)
    return rows


# ---------------------------------------------------------------- measuring


def lake_files(root: Path) -> tuple[int, int, dict[str, int]]:
    """Files, bytes, and Parquet files per top folder (table, or ``compacted``) under the lake."""
    files = size = 0
    per_folder: dict[str, int] = {}
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder, _, names in os.walk(top):
            for name in names:
                files += 1
                size += os.stat(os.path.join(folder, name)).st_size
                if name.endswith(".parquet"):
                    per_folder[top.name] = per_folder.get(top.name, 0) + 1
    return files, size, per_folder


def show_files(label: str, root: Path) -> None:
    files, size, per_folder = lake_files(root)
    parts = ", ".join(f"{name} {count:,}" for name, count in per_folder.items())
    print(f"lake {label}: {files:,} files, {size / 1e6:,.0f} MB (Parquet files: {parts})")


@dataclass
class Timing:
    seconds: float
    rows: int
    answer: pl.DataFrame


def best_of(run: Callable[[], pl.DataFrame], repeats: int) -> Timing:
    answer = run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = run()
        times.append(time.perf_counter() - started)
    return Timing(min(times), answer.height, answer)


def run_queries(label: str, lake_uri: str, polars: bool, repeats: int) -> dict[tuple[str, str], Timing]:
    started = time.perf_counter()
    con = connect(lake_uri)
    print(f"{label}: analytics.connect {time.perf_counter() - started:.2f} s", flush=True)
    timings: dict[tuple[str, str], Timing] = {}
    for query in QUERIES:
        timing = best_of(lambda q=query: con.sql(q.sql).pl(), repeats)
        timings[query.name, "SQL"] = timing
        print(f"  SQL    {query.name:<40} {timing.seconds:8.3f} s  {timing.rows:>10,} rows", flush=True)
        if polars and query.polars is not None:
            timing = best_of(lambda q=query: q.polars(lake_uri), repeats)  # type: ignore[misc]
            timings[query.name, "Polars"] = timing
            print(f"  Polars {query.name:<40} {timing.seconds:8.3f} s  {timing.rows:>10,} rows", flush=True)
    return timings


def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Equal up to row order (and float summation order: 1e-9 relative)."""
    keys = [name for name, dtype in a.schema.items() if not isinstance(dtype, pl.List)]
    try:
        assert_frame_equal(a.sort(keys), b.sort(keys), check_exact=False, rel_tol=1e-9, abs_tol=0.0)
    except AssertionError:
        return False
    return True


def target_met(query: Query, before: float | None, after: float) -> str:
    if query.kind == PER_VIDEO:
        return "yes" if after <= 0.5 else "NO"
    if query.kind == LANDMARK_LEVEL:
        if after > 10 or (before is not None and before / after < 5):
            return "NO"
        return "yes" if before is not None else "<= 10 s yes, speed-up not measured"
    return "-"


def report(before: dict[tuple[str, str], Timing], after: dict[tuple[str, str], Timing]) -> None:
    print(f"\n{'query':<48} {'kind':<15} {'per-video s':>12} {'compacted s':>12} {'speed-up':>9}  target")
    answers_same = True
    for query in QUERIES:
        for engine in ("SQL", "Polars"):
            if (query.name, engine) not in after:
                continue
            now = after[query.name, engine]
            old = before.get((query.name, engine))
            speedup = f"{old.seconds / now.seconds:8.1f}x" if old else f"{'-':>9}"
            goal = f"{TARGETS.get(query.kind, '')} {target_met(query, old.seconds if old else None, now.seconds)}"
            print(
                f"{engine + ' ' + query.name:<48} {query.kind:<15} "
                f"{old.seconds if old else float('nan'):>12.3f} {now.seconds:>12.3f} {speedup}  {goal.strip()}"
            )
            if old is not None and not same(old.answer, now.answer):
                answers_same = False
                print(f"  different answers: {engine} {query.name}")
    if before:
        print(f"same answers: {'yes' if answers_same else 'no'}")


PER_VIDEO_RUN = "per-video"  # the per-video queries' times and answers, kept with a --keep lake for later runs


def save_timings(root: Path, timings: dict[tuple[str, str], Timing]) -> None:
    folder = root / PER_VIDEO_RUN
    folder.mkdir(exist_ok=True)
    kept = []
    for n, ((name, engine), timing) in enumerate(timings.items()):
        timing.answer.write_parquet(folder / f"{n}.parquet")
        kept.append({"name": name, "engine": engine, "seconds": timing.seconds, "rows": timing.rows, "file": n})
    (folder / "timings.json").write_text(json.dumps(kept))


def load_timings(root: Path) -> dict[tuple[str, str], Timing]:
    listing = root / PER_VIDEO_RUN / "timings.json"
    if not listing.exists():
        return {}
    return {
        (t["name"], t["engine"]): Timing(
            t["seconds"], t["rows"], pl.read_parquet(root / PER_VIDEO_RUN / f"{t['file']}.parquet")
        )
        for t in json.loads(listing.read_text())
    }


def timed_compaction(lake_uri: str) -> float | None:
    """Compact the lake; the seconds it took (None: no compaction module yet)."""
    try:
        from bodyscript_pipeline.lake.compaction import compact  # optional until it lands
    except ImportError:
        print("bodyscript_pipeline.lake.compaction is not there yet: stopping before compaction")
        return None
    started, cpu = time.perf_counter(), time.process_time()
    result: Any = compact(lake_uri)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"compaction: {took:,.1f} s: {result.videos:,} videos, {result.files_in:,} files in, "
        f"{result.files_out:,} files out, {result.rows:,} rows ({took / max(result.videos, 1) * 1000:.1f} ms, CPU "
        f"{cpu / max(result.videos, 1) * 1000:.1f} ms per video)"
    )
    return took


# ---------------------------------------------------------------- the run


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="fleet-lake-") as tmp:
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", type=Path, help="build the lake in this folder and keep it (reused if built)")
    parser.add_argument("--no-polars", action="store_true", help="SQL only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each query, after a warm-up")
    args = parser.parse_args()
    with workspace(args.keep) as root:
        lake = root / "lake"
        lake_uri = f"file://{lake}"
        marker = root / "fleet.json"
        wanted = {"videos": args.videos, "frames": args.frames}
        state = json.loads(marker.read_text()) if marker.exists() else {}
        if {k: state.get(k) for k in wanted} == wanted:
            print(f"reusing the lake in {lake} ({args.videos:,} videos, built in {state['build_s']:,.0f} s)")
        else:
            state = build_fleet(root, args.videos, args.frames, args.workers)
            marker.write_text(json.dumps(state))
        before: dict[tuple[str, str], Timing] = {}
        if not state.get("compacted"):
            show_files("per video", lake)
            before = run_queries("per-video lake", lake_uri, not args.no_polars, args.repeats)
            save_timings(root, before)
            compaction_s = timed_compaction(lake_uri)
            if compaction_s is None:
                return
            state.update(compacted=True, compaction_s=compaction_s)
            marker.write_text(json.dumps(state))
        else:
            before = load_timings(root)
            print(
                "the lake is compacted already: compacted queries only (delete the folder to rebuild); the per-video "
                + ("figures are the run's that compacted it" if before else "figures were not kept")
            )
        show_files("compacted", lake)
        after = run_queries("compacted lake", lake_uri, not args.no_polars, args.repeats)
        report(before, after)
        print(
            f"build {state['build_s']:,.1f} s, compaction {state.get('compaction_s', float('nan')):,.1f} s "
            f"({args.videos:,} videos of {args.frames} frames)"
        )


def build_fleet(root: Path, videos: int, frames: int, workers: int) -> dict[str, Any]:
    shutil.rmtree(root / "lake", ignore_errors=True)
    shutil.rmtree(root / PER_VIDEO_RUN, ignore_errors=True)
    started = time.perf_counter()
    poses, model = cached_template(root)
    print(f"real template: {len(poses)} detected frames of {SHARED_CLIP.name} ({time.perf_counter() - started:.0f} s)")
    started = time.perf_counter()
    templates = make_templates(root, poses, model, frames)
    print(f"{TEMPLATES} template videos through the step code: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = build(f"file://{root / 'lake'}", templates, videos, workers)
    took = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    print(
        f"built {videos:,} videos of {frames} frames ({rows:,} landmark rows, {videos * len(TABLES):,} files) "
        f"in {took:,.1f} s with {workers} workers: {videos / took:,.0f} videos/s, "
        f"{cpu / videos * 1000:.1f} ms of CPU per video (workers' user + system)"
    )
    return {"videos": videos, "frames": frames, "build_s": took, "compacted": False}


if __name__ == "__main__":
    main()
