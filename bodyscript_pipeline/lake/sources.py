"""The registry of source videos: which object each partition was made from, and its version.

Written when a partition is registered (by the CLI or a sensor) so that any later materialization of
that partition, launched from anywhere, finds its input without run configuration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.paths import VideoLake


@dataclass(frozen=True)
class SourceRecord:
    uri: str
    version: str
    registered_at_ms: int


def object_version(uri: str) -> str:
    """ETag on S3; size and modification time elsewhere."""
    fs, path = storage.filesystem(uri)
    info = fs.info(path)
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return "etag:" + str(etag).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return storage.file_version(int(info["size"]), float(mtime))


def register_source(lake_uri: str, partition: str, uri: str, version: str | None = None) -> SourceRecord:
    record = SourceRecord(uri=uri, version=version or object_version(uri), registered_at_ms=int(time.time() * 1000))
    storage.write_bytes(VideoLake(lake_uri, partition).source_record, json.dumps(asdict(record)).encode())
    return record


def load_source(lake_uri: str, partition: str) -> SourceRecord:
    location = VideoLake(lake_uri, partition).source_record
    try:
        return SourceRecord(**json.loads(storage.read_bytes(location)))
    except FileNotFoundError:
        raise BodyscriptError(
            f"partition {partition!r} has no registered source video ({location} is missing); "
            "add it with `bodyscript process VIDEO` or the drop-folder sensor"
        ) from None
