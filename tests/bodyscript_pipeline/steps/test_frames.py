"""The source is fetched pinned and bounded: the bytes of the registered version and no other, never more than
the size limit, and only from a regular file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import SourceChanged, VideoError
from bodyscript_pipeline.lake.sources import object_version, register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.frames import extract_frames
from bodyscript_pipeline.video.limits import Limits
from tests.support.s3_server import S3Server
from tests.support.video_factory import pattern_video

BUCKET = "drop"
LIMIT = 1 << 20


@pytest.fixture
def bucket(s3: S3Server) -> S3Server:
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


def put(s3: S3Server, key: str, body: bytes) -> str:
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


# --- S3: one GetObject with If-Match ---------------------------------------------------------------------------


def test_s3_fetch_copies_the_pinned_version(bucket: S3Server, tmp_path: Path) -> None:
    uri = put(bucket, "clip.mp4", b"version one")
    version = object_version(uri)
    assert version.startswith("etag:")

    storage.fetch_source(uri, version, tmp_path / "copy.mp4", LIMIT)

    assert (tmp_path / "copy.mp4").read_bytes() == b"version one"


def test_s3_object_replaced_after_its_etag_was_read_is_refused(bucket: S3Server, tmp_path: Path) -> None:
    uri = put(bucket, "clip.mp4", b"version one")
    version = object_version(uri)
    put(bucket, "clip.mp4", b"version two, and longer")
    found = object_version(uri)

    with pytest.raises(SourceChanged) as changed:
        storage.fetch_source(uri, version, tmp_path / "copy.mp4", LIMIT)

    assert str(changed.value) == (
        f"clip.mp4: changed since this run was launched (expected {version}, found {found}); "
        "the new version is processed by its own run"
    )
    assert not (tmp_path / "copy.mp4").exists()


def test_s3_object_over_the_limit_is_refused_before_reading(bucket: S3Server, tmp_path: Path) -> None:
    uri = put(bucket, "big.mp4", b"x" * 5000)

    with pytest.raises(VideoError, match=r"^big\.mp4: 0\.0 GB is over the 0\.0 GB limit$"):
        storage.fetch_source(uri, object_version(uri), tmp_path / "copy.mp4", 4999)
    assert not (tmp_path / "copy.mp4").exists()
    storage.fetch_source(uri, object_version(uri), tmp_path / "copy.mp4", 5000)
    assert (tmp_path / "copy.mp4").stat().st_size == 5000


def test_s3_missing_object(bucket: S3Server, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        storage.fetch_source(f"s3://{BUCKET}/gone.mp4", "etag:0123", tmp_path / "copy.mp4", LIMIT)


# --- local files: O_NOFOLLOW | O_NONBLOCK, fstat facts before and after -----------------------------------------


def test_local_fetch_copies_the_pinned_version(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"version one")

    storage.fetch_source(f"file://{source}", object_version(f"file://{source}"), tmp_path / "copy.mp4", LIMIT)

    assert (tmp_path / "copy.mp4").read_bytes() == b"version one"


@pytest.mark.parametrize("change", ["grown", "same size, new mtime"])
def test_local_file_changed_after_registration_is_refused(tmp_path: Path, change: str) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"version one")
    version = object_version(f"file://{source}")
    if change == "grown":
        source.write_bytes(b"version one, grown")
    else:
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000))
    found = object_version(f"file://{source}")
    assert found != version

    with pytest.raises(SourceChanged) as changed:
        storage.fetch_source(f"file://{source}", version, tmp_path / "copy.mp4", LIMIT)

    message = str(changed.value)
    assert message == (
        f"clip.mp4: changed since this run was launched (expected {version}, found {found}); "
        "the new version is processed by its own run"
    )
    assert not (tmp_path / "copy.mp4").exists()


def test_local_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "big.mp4"
    source.write_bytes(b"x" * 5000)
    with pytest.raises(VideoError, match="GB limit"):
        storage.fetch_source(f"file://{source}", object_version(f"file://{source}"), tmp_path / "copy.mp4", 4999)
    assert not (tmp_path / "copy.mp4").exists()


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match=r"^clip\.mp4: not a regular file$"):
        storage.fetch_source(f"file://{fifo}", "sha256:0123", tmp_path / "copy.mp4", LIMIT)


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target.mp4"
    target.write_bytes(b"bytes")
    link = tmp_path / "clip.mp4"
    link.symlink_to(target)
    with pytest.raises(VideoError, match=r"^clip\.mp4: not a regular file"):
        storage.fetch_source(f"file://{link}", object_version(f"file://{link}"), tmp_path / "copy.mp4", LIMIT)


def test_other_version_formats_are_fetched_bounded(tmp_path: Path) -> None:
    """Versions that name no size or ETag (the drop zone's ``sha256:``) add no check of their own."""
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"bytes of the clip")
    storage.fetch_source(f"file://{source}", "sha256:" + "0" * 64, tmp_path / "copy.mp4", LIMIT)
    assert (tmp_path / "copy.mp4").read_bytes() == b"bytes of the clip"
    with pytest.raises(VideoError, match="GB limit"):
        storage.fetch_source(f"file://{source}", "sha256:" + "0" * 64, tmp_path / "again.mp4", 16)


# --- extract_frames reads the pinned version ----------------------------------------------------------------------


def test_extract_frames_refuses_a_source_changed_since_registration(bodyscript_home: Settings, tmp_path: Path) -> None:
    video = pattern_video(tmp_path / "clip.mp4", count=12)
    record = register_source(bodyscript_home.lake_uri, "clip", f"file://{video}")
    pattern_video(tmp_path / "clip.mp4", count=20)

    with pytest.raises(SourceChanged, match=r"^clip\.mp4: changed since this run was launched \(expected size:"):
        extract_frames(bodyscript_home.lake_uri, "clip")
    with pytest.raises(SourceChanged):
        extract_frames(bodyscript_home.lake_uri, "clip", None, record.version)

    current = object_version(f"file://{video}")
    result = extract_frames(bodyscript_home.lake_uri, "clip", None, current)
    assert (result.source_version, result.probe.frame_count) == (current, 20)
    assert storage.read_bytes(result.video_uri) == video.read_bytes()


def test_extract_frames_on_s3_pins_the_etag(
    bodyscript_home: Settings, bucket: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = pattern_video(tmp_path / "clip.mp4", count=12)
    uri = put(bucket, "clip.mp4", video.read_bytes())
    record = register_source(bodyscript_home.lake_uri, "clip", uri)

    result = extract_frames(bodyscript_home.lake_uri, "clip")
    assert (result.source_version, result.probe.frame_count) == (record.version, 12)
    assert storage.read_bytes(result.video_uri) == video.read_bytes()

    put(bucket, "clip.mp4", pattern_video(tmp_path / "longer.mp4", count=20).read_bytes())
    with pytest.raises(SourceChanged):
        extract_frames(bodyscript_home.lake_uri, "clip")
    with pytest.raises(VideoError, match="GB limit"):
        extract_frames(bodyscript_home.lake_uri, "clip", Limits(max_bytes=100), object_version(uri))
