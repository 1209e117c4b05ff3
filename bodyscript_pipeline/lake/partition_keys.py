"""Partition key rules: one readable, Dagster-safe, collision-free key per source object, and the one rule every
key must pass before it becomes a lake path.

``incoming/Clip 01.MP4`` becomes ``incoming-clip-01-mp4-<16 hex of sha256(identity)>``: readable, limited to
``[a-z0-9-]``, at most ``MAX_KEY_LENGTH`` characters, and unique when two folders hold the same file name (64
bits of hash). The identity defaults to the object key itself; callers that show a shorter readable name (the
CLI shows the file name) pass the full URI.

Keys also arrive from elsewhere (a partition added in the UI or through GraphQL, ``bodyscript process
--partition``), so :func:`check_partition_key` is applied where a key becomes a path (``VideoLake``): a key
of ``[a-z0-9-]`` without a leading or trailing ``-`` cannot name a parent folder or leave its own.
"""

from __future__ import annotations

import hashlib
import re

from bodyscript_pipeline.errors import BodyscriptError

MAX_KEY_LENGTH = 128
HASH_HEX = 16
MAX_READABLE = 80  # + "-" + HASH_HEX stays well under MAX_KEY_LENGTH
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
_VALID = re.compile(rf"[a-z0-9](?:[a-z0-9-]{{0,{MAX_KEY_LENGTH - 2}}}[a-z0-9])?")


def partition_key_for(object_key: str, identity: str | None = None) -> str:
    digest = hashlib.sha256((identity or object_key).encode("utf-8")).hexdigest()[:HASH_HEX]
    readable = _NOT_ALLOWED.sub("-", object_key.lower()).strip("-")[:MAX_READABLE].strip("-")
    return f"{readable}-{digest}" if readable else f"video-{digest}"


def is_valid_partition_key(key: str) -> bool:
    return _VALID.fullmatch(key) is not None


def check_partition_key(key: str) -> str:
    """The key itself, or a one-line ``BodyscriptError`` if it could not be a lake folder name."""
    if not is_valid_partition_key(key):
        raise BodyscriptError(f"partition key {key!r} is not valid: use 1-{MAX_KEY_LENGTH} of a-z, 0-9 and '-'")
    return key
