"""The scan's memory outside its cursor: one recall and at most one write per listed page, deleted objects forgotten
by the pass number alone, takes handed to the memory only by the next tick, and a cursor of bounded size."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from bodyscript_pipeline.drop_zone import scan as scan_module
from bodyscript_pipeline.drop_zone.listing import LocalDropLister
from bodyscript_pipeline.drop_zone.memory import DictScanMemory
from bodyscript_pipeline.drop_zone.scan import HOUR, RECORD, ScanResult, ScanState, remembered, resume, scan

NOW = 1_800_000_000.0
PAGE = 50


class CountingMemory(DictScanMemory):
    """A dict memory that also keeps how many keys each recall asked for and each write held."""

    def __init__(self) -> None:
        super().__init__()
        self.recalls: list[int] = []
        self.writes: list[int] = []

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        self.recalls.append(len(keys))
        return super().recall(keys)

    def remember(self, entries: Mapping[str, str]) -> None:
        self.writes.append(len(entries))
        super().remember(entries)


def make_old(path: Path, body: bytes = b"video") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, (NOW - 600, NOW - 600))


def fill(drop: Path, count: int) -> list[str]:
    names = [f"team-{i % 7}/clip-{i:04d}.mp4" for i in range(count)]
    for name in names:
        make_old(drop / name, name.encode())
    return names


def tick(
    drop: Path,
    cursor: str | None,
    memory: DictScanMemory,
    *,
    settle_seconds: float = 0,
    now: float = NOW,
    quota_per_hour: int = 0,
) -> ScanResult:
    """One sensor tick: the last stored cursor resumed, then one bounded scan (four pages at most)."""
    state = resume(cursor, memory)
    if isinstance(memory, CountingMemory):
        memory.recalls.clear()
        memory.writes.clear()
    lister = LocalDropLister(drop, PAGE)
    return scan(lister, state, max_pages=4, max_new=1000, settle_seconds=settle_seconds, now=now,
                quota_per_hour=quota_per_hour, memory=memory)  # fmt: skip


def test_a_tick_asks_the_memory_once_per_page_whatever_it_knows(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    names = fill(drop, 600)
    for i in range(10):
        make_old(drop / f"notes-{i}.txt")
    memory = CountingMemory()
    cursor = None
    taken: list[str] = []
    for _ in range(4):  # the first pass: 13 pages, four a tick
        result = tick(drop, cursor, memory)
        cursor = result.state.encode()
        taken += [found.obj.key for found in result.new]
        assert len(memory.recalls) == result.pages and max(memory.recalls) <= PAGE
        assert len(memory.writes) <= 1, "takes wait in the cursor for the next tick; then the pass's record"
    assert result.pass_completed
    assert sorted(taken) == sorted(names)

    written = 0
    for _ in range(4):  # a whole pass over 600 known videos, four pages a tick
        result = tick(drop, cursor, memory)
        cursor = result.state.encode()
        assert result.new == []
        assert len(memory.recalls) == result.pages and max(memory.recalls) <= PAGE
        assert len(memory.writes) <= result.pages + 1 and max(memory.writes) <= PAGE
        written += sum(memory.writes)
    assert result.pass_completed
    assert written == 600 + 1, "each known video's pass number once per pass (and the pass's record)"
    assert len(cursor) < 512, "a position, not what the scan knows"
    assert len(memory.values) == 600 + 1


def test_a_deleted_object_is_forgotten_after_a_whole_pass_without_it(tmp_path: Path) -> None:
    """The same facts uploaded again are a new version once a whole pass missed the object, as when the cursor
    held every digest and dropped those a pass had not seen; an object back before any pass missed it is not."""
    drop = tmp_path / "drop"
    names = fill(drop, 3)
    memory = DictScanMemory()
    first = tick(drop, None, memory)  # one tick lists the three: one pass
    assert len(first.new) == 3 and first.pass_completed
    cursor = first.state.encode()

    gone = drop / names[1]
    gone.unlink()
    make_old(gone, names[1].encode())  # deleted and back between two listings: nothing to see
    again = tick(drop, cursor, memory)
    assert again.new == []
    cursor = again.state.encode()

    gone.unlink()
    missed = tick(drop, cursor, memory)  # a whole pass without it
    assert missed.new == [] and missed.pass_completed
    cursor = missed.state.encode()
    assert remembered(memory, missed.state, names) == {names[0], names[2]}
    make_old(gone, names[1].encode())
    back = tick(drop, cursor, memory)
    assert [found.obj.key for found in back.new] == [names[1]]


def test_takes_reach_the_memory_only_with_the_next_tick(tmp_path: Path) -> None:
    """A tick whose cursor was never stored (its runs may not have been submitted) is evaluated again from the
    older cursor: what it took is found again, not lost."""
    drop = tmp_path / "drop"
    fill(drop, 2)
    memory = DictScanMemory()
    first = tick(drop, None, memory)
    stored = first.state.encode()
    make_old(drop / "late.mp4")

    lost = tick(drop, stored, memory)
    assert [found.obj.key for found in lost.new] == ["late.mp4"]
    assert remembered(memory, lost.state, ["late.mp4"]) == set(), "its cursor was not stored: not known yet"

    retried = tick(drop, stored, memory)
    assert [found.obj.key for found in retried.new] == ["late.mp4"], "taken again: its run key dedupes it"
    settled = tick(drop, retried.state.encode(), memory)
    assert settled.new == []
    assert remembered(memory, settled.state, ["late.mp4"]) == {"late.mp4"}


def test_a_deleted_cursor_keeps_the_pass_number_from_the_memory(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    names = fill(drop, 3)
    memory = DictScanMemory()
    cursor = None
    for _ in range(4):
        cursor = tick(drop, cursor, memory).state.encode()
    passes = ScanState.decode(cursor).passes
    assert passes == 4 and RECORD in memory.values

    fresh = tick(drop, None, memory)  # the cursor deleted: nothing runs again
    assert fresh.new == [] and fresh.state.passes == passes + 1 and fresh.state.taken_any
    assert remembered(memory, fresh.state, names) == set(names)


def test_young_files_beyond_the_cap_wait_for_their_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cursor remembers at most YOUNG_CAP settling files; the others are taken once settle_seconds old."""
    monkeypatch.setattr(scan_module, "YOUNG_CAP", 3)
    drop = tmp_path / "drop"
    for i in range(6):
        path = drop / f"fresh-{i}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"copied just now")
        os.utime(path, (NOW, NOW))
    memory = DictScanMemory()
    first = tick(drop, None, memory, settle_seconds=60)
    assert first.new == [] and first.settling == 6 and len(first.state.young) == 3
    second = tick(drop, first.state.encode(), memory, settle_seconds=60, now=NOW + 2)
    assert len(second.new) == 3, "the remembered three: two listings agree"
    late = tick(drop, second.state.encode(), memory, settle_seconds=60, now=NOW + 61)
    assert len(late.new) == 3 and not late.state.young


def test_quota_takes_held_in_the_cursor_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a quota on, at most TAKEN_CAP versions are taken per hour, whatever the quotas allow: the cursor holds
    the time of each."""
    monkeypatch.setattr(scan_module, "TAKEN_CAP", 4)
    drop = tmp_path / "drop"
    names = fill(drop, 10)
    memory = DictScanMemory()
    first = tick(drop, None, memory, quota_per_hour=10)
    assert len(first.new) == 4 and first.over_global_quota == 6
    later = tick(drop, first.state.encode(), memory, quota_per_hour=10, now=NOW + HOUR + 1)
    assert len(later.new) == 4
    assert sum(len(times) for times in later.state.taken.values()) == 4
    assert len({found.obj.key for found in first.new + later.new}) == 8 < len(names)
