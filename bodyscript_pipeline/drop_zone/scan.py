"""Finding new object versions in the drop zone with bounded work per tick and a compact cursor.

The scan walks the drop zone in key order a few pages at a time, resuming after the last key it handled.
An S3 object is complete once listed. A local file is taken once it is ``settle_seconds`` old, or once two
listings at least ``RELIST_SECONDS`` apart showed it with the same size and mtime (a copy still running
changes both), so a finished copy is picked up by the next tick rather than after a fixed wait.
An object's version is its listing's facts (ETag, or size and mtime), never its bytes: a tick costs the
same whatever the files weigh. The scan remembers a digest of each object's version; an object whose
version is unchanged costs nothing. At the end of each full pass, objects that were not seen again
(deleted) are forgotten.

Hourly quotas (per top-level folder, and for the whole drop zone) leave the objects over them unknown, so
a later pass takes them once the hour allows it.

The state is small enough to live in a Dagster sensor cursor: 10 bytes per object before compression.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from bodyscript_pipeline.drop_zone.listing import DropLister, DropObject
from bodyscript_pipeline.video.names import is_video_name

KEY_BYTES = 6
TOKEN_BYTES = 4
RELIST_SECONDS = 1.0
# 2: one digest per object (its version is its listing's facts). A version-1 cursor, which also kept a
# digest of the local file's SHA-256, is read without that digest.
CURSOR_VERSION = 2
HOUR = 3600.0


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


@dataclass
class ScanState:
    after: str = ""
    passes: int = 0
    known: dict[bytes, bytes] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)
    # Per top-level prefix, when its new versions of the last hour were taken (kept while a quota is on).
    taken: dict[str, list[float]] = field(default_factory=dict)
    # Local files too young to take: their listing facts and when they were listed (few, and short-lived).
    young: dict[bytes, tuple[bytes, float]] = field(default_factory=dict)

    def encode(self) -> str:
        known = b"".join(k + token for k, token in sorted(self.known.items()))
        seen = b"".join(sorted(self.seen))
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "after": self.after,
                "passes": self.passes,
                "known": base64.b64encode(zlib.compress(known)).decode(),
                "seen": base64.b64encode(zlib.compress(seen)).decode(),
                "taken": self.taken,
                "young": {(k + token).hex(): at for k, (token, at) in self.young.items()},
            }
        )

    @classmethod
    def decode(cls, cursor: str | None) -> ScanState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        if data.get("v") not in (1, CURSOR_VERSION):
            return cls()
        known_raw = zlib.decompress(base64.b64decode(data["known"]))
        seen_raw = zlib.decompress(base64.b64decode(data["seen"]))
        step = KEY_BYTES + TOKEN_BYTES * (2 if data["v"] == 1 else 1)
        known = {
            known_raw[i : i + KEY_BYTES]: known_raw[i + KEY_BYTES : i + KEY_BYTES + TOKEN_BYTES]
            for i in range(0, len(known_raw), step)
        }
        seen = {seen_raw[i : i + KEY_BYTES] for i in range(0, len(seen_raw), KEY_BYTES)}
        taken = {prefix: [float(t) for t in times] for prefix, times in data.get("taken", {}).items()}
        young = {
            raw[:KEY_BYTES]: (raw[KEY_BYTES:], float(at))
            for raw, at in ((bytes.fromhex(k), at) for k, at in data.get("young", {}).items())
        }
        return cls(after=data["after"], passes=int(data["passes"]), known=known, seen=seen, taken=taken, young=young)


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
) -> ScanResult:
    """One bounded step of the scan: at most ``max_pages`` pages listed and ``max_new`` versions found."""
    result = ScanResult(new=[], state=state)
    state.taken = {p: [t for t in times if now - t < HOUR] for p, times in state.taken.items()}
    state.taken = {p: times for p, times in state.taken.items() if times}
    result.taken_last_hour = sum(len(times) for times in state.taken.values())
    quotas = (quota_per_hour, global_quota_per_hour)
    for page in lister.pages(state.after):
        result.pages += 1
        result.skipped += page.skipped
        for obj in page.objects:
            if not _visit(obj, result, max_new=max_new, settle_seconds=settle_seconds, now=now, quotas=quotas):
                return result
            state.after = obj.key
        if page.last:
            break
        if result.pages >= max_pages:
            return result
    # The listing ran out: a full pass is done. Forget objects that were not seen again.
    state.known = {k: v for k, v in state.known.items() if k in state.seen}
    state.young = {k: v for k, v in state.young.items() if k in state.seen}
    state.seen = set()
    state.after = ""
    state.passes += 1
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
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> ScanResult:
    """:func:`scan`, and where that completed a pass but saw local files still settling, one more scan
    ``RELIST_SECONDS`` later within the same tick: a finished copy is taken about a second after it is first
    seen, not a sensor interval later. At most two bounded scans per tick."""
    options = {"max_pages": max_pages, "settle_seconds": settle_seconds, "quota_per_hour": quota_per_hour,
               "global_quota_per_hour": global_quota_per_hour}  # fmt: skip
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


def _visit(
    obj: DropObject,
    result: ScanResult,
    *,
    max_new: int,
    settle_seconds: float,
    now: float,
    quotas: tuple[int, int],
) -> bool:
    """Handle one listed object; False when the tick's budget of new versions is spent (obj not handled)."""
    state = result.state
    result.listed += 1
    if not is_video_name(obj.key):
        result.ignored += 1
        return True
    key = _digest(obj.key, KEY_BYTES)
    version = obj.stat_token
    token = _digest(version, TOKEN_BYTES)
    state.seen.add(key)
    if state.known.get(key) == token:
        return True
    if obj.etag is None and now - obj.mtime < settle_seconds:
        listed = state.young.get(key)
        if listed is None or listed[0] != token or now - listed[1] < RELIST_SECONDS:
            if listed is None or listed[0] != token:
                state.young[key] = (token, now)
            result.settling += 1  # a local file modified moments ago may still be growing
            return True
    if len(result.new) >= max_new:
        return False
    if _over_quota(obj, result, *quotas):
        return True  # left unknown: taken on a later pass, once the hour allows it
    state.young.pop(key, None)
    state.known[key] = token
    result.new.append(NewVersion(obj, version))
    if any(quotas):
        state.taken.setdefault(prefix_of(obj.key), []).append(now)
        result.taken_last_hour += 1
    return True


def _over_quota(obj: DropObject, result: ScanResult, per_prefix: int, total: int) -> bool:
    """Whether taking obj now would exceed its prefix's or the whole drop zone's hourly quota (counted)."""
    if per_prefix and len(result.state.taken.get(prefix_of(obj.key), ())) >= per_prefix:
        result.over_quota += 1
        return True
    if total and result.taken_last_hour >= total:
        result.over_global_quota += 1
        return True
    return False
