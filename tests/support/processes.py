"""Finding the processes a test started (warm servers of bodyscript_pipeline/fork_server.py, their children,
spawned workers) by their parents and command lines."""

from __future__ import annotations

from pathlib import Path


def process_table() -> dict[int, tuple[int, bytes]]:
    """Every process now: pid -> (parent pid, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


def server_pids(*marks: str) -> list[int]:
    """Processes whose command line holds every mark, without the children they forked (which share it)."""
    parents = {
        pid: parent
        for pid, (parent, cmdline) in process_table().items()
        if cmdline and all(m.encode() in cmdline for m in marks)
    }
    return sorted(pid for pid, parent in parents.items() if parent not in parents)


def children_of(parents: set[int], mark: bytes = b"") -> list[int]:
    """Processes whose parent is one of ``parents`` (and whose command line holds ``mark``)."""
    return sorted(pid for pid, (parent, cmdline) in process_table().items() if parent in parents and mark in cmdline)
