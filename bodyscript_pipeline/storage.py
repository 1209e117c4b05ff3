"""One storage abstraction for the drop zone and the lake: ``file://`` or ``s3://`` URIs over fsspec.

S3 credentials and endpoint come from the standard ``AWS_*`` variables and ``AWS_ENDPOINT_URL``
(MinIO, or any S3-compatible store). Every write is atomic: readers see a complete object or none.
A run's source is read by :func:`fetch_source`: the version it was launched for, bounded in size.
Download links (:func:`presigned_url`) are signed for the endpoint browsers use, which may differ.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import glob_translate

from bodyscript_pipeline.errors import BodyscriptError, SourceChanged, VideoError
from bodyscript_pipeline.video.limits import check_bytes

S3_MAX_ATTEMPTS = 5
COPY_BYTES = 8 << 20
# The longest a presigned link lasts when signed with a session token of unknown expiry: STS's default
# session length (AssumeRole, web identity), so such a link rarely claims more than its token gives.
UNKNOWN_EXPIRY_LIFETIME_S = 3600


def s3_endpoint_url(env: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint of MinIO or another S3-compatible store (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``,
    of ``env`` or this process's environment; blank means unset); None for AWS."""
    env = os.environ if env is None else env
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if value := (env.get(name) or "").strip():
            return value
    return None


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


def presigned_url(uri: str, expires_s: int, endpoint: str | None) -> str:
    """A GET link to an ``s3://`` object, signed for ``endpoint`` (SigV4 signs the host: a link opens only at
    the host it was signed for, so it is never rewritten afterwards; None: AWS's own). It expires after
    ``expires_s`` seconds, or sooner when the signing credentials do (:func:`credentials_lifetime_s`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    session, client = _presigner(endpoint, s3_region(), _aws_variables())
    credentials = session.get_credentials()
    if credentials is None:
        raise BodyscriptError("no S3 credentials to sign download links with (AWS_* variables or a pod identity)")
    lifetime = credentials_lifetime_s(credentials)
    expires = expires_s if lifetime is None else max(1, min(expires_s, lifetime))
    return str(client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires))


def credentials_lifetime_s(credentials: Any) -> int | None:
    """Seconds the credentials stay valid: temporary ones' own expiry (botocore's refreshable credentials:
    pod identities, assumed roles, ``AWS_CREDENTIAL_EXPIRATION``), refreshed first where due as signing would;
    ``UNKNOWN_EXPIRY_LIFETIME_S`` for a session token of unknown expiry; None for long-term keys."""
    frozen = credentials.get_frozen_credentials()
    expiry = getattr(credentials, "_expiry_time", None)  # botocore has no public accessor
    if isinstance(expiry, datetime):
        return int((expiry - datetime.now(UTC)).total_seconds())
    return UNKNOWN_EXPIRY_LIFETIME_S if frozen.token else None


def _aws_variables() -> tuple[tuple[str, str], ...]:
    """The ``AWS_*`` environment, so that a process whose credentials change gets a new signer."""
    return tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith("AWS_")))


@functools.cache
def _presigner(endpoint: str | None, region: str | None, _environment: tuple[tuple[str, str], ...]) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region)
    # MinIO and other S3-compatible endpoints serve buckets as paths; AWS's own picks virtual hosts.
    options: dict[str, Any] = {"s3": {"addressing_style": "path"}} if endpoint else {}
    config = Config(signature_version="s3v4", **options)
    return session, session.client("s3", endpoint_url=endpoint, config=config)


def delete_prefix(uri: str, max_pages: int = 10) -> int:
    """Delete the objects under the ``s3://bucket/prefix/`` folder, at most ``max_pages`` listing pages of up to
    1,000 keys per call (the rest on the next); returns how many were deleted."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    client = s3_client()
    deleted = 0
    for _ in range(max_pages):
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
        if keys:
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise BodyscriptError(f"s3://{bucket}/{error.get('Key')}: not deleted ({error.get('Code')})")
            deleted += len(keys)
        if not listing.get("IsTruncated"):
            break
    return deleted


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


def glob(pattern: str) -> dict[str, dict[str, Any]]:
    """The paths matching a glob ``pattern`` (a URI), with their info. On an object store, one recursive listing
    of what lies under the pattern's fixed start: fsspec's glob there lists each folder a wildcard matches on its
    own, a round trip per video for ``<table>/video=*/<file>``."""
    fs, path = filesystem(pattern)
    wildcards = [i for i in (path.find(c) for c in "*?[") if i >= 0]
    if isinstance(fs, LocalFileSystem) or not wildcards:
        return dict(fs.glob(path, detail=True))
    root, _, prefix = path[: min(wildcards)].rpartition("/")
    matches = re.compile(glob_translate(path)).match
    return {name: info for name, info in fs.find(root, prefix=prefix, detail=True).items() if matches(name)}


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


def fetch_source(uri: str, version: str, dest: Path, max_bytes: int) -> None:
    """Copy the source object's bytes to ``dest`` only if it still is ``version``, and never more than
    ``max_bytes``: one GetObject with If-Match for ``etag:<etag>`` on S3; for a local file and
    ``size:<bytes>-mtime:<us>`` (``sources.object_version``), the opened file's own facts before and after the
    copy. Other versions (``sha256:``) are not checked. Raises ``SourceChanged``, ``VideoError`` (too large,
    not a regular file) or ``FileNotFoundError``; ``dest`` is left only when complete."""
    name = PurePosixPath(uri).name
    try:
        if uri.startswith("s3://"):
            _fetch_s3(uri, name, version, dest, max_bytes)
            return
        local = local_path(uri)
        if local is None:
            raise BodyscriptError(f"{uri}: only local and s3:// sources are read")
        _fetch_local(local, name, version, dest, max_bytes)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _changed(name: str, expected: str, found: str) -> SourceChanged:
    return SourceChanged(
        f"{name}: changed since this run was launched (expected {expected}, found {found}); "
        "the new version is processed by its own run"
    )


def _bounded_copy(read: Callable[[int], bytes], dest: Path, name: str, max_bytes: int) -> int:
    """Copy what ``read`` gives to ``dest``; a ``VideoError`` as soon as it gives more than ``max_bytes``."""
    copied = 0
    with dest.open("wb") as out:
        while block := read(min(COPY_BYTES, max_bytes + 1 - copied)):
            copied += len(block)
            check_bytes(name, copied, max_bytes)
            out.write(block)
    return copied


def _fetch_s3(uri: str, name: str, version: str, dest: Path, max_bytes: int) -> None:
    from botocore.exceptions import ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    request = {"Bucket": bucket, "Key": key}
    if version.startswith("etag:"):
        request["IfMatch"] = '"' + version.removeprefix("etag:") + '"'
    client = s3_client()
    try:
        response = client.get_object(**request)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("PreconditionFailed", "412"):
            try:
                found = "etag:" + client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
            except ClientError:
                found = "no object"
            raise _changed(name, version, found) from None
        if code in ("NoSuchKey", "404"):
            raise FileNotFoundError(uri) from None
        raise
    body = response["Body"]
    try:
        check_bytes(name, int(response.get("ContentLength") or 0), max_bytes)
        _bounded_copy(body.read, dest, name, max_bytes)
    finally:
        body.close()


def file_version(size: int, mtime: float) -> str:
    """The version of a file without an ETag, from its listing facts: what the drop zone takes, the source
    registry records and a run pins (``size:<bytes>-mtime:<microseconds>``)."""
    return f"size:{size}-mtime:{int(mtime * 1_000_000)}"


def _local_version(facts: os.stat_result) -> str:
    return file_version(facts.st_size, facts.st_mtime)


def _fetch_local(path: Path, name: str, version: str, dest: Path, max_bytes: int) -> None:
    try:
        # Not a link (to a device, or another user's file), and no wait on a FIFO without a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoError(f"{name}: not a regular file (a symbolic link)") from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as source:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise VideoError(f"{name}: not a regular file")
        os.set_blocking(fd, True)
        pinned = version.startswith("size:")
        if pinned and _local_version(before) != version:
            raise _changed(name, version, _local_version(before))
        check_bytes(name, before.st_size, max_bytes)
        copied = _bounded_copy(source.read, dest, name, max_bytes)
        after = os.fstat(fd)
        if pinned and (_local_version(after) != version or copied != after.st_size):
            raise _changed(name, version, _local_version(after))


def modified_at(info: dict[str, Any]) -> float:
    """When a listed file was last written (local mtime, S3 LastModified)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
