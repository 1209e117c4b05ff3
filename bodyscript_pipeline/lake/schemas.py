"""The Parquet schemas of the lake, defined once and used by writers, readers and tests.

Every file carries ``bodyscript.schema_version`` and ``bodyscript.table`` in its key-value metadata.
Rows of a video's tables do not repeat the video: the Hive folder ``video=<partition>`` carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Self, cast

import pyarrow as pa

from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, angle_column, velocity_column

SCHEMA_VERSION = 2  # 2: person ids are uint16 track ids; landmarks_clean and quality tables

FRAMES = pa.schema(
    [
        pa.field("frame_index", pa.uint32(), nullable=False),
        pa.field("pts", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("keyframe", pa.bool_(), nullable=False),
    ]
)

# One row per frame x person x landmark, as the model gave them. ``person`` is a track id that stays with
# the same person across frames (tracking.py). A frame with no detection has exactly one row whose
# person, landmark and coordinates are null, so frame counts never lose undetected frames.
LANDMARKS = pa.schema(
    [
        pa.field("frame_index", pa.uint32(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("person", pa.uint16()),
        pa.field("landmark_id", pa.uint8()),
        pa.field("landmark", pa.dictionary(pa.int8(), pa.string())),
        pa.field("x", pa.float32()),
        pa.field("y", pa.float32()),
        pa.field("z", pa.float32()),
        pa.field("visibility", pa.float32()),
        pa.field("presence", pa.float32()),
        pa.field("world_x", pa.float32()),
        pa.field("world_y", pa.float32()),
        pa.field("world_z", pa.float32()),
    ]
)

# The cleaned layer (cleaning.py): one row per frame x person x landmark where the person was detected or
# a short gap was filled. The raw ``landmarks`` stay untouched. ``filled``: the frame had no detection of
# this person and the values are interpolated; ``smoothed``: the coordinates went through the low-pass filter.
LANDMARKS_CLEAN = pa.schema(
    [
        pa.field("frame_index", pa.uint32(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("person", pa.uint16(), nullable=False),
        pa.field("landmark_id", pa.uint8(), nullable=False),
        pa.field("landmark", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("x", pa.float32()),
        pa.field("y", pa.float32()),
        pa.field("z", pa.float32()),
        pa.field("visibility", pa.float32()),
        pa.field("world_x", pa.float32()),
        pa.field("world_y", pa.float32()),
        pa.field("world_z", pa.float32()),
        pa.field("filled", pa.bool_(), nullable=False),
        pa.field("smoothed", pa.bool_(), nullable=False),
    ]
)

# The per-landmark values, in schema order: all the model gives (``landmarks``), those the cleaned layer
# carries (all but ``presence``), the world coordinates (metres, origin between the hips) among them, and the
# normalized image position with its visibility (what drawing, tracking and angles read).
LANDMARK_FLOATS: tuple[str, ...] = tuple(f.name for f in LANDMARKS if pa.types.is_floating(f.type))
LANDMARK_VALUES: tuple[str, ...] = tuple(name for name in LANDMARK_FLOATS if name in LANDMARKS_CLEAN.names)
WORLD_COLUMNS: tuple[str, ...] = tuple(name for name in LANDMARK_VALUES if name.startswith("world_"))
IMAGE_COLUMNS: tuple[str, ...] = ("x", "y", "visibility")

# Pose quality of a video (``person`` null) and of each person in it (quality.py says how each is measured).
QUALITY = pa.schema(
    [
        pa.field("person", pa.uint16()),
        pa.field("frames", pa.uint32(), nullable=False),
        pa.field("detected_frames", pa.uint32(), nullable=False),
        pa.field("detection_rate", pa.float64(), nullable=False),
        pa.field("mean_visibility", pa.float32()),
        pa.field("jitter_px", pa.float32()),
        pa.field("filled_fraction", pa.float64(), nullable=False),
    ]
)

# One row per frame x detected person; angles in degrees, velocities in degrees per second.
FRAME_METRICS = pa.schema(
    [
        pa.field("frame_index", pa.uint32(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("person", pa.uint16(), nullable=False),
        *(pa.field(angle_column(j), pa.float32()) for j in JOINT_NAMES),
        *(pa.field(velocity_column(j), pa.float32()) for j in JOINT_NAMES),
    ]
)

# One row per joint (and person) of a video: range of motion and how much of the video measured it.
VIDEO_METRICS = pa.schema(
    [
        pa.field("person", pa.uint16(), nullable=False),
        pa.field("joint", pa.string(), nullable=False),
        pa.field("valid_frames", pa.uint32(), nullable=False),
        pa.field("min_deg", pa.float32()),
        pa.field("max_deg", pa.float32()),
        pa.field("range_of_motion_deg", pa.float32()),
        pa.field("mean_deg", pa.float32()),
        pa.field("max_abs_velocity_deg_s", pa.float32()),
    ]
)

# One row per processed video: where it came from, what it is, and how well it was measured.
VIDEOS = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_version", pa.string(), nullable=False),
        pa.field("codec", pa.string(), nullable=False),
        pa.field("width", pa.uint32(), nullable=False),
        pa.field("height", pa.uint32(), nullable=False),
        pa.field("rotation", pa.int16(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("frame_count", pa.uint32(), nullable=False),
        pa.field("variable_frame_rate", pa.bool_(), nullable=False),
        pa.field("detected_frames", pa.uint32(), nullable=False),
        pa.field("detection_rate", pa.float64(), nullable=False),
        pa.field("mean_visibility", pa.float32()),
        pa.field("p10_visibility", pa.float32()),
        pa.field("pose_frames_per_s", pa.float64()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("metrics_landmarks", pa.string(), nullable=False),
        pa.field("processed_at_ms", pa.int64(), nullable=False),
    ]
)

# One row per processed video, across the fleet: kept up to date as video partitions complete.
FLEET_SUMMARY = pa.schema(
    [
        pa.field("video", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("frame_count", pa.uint32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("detection_rate", pa.float64(), nullable=False),
        pa.field("mean_visibility", pa.float32()),
        pa.field("left_knee_rom_deg", pa.float32()),
        pa.field("right_knee_rom_deg", pa.float32()),
        pa.field("pose_frames_per_s", pa.float64()),
        pa.field("processed_at_ms", pa.int64(), nullable=False),
    ]
)

# One row per video x per-video asset: what its output was made from and with (the lake's lineage, written by
# steps/versions.py ``record_lineage`` at each materialization, one file per asset). ``settings`` holds one field
# per run-scope setting (bodyscript_pipeline/settings.py), named after its variable without ``BODYSCRIPT_``,
# lower-case, typed as the setting is read: the settings that determine the asset hold their values, the others
# are null. A new run-scope setting is a new field here (a test keeps the two equal); older files read without it.
LINEAGE_SETTINGS = pa.struct(
    [
        pa.field("model", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("min_visibility", pa.float64()),
        pa.field("overlay_max_resolution", pa.int64()),
        pa.field("blur_faces", pa.bool_()),
        pa.field("num_poses", pa.int64()),
        pa.field("pose_tiles", pa.int64()),
        pa.field("track_max_gap", pa.int64()),
        pa.field("fill_max_gap", pa.int64()),
        pa.field("smooth_cutoff_hz", pa.float64()),
        pa.field("metrics_landmarks", pa.string()),
        pa.field("quality_min_detection_rate", pa.float64()),
        pa.field("quality_min_visibility", pa.float64()),
        pa.field("quality_max_jitter_px", pa.float64()),
        pa.field("quality_max_filled", pa.float64()),
    ]
)
LINEAGE = pa.schema(
    [
        pa.field("asset", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_version", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string()),  # the model behind the landmarks it derives from; null for frames
        pa.field("code_version", pa.string(), nullable=False),  # the asset's version: <step code>.<settings digest>
        pa.field("step_code_version", pa.string(), nullable=False),
        pa.field("settings", LINEAGE_SETTINGS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("materialized_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)

# Stored precision (explicit float32 mantissa bits, round to nearest) of float columns; see precision.py.
# landmarks: x, y within 2**-11 relative (at most 0.5 px on a 1920 px axis, about a quarter of that on
# average); z within 0.8 %; world coordinates within 2**-7 relative (at most 4 mm within 1 m of the hips,
# 8 mm beyond; the model's own jitter is about 1 cm); visibility, presence within 2**-5 (0.03 at 1.0).
# frame_metrics: angles and velocities within 0.05 % (0.1 degree at 180 degrees).
STORED_MANTISSA_BITS: dict[str, dict[str, int]] = {
    "landmarks": {
        "x": 10,
        "y": 10,
        "z": 6,
        "visibility": 4,
        "presence": 4,
        "world_x": 6,
        "world_y": 6,
        "world_z": 6,
    },
    "landmarks_clean": {
        "x": 10,
        "y": 10,
        "z": 6,
        "visibility": 4,
        "world_x": 6,
        "world_y": 6,
        "world_z": 6,
    },
    "frame_metrics": {
        **{angle_column(j): 10 for j in JOINT_NAMES},
        **{velocity_column(j): 10 for j in JOINT_NAMES},
    },
}

SCHEMAS: dict[str, pa.Schema] = {
    "frames": FRAMES,
    "landmarks": LANDMARKS,
    "landmarks_clean": LANDMARKS_CLEAN,
    "quality": QUALITY,
    "frame_metrics": FRAME_METRICS,
    "video_metrics": VIDEO_METRICS,
    "videos": VIDEOS,
    "fleet_summary": FLEET_SUMMARY,
    "lineage": LINEAGE,
}


def with_table_metadata(table: str, extra: dict[str, str] | None = None) -> pa.Schema:
    """The table's schema with the key-value metadata every file of it carries."""
    meta = {"bodyscript.table": table, "bodyscript.schema_version": str(SCHEMA_VERSION), **(extra or {})}
    return SCHEMAS[table].with_metadata({k.encode(): v.encode() for k, v in meta.items()})


class TableRow:
    """A typed row of one lake table: subclasses are frozen dataclasses whose fields are the columns of
    ``SCHEMAS[TABLE]``, in order, with Python types that match (tests/bodyscript_pipeline/lake/test_schemas.py
    checks every subclass). Writers build their tables through :meth:`table`, so names and types come from
    the schema alone."""

    TABLE: ClassVar[str]

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cast(Any, cls)))

    def to_row(self) -> dict[str, Any]:
        """The row as a plain dict, column name to value (for Parquet writes and the Dagster layer's metadata)."""
        return {name: getattr(self, name) for name in self.columns()}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        return cls(**{name: row[name] for name in cls.columns()})

    @classmethod
    def table(cls, rows: Iterable[Self]) -> pa.Table:
        return pa.Table.from_pylist([row.to_row() for row in rows], schema=SCHEMAS[cls.TABLE])

    @classmethod
    def rows(cls, table: pa.Table) -> list[Self]:
        """The rows of a table read back (values as stored: float32 columns rounded to float32)."""
        return [cls.from_row(row) for row in table.to_pylist()]
