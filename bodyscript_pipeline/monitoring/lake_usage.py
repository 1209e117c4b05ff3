"""Bytes stored in the lake, per top-level folder: its tables, overlays, exports, sources and archive."""

from __future__ import annotations

from bodyscript_pipeline import storage


def bytes_per_table(lake_uri: str) -> dict[str, int]:
    """Walks every object of the lake once (a listing, no reads): the caller bounds how often. An empty dict
    while the lake does not exist yet."""
    fs, root = storage.filesystem(lake_uri)
    if not fs.exists(root):
        return {}
    usage: dict[str, int] = {}
    for entry in fs.ls(root, detail=True):
        if entry["type"] != "directory":
            continue
        table = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        files = fs.find(entry["name"], detail=True).values()
        usage[table] = sum(int(info.get("size") or 0) for info in files)
    return usage
