"""Several people: how many the detection schemes find, at what cost, and how the tracker's ids hold up.

Run by hand (not a test):

    .venv/bin/python benchmarks/multi_person.py [--sheet overlay-sheet.png]

The clip has three people in view, built from the real demo clip (``../shared/videos/sports2d_demo.mp4``,
a man on a box and a woman walking by): each frame beside the left part of the frame 115 frames later,
scaled to 1896 x 746. For each scheme it prints the frames with 0, 1, 2, 3 people and frames/s in one
process; then it runs the ``landmarks`` step (tiles, tracking, all workers) and the overlay, and prints
every person id with the frames it was detected in. ``--sheet`` writes a contact sheet of overlay frames
to check ids by eye.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CLIP = REPO.parent / "shared" / "videos" / "sports2d_demo.mp4"
SHIFT_FRAMES, CROP_WIDTH, SIZE = 115, 760, (1896, 746)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [np.ascontiguousarray(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def three_person_clip(source: Path, target: Path) -> Path:
    frames = decode(source)
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", *SIZE
        for i, frame in enumerate(frames):
            shifted = frames[(i + SHIFT_FRAMES) % len(frames)][:, :CROP_WIDTH]
            image = cv2.resize(np.concatenate([frame, shifted], axis=1), SIZE, interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


def count_people(frames: list[np.ndarray], detect: Callable[[int, np.ndarray], int], most: int) -> str:
    started = time.perf_counter()
    counts = [min(detect(i, image), most) for i, image in enumerate(frames)]
    seconds = time.perf_counter() - started
    histogram = np.bincount(counts, minlength=most + 1)
    shown = ", ".join(f"{k}: {histogram[k]}" for k in range(most, -1, -1))
    return f"frames with {shown} people | {len(frames) / seconds:5.1f} frames/s"


def landmarker(model: Path, mode: str, num_poses: int) -> Any:
    from mediapipe.tasks.python import BaseOptions, vision

    running = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)), running_mode=running, num_poses=num_poses
    )
    return vision.PoseLandmarker.create_from_options(options)


def compare_schemes(clip: Path, model: Path, num_poses: int) -> None:
    import mediapipe as mp

    from bodyscript_pipeline.pose.estimator import PoseEstimator, tiles_for

    frames = decode(clip)
    height, width = frames[0].shape[:2]
    print(f"\n{clip.name}: {len(frames)} frames, {width}x{height}, num_poses={num_poses}")

    def image(a: np.ndarray) -> mp.Image:
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=a)

    with landmarker(model, "video", num_poses) as video:
        result = count_people(
            frames, lambda i, a: len(video.detect_for_video(image(a), i * 33).pose_landmarks), num_poses
        )
        print(f"  one landmarker, VIDEO mode     {result}")
    with landmarker(model, "image", num_poses) as still:
        result = count_people(frames, lambda i, a: len(still.detect(image(a)).pose_landmarks), num_poses)
        print(f"  one landmarker, IMAGE mode     {result}")
    tiles = len(tiles_for(width, height, num_poses))
    with PoseEstimator(model, num_poses) as estimator:
        result = count_people(frames, lambda i, a: len(estimator.detect(a, i * 33)), num_poses)
        print(f"  {tiles} tiles, VIDEO mode (auto)   {result}")


def track_ids(clip: Path, model_settings: object, num_poses: int, sheet: Path | None) -> None:
    import polars as pl

    from bodyscript_pipeline.lake.sources import register_source
    from bodyscript_pipeline.pose.estimator import PoseOptions
    from bodyscript_pipeline.pose.model import ensure_model
    from bodyscript_pipeline.steps.frames import extract_frames
    from bodyscript_pipeline.steps.landmarks import estimate_landmarks
    from bodyscript_pipeline.steps.overlays import render_overlay

    settings = model_settings
    lake_uri = settings.lake_uri  # type: ignore[attr-defined]
    register_source(lake_uri, "three", f"file://{clip}")
    extract_frames(lake_uri, "three")
    workers = os.cpu_count() or 1
    result = estimate_landmarks(
        lake_uri,
        "three",
        ensure_model(settings),
        workers=workers,
        options=PoseOptions(num_poses=num_poses),  # type: ignore[arg-type]
    )
    print(f"\nlandmarks step: {workers} workers, {result.frames / result.seconds:.1f} frames/s, "
          f"{result.people} person ids")  # fmt: skip
    table = pl.read_parquet(result.uri.removeprefix("file://")).drop_nulls("person")
    hips = table.filter(pl.col("landmark").cast(pl.String) == "left_hip")
    summary = (
        hips.group_by("person")
        .agg(
            pl.len().alias("frames_detected"),
            pl.col("frame_index").min().alias("first"),
            pl.col("frame_index").max().alias("last"),
            pl.col("x").mean().round(2).alias("mean_hip_x"),
        )
        .sort("person")
    )
    with pl.Config(tbl_rows=50):
        print(summary)
    per_frame = hips.group_by("frame_index").len()["len"].value_counts().sort("len")
    print("frames by number of people:", dict(zip(*per_frame.to_dict(as_series=False).values(), strict=True)))
    overlay = render_overlay(lake_uri, "three", 0.5)
    if sheet is not None:
        picks = np.linspace(10, result.frames - 5, 12).round().astype(int)
        path = Path(overlay.uri.removeprefix("file://"))
        tiles = []
        for i, frame in enumerate(decode(path)):
            if i in picks:
                small = cv2.resize(frame, None, fx=0.3, fy=0.3)
                cv2.putText(small, str(i), (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 0, 0), 2)
                tiles.append(small)
        rows = [np.concatenate(tiles[k : k + 3], axis=1) for k in range(0, len(tiles), 3)]
        cv2.imwrite(str(sheet), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
        print(f"overlay contact sheet: {sheet}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of overlay frames here")
    args = parser.parse_args()
    from bodyscript_pipeline.pose.model import ensure_model
    from bodyscript_pipeline.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bodyscript-multi-") as tmp:
        os.environ["BODYSCRIPT_HOME"] = tmp
        os.environ.pop("BODYSCRIPT_LAKE_URI", None)
        settings = Settings.from_env()
        model = ensure_model(settings).path
        clip = three_person_clip(SHARED_CLIP, Path(tmp) / "three_people.mp4")
        compare_schemes(clip, model, 3)
        compare_schemes(SHARED_CLIP, model, 2)
        track_ids(clip, settings, 3, args.sheet)


if __name__ == "__main__":
    main()
