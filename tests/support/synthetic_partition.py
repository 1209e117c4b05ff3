"""A generated lake partition with known ground truth, for the steps that read landmarks: two people swaying
at 0.8 Hz with noise, person 0 missing for a short and a long gap, nobody in the last 20 frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.parquet import write_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import LANDMARK_FLOATS
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from bodyscript_pipeline.video.io import Probe

FPS, FRAMES, WIDTH, HEIGHT = 30.0, 300, 1280, 720
NOISE = 0.004  # normalized units: about 5 px on a 1280 px frame
GAP_SHORT = range(50, 55)  # 5 frames: filled (max gap 10)
GAP_LONG = range(100, 130)  # 30 frames: left missing


def truth(frame: np.ndarray, person: int) -> np.ndarray:
    """Ground truth (frames, 33, 2): a body swaying at 0.8 Hz; landmark k sits at a fixed offset."""
    t = frame / FPS
    offset = np.linspace(-0.1, 0.1, NUM_LANDMARKS)
    x = 0.3 + 0.4 * person + 0.05 * np.sin(2 * np.pi * 0.8 * t)[:, None] + offset[None, :] * 0.3
    y = 0.5 + 0.03 * np.cos(2 * np.pi * 0.8 * t)[:, None] + offset[None, :]
    return np.stack([x, y], axis=-1)


def make_partition(lake_uri: str, partition: str, seed: int = 0) -> VideoLake:
    lake = VideoLake(lake_uri, partition)
    probe = Probe("mp4", "h264", WIDTH, HEIGHT, WIDTH, HEIGHT, 0, FPS, FRAMES / FPS, FRAMES, 1, 30, 0, False)
    storage.write_bytes(lake.probe, probe.to_json().encode())
    register_source(lake_uri, partition, "file:///nowhere/synthetic.mp4", version="synthetic")
    frames = np.arange(FRAMES)
    times = np.round(frames * 1000 / FPS).astype(np.int64)
    write_table(
        "frames",
        lake.frame_index,
        pa.table({"frame_index": frames, "pts": frames, "timestamp_ms": times, "keyframe": frames % 30 == 0}),
        {"bodyscript.video_uri": lake.source_copy(".mp4")},
    )
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in ("frame_index", "timestamp_ms", "person", "landmark_id")}
    values: dict[str, list] = {c: [] for c in LANDMARK_FLOATS}
    names: list = []
    for f in frames:
        people = [p for p in (0, 1) if not (p == 0 and (f in GAP_SHORT or f in GAP_LONG))]
        if f >= 280:
            people = []  # nobody in the last 20 frames
        if not people:
            for key in rows:
                rows[key].append(f if key == "frame_index" else times[f] if key == "timestamp_ms" else None)
            for c in values:
                values[c].append(None)
            names.append(None)
            continue
        for p in people:
            xy = truth(np.array([f]), p)[0] + rng.normal(0, NOISE, (NUM_LANDMARKS, 2))
            for k in range(NUM_LANDMARKS):
                rows["frame_index"].append(f)
                rows["timestamp_ms"].append(times[f])
                rows["person"].append(p)
                rows["landmark_id"].append(k)
                names.append(LANDMARK_NAMES[k])
                values["x"].append(xy[k, 0])
                values["y"].append(xy[k, 1])
                values["z"].append(0.0)
                values["visibility"].append(0.9)
                values["presence"].append(0.9)
                values["world_x"].append((xy[k, 0] - 0.5) * 2)
                values["world_y"].append((xy[k, 1] - 0.5) * 2)
                values["world_z"].append(0.1 * p)
    write_table("landmarks", lake.table_part("landmarks"), pa.table({**rows, "landmark": names, **values}))
    return lake


def cleaned(lake: VideoLake) -> pl.DataFrame:
    return pl.read_parquet(lake.table_part("landmarks_clean").removeprefix("file://"))
