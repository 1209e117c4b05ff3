"""One storage abstraction for the drop zone and the lake: ``file://`` or ``s3://`` URIs over fsspec.

S3 credentials and endpoint come from the standard ``AWS_*`` variables and ``AWS_ENDPOINT_URL``
(MinIO, or any S3-compatible store). Every write is atomic: readers see a complete object or none.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

S3_MAX_ATTEMPTS = 5


def s3_endpoint_url() -> str | None:
    """The S3 endpoint of MinIO or another S3-compatible store (``AWS_ENDPOINT_URL[_S3]``); None for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def s3_client() -> Any:
    """The boto3 S3 client for the ``AWS_*`` variables, created once per process and endpoint (building one
    costs tenths of a second); boto3 is imported only here, so processes that never touch S3 never load it."""
    return _s3_client(s3_endpoint_url(), s3_region())


@functools.cache
def _s3_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}, signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path inside it."""
    options: dict[str, Any] = {}
    if uri.startswith("s3://"):
        endpoint = s3_endpoint_url()
        if endpoint:
            options["endpoint_url"] = endpoint
        options["default_block_size"] = 8 << 20
        # Other processes add and delete objects all the time: never answer from a stale listing.
        options["use_listings_cache"] = False
    return fsspec.core.url_to_fs(uri, **options)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.exists(path))


def delete_tree(uri: str) -> None:
    """Delete an object or a folder and everything under it; nothing happens where there is nothing."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def size_of(uri: str) -> int:
    fs, path = filesystem(uri)
    return int(fs.size(path))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return bytes(fs.cat_file(path))


def write_bytes(uri: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        tmp.write(data)
    try:
        put_file(Path(tmp.name), uri)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def put_file(local: Path, uri: str) -> None:
    """Upload or copy a finished local file to ``uri`` atomically."""
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(local, staging)
            staging.replace(target)
        finally:
            staging.unlink(missing_ok=True)
    else:
        # A single S3 PUT (or a completed multipart upload) is atomic for readers.
        fs.put_file(str(local), path)


@contextmanager
def local_copy(uri: str, suffix: str = "") -> Iterator[Path]:
    """A local path holding the object's bytes: the file itself for ``file://``, else a temp download."""
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="bodyscript-") as tmpdir:
        local = Path(tmpdir) / ("object" + (suffix or Path(path).suffix))
        fs.get_file(path, str(local))
        yield local


@contextmanager
def staged_output(uri: str) -> Iterator[Path]:
    """A temp local path to write; committed atomically to ``uri`` only if the block succeeds."""
    suffix = Path(uri).suffix
    with tempfile.TemporaryDirectory(prefix="bodyscript-out-") as tmpdir:
        local = Path(tmpdir) / ("output" + suffix)
        yield local
        put_file(local, uri)


def local_path(uri: str) -> Path | None:
    """The local path of a ``file://`` URI, or None for remote storage."""
    fs, path = filesystem(uri)
    return Path(path) if isinstance(fs, LocalFileSystem) else None
