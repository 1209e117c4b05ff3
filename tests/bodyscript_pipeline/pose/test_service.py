"""The warm pose service: one process per home and code version, shared by runs, forking a process per
frame range; its results equal freshly spawned workers'; it goes away when idle."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.overlay.video import OverlayStyle
from bodyscript_pipeline.pose import service as pose_service
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.pose.ranges import VideoRanges, plan_worker_ranges
from bodyscript_pipeline.pose.service import PoseService
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.steps.landmarks import estimate_landmarks
from bodyscript_pipeline.video.io import probe_video
from tests.support.processes import server_pids
from tests.support.video_factory import clip_of


def service_pids(home: Path) -> list[int]:
    """The service processes of ``home``, without their range processes."""
    return server_pids(pose_service.MODULE, str(home))


def landmarks_of(settings: Settings, partition: str) -> pl.DataFrame:
    path = VideoLake(settings.lake_uri, partition).table_part("landmarks").removeprefix("file://")
    return pl.read_parquet(path).drop("person")


def test_service_is_shared_and_matches_spawned_workers(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    settings = bodyscript_home
    model = ensure_model(settings)
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 40, size=(640, 360))
    for key in ("spawned", "service-1", "service-2"):
        register_source(settings.lake_uri, key, f"file://{clip}")
        extract_frames(settings.lake_uri, key)
    service = PoseService(settings.home, idle_s=3)
    overlay = OverlayStyle()

    spawned = estimate_landmarks(settings.lake_uri, "spawned", model, overlay=overlay)
    first = estimate_landmarks(settings.lake_uri, "service-1", model, overlay=overlay, service=service)
    (pid,) = service_pids(settings.home)
    second = estimate_landmarks(settings.lake_uri, "service-2", model, overlay=overlay, service=service)
    assert service_pids(settings.home) == [pid], "the second video used the same warm service"

    assert spawned.frames == first.frames == second.frames == 40
    expected = landmarks_of(settings, "spawned")
    assert landmarks_of(settings, "service-1").equals(expected), "same rows as freshly spawned workers"
    assert landmarks_of(settings, "service-2").equals(expected)
    assert first.overlay_segments_kept == 1, "the service's process drew the overlay segment too"

    socket = pose_service.socket_path(settings.home)
    assert socket.name == f"pose-{pose_service.code_digest()}.sock", "a code change gets a new service"
    assert oct(socket.stat().st_mode & 0o777) == oct(0o600), "only this user may send it work"
    deadline = time.monotonic() + 30
    while service_pids(settings.home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not service_pids(settings.home), "idle for idle_s: gone"
    assert not socket.exists()


def test_any_change_to_the_core_gets_a_new_service(tmp_path: Path) -> None:
    """A range runs the video, overlay and lake code too: a change there must not reach an old service."""
    core = tmp_path / "bodyscript_pipeline"
    shutil.copytree(pose_service.CORE, core, ignore=shutil.ignore_patterns("__pycache__"))
    before = pose_service.source_digest(core)
    assert before == pose_service.code_digest(), "the same source, the same service"
    drawing = core / "overlay" / "drawing.py"
    drawing.write_text(drawing.read_text() + "\n# changed\n")
    assert pose_service.source_digest(core) != before


def test_a_range_that_fails_reports_its_error(bodyscript_home: Settings, tmp_path: Path) -> None:
    """A range the service cannot run fails the caller with the reason, and the service keeps serving."""
    service = PoseService(bodyscript_home.home, idle_s=5)
    client = pose_service.connect(service.home, service.idle_s)
    request = {"video": str(tmp_path / "missing.mp4")}  # not a whole request
    try:
        pose_service.run_remote(client, request, lambda frames: None)
    except pose_service.ServiceError as exc:
        assert "KeyError" in str(exc)
    else:
        raise AssertionError("a broken request must fail")
    again = pose_service.connect(service.home, service.idle_s)
    again.close()
    assert len(service_pids(bodyscript_home.home)) == 1


def test_without_a_service_the_ranges_run_in_spawned_workers(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Where the service cannot start (here its run folder is taken by a file), the video still gets its
    landmarks, from workers of its own."""
    settings = bodyscript_home
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 12, size=(442, 248))
    register_source(settings.lake_uri, "fallback", f"file://{clip}")
    extract_frames(settings.lake_uri, "fallback")
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "run").write_text("not a folder")
    result = estimate_landmarks(
        settings.lake_uri, "fallback", ensure_model(settings), service=PoseService(settings.home, idle_s=5)
    )
    assert result.frames == 12
    assert landmarks_of(settings, "fallback")["frame_index"].unique().sort().to_list() == list(range(12))
    assert not service_pids(settings.home)


def test_a_deep_home_gets_a_socket_path_unix_allows(bodyscript_home: Settings, tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 6) / "home"
    path = pose_service.socket_path(deep)
    assert len(str(path)) <= pose_service.MAX_SOCKET_PATH
    assert path != pose_service.socket_path(tmp_path / ("another-long-folder-" * 6) / "home")
    client = pose_service.connect(deep, idle_s=3)
    try:
        pose_service.run_remote(client, {}, lambda frames: None)
    except pose_service.ServiceError as exc:
        assert "KeyError" in str(exc), "the service answered"
    else:
        raise AssertionError("an empty request must fail")


def test_a_range_beside_another_videos_leaves_threads_out_where_they_fill_the_cores(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Two videos' ranges at once, as in a burst: the range started beside another has threads of its own only
    where the two leave a core free; its rows are the same either way."""
    settings = bodyscript_home
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 60, size=(442, 248))
    probe, index = probe_video(clip)
    ranges = VideoRanges(clip, probe, index, ensure_model(settings).path, PoseOptions(), OverlayStyle())
    (frame_range,) = plan_worker_ranges(len(index), 2)
    at_work = threading.Event()

    def send(name: str) -> dict[str, Any]:
        client = pose_service.connect(settings.home, idle_s=5)
        request = ranges.request(frame_range, tmp_path / f"{name}.parquet", threaded=True)
        return pose_service.run_remote(client, request, lambda frames: at_work.set())

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, "first")
        assert at_work.wait(60), "the first range reported progress: it is at work"
        second = pool.submit(send, "second").result()
        alone = first.result()
    cores = os.cpu_count() or 1
    assert alone["threaded"] == (cores > 1), "alone, a range keeps threads where a core is left"
    assert second["threaded"] == (cores > 2), "beside the first, only where the two leave a core"
    rows = {name: pl.read_parquet(tmp_path / f"{name}.parquet") for name in ("first", "second")}
    assert rows["first"]["frame_index"].n_unique() == 60 and rows["first"].equals(rows["second"])
