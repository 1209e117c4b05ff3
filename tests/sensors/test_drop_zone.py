"""The drop-zone sensor, evaluated against a real Dagster instance and a real S3 endpoint (moto on loopback)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from assets import videos_partitions
from bodyscript_pipeline.drop_zone.listing import lister_for
from bodyscript_pipeline.drop_zone.memory import DictScanMemory
from bodyscript_pipeline.drop_zone.scan import (
    RELIST_SECONDS,
    Entry,
    ScanState,
    Young,
    object_digest,
    resume,
    scan,
    scan_settling,
)
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.sources import object_version
from bodyscript_pipeline.settings import Settings
from tests.support.drop_memory import known_to
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import DROP_BUCKET, SensorHarness, harness_for


@pytest.fixture
def harness(bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[SensorHarness]:
    with harness_for(monkeypatch, s3, BODYSCRIPT_SCAN_MAX_NEW="5000") as made:
        yield made


def test_more_than_a_thousand_objects_are_paginated(harness: SensorHarness) -> None:
    names = [f"batch/clip-{i:04d}.mp4" for i in range(1050)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: harness.put(name, name.encode()), names))
    harness.put("notes.txt", b"not a video")
    harness.put("batch/.upload-in-progress.mp4.part", b"partial")

    result = harness.tick()
    assert len(result.run_requests) == 1050
    partitions = {r.partition_key for r in result.run_requests}
    assert len(partitions) == 1050
    assert set(harness.instance.get_dynamic_partitions(videos_partitions.name)) == partitions
    assert all(not p.startswith(("notes", "batch-upload")) for p in partitions)
    assert ScanState.decode(harness.cursor).passes == 1

    again = harness.tick()
    assert again.run_requests == [] and again.skip_reason
    assert len(set(harness.run_keys)) == len(harness.run_keys) == 1050


def test_source_is_registered_and_observed(harness: SensorHarness) -> None:
    harness.put("session 1/Squat Ü.MP4", b"video bytes")
    result = harness.tick()
    (request,) = result.run_requests
    assert request.partition_key.startswith("session-1-squat-mp4-")
    (observation,) = result.asset_events
    assert observation.asset_key == dg.AssetKey("source_video")
    assert observation.partition == request.partition_key
    version = observation.tags["dagster/data_version"]
    assert version.startswith("etag:") and request.run_key == f"{request.partition_key}@{version}"
    assert request.tags["bodyscript/source_uri"] == "s3://drop/incoming/session 1/Squat Ü.MP4"


def test_identical_reupload_does_not_run_but_a_changed_one_does(harness: SensorHarness) -> None:
    """On S3 the version is the ETag: the same bytes uploaded again keep it."""
    harness.put("a.mp4", b"first version")
    (first,) = harness.tick().run_requests
    harness.put("a.mp4", b"first version")
    assert harness.tick().run_requests == []
    harness.put("a.mp4", b"second version")
    (second,) = harness.tick().run_requests
    assert second.partition_key == first.partition_key
    assert second.run_key != first.run_key


@pytest.fixture
def local_drop(tmp_path: Path) -> Path:
    return tmp_path / "drop"


@pytest.fixture
def local_harness(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, local_drop: Path
) -> Iterator[SensorHarness]:
    with harness_for(monkeypatch, s3, BODYSCRIPT_DROP_URI=f"file://{local_drop}", BODYSCRIPT_SETTLE_S="0") as made:
        yield made


def test_local_recopy_keeping_size_and_mtime_does_not_run_but_a_change_does(
    local_harness: SensorHarness, local_drop: Path, tmp_path: Path
) -> None:
    """Locally the version is the listing's size and mtime, never the bytes: the sensor reads no file."""
    original = tmp_path / "camera" / "a.mp4"
    original.parent.mkdir()
    original.write_bytes(b"first version")
    os.utime(original, (time.time() - 600, time.time() - 600))
    local_drop.mkdir()
    shutil.copy2(original, local_drop / "a.mp4")
    (first,) = local_harness.tick().run_requests
    version = first.tags["bodyscript/source_version"]
    assert version == object_version(f"file://{local_drop / 'a.mp4'}"), "the version the run pins"

    shutil.copy2(original, local_drop / "a.mp4")  # copied again: same size, same mtime
    assert local_harness.tick().run_requests == []

    (local_drop / "a.mp4").write_bytes(b"other version")  # same size, new bytes, new mtime
    (second,) = local_harness.tick().run_requests
    assert second.partition_key == first.partition_key
    assert second.run_key != first.run_key


def test_default_local_drop_folder_is_created_on_first_start(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop = Path(bodyscript_home.drop_uri.removeprefix("file://"))
    assert not drop.exists()
    with harness_for(monkeypatch, s3, BODYSCRIPT_DROP_URI=bodyscript_home.drop_uri) as harness:
        assert harness.tick().run_requests == []
        assert drop.is_dir(), "the sensor made the drop folder that it has never listed"


def test_missing_local_drop_folder_fails_the_tick_and_keeps_the_cursor(
    local_harness: SensorHarness, local_drop: Path, tmp_path: Path
) -> None:
    """An unmounted or renamed drop folder is not an empty one: forgetting its videos would let cleanup
    delete their partitions, and bringing it back would run them all again."""
    for name in ("a.mp4", "team/b.mp4"):
        make_old_file(local_drop / name)
    assert len(local_harness.tick().run_requests) == 2
    cursor = local_harness.cursor
    local_drop.rename(tmp_path / "away")

    with pytest.raises(BodyscriptError, match=re.escape(str(local_drop))) as failed:
        local_harness.tick()
    assert "\n" not in str(failed.value)
    assert local_harness.cursor == cursor
    assert not local_drop.exists(), "a folder that was listed before is not made again, empty"

    (tmp_path / "away").rename(local_drop)
    assert local_harness.tick().run_requests == [], "back again: nothing runs twice"
    assert known_to(local_harness, "a.mp4", "team/b.mp4") == {"a.mp4", "team/b.mp4"}


def test_local_drop_root_that_is_a_file_fails_the_tick(local_harness: SensorHarness, local_drop: Path) -> None:
    local_drop.write_bytes(b"not a folder")
    with pytest.raises(BodyscriptError, match=re.escape(str(local_drop))):
        local_harness.tick()


def test_missing_drop_bucket_fails_the_tick_and_keeps_the_cursor(harness: SensorHarness) -> None:
    harness.put("a.mp4", b"video")
    assert len(harness.tick().run_requests) == 1
    cursor = harness.cursor
    harness.client.delete_object(Bucket=DROP_BUCKET, Key="incoming/a.mp4")
    harness.client.delete_bucket(Bucket=DROP_BUCKET)
    with pytest.raises(BodyscriptError, match=DROP_BUCKET):
        harness.tick()
    assert harness.cursor == cursor


def make_old_file(path: Path, body: bytes = b"video") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, (time.time() - 600, time.time() - 600))


def test_same_file_name_in_two_folders_makes_two_partitions(harness: SensorHarness) -> None:
    harness.put("monday/clip.mp4", b"monday")
    harness.put("tuesday/clip.mp4", b"tuesday")
    keys = {r.partition_key for r in harness.tick().run_requests}
    assert len(keys) == 2
    assert all("clip-mp4" in key for key in keys)


def test_bounded_ticks_survive_deleting_the_cursor_object(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness_for(monkeypatch, s3, BODYSCRIPT_SCAN_PAGE_SIZE="2", BODYSCRIPT_SCAN_MAX_PAGES="1") as harness:
        check_deleted_cursor_object(harness)


def check_deleted_cursor_object(harness: SensorHarness) -> None:
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        harness.put(name, name.encode())
    first = harness.tick()
    assert len(first.run_requests) == 2, "one page of two objects per tick"
    assert ScanState.decode(harness.cursor).after == "b.mp4"

    harness.client.delete_object(Bucket=DROP_BUCKET, Key="incoming/b.mp4")
    harness.put("bb.mp4", b"added after the cursor key was deleted")
    seen = {r.partition_key for r in first.run_requests}
    for _ in range(6):
        seen |= {r.partition_key for r in harness.tick().run_requests}
    assert len(seen) == 6, "a, b, bb, c, d, e each ran once"
    assert len(harness.run_keys) == len(set(harness.run_keys)) == 6
    assert ScanState.decode(harness.cursor).passes == 2, "pass 1 still saw b.mp4; pass 2 did not"
    names = ("a.mp4", "b.mp4", "bb.mp4", "c.mp4", "d.mp4", "e.mp4")
    assert known_to(harness, *names) == set(names) - {"b.mp4"}, "forgotten after a full pass without it"


def test_burst_is_taken_a_bounded_number_per_tick(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness_for(monkeypatch, s3, BODYSCRIPT_SCAN_MAX_NEW="40") as harness:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: harness.put(f"burst/{i:03d}.mp4", str(i).encode()), range(100)))
        counts = [len(harness.tick().run_requests) for _ in range(4)]
        assert counts == [40, 40, 20, 0]
        assert len(set(harness.run_keys)) == 100


def test_cursor_round_trips() -> None:
    state = ScanState(
        after="x/y.mp4",
        passes=3,
        taken_any=True,
        taken={b"prefix": [1764550000.0, 1764550100.0]},
        young={b"abcdef": Young(b"1234", 1764550000.25, 3)},
        pending={b"ghijkl": Entry(b"5678", 2)},
    )
    assert ScanState.decode(state.encode()) == state
    assert ScanState.decode(None) == ScanState()


def test_version_1_cursor_moves_its_digests_to_the_memory() -> None:
    """Upgrading keeps what the sensor knew: nothing already taken runs again. The digests seen during the
    current pass are of this pass; the others were listed in the last completed one."""
    known = base64.b64encode(zlib.compress(b"abcdef" + b"1234" + b"5678" + b"ghijkl" + b"9abc" + b"defg"))
    seen = base64.b64encode(zlib.compress(b"abcdef"))
    old = {"v": 1, "after": "k.mp4", "passes": 2, "known": known.decode(), "seen": seen.decode()}
    memory = DictScanMemory()
    state = resume(json.dumps(old), memory)
    assert (state.after, state.passes, state.taken_any) == ("k.mp4", 2, True)
    assert {k: v for k, v in memory.values.items() if k != "scan"} == {
        b"abcdef".hex(): Entry(b"1234", 2).dump(),
        b"ghijkl".hex(): Entry(b"9abc", 1).dump(),
    }
    assert json.loads(state.encode())["v"] == 3


def version_2_cursor(harness: SensorHarness, keys: list[str], *, passes: int, after: str = "") -> str:
    """The cursor the sensor wrote before its memory moved out of it: every known object's digests in it."""
    known = b""
    for key in sorted(keys):
        etag = harness.client.head_object(Bucket=DROP_BUCKET, Key=f"incoming/{key}")["ETag"].strip('"')
        known += object_digest(key) + hashlib.blake2b(f"etag:{etag}".encode(), digest_size=4).digest()
    seen = b"".join(sorted(object_digest(key) for key in keys))
    packed = {name: base64.b64encode(zlib.compress(raw)).decode() for name, raw in (("known", known), ("seen", seen))}
    return json.dumps({"v": 2, "after": after, "passes": passes, **packed, "taken": {}, "young": {}})


def test_version_2_cursor_is_moved_once_and_nothing_runs_twice(harness: SensorHarness) -> None:
    names = ["a.mp4", "b.mp4", "team/c.mp4"]
    for name in names:
        harness.put(name, name.encode())
    harness.cursor = version_2_cursor(harness, names, passes=4)
    harness.put("new.mp4", b"dropped after the upgrade")
    (request,) = harness.tick().run_requests
    assert request.tags["bodyscript/source_uri"].endswith("/new.mp4")
    assert json.loads(harness.cursor)["v"] == 3 and "known" not in json.loads(harness.cursor)
    assert known_to(harness, *names) == set(names)
    for _ in range(3):  # past two more passes: the moved entries are listed again and stay current
        assert harness.tick().run_requests == []
    assert ScanState.decode(harness.cursor).passes == 4 + 4


def test_per_prefix_hourly_quota(bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's '10 videos per hour' rate limit, per top-level folder: the rest wait, nothing is lost."""
    with harness_for(monkeypatch, s3, BODYSCRIPT_QUOTA_PER_HOUR="10") as harness:
        for i in range(14):
            harness.put(f"team-a/{i:02d}.mp4", f"a{i}".encode())
        for i in range(3):
            harness.put(f"team-b/{i:02d}.mp4", f"b{i}".encode())
        first = harness.tick()
        by_team = sorted(r.partition_key.split("-")[1] for r in first.run_requests)
        assert by_team.count("a") == 10 and by_team.count("b") == 3
        assert harness.tick().run_requests == [], "team-a's other 4 wait for the hour to pass"
        state = ScanState.decode(harness.cursor)
        hour_ago = {prefix: [t - 3601 for t in times] for prefix, times in state.taken.items()}
        harness.cursor = dataclasses.replace(state, taken=hour_ago).encode()
        later = harness.tick()
        assert sorted(r.partition_key.split("-")[1] for r in later.run_requests) == ["a"] * 4
        assert len(set(harness.run_keys)) == 17


def test_global_hourly_quota_is_applied_by_the_sensor(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"BODYSCRIPT_QUOTA_PER_HOUR": "10", "BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR": "5"}
    with harness_for(monkeypatch, s3, **env) as harness:
        for i in range(30):
            harness.put(f"folder-{i:02d}/clip.mp4", str(i).encode())
        assert len(harness.tick().run_requests) == 5
        assert harness.tick().run_requests == [], "the other 25 wait for the hour to pass"
        state = ScanState.decode(harness.cursor)
        state.taken = {prefix: [t - 3601 for t in times] for prefix, times in state.taken.items()}
        harness.cursor = state.encode()
        assert len(harness.tick().run_requests) == 5


def test_local_file_is_taken_once_two_listings_agree(tmp_path: Path) -> None:
    """A fresh local file waits while it changes, is taken at the next listing that shows it unchanged, and
    a file older than the settle time is taken at once; the young-file memory survives the cursor."""
    drop = tmp_path / "drop"
    drop.mkdir()
    lister = lister_for(f"file://{drop}")
    clip = drop / "clip.mp4"
    clip.write_bytes(b"first part")
    now = time.time()
    memory = DictScanMemory()

    def tick(state: ScanState, at: float) -> tuple[ScanState, int, int]:
        result = scan(
            lister, resume(state.encode(), memory), max_pages=5, max_new=5, settle_seconds=60, now=at, memory=memory
        )
        return result.state, len(result.new), result.settling

    state, new, settling = tick(ScanState(), now)
    assert (new, settling) == (0, 1), "first seen moments after its last write: wait"
    clip.write_bytes(b"first part, second part")  # still being copied: size and mtime move
    state, new, settling = tick(state, now + 5)
    assert (new, settling) == (0, 1), "changed since the last listing: still wait"
    state, new, _ = tick(state, now + 5 + RELIST_SECONDS / 2)
    assert new == 0, "two listings closer together than RELIST_SECONDS prove nothing"
    state, new, _ = tick(state, now + 10)
    assert new == 1, "unchanged across two listings: taken long before the 60 s settle time"
    assert not state.young, "nothing left waiting"

    old = drop / "old.mp4"
    old.write_bytes(b"copied an hour ago")
    os.utime(old, (now - 3600, now - 3600))
    _, new, _ = tick(state, now + 11)
    assert new == 1, "older than the settle time: taken at its first listing"


def test_s3_objects_are_taken_at_their_first_listing(harness: SensorHarness) -> None:
    harness.put("lab/fresh.mp4", b"complete once listed")
    assert len(harness.tick().run_requests or []) == 1


def test_a_tick_relists_a_settling_copy_within_itself(tmp_path: Path) -> None:
    """A copy that ended just before the tick is taken by that tick (two listings a second apart agree), not a
    sensor interval later; one still being written when the tick relists waits."""
    drop = tmp_path / "drop"
    drop.mkdir()
    lister = lister_for(f"file://{drop}")
    done, growing = drop / "done.mp4", drop / "growing.mp4"
    done.write_bytes(b"copied just now")
    growing.write_bytes(b"first part")
    waits: list[float] = []
    clock = [time.time()]

    def copy_goes_on(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds
        growing.write_bytes(b"first part, second part")  # the copy still runs while the tick waits
        os.utime(growing, (clock[0], clock[0]))

    memory = DictScanMemory()
    result = scan_settling(
        lister,
        ScanState(),
        max_pages=5,
        max_new=5,
        settle_seconds=60,
        memory=memory,
        clock=lambda: clock[0],
        sleep=copy_goes_on,
    )
    assert waits == [RELIST_SECONDS], "one relisting, a second later"
    assert [found.obj.key for found in result.new] == ["done.mp4"]
    assert result.settling == 1, "the growing copy waits for a later tick"

    state = resume(result.state.encode(), memory)
    idle = scan_settling(
        lister,
        state,
        max_pages=5,
        max_new=5,
        settle_seconds=2,
        memory=memory,
        clock=lambda: clock[0] + 5,
        sleep=waits.append,
    )
    assert [found.obj.key for found in idle.new] == ["growing.mp4"]
    assert waits == [RELIST_SECONDS], "nothing settling: no relisting, no wait"
