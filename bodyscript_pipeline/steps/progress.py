"""How a long step reports progress: frames done of the total."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
# Every per-video output folder, each written from one source version.


def no_progress(done: int, total: int) -> None:
    return None
