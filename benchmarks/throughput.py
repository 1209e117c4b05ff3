"""Throughput and memory of pose inference and of the whole pipeline, against a bare loop, on one clip.

Run by hand (not a test):
    .venv/bin/python benchmarks/throughput.py [--durations 10 60 600] [--workers 2] [--repeat 1]
        [--rows bare pose1 poseN drawN process]

For each duration, a clip is made by looping ../shared's real clip (packets copied, no re-encoding), and
measured in fresh processes, side by side in this one run:
  bare        PyAV decode + RGB + MediaPipe PoseLandmarker (same model, VIDEO mode), one process, nothing written
  pose xN     the `landmarks` step's pose inference alone (estimate_landmarks, no overlay) with N workers
  pose+draw   the `landmarks` step as the pipeline runs it: N workers that also draw the overlay segments
  process     `bodyscript process CLIP --json`: every asset through Dagster, start-up included
Each line gives frames/s, the ratio to the bare loop, and the peak RSS of the main process and of its
children (the pose workers). For `process`, the peak RSS (VmHWM) of the CLI process and of its largest
descendant are sampled from /proc while it runs, and each step's seconds are read from the Dagster instance.
This machine's speed drifts by 10-20 % over minutes, so ``--repeat K`` runs the rows K times, interleaved,
and reports each row's median (the ratios are of medians).
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
    from bodyscript_pipeline.pose.model import ensure_model
    from bodyscript_pipeline.settings import Settings

    settings = Settings.from_env()
    model = ensure_model(settings)
    started = time.perf_counter()
    if kind == "bare":
        import numpy as np

        from bodyscript_pipeline.pose.estimator import PoseEstimator

        frames = 0
        with av.open(str(video)) as container, PoseEstimator(model.path) as estimator:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                estimator.detect(np.ascontiguousarray(frame.to_ndarray(format="rgb24")), round(frame.time * 1000))
                frames += 1
    else:
        from bodyscript_pipeline.overlay.video import OverlayStyle
        from bodyscript_pipeline.steps.landmarks import estimate_landmarks

        overlay = OverlayStyle(settings.overlay_max_resolution, settings.min_visibility) if kind == "draw" else None
        result = estimate_landmarks(settings.lake_uri, "bench", model, workers=workers, overlay=overlay)
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


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child_pid in children.get(stack.pop(), []):
            found.append(child_pid)
            stack.append(child_pid)
    return found


def run_process(video: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("bodyscript")), "process", str(video), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    main_peak = child_peak = 0.0
    while process.poll() is None:
        main_peak = max(main_peak, _peak_rss_mb(process.pid))
        child_peak = max([child_peak, *(_peak_rss_mb(pid) for pid in _descendants(process.pid))])
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(stderr or "bodyscript process failed")
    out = json.loads(stdout)
    return {"frames": out["frames"], "seconds": seconds, "rss_mb": main_peak, "children_rss_mb": child_peak}


def step_seconds(dagster_home: Path) -> dict[str, float]:
    """Each asset's ``step_seconds`` from its latest materialization in the instance the CLI used."""
    import dagster as dg

    from assets import VIDEO_ASSET_KEYS

    seconds = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in VIDEO_ASSET_KEYS:
            event = instance.get_latest_materialization_event(key)
            if event is not None and event.asset_materialization is not None:
                seconds[key.to_user_string()] = float(event.asset_materialization.metadata["step_seconds"].value)
    return seconds


def measure(row: str, video: Path, workers: int, env: dict[str, str]) -> dict[str, float]:
    if row == "process":
        return run_process(video, env)
    kind = {"bare": "bare", "pose1": "pose", "poseN": "pose", "drawN": "draw"}[row]
    return run_child(kind, video, 1 if row == "pose1" else workers, env)


def median_row(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median frames/s (an actual run, so its memory figures belong to it), and every run's rate."""
    ranked = sorted(runs, key=lambda r: r["frames"] / r["seconds"])
    return {**ranked[(len(ranked) - 1) // 2], "all_fps": [round(r["frames"] / r["seconds"], 1) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60, 600])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=("bare", "pose1", "poseN", "drawN", "process"),
        default=["bare", "pose1", "poseN", "drawN", "process"],
        help="which measurements to run (the 10 min clip takes about 10 min per row)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of every row; medians reported")
    parser.add_argument("--child", choices=("bare", "pose", "draw"))
    parser.add_argument("--video", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.video, args.workers)))
        return

    from bodyscript_pipeline.lake.sources import register_source
    from bodyscript_pipeline.settings import Settings
    from bodyscript_pipeline.steps.frames import extract_frames

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
            extract_frames(settings.lake_uri, "bench")
            names = {
                "bare": "bare",
                "pose1": "pose x1",
                "poseN": f"pose x{args.workers}",
                "drawN": f"pose+draw x{args.workers}",
                "process": "process",
            }
            runs: dict[str, list[dict[str, float]]] = {names[row]: [] for row in args.rows}
            for _ in range(max(1, args.repeat)):
                for row in args.rows:
                    runs[names[row]].append(measure(row, video, args.workers, env))
            rows = {name: median_row(measured) for name, measured in runs.items()}
            bare_fps = rows["bare"]["frames"] / rows["bare"]["seconds"] if "bare" in rows else None
            print(f"-- {duration:g} s asked: {frames} frames, {frames / 30:.1f} s at the clip's 30 fps")
            for name, row in rows.items():
                fps = row["frames"] / row["seconds"]
                ratio = f"x{fps / bare_fps:4.2f} of bare" if bare_fps else "(no bare row)"
                every = f"  runs {row['all_fps']}" if args.repeat > 1 else ""
                print(
                    f"   {name:<13} {fps:6.1f} frames/s  {ratio}  {row['seconds']:7.1f} s  "
                    f"peak RSS {row['rss_mb']:5.0f} MB (workers {row['children_rss_mb']:5.0f} MB){every}"
                )
            if "process" in rows:
                steps_taken = step_seconds(Path(env["BODYSCRIPT_HOME"]) / "dagster")
                print("   process steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps_taken.items()))


if __name__ == "__main__":
    main()
