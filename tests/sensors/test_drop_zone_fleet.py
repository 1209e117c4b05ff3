"""The drop-zone sensor at fleet scale: its memory is in the instance's key-value store, its cursor a small
position; nothing is lost or taken twice across a burst, a restart, a deleted cursor or a tick never stored."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from bodyscript_pipeline.drop_zone.scan import ScanState
from bodyscript_pipeline.settings import Settings
from tests.support.drop_memory import known_to
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import DROP_BUCKET, SensorHarness, harness_for

CURSOR_LIMIT = 64 * 1024


def sources(result: dg.SensorResult) -> list[str]:
    """The drop-zone keys a tick requested runs for."""
    prefix = f"s3://{DROP_BUCKET}/incoming/"
    return sorted(r.tags["bodyscript/source_uri"].removeprefix(prefix) for r in result.run_requests)


def test_ten_thousand_objects_each_run_once_and_the_cursor_stays_small(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A local lake: the test is about the drop zone's 10,000 objects, not 10,000 source records on S3.
    env = {"BODYSCRIPT_SCAN_MAX_NEW": "2000", "BODYSCRIPT_LAKE_URI": f"file://{tmp_path / 'lake'}"}
    with harness_for(monkeypatch, s3, **env) as harness:
        names = [f"site-{i % 40:02d}/clip-{i:05d}.mp4" for i in range(10_000)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda name: harness.put(name, name.encode()), names))

        sizes = []
        while True:
            result = harness.tick()
            sizes.append(len(harness.cursor or ""))
            if not result.run_requests:
                break
        assert len(harness.run_keys) == len(set(harness.run_keys)) == 10_000, "every object exactly once"
        assert len(sizes) == 6, "2,000 a tick, then one that finds nothing new"

        passes = ScanState.decode(harness.cursor).passes
        while ScanState.decode(harness.cursor).passes == passes:  # a whole pass more over what it knows
            assert harness.tick().run_requests == []
            sizes.append(len(harness.cursor or ""))
        assert max(sizes) < CURSOR_LIMIT, "even while 2,000 takes wait in it for the next tick"
        assert sizes[-1] < 512, "a position, not 10,000 digests"
        assert known_to(harness, *names) == set(names)
        assert len(harness.run_keys) == 10_000


@contextmanager
def restartable(root: Path, harness: SensorHarness) -> Iterator[SensorHarness]:
    """A daemon started on the instance in ``root``, carrying on from ``harness``'s stored cursor."""
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        yield SensorHarness(instance, harness.defs, harness.client, harness.cursor, harness.run_keys)


def test_nothing_is_taken_twice_across_a_restart(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A new instance object on the same storage, right after a tick that took objects: its cursor holds them,
    and the restarted sensor hands them to the memory."""
    with harness_for(monkeypatch, s3) as setup:
        for name in ("a.mp4", "b.mp4", "team/c.mp4"):
            setup.put(name, name.encode())
        root = tmp_path / "dagster-home"
        root.mkdir()
        with restartable(root, setup) as before:
            assert len(before.tick().run_requests) == 3
        with restartable(root, before) as after:
            after.put("d.mp4", b"dropped while the daemon was down")
            assert sources(after.tick()) == ["d.mp4"]
            assert after.tick().run_requests == []
            assert known_to(after, "a.mp4", "b.mp4", "team/c.mp4", "d.mp4") == {"a.mp4", "b.mp4", "team/c.mp4", "d.mp4"}
            assert len(after.run_keys) == len(set(after.run_keys)) == 4


def test_a_deleted_cursor_takes_only_new_objects(harness_small: SensorHarness) -> None:
    harness = harness_small
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        harness.put(name, name.encode())
    seen = []
    for _ in range(3):  # one page of two a tick: a whole pass, and the takes stored
        seen += sources(harness.tick())
    assert sorted(seen) == ["a.mp4", "b.mp4", "c.mp4"]
    passes = ScanState.decode(harness.cursor).passes

    harness.cursor = None  # `dagster sensor cursor --delete`
    harness.put("bb.mp4", b"new")
    later = [key for _ in range(4) for key in sources(harness.tick())]
    assert later == ["bb.mp4"]
    assert len(harness.run_keys) == len(set(harness.run_keys)) == 4
    assert ScanState.decode(harness.cursor).passes > passes, "the pass number came back from the memory"


def test_a_cursor_deleted_right_after_a_take_repeats_only_its_run_keys(harness_small: SensorHarness) -> None:
    """The one tick whose takes were still in the deleted cursor: its objects are requested again with the same
    run keys, which the daemon skips as already launched. Nothing is lost; nothing else is requested again."""
    harness = harness_small
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        harness.put(name, name.encode())
    first = harness.tick()
    second = harness.tick()
    harness.cursor = None
    again = [r.run_key for _ in range(3) for r in harness.tick().run_requests]
    assert again == [r.run_key for r in second.run_requests]
    assert not set(again) & {r.run_key for r in first.run_requests}
    assert len(set(harness.run_keys)) == 4


def test_a_deleted_then_reuploaded_object_is_taken_after_a_whole_pass(harness_small: SensorHarness) -> None:
    harness = harness_small
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        harness.put(name, name.encode())
    for _ in range(2):  # pages [a, b] and [c]: one pass
        harness.tick()
    harness.client.delete_object(Bucket=DROP_BUCKET, Key="incoming/b.mp4")
    harness.put("b.mp4", b"b.mp4")  # the same bytes back before the next pass lists it: nothing new
    assert [sources(harness.tick()) for _ in range(2)] == [[], []]

    harness.client.delete_object(Bucket=DROP_BUCKET, Key="incoming/b.mp4")
    assert [sources(harness.tick()) for _ in range(2)] == [[], []], "a whole pass without b.mp4"
    assert known_to(harness, "a.mp4", "b.mp4", "c.mp4") == {"a.mp4", "c.mp4"}
    harness.put("b.mp4", b"b.mp4")
    assert sources(harness.tick()) == ["b.mp4"]


def test_a_tick_never_stored_loses_nothing(harness_small: SensorHarness) -> None:
    """The daemon stores a tick's cursor once its runs are submitted; a tick that failed before is evaluated
    again from the older cursor and finds the same objects (their run keys keep them from running twice)."""
    harness = harness_small
    harness.put("a.mp4", b"a")
    harness.tick()
    stored = harness.cursor
    harness.put("b.mp4", b"b")
    (lost,) = harness.tick().run_requests
    assert known_to(harness, "b.mp4") == set(), "in the memory only once the next tick proves this one landed"

    harness.cursor = stored  # that tick's result was never stored
    (retried,) = harness.tick().run_requests
    assert retried.run_key == lost.run_key
    assert harness.tick().run_requests == []
    assert known_to(harness, "a.mp4", "b.mp4") == {"a.mp4", "b.mp4"}


@pytest.fixture
def harness_small(bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[SensorHarness]:
    """One page of two objects per tick."""
    with harness_for(monkeypatch, s3, BODYSCRIPT_SCAN_PAGE_SIZE="2", BODYSCRIPT_SCAN_MAX_PAGES="1") as made:
        yield made
