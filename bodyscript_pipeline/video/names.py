"""Which object names are videos to process, and which are files still being written."""

from __future__ import annotations

from pathlib import PurePosixPath

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".3gp"})
# Names that uploaders, browsers and editors use while a file is incomplete.
PARTIAL_SUFFIXES = frozenset({".tmp", ".part", ".partial", ".crdownload", ".download", ".filepart", ".swp"})


def is_partial_name(key: str) -> bool:
    name = PurePosixPath(key).name
    return (
        name.startswith((".", "~"))
        or name.endswith("~")
        or any(suffix in PARTIAL_SUFFIXES for suffix in PurePosixPath(name.lower()).suffixes)
    )


def is_video_name(key: str) -> bool:
    return not is_partial_name(key) and PurePosixPath(key.lower()).suffix in VIDEO_SUFFIXES
