"""A pose worker reuses its frame-sized buffers instead of faulting in fresh pages for every frame."""

from __future__ import annotations

import multiprocessing
import resource
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bodyscript_pipeline.overlay.video import OverlayStyle
from bodyscript_pipeline.pose import ranges as pose_ranges
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.video.io import probe_video

FRAME_PAGES = 1768 * 994 * 3 // 4096  # one RGB frame of the real clip: 1,287 pages


def _faults_per_frame(video: Path, model: Path, out: Path) -> float:
    """In the worker: run a range, and count its page faults between the first and the last progress report,
    so the model's load is left out."""
    marks: list[tuple[int, int]] = []
    done = [0]
    report = pose_ranges._report

    def mark(frames: int) -> None:
        done[0] += frames
        marks.append((done[0], resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
        if report is not None:
            report(frames)

    pose_ranges.set_progress_reporter(mark)
    probe, index = probe_video(video)
    frame_range = pose_ranges.FrameRange(0, 0, 160)
    pose_ranges.run_range(video, probe, index, model, frame_range, out, PoseOptions(), OverlayStyle(), threaded=False)
    (first_frames, first_faults), (last_frames, last_faults) = marks[0], marks[-1]
    return (last_faults - first_faults) / (last_frames - first_frames)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_a_pose_worker_does_not_fault_in_a_frame_of_pages_per_frame(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    model = ensure_model(bodyscript_home).path
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    with ProcessPoolExecutor(1, mp_context=context, initializer=pose_ranges._init_worker, initargs=(counter,)) as pool:
        faults = pool.submit(_faults_per_frame, demo_video, model, tmp_path / "range.parquet").result()
    assert counter.value == 160
    # Measured on the real clip: 500-710 a frame without reuse_frame_buffers, about 5 with it.
    assert faults < FRAME_PAGES / 4, f"{faults:.0f} page faults a frame"
