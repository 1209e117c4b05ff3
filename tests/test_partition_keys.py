"""Partition keys are readable, Dagster-safe, stable and unique per object key."""

from __future__ import annotations

import re

from bodyscript_pipeline.partition_keys import MAX_READABLE, partition_key_for

SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_key_is_readable_and_stable() -> None:
    key = partition_key_for("incoming/Clip 01.MP4")
    assert key.startswith("incoming-clip-01-mp4-")
    assert key == partition_key_for("incoming/Clip 01.MP4")
    assert SAFE.match(key)


def test_same_file_name_in_two_folders_gives_two_keys() -> None:
    assert partition_key_for("a/clip.mp4") != partition_key_for("b/clip.mp4")


def test_hostile_names_are_sanitized_and_bounded() -> None:
    for name in ("../../etc/passwd.mp4", "vidéo été 😀.mp4", "x" * 500 + ".mp4", "....mp4", "🎥.mov", " "):
        key = partition_key_for(name)
        assert SAFE.match(key), key
        assert len(key) <= MAX_READABLE + 9
    assert partition_key_for("🎥") != partition_key_for("🎬"), "names with no readable part still differ"


def test_identity_decides_uniqueness() -> None:
    one = partition_key_for("clip.mp4", identity="file:///a/clip.mp4")
    two = partition_key_for("clip.mp4", identity="file:///b/clip.mp4")
    assert one != two and one.startswith("clip-mp4-") and two.startswith("clip-mp4-")
