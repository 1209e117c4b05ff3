"""storage.glob: the lake's wildcard lookups find the same paths on the S3 test server as fsspec's own glob, in one
recursive listing there, and as on a local lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bodyscript_pipeline import storage
from tests.support.s3_server import S3Server

FILES = [
    "videos/video=a/part-0.parquet",
    "videos/video=b/part-0.parquet",
    "videos/video=b/part-0.parquet.tmp",
    "videos/other/part-0.parquet",
    "landmarks/video=a/part-0.parquet",
    "landmarks/video=a/overlay-segments/part-0.parquet",  # deeper: never a match of video=*/part-0.parquet
    "lineage/video=a/landmarks.parquet",
    "lineage/video=a/videos.parquet",
    "lineage/video=ab/frames.parquet",
    "fresh/video=b/fresh.json",
    "fresh/video=c/fresh.json",
    "fresh/video=c/notes.txt",
]
PATTERNS = {
    "videos/video=*/part-0.parquet": ["videos/video=a/part-0.parquet", "videos/video=b/part-0.parquet"],
    "landmarks/video=*/part-0.parquet": ["landmarks/video=a/part-0.parquet"],
    "lineage/video=*/*.parquet": [
        "lineage/video=a/landmarks.parquet",
        "lineage/video=a/videos.parquet",
        "lineage/video=ab/frames.parquet",
    ],
    "lineage/video=a*/f*.parquet": ["lineage/video=ab/frames.parquet"],
    "fresh/video=*/fresh.json": ["fresh/video=b/fresh.json", "fresh/video=c/fresh.json"],
    "fresh/video=?/fresh.json": ["fresh/video=b/fresh.json", "fresh/video=c/fresh.json"],
    "exports/video=*/part-0.parquet": [],
    "videos/video=a/part-0.parquet": ["videos/video=a/part-0.parquet"],  # no wildcard
}


def _lake(root: str) -> str:
    for name in FILES:
        storage.write_bytes(storage.join(root, name), b"x")
    return root


def _found(root: str, pattern: str) -> list[str]:
    _, base = storage.filesystem(root)
    return sorted(path.removeprefix(base.rstrip("/") + "/") for path in storage.glob(storage.join(root, pattern)))


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_glob_on_s3_matches_fsspecs_glob(s3: S3Server, pattern: str) -> None:
    s3.client().create_bucket(Bucket="lake")
    root = _lake("s3://lake/prefix")
    fs, base = storage.filesystem(root)
    expected = sorted(p.removeprefix(base + "/") for p in fs.glob(f"{base}/{pattern}"))
    assert _found(root, pattern) == expected == PATTERNS[pattern]
    infos = storage.glob(storage.join(root, pattern))
    assert all(info["size"] == 1 and info["type"] == "file" for info in infos.values())


def test_glob_on_a_local_lake(tmp_path: Path) -> None:
    root = _lake(f"file://{tmp_path / 'lake'}")
    assert {pattern: _found(root, pattern) for pattern in PATTERNS} == PATTERNS
