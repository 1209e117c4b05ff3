"""Finding new object versions in the drop zone with bounded work per tick and a compact cursor.

The scan walks the drop zone in key order a few pages at a time, resuming after the last key it handled.
An S3 object is complete once listed. A local file is taken once it is ``settle_seconds`` old, or once two
listings at least ``RELIST_SECONDS`` apart showed it with the same size and mtime (a copy still running
changes both), so a finished copy is picked up by the next tick rather than after a fixed wait.
It remembers, per object, a digest of its cheap listing facts (ETag, or size and mtime) and of its content
version (ETag, or SHA-256 for local files). An object whose listing facts are unchanged costs nothing; one
whose facts changed but whose content did not (a re-copy of the same bytes) is not a new version. At the
end of each full pass, objects that were not seen again (deleted) are forgotten.

The state is small enough to live in a Dagster sensor cursor: 16 bytes per object before compression.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass, field

from bodyscript_pipeline.drop_zone import DropLister, DropObject
from bodyscript_pipeline.video_names import is_video_name

KEY_BYTES = 6
TOKEN_BYTES = 4
RELIST_SECONDS = 1.0
CURSOR_VERSION = 1
HOUR = 3600.0


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


@dataclass
class ScanState:
    after: str = ""
    passes: int = 0
    known: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)
    # Per top-level prefix, when its recent new versions were taken (for BODYSCRIPT_QUOTA_PER_HOUR).
    taken: dict[str, list[float]] = field(default_factory=dict)
    # Local files too young to take: their listing facts and when they were listed (few, and short-lived).
    young: dict[bytes, tuple[bytes, float]] = field(default_factory=dict)

    def encode(self) -> str:
        known = b"".join(k + s + v for k, (s, v) in sorted(self.known.items()))
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
        if data.get("v") != CURSOR_VERSION:
            return cls()
        known_raw = zlib.decompress(base64.b64decode(data["known"]))
        seen_raw = zlib.decompress(base64.b64decode(data["seen"]))
        step = KEY_BYTES + 2 * TOKEN_BYTES
        known = {
            known_raw[i : i + KEY_BYTES]: (
                known_raw[i + KEY_BYTES : i + KEY_BYTES + TOKEN_BYTES],
                known_raw[i + KEY_BYTES + TOKEN_BYTES : i + step],
            )
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
    settling: int = 0
    pages: int = 0
    pass_completed: bool = False
    over_quota: int = 0

    def describe(self) -> str:
        where = "completed a pass" if self.pass_completed else f"paused after {self.state.after!r}"
        return (
            f"{len(self.new)} new version(s); listed {self.listed} object(s) in {self.pages} page(s), "
            f"ignored {self.ignored} non-video or partial name(s), {self.settling} still being written, "
            f"{self.over_quota} over their prefix's hourly quota; {where}"
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
) -> ScanResult:
    """One bounded step of the scan: at most ``max_pages`` pages listed and ``max_new`` versions found."""
    result = ScanResult(new=[], state=state)
    state.taken = {p: [t for t in times if now - t < HOUR] for p, times in state.taken.items()}
    state.taken = {p: times for p, times in state.taken.items() if times}
    for page, last in lister.pages(state.after):
        result.pages += 1
        for obj in page:
            visited = _visit(
                obj, result, lister, max_new=max_new, settle_seconds=settle_seconds, now=now, quota=quota_per_hour
            )
            if not visited:
                return result
            state.after = obj.key
        if last:
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


def prefix_of(key: str) -> str:
    """The quota's unit: the top-level folder of an object key ('' for objects at the root)."""
    return key.split("/", 1)[0] if "/" in key else ""


def _visit(
    obj: DropObject,
    result: ScanResult,
    lister: DropLister,
    *,
    max_new: int,
    settle_seconds: float,
    now: float,
    quota: int,
) -> bool:
    """Handle one listed object; False when the tick's budget of new versions is spent (obj not handled)."""
    state = result.state
    result.listed += 1
    if not is_video_name(obj.key):
        result.ignored += 1
        return True
    key = _digest(obj.key, KEY_BYTES)
    token = _digest(obj.stat_token, TOKEN_BYTES)
    state.seen.add(key)
    known = state.known.get(key)
    if known is not None and known[0] == token:
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
    taken = state.taken.setdefault(prefix_of(obj.key), []) if quota else None
    if taken is not None and len(taken) >= quota:
        result.over_quota += 1  # left unknown: taken on a later pass, once the prefix's hour allows it
        return True
    state.young.pop(key, None)
    version = lister.content_version(obj)
    digest = _digest(version, TOKEN_BYTES)
    state.known[key] = (token, digest)
    if known is None or known[1] != digest:
        result.new.append(NewVersion(obj, version))
        if taken is not None:
            taken.append(now)
    return True
