"""Where the drop-zone scan keeps what it knows about each object: a key-value memory outside the cursor.

The scan asks it about one listed page at a time (one ``recall``) and writes at most one batch per page (one
``remember``), so its cost follows the pages a tick lists, never the number of objects it knows. The sensor's
memory lives in the Dagster instance's key-value store (``sensors/drop_memory.py``); :class:`DictScanMemory`
keeps it in a dict, for one-off scans and tests.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol


class ScanMemory(Protocol):
    def recall(self, keys: Collection[str]) -> dict[str, str]:
        """The values held for those of ``keys`` that have one."""
        ...

    def remember(self, entries: Mapping[str, str]) -> None:
        """Hold each value under its key, replacing any value held before."""
        ...


class DictScanMemory:
    """A :class:`ScanMemory` in a dict, gone with the process."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        return {key: self.values[key] for key in keys if key in self.values}

    def remember(self, entries: Mapping[str, str]) -> None:
        self.values.update(entries)
