"""The drop zone: list video objects in key order, page by page, from a local folder or an S3 prefix.

Listing resumes *after* a key (S3's ``StartAfter``), which works whether or not that key still exists,
so a deleted object never breaks a scan.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bodyscript_pipeline import storage

PAGE_SIZE = 1000


@dataclass(frozen=True)
class DropObject:
    """One object in the drop zone. ``key`` is relative to the drop root, '/'-separated."""

    key: str
    uri: str
    size: int
    mtime: float
    etag: str | None

    @property
    def stat_token(self) -> str:
        """Changes whenever the object may have changed (cheap: no read)."""
        return f"etag:{self.etag}" if self.etag else f"size:{self.size}-mtime:{int(self.mtime * 1_000_000)}"


Page = tuple[list[DropObject], bool]
"""A listing page and whether it is the last one."""


class DropLister(Protocol):
    def pages(self, after: str) -> Iterator[Page]: ...

    def content_version(self, obj: DropObject) -> str: ...


class LocalDropLister:
    """A local folder, walked in key order."""

    def __init__(self, root: Path, page_size: int = PAGE_SIZE) -> None:
        self.root = root
        self.page_size = page_size

    def pages(self, after: str) -> Iterator[Page]:
        if not self.root.is_dir():
            yield [], True
            return
        keys = sorted(k for k in self._walk() if k > after)
        if not keys:
            yield [], True
        for start in range(0, len(keys), self.page_size):
            page = []
            for key in keys[start : start + self.page_size]:
                path = self.root / key
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted since the walk
                    continue
                page.append(DropObject(key, "file://" + str(path), stat.st_size, stat.st_mtime, None))
            yield page, start + self.page_size >= len(keys)

    def _walk(self) -> Iterator[str]:
        for folder, _dirs, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root)
            for name in files:
                yield (relative / name).as_posix() if str(relative) != "." else name

    def content_version(self, obj: DropObject) -> str:
        """SHA-256 of the bytes: a re-copied file with the same content is the same version."""
        digest = hashlib.sha256()
        with Path(obj.uri.removeprefix("file://")).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()


class S3DropLister:
    """An S3 (or MinIO) prefix, listed with ListObjectsV2 pages through a boto3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str, page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.page_size = page_size

    def pages(self, after: str) -> Iterator[Page]:
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": self.page_size}
            if token:
                request["ContinuationToken"] = token
            elif after:
                request["StartAfter"] = self.prefix + after
            response = self.client.list_objects_v2(**request)
            token = response.get("NextContinuationToken")
            last = not response.get("IsTruncated") or not token
            page = [
                DropObject(
                    key=item["Key"][len(self.prefix) :],
                    uri=f"s3://{self.bucket}/{item['Key']}",
                    size=int(item["Size"]),
                    mtime=item["LastModified"].timestamp(),
                    etag=str(item.get("ETag", "")).strip('"') or None,
                )
                for item in response.get("Contents", [])
                if not item["Key"].endswith("/")
            ]
            yield page, last
            if last:
                return

    def content_version(self, obj: DropObject) -> str:
        return f"etag:{obj.etag}"


def lister_for(drop_uri: str, s3_client: Any | None = None, page_size: int = PAGE_SIZE) -> DropLister:
    if drop_uri.startswith("s3://"):
        bucket, _, prefix = drop_uri.removeprefix("s3://").partition("/")
        if s3_client is None:
            s3_client = storage.s3_client()
        return S3DropLister(s3_client, bucket, prefix, page_size)
    local = storage.local_path(drop_uri)
    if local is None:
        raise ValueError(f"unsupported drop zone {drop_uri!r}: use file:// or s3://")
    return LocalDropLister(local, page_size)
