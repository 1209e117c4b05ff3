"""Where each table and file of one video lives in the lake (Hive-style, one folder per video).

```
<lake>/sources/video=<partition>/source.json          the source object's URI and version
<lake>/writing/video=<partition>/run.json            while a run writes the outputs (views leave them out)
<lake>/fresh/video=<partition>/fresh.json            per-video files newer than the compacted ones (lake/compaction.py)
<lake>/videos/video=<partition>/part-0.parquet        probe data, source, version, summary
<lake>/frames/video=<partition>/index.parquet         frame index: index, pts, timestamp_ms
<lake>/frames/video=<partition>/probe.json            probe of the source
<lake>/frames/video=<partition>/source<ext>           the source's bytes, as decoded by every step
<lake>/landmarks/video=<partition>/part-0.parquet     frame x person x landmark
<lake>/landmarks/video=<partition>/overlay-segments/  overlay segments the pose workers drew (until joined)
<lake>/landmarks/video=<partition>/ranges/            pose ranges' rows and segments under k8s (until merged)
<lake>/landmarks_clean/video=<partition>/part-0.parquet  frame x person x landmark, gaps filled, smoothed
<lake>/quality/video=<partition>/part-0.parquet       the video and each person: detection, jitter, fill
<lake>/frame_metrics/video=<partition>/part-0.parquet frame x person: angles, velocities
<lake>/video_metrics/video=<partition>/part-0.parquet video x joint: range of motion
<lake>/overlays/video=<partition>/overlay.mp4, thumbnail.jpg
<lake>/exports/video=<partition>/person-<id>.trc, person-<id>.mot, landmarks.csv, angles-<joint>.png
<lake>/lineage/video=<partition>/<asset>.parquet      one row per per-video asset: what made its output
<lake>/fleet_summary/part-0.parquet                   one row per video: the fleet at a glance
<lake>/compacted/                                     the tables' per-video files merged (lake/compaction.py)
```

The partition key is checked when a ``VideoLake`` is made (``partition_keys.check_partition_key``), and file names
given to it are single names, so every location is inside its video's folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.partition_keys import check_partition_key
from bodyscript_pipeline.storage import join

# Markers in folders of their own, holding only the videos concerned: the views look them up at each query or
# connection, in a listing as short as the runs in flight or the videos written since the last compaction.
WRITING = "writing"
FRESH = "fresh"
TABLES = ("videos", "frames", "landmarks", "landmarks_clean", "quality", "frame_metrics", "video_metrics")
# The one Parquet file of each table in a video's folder.
TABLE_FILES = {table: "index.parquet" if table == "frames" else "part-0.parquet" for table in TABLES}
# The lineage of a video's assets: a per-video table too (a view, ``video`` from the folders), one file per asset
# rather than one part, and no output of a step: it goes with the source version and erasure, never with age.
LINEAGE = "lineage"
# The Parquet files of each per-video table in a video's folder (lineage: one per asset).
FILE_PATTERNS = {**TABLE_FILES, LINEAGE: "*.parquet"}


def fleet_summary_uri(lake_uri: str) -> str:
    return join(lake_uri, "fleet_summary", "part-0.parquet")


def file_pattern(lake_uri: str, table: str) -> str:
    """Every per-video file of ``table`` (``FILE_PATTERNS``), each under its ``video=<partition>`` folder."""
    return f"{lake_uri.rstrip('/')}/{table}/video=*/{FILE_PATTERNS[table]}"


def marker_pattern(lake_uri: str, marker: str) -> str:
    """Every marker of one kind (``WRITING``, ``FRESH``)."""
    return f"{lake_uri.rstrip('/')}/{marker}/video=*/{MARKER_FILES[marker]}"


MARKER_FILES = {WRITING: "run.json", FRESH: "fresh.json"}


def partition_of(path: str) -> tuple[str, str]:
    """The partition of a path under a ``video=<partition>`` folder, and the rest of the path below it."""
    partition, _, rest = str(path).rsplit("video=", 1)[1].partition("/")
    return partition, rest


def marked_partitions(lake_uri: str, marker: str) -> list[str]:
    return sorted(partition_of(path)[0] for path in storage.glob(marker_pattern(lake_uri, marker)))


def writing_partitions(lake_uri: str) -> list[str]:
    """The partitions a run is writing now."""
    return marked_partitions(lake_uri, WRITING)


@dataclass(frozen=True)
class VideoLake:
    """The lake locations of one video partition."""

    lake_uri: str
    partition: str

    def __post_init__(self) -> None:
        check_partition_key(self.partition)

    def folder(self, table: str) -> str:
        return join(self.lake_uri, table, f"video={self.partition}")

    @property
    def source_record(self) -> str:
        return join(self.folder("sources"), "source.json")

    @property
    def writing(self) -> str:
        """Present while a run writes the partition's outputs: the lake's views leave the partition out until
        the run has written them all, so no reader sees a half-written set."""
        return join(self.folder(WRITING), MARKER_FILES[WRITING])

    @property
    def fresh(self) -> str:
        """Present from a run's end to the next compaction: the views read this video's per-video files, not
        its compacted rows."""
        return join(self.folder(FRESH), MARKER_FILES[FRESH])

    @property
    def frame_index(self) -> str:
        return self.table_part("frames")

    @property
    def probe(self) -> str:
        return join(self.folder("frames"), "probe.json")

    def source_copy(self, suffix: str) -> str:
        return join(self.folder("frames"), _single_name(f"source{suffix or '.mp4'}"))

    def table_part(self, table: str) -> str:
        """The table's file of this video (``frames``: the frame index)."""
        return join(self.folder(table), TABLE_FILES[table])

    def lineage(self, asset: str) -> str:
        """The lineage row of one of the video's assets."""
        return join(self.folder(LINEAGE), _single_name(f"{asset}.parquet"))

    def overlay_segment(self, start: int, stop: int) -> str:
        return join(self.folder("landmarks"), "overlay-segments", f"frames-{start:07d}-{stop:07d}.mp4")

    def pose_range(self, index: int, suffix: str) -> str:
        """A pose range's rows (``.parquet``) or overlay segment (``.mp4``), from its step to the merge."""
        return join(self.pose_ranges, f"range-{index:05d}{suffix}")

    @property
    def pose_ranges(self) -> str:
        return join(self.folder("landmarks"), "ranges")

    @property
    def overlay_segments(self) -> str:
        return join(self.folder("landmarks"), "overlay-segments")

    @property
    def overlay(self) -> str:
        return join(self.folder("overlays"), "overlay.mp4")

    def export_file(self, name: str) -> str:
        return join(self.folder("exports"), _single_name(name))

    @property
    def thumbnail(self) -> str:
        return join(self.folder("overlays"), "thumbnail.jpg")


def _single_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise BodyscriptError(f"{name!r} is not a file name")
    return name
