"""Finding new object versions in the drop zone with bounded work per tick and a cursor of constant size.

The scan walks the drop zone in key order a few pages at a time, resuming after the last key it handled.
An S3 object is complete once listed. A local file is taken once it is ``settle_seconds`` old, or once two
listings at least ``RELIST_SECONDS`` apart showed it with the same size and mtime (a copy still running
changes both), so a finished copy is picked up by the next tick rather than after a fixed wait.
An object's version is its listing's facts (ETag, or size and mtime), never its bytes: a tick costs the
same whatever the files weigh.

What the scan knows about each object (a digest of its version, and the number of the last pass that listed
it) is in a :class:`~bodyscript_pipeline.drop_zone.memory.ScanMemory`, asked once per listed page and written
at most once per page, so a tick's work follows the pages it lists, not the objects known. An object whose
version is unchanged costs nothing. One that was not listed during a whole completed pass was deleted: it is
forgotten (the next version listed is new, even if it has the same digest), without any sweep over the memory.

The cursor holds only a position: the key to resume after, the pass number, local files still settling, the
hourly quotas' recent takes, and ``pending``: what the tick took. Dagster stores a tick's cursor only once its
run requests are submitted, so the next tick hands ``pending`` to the memory (:func:`resume`); a tick that
failed is evaluated again from the older cursor, finds the same objects, and its run keys keep them from
running twice.

Hourly quotas (per top-level folder, and for the whole drop zone) leave the objects over them unknown, so
a later pass takes them once the hour allows it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bodyscript_pipeline.drop_zone.listing import DropLister, DropObject
from bodyscript_pipeline.drop_zone.memory import DictScanMemory, ScanMemory
from bodyscript_pipeline.video.names import is_video_name

KEY_BYTES = 6
TOKEN_BYTES = 4
RELIST_SECONDS = 1.0
# 3: the per-object digests are in the scan memory. A version-2 cursor held them itself (one digest per
# object), a version-1 one also a digest of the local file's SHA-256: :func:`resume` moves them to the memory.
CURSOR_VERSION = 3
HOUR = 3600.0
# The cursor's parts that do not follow the drop zone's size are capped. A young local file not remembered
# (more than YOUNG_CAP settling at once) is taken once it is settle_seconds old; with a quota on, no more than
# TAKEN_CAP versions are taken per hour (the cursor remembers when each was).
YOUNG_CAP = 256
TAKEN_CAP = 2048
RECORD = "scan"  # the memory's record of the pass number (for a deleted cursor); object keys are hex digests
MOVE_BATCH = 500

_PENDING = struct.Struct(f">{KEY_BYTES}s{TOKEN_BYTES}sI")
_YOUNG = struct.Struct(f">{KEY_BYTES}s{TOKEN_BYTES}sdI")
_TAKEN = struct.Struct(f">{KEY_BYTES}sI")


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def object_digest(key: str) -> bytes:
    """The memory's key for a drop-zone object (hex): a digest of its key, never the name itself."""
    return _digest(key, KEY_BYTES)


@dataclass(frozen=True)
class Entry:
    """What the memory holds about one object: its version's digest and the last pass that listed it."""

    token: bytes
    seen: int

    def dump(self) -> str:
        return f"{self.token.hex()}:{self.seen}"

    @classmethod
    def load(cls, value: str) -> Entry | None:
        token, _, seen = value.partition(":")
        try:
            return cls(bytes.fromhex(token), int(seen))
        except ValueError:
            return None  # not ours: as if unknown

    def current(self, passes: int) -> bool:
        """Listed during this pass or the last completed one: a whole pass without it means it was deleted."""
        return self.seen >= passes - 1


class Young(NamedTuple):
    """A local file too young to take: its listing facts, when they were first listed, and the last pass that did."""

    token: bytes
    at: float
    seen: int


@dataclass
class ScanState:
    after: str = ""
    passes: int = 0
    # Whether the scan ever took a version (a local drop folder is made only before that).
    taken_any: bool = False
    # Per top-level prefix (its digest), when its new versions of the last hour were taken (kept while a quota is on).
    taken: dict[bytes, list[float]] = field(default_factory=dict)
    # Local files too young to take (few, and short-lived).
    young: dict[bytes, Young] = field(default_factory=dict)
    # What this tick took: in the memory once the next tick proves this one's cursor (and runs) landed.
    pending: dict[bytes, Entry] = field(default_factory=dict)

    def encode(self) -> str:
        taken = sorted((prefix, t) for prefix, times in self.taken.items() for t in times)
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "after": self.after,
                "passes": self.passes,
                "taken_any": self.taken_any,
                "pending": _pack(_PENDING, ((k, e.token, e.seen) for k, e in sorted(self.pending.items()))),
                "young": _pack(_YOUNG, ((k, *young) for k, young in sorted(self.young.items()))),
                "taken": _pack(_TAKEN, ((prefix, math.ceil(t)) for prefix, t in taken)),
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, cursor: str | None) -> ScanState:
        """The cursor's state (a version-1 or -2 cursor's without its digests: :func:`resume` moves those)."""
        return _read(cursor)[0] or cls()

    def record(self) -> str:
        return json.dumps({"passes": self.passes, "taken_any": self.taken_any})


def remembered(memory: ScanMemory, state: ScanState, keys: Iterable[str]) -> set[str]:
    """Which of these object keys the memory holds a current version of (taken, and not forgotten since)."""
    by_digest = {object_digest(key).hex(): key for key in keys}
    held = memory.recall(set(by_digest))
    return {by_digest[k] for k, v in held.items() if (entry := Entry.load(v)) and entry.current(state.passes)}


def resume(cursor: str | None, memory: ScanMemory) -> ScanState:
    """The state a tick scans from, the cursor being the last one Dagster stored. Its ``pending`` takes go to the
    memory: a cursor is stored only once its tick's run requests were submitted. A version-1 or -2 cursor's
    digests move to the memory (once: the next cursor is a version-3 one). Without a cursor (first start, or the
    cursor was deleted), the memory's record gives the pass number, so what it holds stays current."""
    state, moved = _read(cursor)
    if state is None:
        state = ScanState()
        record = memory.recall({RECORD}).get(RECORD)
        if record:
            data = json.loads(record)
            state.passes, state.taken_any = int(data["passes"]), bool(data["taken_any"])
    writes = {**moved, **{key.hex(): entry.dump() for key, entry in state.pending.items()}}
    if writes:
        writes[RECORD] = state.record()
        for batch in _batches(writes, MOVE_BATCH):
            memory.remember(batch)
    state.pending = {}
    return state


@dataclass(frozen=True)
class NewVersion:
    obj: DropObject
    version: str


@dataclass
class ScanResult:
    new: list[NewVersion]
    state: ScanState
    listed: int = 0
    ignored: int = 0
    skipped: int = 0
    settling: int = 0
    pages: int = 0
    pass_completed: bool = False
    over_quota: int = 0
    over_global_quota: int = 0
    taken_last_hour: int = 0

    def describe(self) -> str:
        where = "completed a pass" if self.pass_completed else f"paused after {self.state.after!r}"
        return (
            f"{len(self.new)} new version(s); listed {self.listed} object(s) in {self.pages} page(s), "
            f"ignored {self.ignored} non-video or partial name(s), skipped {self.skipped} special file(s) "
            f"(symlinks, FIFOs, devices), {self.settling} still being written, "
            f"{self.over_quota} over their prefix's hourly quota, {self.over_global_quota} over the global "
            f"hourly quota; {where}"
        )


def scan(
    lister: DropLister,
    state: ScanState,
    *,
    max_pages: int,
    max_new: int,
    settle_seconds: float,
    now: float,
    quota_per_hour: int = 0,
    global_quota_per_hour: int = 0,
    memory: ScanMemory | None = None,
) -> ScanResult:
    """One bounded step of the scan: at most ``max_pages`` pages listed and ``max_new`` versions found. Per page,
    one recall from ``memory`` and at most one write (the pass number of known objects listed again)."""
    memory = DictScanMemory() if memory is None else memory
    result = ScanResult(new=[], state=state)
    state.taken = {p: [t for t in times if now - t < HOUR] for p, times in state.taken.items()}
    state.taken = {p: times for p, times in state.taken.items() if times}
    result.taken_last_hour = sum(len(times) for times in state.taken.values())
    quotas = (quota_per_hour, global_quota_per_hour)
    for page in lister.pages(state.after):
        result.pages += 1
        result.skipped += page.skipped
        videos = {obj.key: object_digest(obj.key) for obj in page.objects if is_video_name(obj.key)}
        known = _recall(memory, videos.values())
        relisted: dict[str, str] = {}
        handled = True
        for obj in page.objects:
            if not _visit(obj, videos.get(obj.key), result, known, relisted, max_new=max_new,
                          settle_seconds=settle_seconds, now=now, quotas=quotas):  # fmt: skip
                handled = False
                break
            state.after = obj.key
        if relisted:
            memory.remember(relisted)
        if not handled:
            return result
        if page.last:
            break
        if result.pages >= max_pages:
            return result
    # The listing ran out: a full pass is done. What it did not list is forgotten by the pass number alone.
    state.young = {k: young for k, young in state.young.items() if young.seen == state.passes}
    state.after = ""
    state.passes += 1
    memory.remember({RECORD: state.record()})
    result.pass_completed = True
    return result


def scan_settling(
    lister: DropLister,
    state: ScanState,
    *,
    max_pages: int,
    max_new: int,
    settle_seconds: float,
    quota_per_hour: int = 0,
    global_quota_per_hour: int = 0,
    memory: ScanMemory | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> ScanResult:
    """:func:`scan`, and where that completed a pass but saw local files still settling, one more scan
    ``RELIST_SECONDS`` later within the same tick: a finished copy is taken about a second after it is first
    seen, not a sensor interval later. At most two bounded scans per tick."""
    options = {"max_pages": max_pages, "settle_seconds": settle_seconds, "quota_per_hour": quota_per_hour,
               "global_quota_per_hour": global_quota_per_hour,
               "memory": DictScanMemory() if memory is None else memory}  # fmt: skip
    first = scan(lister, state, max_new=max_new, now=clock(), **options)
    if not first.settling or not first.pass_completed or len(first.new) >= max_new:
        return first
    sleep(RELIST_SECONDS)
    second = scan(lister, first.state, max_new=max_new - len(first.new), now=clock(), **options)
    second.new[:0] = first.new
    return second


def prefix_of(key: str) -> str:
    """The quota's unit: the top-level folder of an object key ('' for objects at the root)."""
    return key.split("/", 1)[0] if "/" in key else ""


def _recall(memory: ScanMemory, digests: Iterable[bytes]) -> dict[bytes, Entry]:
    """What the memory holds about a page's videos: one query."""
    keys = {digest.hex() for digest in digests}
    held = memory.recall(keys) if keys else {}
    return {bytes.fromhex(k): entry for k, v in held.items() if (entry := Entry.load(v)) is not None}


def _visit(
    obj: DropObject,
    key: bytes | None,
    result: ScanResult,
    known: Mapping[bytes, Entry],
    relisted: dict[str, str],
    *,
    max_new: int,
    settle_seconds: float,
    now: float,
    quotas: tuple[int, int],
) -> bool:
    """Handle one listed object (``key``: its digest, None for a name that is not a video's); False when the
    tick's budget of new versions is spent (obj not handled). A known object listed again is added to
    ``relisted`` (its new pass number, written with the page's)."""
    state = result.state
    result.listed += 1
    if key is None:
        result.ignored += 1
        return True
    version = obj.stat_token
    token = _digest(version, TOKEN_BYTES)
    taken = state.pending.get(key)
    if taken is not None and taken.token == token:  # taken earlier in this tick
        state.pending[key] = Entry(token, state.passes)
        return True
    entry = known.get(key)
    if taken is None and entry is not None and entry.token == token and entry.current(state.passes):
        if entry.seen < state.passes:
            relisted[key.hex()] = Entry(token, state.passes).dump()
        return True
    if obj.etag is None and now - obj.mtime < settle_seconds and not _settled(state, key, token, now):
        result.settling += 1  # a local file modified moments ago may still be growing
        return True
    if len(result.new) >= max_new:
        return False
    if _over_quota(obj, result, *quotas):
        return True  # left unknown: taken on a later pass, once the hour allows it
    state.young.pop(key, None)
    state.pending[key] = Entry(token, state.passes)
    state.taken_any = True
    result.new.append(NewVersion(obj, version))
    if any(quotas):
        state.taken.setdefault(_prefix_digest(obj.key), []).append(now)
        result.taken_last_hour += 1
    return True


def _settled(state: ScanState, key: bytes, token: bytes, now: float) -> bool:
    """Whether two listings at least RELIST_SECONDS apart showed this young local file unchanged; remembers
    this listing (unless YOUNG_CAP files already wait: then only its age lets it be taken)."""
    listed = state.young.get(key)
    if listed is not None and listed.token == token:
        state.young[key] = listed._replace(seen=state.passes)
        return now - listed.at >= RELIST_SECONDS
    if listed is not None or len(state.young) < YOUNG_CAP:
        state.young[key] = Young(token, now, state.passes)
    return False


def _prefix_digest(key: str) -> bytes:
    return _digest(prefix_of(key), KEY_BYTES)


def _over_quota(obj: DropObject, result: ScanResult, per_prefix: int, total: int) -> bool:
    """Whether taking obj now would exceed its prefix's or the whole drop zone's hourly quota (counted)."""
    if per_prefix and len(result.state.taken.get(_prefix_digest(obj.key), ())) >= per_prefix:
        result.over_quota += 1
        return True
    if (total and result.taken_last_hour >= total) or ((per_prefix or total) and result.taken_last_hour >= TAKEN_CAP):
        result.over_global_quota += 1
        return True
    return False


def _pack(layout: struct.Struct, rows: Iterable[tuple[Any, ...]]) -> str:
    return base64.b64encode(b"".join(layout.pack(*row) for row in rows)).decode()


def _unpack(layout: struct.Struct, text: str) -> Iterator[tuple[Any, ...]]:
    return layout.iter_unpack(base64.b64decode(text))


def _batches(values: Mapping[str, str], size: int) -> Iterator[dict[str, str]]:
    items = list(values.items())
    for start in range(0, len(items), size):
        yield dict(items[start : start + size])


def _read(cursor: str | None) -> tuple[ScanState | None, dict[str, str]]:
    """The cursor's state (None without a cursor, or one of an unknown version), and the memory entries a
    version-1 or -2 cursor held itself."""
    if not cursor:
        return None, {}
    data = json.loads(cursor)
    if data.get("v") == CURSOR_VERSION:
        taken: dict[bytes, list[float]] = {}
        for prefix, at in _unpack(_TAKEN, data["taken"]):
            taken.setdefault(prefix, []).append(float(at))
        return ScanState(
            after=data["after"],
            passes=int(data["passes"]),
            taken_any=bool(data["taken_any"]),
            taken=taken,
            young={k: Young(token, at, seen) for k, token, at, seen in _unpack(_YOUNG, data["young"])},
            pending={k: Entry(token, seen) for k, token, seen in _unpack(_PENDING, data["pending"])},
        ), {}
    if data.get("v") in (1, 2):
        return _read_v2(data)
    return None, {}


def _read_v2(data: dict[str, Any]) -> tuple[ScanState, dict[str, str]]:
    """A version-1 or -2 cursor: every known digest in the cursor, and the set seen during the current pass (the
    others were listed in the last completed one)."""
    passes = int(data["passes"])
    known_raw = zlib.decompress(base64.b64decode(data["known"]))
    seen_raw = zlib.decompress(base64.b64decode(data["seen"]))
    step = KEY_BYTES + TOKEN_BYTES * (2 if data["v"] == 1 else 1)
    seen = {seen_raw[i : i + KEY_BYTES] for i in range(0, len(seen_raw), KEY_BYTES)}
    moved = {}
    for i in range(0, len(known_raw), step):
        key, token = known_raw[i : i + KEY_BYTES], known_raw[i + KEY_BYTES : i + KEY_BYTES + TOKEN_BYTES]
        moved[key.hex()] = Entry(token, passes if key in seen else max(passes - 1, 0)).dump()
    taken: dict[bytes, list[float]] = {}
    for prefix, times in data.get("taken", {}).items():
        taken.setdefault(_digest(prefix, KEY_BYTES), []).extend(float(t) for t in times)
    young = {
        raw[:KEY_BYTES]: Young(raw[KEY_BYTES:], float(at), passes)
        for raw, at in ((bytes.fromhex(k), at) for k, at in data.get("young", {}).items())
    }
    state = ScanState(after=data["after"], passes=passes, taken_any=bool(moved), taken=taken, young=young)
    return state, moved
