"""Frames per second of `bodyscript process` against a bare decode + inference loop, on the same clip.

Run by hand (not a test):  .venv/bin/python benchmarks/process_vs_bare.py VIDEO [--repeat N]

The bare loop is the floor of what any pipeline can cost: PyAV decode, RGB conversion and MediaPipe's
PoseLandmarker (same model, VIDEO mode) in one process, nothing written. `bodyscript process` is the whole
asset graph through Dagster (probe, pose, overlay encode, metrics, Parquet) in a fresh BODYSCRIPT_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from bodyscript_pipeline.pose.estimator import PoseEstimator
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings


def bare_loop(video: Path, model_path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    frames = 0
    with av.open(str(video)) as container, PoseEstimator(model_path) as estimator:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            estimator.detect(image, round(frame.time * 1000))
            frames += 1
    return frames, time.perf_counter() - started


def bodyscript_process(video: Path) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="bench-") as home:
        env = {**os.environ, "BODYSCRIPT_HOME": home}
        env.pop("DAGSTER_HOME", None)
        started = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("bodyscript")), "process", str(video), "--json"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        return json.loads(done.stdout)["frames"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    model = ensure_model(Settings.from_env())
    with av.open(str(args.video)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0)
        size = f"{stream.width}x{stream.height}"
        print(f"clip: {args.video.name} {stream.codec_context.name} {size} {rate:.2f} fps; model: {model.variant}")
    for run in range(1, args.repeat + 1):
        frames, bare_s = bare_loop(args.video, model.path)
        frames_p, process_s = bodyscript_process(args.video)
        assert frames == frames_p, (frames, frames_p)
        print(
            f"run {run}: bare loop {frames / bare_s:6.1f} frames/s ({bare_s:5.1f} s) | "
            f"bodyscript process {frames / process_s:6.1f} frames/s ({process_s:5.1f} s, incl. start-up) | "
            f"ratio {bare_s / process_s:4.2f}"
        )


if __name__ == "__main__":
    main()
