"""Partition keys are readable, Dagster-safe, stable and unique per object key, and checked where they become
lake paths: a key from anywhere (the UI, GraphQL, ``--partition``) never leads outside the lake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bodyscript_pipeline import cli
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.partition_keys import MAX_KEY_LENGTH, partition_key_for
from bodyscript_pipeline.lake.paths import TABLES, VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames

SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
HOSTILE_KEYS = [
    "x/../../../escaped",
    "../escaped",
    "..",
    "",
    "Upper",
    "-leading",
    "trailing-",
    "with_underscore",
    "with space",
    "vidéo",
    "a\nb",
    "a" * (MAX_KEY_LENGTH + 1),
]


def test_key_is_readable_and_stable() -> None:
    key = partition_key_for("incoming/Clip 01.MP4")
    assert key.startswith("incoming-clip-01-mp4-")
    assert key == partition_key_for("incoming/Clip 01.MP4")
    assert SAFE.match(key)


def test_key_carries_64_bits_of_hash() -> None:
    key = partition_key_for("incoming/Clip 01.MP4")
    readable, _, digest = key.rpartition("-")
    assert readable == "incoming-clip-01-mp4"
    assert re.fullmatch(r"[0-9a-f]{16}", digest), key


def test_same_file_name_in_two_folders_gives_two_keys() -> None:
    assert partition_key_for("a/clip.mp4") != partition_key_for("b/clip.mp4")


def test_hostile_names_are_sanitized_and_bounded() -> None:
    for name in ("../../etc/passwd.mp4", "vidéo été 😀.mp4", "x" * 500 + ".mp4", "....mp4", "🎥.mov", " "):
        key = partition_key_for(name)
        assert SAFE.match(key), key
        assert len(key) <= MAX_KEY_LENGTH
        assert VideoLake("file:///lake", key).partition == key, "every key made here is a valid lake key"
    assert partition_key_for("🎥") != partition_key_for("🎬"), "names with no readable part still differ"


def test_identity_decides_uniqueness() -> None:
    one = partition_key_for("clip.mp4", identity="file:///a/clip.mp4")
    two = partition_key_for("clip.mp4", identity="file:///b/clip.mp4")
    assert one != two and one.startswith("clip-mp4-") and two.startswith("clip-mp4-")


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_video_lake_refuses_invalid_keys(key: str) -> None:
    with pytest.raises(BodyscriptError) as refused:
        VideoLake("file:///lake", key)
    message = str(refused.value)
    assert message == f"partition key {key!r} is not valid: use 1-{MAX_KEY_LENGTH} of a-z, 0-9 and '-'"
    assert "\n" not in message


@pytest.mark.parametrize("key", ["a", "0", "a-b", "clip-mp4-0123456789abcdef", "a" * MAX_KEY_LENGTH])
def test_video_lake_accepts_valid_keys(key: str) -> None:
    assert VideoLake("file:///lake", key).folder("frames") == f"file:///lake/frames/video={key}"


def test_every_location_stays_under_a_file_lake(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    for key in ("a", partition_key_for("../../etc/passwd.mp4"), "z" * MAX_KEY_LENGTH):
        lake = VideoLake(f"file://{root}", key)
        locations = [
            *(lake.folder(table) for table in (*TABLES, "sources", "overlays", "exports")),
            *(lake.table_part(table) for table in TABLES),
            lake.source_record,
            lake.frame_index,
            lake.probe,
            lake.source_copy(".mp4"),
            lake.source_copy(""),
            lake.overlay_segment(0, 30),
            lake.overlay_segments,
            lake.pose_range(3, ".parquet"),
            lake.pose_ranges,
            lake.overlay,
            lake.thumbnail,
            lake.export_file("person-0.trc"),
        ]
        for location in locations:
            resolved = Path(location.removeprefix("file://")).resolve()
            assert resolved.is_relative_to(root.resolve() / "sources") or any(
                resolved.is_relative_to(root.resolve() / folder / f"video={key}")
                for folder in (*TABLES, "sources", "overlays", "exports")
            ), location


def test_hostile_key_writes_nothing(bodyscript_home: Settings, tmp_path: Path) -> None:
    """A dynamic partition added through the UI or GraphQL as a path: the first lake write refuses it."""
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"not read")
    key = "x/../../../escaped"
    with pytest.raises(BodyscriptError, match="is not valid"):
        register_source(bodyscript_home.lake_uri, key, f"file://{source}")
    with pytest.raises(BodyscriptError, match="is not valid"):
        extract_frames(bodyscript_home.lake_uri, key)
    assert not list(tmp_path.rglob("*escaped*"))


def test_cli_partition_option_refuses_invalid_keys(
    bodyscript_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"not read")
    assert cli.main(["process", str(source), "--partition", "x/../../../escaped"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "bodyscript: error: partition key 'x/../../../escaped' is not valid: use 1-128 of a-z, 0-9 and '-'\n"
    assert not list(tmp_path.rglob("*escaped*"))
