"""Size and query speed of the pose lake at fleet scale: a synthetic lake of 50M+ landmark rows.

Run by hand (not a test):  .venv/bin/python benchmarks/lake_queries.py [--videos 400] [--frames 3800]

The synthetic videos are built from real pose data: the landmarks MediaPipe finds in ../shared's real clip
(computed first, with the real model), time-warped, moved, scaled and given model-sized jitter per video,
with ~4 % undetected frames. Every table is written by the project's own writers (schemas, stored
precision, encodings, Hive layout) and frame_metrics by the project's own metric code. A naive layout of
the same landmarks (float64, int64, plain strings, rows shuffled, default compression) is written for a
sample of the videos for comparison. Queries run on the DuckDB views of bodyscript_pipeline.analytics.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bodyscript_pipeline.analytics import connect
from bodyscript_pipeline.lake.parquet import read_table, table_writer, write_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import LANDMARKS
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.metrics.angles import JointStatistics, frame_metrics
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks

FLOATS = ("x", "y", "z", "visibility", "presence", "world_x", "world_y", "world_z")
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "videos" / "sports2d_demo.mp4"
WIDTH, HEIGHT, FPS = 1920, 1080, 30

QUERIES = {
    "per-video detection rate": """
        SELECT video,
               count(*) FILTER (WHERE person = 0 AND landmark_id = 0)
               / (count(*) FILTER (WHERE person = 0 AND landmark_id = 0) + count(*) FILTER (WHERE person IS NULL))
               AS detection_rate
        FROM landmarks GROUP BY video""",
    "per-joint range of motion": """
        SELECT video, max(left_knee_angle_deg) - min(left_knee_angle_deg) AS left_knee,
               max(right_knee_angle_deg) - min(right_knee_angle_deg) AS right_knee,
               max(left_hip_angle_deg) - min(left_hip_angle_deg) AS left_hip,
               max(right_elbow_angle_deg) - min(right_elbow_angle_deg) AS right_elbow
        FROM frame_metrics GROUP BY video""",
    "frames past a threshold": """
        SELECT video, count(*) AS frames FROM frame_metrics WHERE right_knee_angle_deg > 90 GROUP BY video""",
    "mean visibility per landmark (all 50M rows)": """
        SELECT landmark, avg(visibility) FROM landmarks GROUP BY landmark""",
}


def real_template(home: Path) -> np.ndarray:
    """(frames, 33, 8) landmarks of the real clip, from the real model."""
    os.environ["BODYSCRIPT_HOME"] = str(home)
    settings = Settings.from_env()
    register_source(settings.lake_uri, "template", f"file://{SHARED_CLIP}")
    extract_frames(settings.lake_uri, "template")
    result = estimate_landmarks(settings.lake_uri, "template", ensure_model(settings))
    rows = read_table(result.uri)
    table = rows.filter(pa.compute.is_valid(rows["person"]))
    return np.stack([table[c].to_numpy().reshape(-1, NUM_LANDMARKS) for c in FLOATS], axis=-1)


def synthetic_video(template: np.ndarray, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, size=frames)) % (len(template) - 1)
    i = t.astype(int)
    f = (t - i)[:, None, None]
    poses = template[i] * (1 - f) + template[i + 1] * f
    poses[..., 0] = poses[..., 0] * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
    poses[..., 1] = poses[..., 1] * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
    poses[..., :3] += rng.normal(0, 0.001, poses[..., :3].shape)
    poses[..., 5:] += rng.normal(0, 0.005, poses[..., 5:].shape)
    detected = rng.random(frames) > 0.04
    return poses.astype(np.float32), detected


def landmarks_table(poses: np.ndarray, detected: np.ndarray) -> pa.Table:
    found = np.flatnonzero(detected)
    missing = np.flatnonzero(~detected)
    frame_index = np.concatenate([np.repeat(found, NUM_LANDMARKS), missing])
    order = np.argsort(frame_index, kind="stable")
    n_found = len(found) * NUM_LANDMARKS
    columns: dict[str, pa.Array] = {
        "frame_index": pa.array(frame_index[order], pa.uint32()),
        "timestamp_ms": pa.array(np.round(frame_index[order] * 1000 / FPS).astype(np.int64)),
    }
    ids = np.concatenate([np.tile(np.arange(NUM_LANDMARKS), len(found)), np.full(len(missing), -1)])[order]
    valid = ids >= 0
    columns["person"] = pa.array(np.zeros(len(ids), np.uint8), mask=~valid)
    columns["landmark_id"] = pa.array(np.where(valid, ids, 0).astype(np.uint8), mask=~valid)
    names = np.array(LANDMARK_NAMES, dtype=object)[np.where(valid, ids, 0)]
    columns["landmark"] = pa.array(names, mask=~valid).dictionary_encode().cast(LANDMARKS.field("landmark").type)
    flat = np.concatenate([poses[found].reshape(n_found, len(FLOATS)), np.full((len(missing), len(FLOATS)), np.nan)])
    flat = flat[order]
    for k, name in enumerate(FLOATS):
        columns[name] = pa.array(flat[:, k].astype(np.float32), mask=~valid)
    return pa.table(columns, schema=LANDMARKS)


def write_video(args: tuple[str, np.ndarray, int, int]) -> int:
    lake_uri, template, frames, seed = args
    partition = f"synthetic-{seed:04d}"
    lake = VideoLake(lake_uri, partition)
    table = landmarks_table(*synthetic_video(template, frames, seed))
    with table_writer("landmarks", lake.table_part("landmarks")) as out:
        step = 1024
        bounds = np.searchsorted(table["frame_index"].to_numpy(), np.arange(0, frames + step, step))
        for start, stop in itertools.pairwise(bounds):
            for batch in table.slice(start, stop - start).to_batches():
                out.write_batch(batch)
    per_frame = frame_metrics(table, WIDTH, HEIGHT, 0.5)
    write_table("frame_metrics", lake.table_part("frame_metrics"), per_frame)
    joints = JointStatistics()
    joints.add(per_frame)
    write_table("video_metrics", lake.table_part("video_metrics"), joints.table())
    return table.num_rows


def write_naive(path: Path, table: pa.Table, seed: int) -> None:
    columns = {name: table[name].cast(pa.float64()) if name in FLOATS else table[name] for name in table.column_names}
    for name in ("frame_index", "person", "landmark_id"):
        columns[name] = table[name].cast(pa.int64())
    columns["landmark"] = table["landmark"].cast(pa.string())
    naive = pa.table(columns)
    naive = naive.take(np.random.default_rng(seed).permutation(naive.num_rows))
    pq.write_table(naive, path)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--naive-sample", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", type=Path, help="build the lake in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
        root = args.keep or Path(tmp)
        started = time.perf_counter()
        template = real_template(root / "template")
        took = time.perf_counter() - started
        print(f"real template: {len(template)} detected frames of {SHARED_CLIP.name} ({took:.0f} s)")
        lake_uri = f"file://{root / 'lake'}"
        started = time.perf_counter()
        jobs = [(lake_uri, template, args.frames, seed) for seed in range(args.videos)]
        with ProcessPoolExecutor(args.workers) as pool:
            rows = sum(pool.map(write_video, jobs, chunksize=4))
        print(f"wrote {args.videos} videos, {rows:,} landmark rows in {time.perf_counter() - started:.0f} s")
        lake = root / "lake"
        landmark_bytes = du(lake / "landmarks")
        metrics_mb = du(lake / "frame_metrics") / 1e6
        print(f"lake on disk: {du(lake) / 1e6:,.0f} MB in all; landmarks {landmark_bytes / 1e6:,.0f} MB "
              f"({landmark_bytes / rows:.2f} bytes/row), frame_metrics {metrics_mb:,.0f} MB")  # fmt: skip

        naive_dir = root / "naive"
        naive_dir.mkdir()
        sample_rows = 0
        for seed in range(args.naive_sample):
            table = landmarks_table(*synthetic_video(template, args.frames, seed))  # as the model output it
            write_naive(naive_dir / f"{seed}.parquet", table, seed)
            sample_rows += table.num_rows
        naive_per_row = du(naive_dir) / sample_rows
        print(f"naive layout of the same landmarks ({args.naive_sample} videos): {naive_per_row:.2f} bytes/row, "
              f"{naive_per_row * rows / 1e6:,.0f} MB at {rows:,} rows; project layout = "
              f"{landmark_bytes / (naive_per_row * rows):.1%} of naive")  # fmt: skip

        con = connect(lake_uri)
        for name, sql in QUERIES.items():
            con.execute(sql).fetchall()
            times = []
            for _ in range(3):
                started = time.perf_counter()
                result = con.execute(sql).fetchall()
                times.append(time.perf_counter() - started)
            print(f"DuckDB  {name:<45} {min(times):6.3f} s (best of 3, {len(result)} rows)")


if __name__ == "__main__":
    main()
