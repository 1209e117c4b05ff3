"""Partition key rules: one readable, Dagster-safe, collision-free key per source object.

``incoming/Clip 01.MP4`` becomes ``incoming-clip-01-mp4-<8 hex of sha1(identity)>``: readable, limited to
``[a-z0-9-]``, and unique when two folders hold the same file name. The identity defaults to the object
key itself; callers that show a shorter readable name (the CLI shows the file name) pass the full URI.
"""

from __future__ import annotations

import hashlib
import re

MAX_READABLE = 80
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def partition_key_for(object_key: str, identity: str | None = None) -> str:
    digest = hashlib.sha1((identity or object_key).encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    readable = _NOT_ALLOWED.sub("-", object_key.lower()).strip("-")[:MAX_READABLE].strip("-")
    return f"{readable}-{digest}" if readable else f"video-{digest}"
