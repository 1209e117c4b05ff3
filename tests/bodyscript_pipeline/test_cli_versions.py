"""`bodyscript process` makes only what is missing or stale, and `bodyscript status` says which is which: run as a
user runs them, on the real clip with the real model, counting each asset's materializations in the instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS, asset_version
from tests.support.video_factory import clip_of

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
CONTRACT = {"partition", "frames", "detected_frames", "outputs"}
DERIVED_FROM_CLEAN = ("clean_landmarks", "metrics", "exports")
SHORT_FRAMES = 60


def run_cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([BODYSCRIPT, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == expect, done.stderr
    return done


def run_json(*args: str) -> dict[str, Any]:
    lines = run_cli(*args, "--json").stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object on stdout"
    return json.loads(lines[0])


def materializations(settings: Settings, partition: str) -> dict[str, int]:
    """How many times each per-video asset of ``partition`` was materialized in the instance."""
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        return {
            asset: len(
                instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=100
                ).records
            )
            for asset in VIDEO_ASSETS
        }


def run_count(settings: Settings) -> int:
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        return len(instance.get_runs())


def test_only_stale_assets_are_made_again(
    bodyscript_home: Settings, demo_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_json("process", str(demo_video))
    key = first["partition"]
    assert first["materialized"] == list(VIDEO_ASSETS) and first["skipped"] == {}
    assert first["reasons"] == dict.fromkeys(VIDEO_ASSETS, "missing")
    assert materializations(bodyscript_home, key) == dict.fromkeys(VIDEO_ASSETS, 1)

    # (a) The same video again: nothing to do, each asset said to be current, and no run at all.
    again = run_cli("process", str(demo_video)).stdout.splitlines()
    for asset in VIDEO_ASSETS:
        assert f"{asset}: current (version {asset_version(asset, bodyscript_home)})" in again
    assert f"{key}: nothing to do, every asset is current" in again
    assert f"{key}: {first['detected_frames']}/{first['frames']} frames with a pose" in again, "summary from the lake"
    assert materializations(bodyscript_home, key) == dict.fromkeys(VIDEO_ASSETS, 1)
    assert run_count(bodyscript_home) == 1
    # (e) --json keeps its keys when nothing runs.
    same = run_json("process", str(demo_video))
    assert same.keys() >= CONTRACT
    assert {name: same[name] for name in CONTRACT} == {name: first[name] for name in CONTRACT}
    assert same["materialized"] == [] and same["reasons"] == {}
    assert list(same["skipped"]) == list(VIDEO_ASSETS)
    assert all(reason.startswith("current (version ") for reason in same["skipped"].values())
    assert run_count(bodyscript_home) == 1

    # (b) A new smoothing cut-off: status names it, then only the cleaned layer and what is made from it run again.
    monkeypatch.setenv("BODYSCRIPT_SMOOTH_CUTOFF_HZ", "8.0")
    status = run_json("status", str(demo_video))
    [video] = status["videos"]
    assert video["partition"] == key
    states = video["assets"]
    assert {asset: states[asset]["state"] for asset in ("frames", "landmarks", "overlays")} == dict.fromkeys(
        ("frames", "landmarks", "overlays"), "current"
    )
    assert states["clean_landmarks"]["state"] == "stale"
    assert states["clean_landmarks"]["reason"] == "BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"
    for asset in ("metrics", "exports"):
        assert states[asset] | {"version": None} == {
            "state": "stale",
            "reason": "upstream clean_landmarks stale",
            "version": None,
        }
    text = run_cli("status").stdout.splitlines()  # every registered video
    assert text[0].startswith(key)
    assert "  clean_landmarks  stale: BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0" in text
    assert "  metrics          stale: upstream clean_landmarks stale" in text

    remade = run_json("process", str(demo_video))
    assert remade.keys() >= CONTRACT
    assert remade["materialized"] == list(DERIVED_FROM_CLEAN)
    assert remade["reasons"]["clean_landmarks"] == "stale: BODYSCRIPT_SMOOTH_CUTOFF_HZ 6.0 -> 8.0"
    assert list(remade["skipped"]) == ["frames", "landmarks", "overlays"]
    counts = materializations(bodyscript_home, key)
    assert counts == {"frames": 1, "landmarks": 1, "overlays": 1, "clean_landmarks": 2, "metrics": 2, "exports": 2}
    after = run_json("status", key)["videos"][0]["assets"]
    assert {asset: state["state"] for asset, state in after.items()} == dict.fromkeys(VIDEO_ASSETS, "current")

    # A quality gate that now blocks: the cleaned layer is made again, metrics and exports are not; they are stale
    # since, and a second try judges the stored scores by the check again rather than compute metrics past it,
    # without making the current cleaned layer again.
    monkeypatch.setenv("BODYSCRIPT_QUALITY_MIN_DETECTION_RATE", "0.99")
    blocked = run_cli("process", str(demo_video), expect=1)
    assert "quality check pose_detection failed" in blocked.stderr
    gated = run_json("status", key)["videos"][0]["assets"]
    assert gated["clean_landmarks"]["state"] == "current"
    assert gated["metrics"]["reason"] == "upstream clean_landmarks made again since"
    assert gated["exports"]["reason"] == "upstream metrics stale"
    again_blocked = run_cli("process", str(demo_video), expect=1)
    assert "clean_landmarks: current" in again_blocked.stdout
    assert "metrics: materializing (stale: upstream clean_landmarks made again since)" in again_blocked.stdout
    assert "clean_landmarks: quality check pose_detection failed" in again_blocked.stderr
    assert materializations(bodyscript_home, key) == counts | {"clean_landmarks": 3}


def test_new_source_version_and_force_remake_everything(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    video = clip_of(demo_video, tmp_path / "short demo.mp4", SHORT_FRAMES)  # the real clip's first seconds
    first = run_json("process", str(video))
    key = first["partition"]
    assert materializations(bodyscript_home, key) == dict.fromkeys(VIDEO_ASSETS, 1)

    # (c) The same bytes with a new modification time: a new source version, so everything is made again.
    before = video.stat()
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    status = run_json("status", str(video))["videos"][0]["assets"]
    assert status["frames"]["state"] == "stale" and status["frames"]["reason"].startswith("source changed: ")
    assert all(status[asset]["reason"] == "upstream frames stale" for asset in VIDEO_ASSETS[1:])
    changed = run_json("process", str(video))
    assert changed["partition"] == key
    assert changed["materialized"] == list(VIDEO_ASSETS) and changed["skipped"] == {}
    assert changed["reasons"]["frames"].startswith("stale: source changed: ")
    assert materializations(bodyscript_home, key) == dict.fromkeys(VIDEO_ASSETS, 2)

    # (d) --force: everything again, though everything is current.
    forced = run_json("process", str(video), "--force")
    assert forced.keys() >= CONTRACT
    assert forced["materialized"] == list(VIDEO_ASSETS) and forced["skipped"] == {}
    assert materializations(bodyscript_home, key) == dict.fromkeys(VIDEO_ASSETS, 3)
    assert run_count(bodyscript_home) == 3


def test_status_of_nothing_and_of_an_unknown_name(bodyscript_home: Settings, tmp_path: Path) -> None:
    assert run_json("status") == {"videos": []}
    assert "no videos registered" in run_cli("status").stdout
    done = subprocess.run([BODYSCRIPT, "status", "no-such-video"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert done.stderr.strip() == "bodyscript: error: no-such-video: neither a registered partition nor a video"


def test_status_of_a_video_never_processed(bodyscript_home: Settings, demo_video: Path, tmp_path: Path) -> None:
    video = shutil.copy(demo_video, tmp_path / "new.mp4")
    [one] = run_json("status", str(video))["videos"]
    assert one["partition"].startswith("new-mp4-")
    assert {asset: state["state"] for asset, state in one["assets"].items()} == dict.fromkeys(VIDEO_ASSETS, "missing")
