"""The drop zone: list video objects in key order, page by page, from a local folder or an S3 prefix.

Listing resumes *after* a key (S3's ``StartAfter``), which works whether or not that key still exists,
so a deleted object never breaks a scan. Listing never reads an object: a version is the listing's facts
(the ETag on S3; size and mtime locally), so a tick costs the same whatever the files weigh.

Locally only regular files under the root are objects. Symlinks (to a file elsewhere, to a device, to a
folder), FIFOs, sockets and devices are skipped and counted: reading them could hang a tick forever or
ingest a file that was never dropped. A missing root is an error, never an empty listing: an unmounted
disk must not make the scan forget every video.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError

PAGE_SIZE = 1000


class DropZoneError(BodyscriptError):
    """The drop zone cannot be listed completely."""


class DropZoneMissing(DropZoneError):
    """The drop zone's folder or bucket is gone (unmounted, renamed, deleted)."""


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
        """The object's version, from its listing alone; locally the format of ``sources.object_version``."""
        return f"etag:{self.etag}" if self.etag else storage.file_version(self.size, self.mtime)


@dataclass(frozen=True)
class Page:
    """A listing page, whether it is the last one, and how many special files it skipped."""

    objects: list[DropObject]
    last: bool
    skipped: int = 0


class DropLister(Protocol):
    def pages(self, after: str) -> Iterator[Page]: ...


class LocalDropLister:
    """A local folder, walked in key order without following symlinks."""

    def __init__(self, root: Path, page_size: int = PAGE_SIZE) -> None:
        self.root = root
        self.page_size = page_size

    def create_root(self) -> None:
        """Make the folder if it is not there; if that fails, listing says the folder is missing."""
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)

    def pages(self, after: str) -> Iterator[Page]:
        entries = sorted((key, regular) for key, regular in self._walk() if key > after)
        self._check_root()  # also when it went during the walk: that is no listing to forget objects by
        if not entries:
            yield Page([], True)
        for start in range(0, len(entries), self.page_size):
            objects: list[DropObject] = []
            skipped = 0
            for key, regular in entries[start : start + self.page_size]:
                found = self._object(key) if regular else None
                if found is not None:
                    objects.append(found)
                elif not regular:
                    skipped += 1
            last = start + self.page_size >= len(entries)
            if last:
                self._check_root()
            yield Page(objects, last, skipped)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DropZoneMissing(
                f"drop folder {self.root} is missing or not a folder (unmounted or renamed?); "
                "nothing is forgotten or taken until it is back"
            )

    def _walk(self) -> Iterator[tuple[str, bool]]:
        """Every non-folder entry's key, and whether it is a regular file (from the entry's own type)."""
        folders = [""]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(self.root / folder) as listing:
                    entries = list(listing)
            except (FileNotFoundError, NotADirectoryError):
                if not folder:
                    self._check_root()
                continue  # a sub-folder removed since its parent was listed
            except OSError as error:
                raise DropZoneError(f"cannot list drop folder {self.root / folder}: {error.strerror}") from error
            for entry in entries:
                key = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(key)
                else:
                    yield key, entry.is_file(follow_symlinks=False)

    def _object(self, key: str) -> DropObject | None:
        path = self.root / key
        try:
            info = path.lstat()
        except FileNotFoundError:  # deleted since the walk
            return None
        if not stat.S_ISREG(info.st_mode):
            return None  # replaced since the walk; its kind is looked at again next pass
        return DropObject(key, "file://" + str(path), info.st_size, info.st_mtime, None)


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
            response = self._list(request)
            token = response.get("NextContinuationToken")
            last = not response.get("IsTruncated") or not token
            objects = [
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
            yield Page(objects, last)
            if last:
                return

    def _list(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client.list_objects_v2(**request)
        except Exception as error:
            response = getattr(error, "response", None)  # botocore's ClientError
            if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise DropZoneMissing(f"drop bucket {self.bucket!r} does not exist") from error
            raise


def lister_for(
    drop_uri: str, s3_client: Any | None = None, page_size: int = PAGE_SIZE, *, create_local_root: bool = False
) -> DropLister:
    if drop_uri.startswith("s3://"):
        bucket, _, prefix = drop_uri.removeprefix("s3://").partition("/")
        if s3_client is None:
            s3_client = storage.s3_client()
        return S3DropLister(s3_client, bucket, prefix, page_size)
    local = storage.local_path(drop_uri)
    if local is None:
        raise ValueError(f"unsupported drop zone {drop_uri!r}: use file:// or s3://")
    lister = LocalDropLister(local, page_size)
    if create_local_root:
        lister.create_root()
    return lister
