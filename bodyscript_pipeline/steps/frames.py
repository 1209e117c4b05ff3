"""The ``frames`` asset's work: check and probe the source version, copy it into the lake, and write the frame
index (and probe) every later step reads by; what a partition's frames were made from."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import VideoError
from bodyscript_pipeline.lake.parquet import (
    file_metadata,
    read_table,
    write_table,
)
from bodyscript_pipeline.lake.paths import LINEAGE, TABLES, VideoLake
from bodyscript_pipeline.lake.schemas import FRAMES
from bodyscript_pipeline.lake.sources import SourceRecord, load_source
from bodyscript_pipeline.pose import head_start
from bodyscript_pipeline.steps.progress import Progress, no_progress
from bodyscript_pipeline.video.io import FrameIndex, Probe, probe_video
from bodyscript_pipeline.video.limits import Limits, check_size

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"

OUTPUT_TABLES = (*TABLES, "overlays", "exports", LINEAGE)  # lineage describes the outputs: it goes with them
# A video of at most this many frames whose pose was begun ahead (pose/head_start.py) is checked by that pose's own
# decoding: the checked probe decodes the first and last groups of pictures, for a short clip nearly all of it,
# which pose then decodes again (0.3-0.5 CPU-s of a 100-frame 1080p clip's 2-3). Its ranges end within a few
# seconds; for a longer video, whose probe costs little beside its pose, ``frames`` (and the frame index) would
# wait the whole pose, so it is probed as always.
CHECKED_BY_POSE_FRAMES = 300


def load_probe(lake: VideoLake) -> Probe:
    return Probe.from_json(storage.read_bytes(lake.probe).decode())


def load_frame_index(lake: VideoLake) -> FrameIndex:
    table = read_table(lake.frame_index, columns=["pts", "keyframe"])
    return FrameIndex(table["pts"].to_pylist(), table["keyframe"].to_pylist())


def source_copy_uri(lake: VideoLake, source_uri: str) -> str:
    return lake.source_copy(PurePosixPath(source_uri).suffix.lower())


@dataclass(frozen=True)
class FramesResult:
    probe: Probe
    source_uri: str
    source_version: str
    index_uri: str
    video_uri: str
    checked_by_pose: bool = False  # the probe is the head start's, whose ranges decoded every frame
    pose_wait_s: float = 0.0  # spent waiting for those ranges: pose's seconds, not this step's


def extract_frames(
    lake_uri: str,
    partition: str,
    limits: Limits | None = None,
    version: str | None = None,
    pose_progress: Progress = no_progress,
) -> FramesResult:
    """Check and probe the source, copy it into the lake, and write the frame index every later step reads by.
    The source object itself is only ever read, and only as ``version`` (default: the registered one). While it
    waits for pose begun ahead (``CHECKED_BY_POSE_FRAMES``), that pose's progress goes to ``pose_progress``."""
    limits = limits or Limits()
    lake = VideoLake(lake_uri, partition)
    source = load_source(lake_uri, partition)
    version = version or source.version
    video_uri = source_copy_uri(lake, source.uri)
    name = PurePosixPath(source.uri).name
    with tempfile.TemporaryDirectory(prefix="bodyscript-") as tmpdir:
        # Named as the source, so that messages name it; a name no file can have gets a plain one.
        usable = name not in ("", ".", "..") and len(name.encode()) <= 200
        local = Path(tmpdir) / (name if usable else "source" + PurePosixPath(video_uri).suffix)
        try:
            storage.fetch_source(source.uri, version, local, limits.max_bytes)
        except FileNotFoundError:
            raise VideoError(f"{name}: the source object no longer exists ({source.uri})") from None
        drop_other_versions(lake, version)  # the pinned version is the current one: the older one's outputs go
        check_size(name, local.stat().st_size, limits)
        wait_started = time.perf_counter()
        decoded = head_start.decoded_whole((source.uri, version), CHECKED_BY_POSE_FRAMES, pose_progress)
        pose_wait_s = time.perf_counter() - wait_started if decoded else 0.0
        probe, index = decoded or probe_video(local, limits)
        storage.put_file(local, video_uri)
    timestamps = [probe.timestamp_ms(p) for p in index.pts]
    columns = {
        "frame_index": range(len(index)),
        "pts": index.pts,
        "timestamp_ms": timestamps,
        "keyframe": index.keyframe,
    }
    frames = pa.table({name: pa.array(columns[name], FRAMES.field(name).type) for name in FRAMES.names})
    meta = {
        "bodyscript.video_uri": video_uri,
        "bodyscript.source_uri": source.uri,
        "bodyscript.source_version": version,
    }
    write_table("frames", lake.frame_index, frames, meta)
    storage.write_bytes(lake.probe, probe.to_json().encode())
    return FramesResult(probe, source.uri, version, lake.frame_index, video_uri, decoded is not None, pose_wait_s)


def drop_other_versions(lake: VideoLake, version: str) -> None:
    """Before the first output of a new source version is written, remove every output of the one before: a
    reader sees the old version's results, or the new one's as far as they go, never a mix of the two. Outputs
    of the same version are kept (a re-materialization overwrites them file by file)."""
    try:
        previous = file_metadata(lake.frame_index).get("bodyscript.source_version")
    except FileNotFoundError:
        if not storage.exists(lake.folder("landmarks")):
            return  # a new partition
        previous = None
    if previous != version:
        for table in OUTPUT_TABLES:
            storage.delete_tree(lake.folder(table))


def frames_source(lake: VideoLake) -> SourceRecord:
    """The source object and version the partition's frames were made from: what every later output of the
    partition describes, even after a newer version was registered for its own run."""
    meta = file_metadata(lake.frame_index)
    if "bodyscript.source_version" not in meta:  # frames written before the version was recorded
        return load_source(lake.lake_uri, lake.partition)
    return SourceRecord(meta["bodyscript.source_uri"], meta["bodyscript.source_version"], 0)


def frame_video_uri(lake: VideoLake) -> str:
    return file_metadata(lake.frame_index)["bodyscript.video_uri"]
