"""Finding the warm servers a test started (bodyscript_pipeline/fork_server.py), by their command lines."""

from __future__ import annotations

from pathlib import Path


def server_pids(*marks: str) -> list[int]:
    """Processes whose command line holds every mark, without the children they forked (which share it)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            stat = (entry / "stat").read_text() if cmdline else ""
        except OSError:
            continue
        if cmdline and all(mark.encode() in cmdline for mark in marks):
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return sorted(pid for pid, parent in parents.items() if parent not in parents)
