"""Pose inference begun before its step, in the same process: a head start.

``bodyscript process`` runs every step in its own process, after about 3.5 s of one core spent importing
Dagster and the code location and opening the instance. A short clip's pose takes about as long, so the CLI
begins the video's pose ranges in the pose service the moment it has the video, and the ``landmarks`` step,
later in that same process, takes their results when they were made from exactly its own inputs (the source
version, probe, frame index, model, options, overlay style and ranges: ``identity``). A run the daemon launches
begins them as its ``pose`` step starts, while ``frames`` checks and copies the source. Anything else (another
identity, a failure, no head start at all) and the step runs its own ranges as always, so a head start can only
save time, never change an output. A short clip's ``frames`` takes the head start's probe once its ranges decoded
every frame (``decoded_whole``): the probe it would have checked itself, without decoding the clip again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bodyscript_pipeline.pose.ranges import FrameRange, RangeResult, VideoRanges
    from bodyscript_pipeline.video.io import FrameIndex, Probe

WAIT_S = 0.5  # between progress reports while the step waits for a head start's ranges


@dataclass
class HeadStart:
    """One video's pose begun ahead: its (unchecked) probe and its identity once the video is probed, then its
    ranges' results. ``source`` is the source object's URI and version."""

    source: tuple[str, str]
    probed: Future[tuple[Probe, FrameIndex]] = field(default_factory=Future)
    identity: Future[str] = field(default_factory=Future)
    results: Future[list[RangeResult]] = field(default_factory=Future)
    frames_done: int = 0
    frames: int = 0
    ranges_began: float | None = None  # time.perf_counter() when its ranges were sent to the service
    workdir: Path | None = None  # where its ranges' files are written, removed by ``end``
    taken: bool = False

    def report(self, done: int, total: int) -> None:
        """Progress of its ranges (``VideoRanges.run``'s): frames done so far, of ``total``."""
        self.frames_done, self.frames = done, total


_begun: list[HeadStart] = []
_lock = threading.Lock()


def identity(source: tuple[str, str], video: VideoRanges, ranges: list[FrameRange]) -> str:
    """What a video's pose results depend on, as a digest: the source object and version (not the local path
    it was read from), and everything else a range request carries."""
    from bodyscript_pipeline.pose.ranges import spare_cores  # not at the top: every CLI command imports this module

    request = video.request(ranges[0], video.video, spare_cores(ranges)) if ranges else {}
    inputs = {name: value for name, value in request.items() if name not in ("video", "out", "frame_range")}
    described = {"source": list(source), **inputs, "ranges": [asdict(r) for r in ranges]}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def begin(source: tuple[str, str], work: Callable[[HeadStart], None]) -> HeadStart:
    """Runs ``work`` in a background thread; it sets the head start's probe and identity, then its results."""
    head_start = HeadStart(source)
    with _lock:
        _begun.append(head_start)

    def run() -> None:
        try:
            work(head_start)
        except BaseException as exc:  # whatever went wrong, the step runs its own ranges
            for future in (head_start.probed, head_start.identity, head_start.results):
                if not future.done():
                    future.set_exception(exc)

    threading.Thread(target=run, name="pose-head-start", daemon=True).start()
    return head_start


def any_begun() -> bool:
    """Whether a head start waits to be taken in this process."""
    with _lock:
        return any(not head_start.taken for head_start in _begun)


def take(key: str, progress: Callable[[int, int], None]) -> list[RangeResult] | None:
    """The results of the head start of identity ``key``, waited for (reporting its progress); None where there
    is none, or it failed."""
    with _lock:
        begun = [head_start for head_start in _begun if not head_start.taken]
    for head_start in begun:
        if head_start.identity.exception() is not None or head_start.identity.result() != key:
            continue
        head_start.taken = True
        return _results(head_start, progress)
    return None


def _results(head_start: HeadStart, progress: Callable[[int, int], None]) -> list[RangeResult] | None:
    """A head start's results, waited for (reporting its progress); None where it failed."""
    while True:
        try:
            return head_start.results.result(timeout=WAIT_S)
        except TimeoutError:
            progress(min(head_start.frames_done, head_start.frames), head_start.frames)
        except Exception:
            return None


def decoded_whole(
    source: tuple[str, str], most_frames: int, progress: Callable[[int, int], None]
) -> tuple[Probe, FrameIndex] | None:
    """The probe and frame index of a head start of ``source`` whose ranges decoded every frame of its index,
    waited for (reporting its progress): what the checked probe gives a video that decodes whole (the same,
    checked or not), known without decoding it once more. None where no head start has that source, its video has
    more than ``most_frames`` frames, or it failed. The head start stays there for its ``landmarks`` step to
    take."""
    with _lock:
        begun = [head_start for head_start in _begun if not head_start.taken and head_start.source == source]
    for head_start in begun:
        if head_start.probed.exception() is not None:
            continue
        probe, index = head_start.probed.result()
        if len(index) > most_frames:
            return None
        if _results(head_start, progress) is not None:
            return probe, index
    return None


def taken_ranges_began() -> float | None:
    """When the ranges of this process's taken head start began (``time.perf_counter()``): a step that took them
    counts its pose seconds from then, not from its own start."""
    with _lock:
        began = [h.ranges_began for h in _begun if h.taken and h.ranges_began is not None]
    return min(began, default=None)


def end() -> None:
    """Forgets every head start of this process and removes their files (a taken one's were read and removed by
    its step; only the folder is left)."""
    with _lock:
        begun = list(_begun)
        _begun.clear()
    for head_start in begun:
        if head_start.workdir is not None:
            shutil.rmtree(head_start.workdir, ignore_errors=True)
