"""The scan over a real local drop folder: what it takes, what it skips, and how fast, whatever the files are."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bodyscript_pipeline.drop_zone.listing import lister_for
from bodyscript_pipeline.drop_zone.memory import DictScanMemory
from bodyscript_pipeline.drop_zone.scan import HOUR, ScanResult, ScanState, resume, scan
from bodyscript_pipeline.lake.sources import object_version

PROMPT_S = 10.0


def scan_within(seconds: float, drop: Path, state: ScanState | None = None, **options: Any) -> ScanResult:
    """One scan in a daemon thread, so that a scan that hangs fails the test instead of hanging the suite."""
    outcome: list[ScanResult | BaseException] = []

    def work() -> None:
        try:
            outcome.append(
                scan(
                    lister_for(f"file://{drop}"),
                    state or ScanState(),
                    **{"max_pages": 5, "max_new": 100, "settle_seconds": 0, "now": time.time(), **options},
                )
            )
        except BaseException as error:  # handed to the test below
            outcome.append(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the scan did not finish within {seconds} s"
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def make_video(path: Path, body: bytes = b"video bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("special", ["dev-zero", "fifo", "outside-video", "outside-folder"])
def test_special_files_are_skipped_promptly(tmp_path: Path, special: str) -> None:
    drop = tmp_path / "drop"
    make_video(drop / "real.mp4")
    outside = make_video(tmp_path / "elsewhere" / "private.mp4", b"not dropped")
    if special == "dev-zero":
        (drop / "x.mp4").symlink_to("/dev/zero")
    elif special == "fifo":
        os.mkfifo(drop / "y.mp4")
    elif special == "outside-video":
        (drop / "z.mp4").symlink_to(outside)
    else:
        (drop / "linked").symlink_to(outside.parent, target_is_directory=True)

    result = scan_within(PROMPT_S, drop)

    assert [found.obj.key for found in result.new] == ["real.mp4"]
    assert result.skipped == 1
    assert "skipped 1 special file(s)" in result.describe()


def test_all_special_files_together_in_one_pass(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    make_video(drop / "team" / "real.mp4")
    (drop / "x.mp4").symlink_to("/dev/zero")
    os.mkfifo(drop / "team" / "y.mp4")
    (drop / "z.mp4").symlink_to(make_video(tmp_path / "elsewhere" / "private.mp4"))

    result = scan_within(PROMPT_S, drop)
    assert [found.obj.key for found in result.new] == ["team/real.mp4"]
    assert result.skipped == 3 and result.pass_completed
    again = scan_within(PROMPT_S, drop, result.state)
    assert again.new == [] and again.skipped == 3, "skipped again on the next pass, never taken"


def test_a_huge_file_is_taken_from_its_listing_without_being_read(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    big = drop / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(64 << 30)  # sparse: 64 GiB to read, almost nothing on disk

    started = time.monotonic()
    (found,) = scan_within(PROMPT_S, drop).new
    assert time.monotonic() - started < PROMPT_S
    stat = big.stat()
    assert found.version == f"size:{64 << 30}-mtime:{int(stat.st_mtime * 1_000_000)}"
    assert found.version == object_version(found.obj.uri), "the version the run checks the file against"


def test_global_hourly_quota_caps_many_folders(tmp_path: Path) -> None:
    """Spreading files over many top-level folders does not get around the hourly quota."""
    drop = tmp_path / "drop"
    for i in range(30):
        make_video(drop / f"folder-{i:02d}" / "clip.mp4", f"clip {i}".encode())
    now = time.time()
    memory = DictScanMemory()

    def tick(state: ScanState, at: float) -> ScanResult:
        state = resume(state.encode(), memory)
        return scan_within(PROMPT_S, drop, state, now=at, quota_per_hour=10, global_quota_per_hour=5, memory=memory)

    first = tick(ScanState(), now)
    assert len(first.new) == 5
    assert first.over_global_quota == 25 and "25 over the global hourly quota" in first.describe()
    second = tick(first.state, now + 60)
    assert second.new == [], "the same hour: nothing more, whatever the folder"
    third = tick(second.state, now + HOUR + 1)
    assert len(third.new) == 5, "an hour later, five more"
    taken = {found.obj.key for found in first.new + third.new}
    assert len(taken) == 10
