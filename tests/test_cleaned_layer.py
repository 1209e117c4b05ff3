"""The cleaned layer on a generated lake partition with known ground truth: gaps filled and flagged,
noise reduced, windows seamless, raw landmarks untouched; quality scores; metrics on raw or cleaned; and the
research exports read back by independent parsers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from bodyscript_pipeline import cleaned_layer, storage
from bodyscript_pipeline.cleaning import CleaningOptions
from bodyscript_pipeline.lake import VideoLake
from bodyscript_pipeline.parquet_io import read_table, write_table
from bodyscript_pipeline.pose import FLOAT_COLUMNS
from bodyscript_pipeline.pose_topology import LANDMARK_NAMES, NUM_LANDMARKS
from bodyscript_pipeline.quality import QualityThresholds
from bodyscript_pipeline.research_exports import write_exports, write_person_trc
from bodyscript_pipeline.sources import register_source
from bodyscript_pipeline.steps import compute_metrics
from bodyscript_pipeline.video_io import Probe
from tests.test_opensim_files import parse_mot, parse_trc

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
    values: dict[str, list] = {c: [] for c in FLOAT_COLUMNS}
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


@pytest.fixture
def lake(tmp_path: Path) -> VideoLake:
    return make_partition(f"file://{tmp_path / 'lake'}", "synthetic")


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path.removeprefix("file://")).read_bytes()).hexdigest()


def cleaned(lake: VideoLake) -> pl.DataFrame:
    return pl.read_parquet(lake.table_part("landmarks_clean").removeprefix("file://"))


def test_gaps_filled_and_flagged_noise_reduced_raw_untouched(lake: VideoLake) -> None:
    raw_hash = sha256(lake.table_part("landmarks"))
    result = cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    assert sha256(lake.table_part("landmarks")) == raw_hash, "the raw layer is never rewritten"
    table = cleaned(lake)
    p0 = table.filter(pl.col("person") == 0)
    frames = set(p0["frame_index"].unique().to_list())
    assert set(GAP_SHORT) <= frames, "a 5-frame gap is filled"
    assert not frames & set(GAP_LONG), "a 30-frame gap (above the maximum) stays missing"
    assert not frames & set(range(280, 300)), "nothing is extrapolated past the last detection"
    filled = set(p0.filter(pl.col("filled"))["frame_index"].unique().to_list())
    assert filled == set(GAP_SHORT) and result.filled_frames == len(GAP_SHORT)
    assert table.filter(pl.col("person") == 1)["filled"].sum() == 0
    assert table["smoothed"].all(), "every run is long enough to be smoothed"
    assert table.height == (frames.__len__() + 280) * NUM_LANDMARKS

    raw = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).drop_nulls("person")
    for source, limit in ((raw, None), (table.filter(~pl.col("filled")), 0.75)):
        ordered = source.filter(pl.col("person") == 0).sort("frame_index", "landmark_id")
        f = ordered["frame_index"].to_numpy()[::NUM_LANDMARKS]
        xy = np.stack([ordered["x"].to_numpy(), ordered["y"].to_numpy()], -1).reshape(-1, NUM_LANDMARKS, 2)
        error = float(np.sqrt(np.mean((xy - truth(f, 0)) ** 2)))
        if limit is None:
            raw_error = error
        else:
            assert error < limit * raw_error, (error, raw_error)
    gap = p0.filter(pl.col("filled")).sort("frame_index", "landmark_id")
    gap_xy = np.stack([gap["x"].to_numpy(), gap["y"].to_numpy()], -1).reshape(-1, NUM_LANDMARKS, 2)
    assert np.abs(gap_xy - truth(np.array(list(GAP_SHORT)), 0)).max() < 4 * NOISE


def test_windows_match_one_pass(lake: VideoLake, monkeypatch: pytest.MonkeyPatch) -> None:
    options = CleaningOptions(10, 6.0, 0.5)
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, options)
    whole = cleaned(lake).sort("frame_index", "person", "landmark_id")
    monkeypatch.setattr(cleaned_layer, "WINDOW_FRAMES", 37)
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, options)
    windowed = cleaned(lake).sort("frame_index", "person", "landmark_id")
    assert windowed.select("frame_index", "person", "landmark_id", "filled").equals(
        whole.select("frame_index", "person", "landmark_id", "filled")
    )
    for c in ("x", "y", "world_x"):
        assert np.allclose(windowed[c].to_numpy(), whole[c].to_numpy(), rtol=2e-3, atol=1e-5), c


def test_quality_scores(lake: VideoLake) -> None:
    result = cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    video, p0, p1 = result.quality
    assert video["person"] is None and video["frames"] == FRAMES
    assert video["detected_frames"] == 280 and video["detection_rate"] == pytest.approx(280 / 300)
    assert p0["person"] == 0 and p0["frames"] == 280 and p0["detected_frames"] == 280 - 35
    assert p0["filled_fraction"] == pytest.approx(5 / 280)
    assert p1["detection_rate"] == 1.0 and p1["filled_fraction"] == 0.0
    expected_px = NOISE * WIDTH  # the noise is what the filter removes (plus a little of the slow sway)
    assert 0.5 * expected_px < p1["jitter_px"] < 1.5 * expected_px
    assert video["mean_visibility"] == pytest.approx(0.9, abs=0.02)
    lenient, strict = QualityThresholds(), QualityThresholds(min_detection_rate=0.95, max_jitter_px=1.0)
    assert lenient.blocking_failures(video) == [] and lenient.warnings(video) == []
    assert strict.blocking_failures(video) == ["detection rate 93.3% is below 95.0%"]
    assert strict.warnings(video)[0].startswith("jitter")
    stored = read_table(result.quality_uri).to_pylist()
    assert stored == result.quality


def test_metrics_say_which_landmarks_they_measured(lake: VideoLake) -> None:
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    raw = compute_metrics(lake.lake_uri, lake.partition, 0.5, "raw")
    assert raw.video_row["metrics_landmarks"] == "raw"
    raw_rows = raw.frame_rows
    clean = compute_metrics(lake.lake_uri, lake.partition, 0.5, "cleaned")
    assert clean.video_row["metrics_landmarks"] == "cleaned"
    assert clean.frame_rows == raw_rows + len(GAP_SHORT), "filled frames are measured too"
    videos = pl.read_parquet(lake.table_part("videos").removeprefix("file://"))
    assert videos["metrics_landmarks"].to_list() == ["cleaned"]


def test_exports_read_back(lake: VideoLake) -> None:
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    compute_metrics(lake.lake_uri, lake.partition, 0.5, "cleaned")
    result = write_exports(lake.lake_uri, lake.partition)
    assert result.people == [0, 1]
    folder = Path(lake.folder("exports").removeprefix("file://"))
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["person-0.trc", "person-0.mot", "person-1.trc", "person-1.mot", "landmarks.csv"]
        + [f"angles-{k}.png" for k in ("knee", "hip", "ankle", "shoulder", "elbow")]
    )

    trc = parse_trc((folder / "person-0.trc").read_text())
    assert trc["markers"] == list(LANDMARK_NAMES)
    assert trc["header"]["NumFrames"] == "280" and trc["header"]["Units"] == "m"
    assert trc["frames"][0] == 1 and trc["frames"][-1] == 280
    assert np.isnan(trc["xyz"][GAP_LONG.start]).all(), "frames without the person are empty markers"
    clean0 = cleaned(lake).filter((pl.col("person") == 0) & (pl.col("frame_index") == 10)).sort("landmark_id")
    assert np.allclose(trc["xyz"][10, :, 0], clean0["world_x"].to_numpy(), atol=1e-6)
    assert np.allclose(trc["xyz"][10, :, 1], -clean0["world_y"].to_numpy(), atol=1e-6), "y up in OpenSim"
    assert np.allclose(trc["times"][:3], [0.0, 0.033, 0.067])

    mot = parse_mot((folder / "person-1.mot").read_text())
    assert mot["header"]["nRows"] == "280" and mot["header"]["inDegrees"] == "yes"
    assert mot["names"][0] == "time" and "left_knee" in mot["names"]
    metrics = pl.read_parquet(lake.table_part("frame_metrics").removeprefix("file://")).filter(pl.col("person") == 1)
    column = mot["names"].index("left_knee")
    assert np.allclose(mot["rows"][:, column], metrics["left_knee_angle_deg"].to_numpy(), atol=1e-5, equal_nan=True)

    long = pl.read_csv(folder / "landmarks.csv")
    assert long.height == pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).height
    assert set(result.plots) == {"knee", "hip", "ankle", "shoulder", "elbow"}
    assert all(png.startswith(b"\x89PNG") for png in result.plots.values())

    buffer = io.StringIO()
    with pytest.raises(Exception, match="person 7"):
        write_person_trc(lake.lake_uri, lake.partition, 7, buffer)


@pytest.mark.parametrize("source", ["raw", "cleaned"])
def test_metrics_windows_match_one_pass(lake: VideoLake, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Metrics stream in frame windows; a velocity only needs its neighbours, so windows change nothing."""
    from bodyscript_pipeline import steps

    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))

    def tables() -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        result = compute_metrics(lake.lake_uri, lake.partition, 0.5, source)
        frames = pl.read_parquet(lake.table_part("frame_metrics").removeprefix("file://"))
        joints = pl.read_parquet(lake.table_part("video_metrics").removeprefix("file://"))
        row = {k: v for k, v in result.video_row.items() if k != "processed_at_ms"}
        return frames, joints, row

    whole = tables()
    monkeypatch.setattr(steps, "METRICS_WINDOW_FRAMES", 37)
    windowed = tables()
    assert windowed[0].equals(whole[0]) and windowed[0].height > 500
    assert windowed[1].equals(whole[1])
    assert windowed[2] == whole[2]


def test_overlay_reads_whole_frames_across_batches(lake: VideoLake) -> None:
    """Undetected frames are one row, so reading batches cut frames in two; each frame still comes whole."""
    from bodyscript_pipeline.steps import _poses_by_frame

    raw = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).drop_nulls("person")
    expected = raw.group_by("frame_index").agg(pl.col("person").n_unique()).sort("frame_index")
    for rows in (NUM_LANDMARKS * 7 + 5, 100, 10_000_000):  # batch sizes that split frames, and one batch
        got = [(f, len(ids), poses.shape) for f, ids, poses in _poses_by_frame(lake.table_part("landmarks"), rows)]
        assert [f for f, _, _ in got] == expected["frame_index"].to_list(), rows
        assert [n for _, n, _ in got] == expected["person"].to_list()
        assert all(shape == (n, NUM_LANDMARKS, 3) for _, n, shape in got)
