"""Throughput and memory of pose inference and of the whole pipeline, against a bare loop, on one clip.

Run by hand (not a test):  .venv/bin/python benchmarks/throughput.py [--durations 10 60 600] [--workers 2]

For each duration, a clip is made by looping ../shared's real clip (packets copied, no re-encoding), and
measured in fresh processes, side by side in this one run:
  bare      PyAV decode + RGB + MediaPipe PoseLandmarker (same model, VIDEO mode), one process, nothing written
  pose xN   the `landmarks` step alone (bodyscript_pipeline.steps.estimate_landmarks) with N workers
  process   `bodyscript process CLIP --json`: all four assets through Dagster, start-up included
Each line gives frames/s, the ratio to the bare loop, and the peak RSS of the main process and of its
children (the pose workers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "videos" / "sports2d_demo.mp4"


def loop_clip(source: Path, target: Path, seconds: float) -> int:
    """Copy the clip's packets again and again, shifted in time, until ``seconds`` are filled."""
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size]
        tb: Fraction = stream.time_base
        span = max(p.pts for p in packets) - min(p.pts for p in packets) + (packets[1].pts - packets[0].pts)
        with av.open(str(target), "w") as out:
            out_stream = out.add_stream_from_template(stream)
            loops = max(1, round(seconds / float(span * tb)))  # whole loops: each starts on a keyframe
            for k in range(loops):
                for packet in packets:
                    packet.pts += span if k else 0
                    packet.dts += span if k else 0
                    packet.stream = out_stream
                    out.mux(packet)
    return loops * len(packets)


def child(kind: str, video: Path, workers: int) -> dict[str, float]:
    """Runs in its own process: the measured work, then its timing and memory as JSON."""
    from bodyscript_pipeline.model import ensure_model
    from bodyscript_pipeline.settings import Settings

    settings = Settings.from_env()
    model = ensure_model(settings)
    started = time.perf_counter()
    if kind == "bare":
        import numpy as np

        from bodyscript_pipeline.pose import PoseEstimator

        frames = 0
        with av.open(str(video)) as container, PoseEstimator(model.path) as estimator:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                estimator.detect(np.ascontiguousarray(frame.to_ndarray(format="rgb24")), round(frame.time * 1000))
                frames += 1
    else:
        from bodyscript_pipeline import steps

        result = steps.estimate_landmarks(settings.lake_uri, "bench", model, workers=workers)
        frames = result.frames
    seconds = time.perf_counter() - started
    return {
        "frames": frames,
        "seconds": seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def run_child(kind: str, video: Path, workers: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--video", str(video), "--workers", str(workers)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_process(video: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("bodyscript")), "process", str(video), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out = json.loads(process.stdout.read() if process.stdout else "{}")
    if status != 0:
        raise SystemExit(process.stderr.read() if process.stderr else "bodyscript process failed")
    return {"frames": out["frames"], "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "children_rss_mb": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60, 600])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", choices=("bare", "pose"))
    parser.add_argument("--video", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.video, args.workers)))
        return

    from bodyscript_pipeline import steps
    from bodyscript_pipeline.settings import Settings
    from bodyscript_pipeline.sources import register_source

    print(f"clip: {SHARED_CLIP.name} looped; cores: {os.cpu_count()}; pose workers: {args.workers}")
    for duration in args.durations:
        with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
            video = Path(tmp) / f"loop-{duration:g}s.mp4"
            frames = loop_clip(SHARED_CLIP, video, duration)
            env = {**os.environ, "BODYSCRIPT_HOME": str(Path(tmp) / "home")}
            env.pop("DAGSTER_HOME", None)
            os.environ["BODYSCRIPT_HOME"] = env["BODYSCRIPT_HOME"]
            settings = Settings.from_env()
            register_source(settings.lake_uri, "bench", f"file://{video}")
            steps.extract_frames(settings.lake_uri, "bench")
            rows = {
                "bare": run_child("bare", video, 1, env),
                "pose x1": run_child("pose", video, 1, env),
                f"pose x{args.workers}": run_child("pose", video, args.workers, env),
                "process": run_process(video, env),
            }
            bare_fps = rows["bare"]["frames"] / rows["bare"]["seconds"]
            print(f"-- {duration:g} s asked: {frames} frames, {frames / 30:.1f} s at the clip's 30 fps")
            for name, row in rows.items():
                fps = row["frames"] / row["seconds"]
                print(
                    f"   {name:<10} {fps:6.1f} frames/s  x{fps / bare_fps:4.2f} of bare  {row['seconds']:7.1f} s  "
                    f"peak RSS {row['rss_mb']:5.0f} MB (workers {row['children_rss_mb']:5.0f} MB)"
                )


if __name__ == "__main__":
    main()
