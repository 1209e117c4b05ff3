"""`bodyscript process VIDEO --json` through the local Dagster instance, as a user runs it."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS
from tests.support.lake_checks import decoded_video
from tests.support.video_factory import clip_of

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
PORTRAIT_FRAMES = 60


@pytest.fixture(scope="module")
def portrait_clip(tmp_path_factory: pytest.TempPathFactory, demo_video: Path) -> Path:
    """A portrait 1080x1920, 60 fps clip of the real person (the band of the frame they stand in)."""
    target = tmp_path_factory.mktemp("clips") / "portrait 1080x1920.mp4"
    return clip_of(demo_video, target, PORTRAIT_FRAMES, size=(1080, 1920), fps=60, crop_x=(0.2, 0.52))


def run_cli(*args: str, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BODYSCRIPT, *args], capture_output=stderr == subprocess.PIPE, text=True, timeout=600,
                          env=os.environ.copy())  # fmt: skip


def test_process_json_on_portrait_60fps_clip(bodyscript_home: Settings, portrait_clip: Path) -> None:
    done = run_cli("process", str(portrait_clip), "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object on stdout"
    out = json.loads(lines[0])
    assert out["partition"].startswith("portrait-1080x1920-mp4-")
    assert out["frames"] == PORTRAIT_FRAMES
    assert 0.5 * PORTRAIT_FRAMES <= out["detected_frames"] <= PORTRAIT_FRAMES
    assert out["materialized"] == list(VIDEO_ASSETS) and out["skipped"] == {}, "a new video: everything is made"
    outputs = out["outputs"]
    assert {"frames", "landmarks", "overlay", "metrics"} <= outputs.keys()
    assert all(uri.startswith("file://") for uri in outputs.values())

    def local(uri: str) -> Path:
        return Path(uri.removeprefix("file://"))

    landmarks = pl.read_parquet(local(outputs["landmarks"]))
    assert landmarks.filter(pl.col("person").is_not_null())["frame_index"].n_unique() == out["detected_frames"]
    assert pl.read_parquet(local(outputs["frames"])).height == PORTRAIT_FRAMES
    assert pl.read_parquet(local(outputs["metrics"])).height == out["detected_frames"]
    codec, pix_fmt, width, height, times = decoded_video(local(outputs["overlay"]))
    assert (codec, pix_fmt, width, height, len(times)) == ("h264", "yuv420p", 540, 960, PORTRAIT_FRAMES)  # 540p cap
    assert times[1] - times[0] in (16, 17), "60 fps timing kept"

    # The run went through the local Dagster instance, so the UI shows it.
    instance = dg.DagsterInstance.from_config(str(bodyscript_home.dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert runs[0].tags["dagster/partition"] == out["partition"]
    assert instance.has_dynamic_partition("videos", out["partition"])
    assert (bodyscript_home.dagster_home / "dagster.yaml").is_file()
    pose = instance.get_latest_materialization_event(dg.AssetKey("landmarks"))
    assert pose is not None and pose.asset_materialization is not None
    assert pose.asset_materialization.metadata["pose_head_start"].value is True, "pose began while Dagster loaded"


def test_progress_bar_on_a_terminal(bodyscript_home: Settings, portrait_clip: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([BODYSCRIPT, "process", str(portrait_clip)], stdout=subprocess.PIPE, stderr=terminal,
                              text=True, timeout=600)  # fmt: skip
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
    shown = b"".join(chunks).decode()
    assert done.returncode == 0
    assert "100%" in shown and "#" * 30 in shown
    assert "Sparsity" not in shown and "INFO" not in shown, "native library logs stay off the terminal"
    assert "frames with a pose" in done.stdout


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.mp4", b"this is text, not a video\n"), ("empty.mp4", b"")],
)
def test_bad_input_fails_with_one_line(bodyscript_home: Settings, tmp_path: Path, name: str, content: bytes) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    done = run_cli("process", str(bad), "--json")
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bodyscript: error:") and name in lines[0] and "Traceback" not in done.stderr
    assert bad.read_bytes() == content, "the source file is left as it was"


def test_missing_file(bodyscript_home: Settings, tmp_path: Path) -> None:
    done = run_cli("process", str(tmp_path / "nope.mp4"))
    assert done.returncode != 0
    assert done.stderr.strip() == f"bodyscript: error: {tmp_path / 'nope.mp4'}: no such file"
