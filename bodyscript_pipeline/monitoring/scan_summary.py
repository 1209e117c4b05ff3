"""The drop-zone scan's counts, read back from the one line the sensor writes per tick.

The drop-zone sensor leaves ``ScanResult.describe()`` as its tick's skip reason (no run requested) or in its
tick's log (runs requested); that text is the only place the counts are stored. Each count is read on its own,
so a reworded or reordered summary loses only the counts whose words changed
(tests/resources/test_metrics_exporter.py reads back a real ``describe()`` to catch that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COUNTS = {
    "new": r"(\d+) new version",
    "listed": r"listed (\d+) object",
    "settling": r"(\d+) still being written",
    "over_prefix_quota": r"(\d+) over their prefix's hourly quota",
    "over_global_quota": r"(\d+) over the global hourly quota",
}


@dataclass(frozen=True)
class ScanCounts:
    new: int = 0
    listed: int = 0
    settling: int = 0
    over_prefix_quota: int = 0
    over_global_quota: int = 0

    @property
    def backlog(self) -> dict[str, int]:
        """Listed videos the tick left for a later one, by why: still being written, or over a quota."""
        return {
            "settling": self.settling,
            "prefix_quota": self.over_prefix_quota,
            "global_quota": self.over_global_quota,
        }


def parse_scan_summary(text: str) -> ScanCounts | None:
    """The counts of a scan summary; None for any other text (another skip reason, an unrelated log line)."""
    found = {name: re.search(pattern, text) for name, pattern in _COUNTS.items()}
    if found["new"] is None or found["listed"] is None:
        return None
    return ScanCounts(**{name: int(match.group(1)) for name, match in found.items() if match is not None})
