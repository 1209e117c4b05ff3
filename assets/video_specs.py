"""The specs of the per-video assets and the quality checks of the cleaned layer: what each asset is, what it
depends on, its kinds. Which step computes which asset is up to assets/pose.py and assets/derived.py
(assets/pose_ranges.py under Kubernetes); these specs do not depend on settings. Their code versions do: each
asset's is ``asset_version`` of the settings the definitions are built from (:func:`versioned`), so a change of
the step's code or of a value that determines the asset makes it stale, and through data versions everything
downstream of it."""

from collections.abc import Iterable

import dagster as dg

from assets.source_video import VIDEO_GROUP, source_video
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.versions import DEPENDS_ON, asset_version


def _spec(name: str, kinds: set[str], description: str, **kwargs: bool) -> dg.AssetSpec:
    """A per-video asset's spec; what it is made from is the core's one definition (``DEPENDS_ON``), the
    first of them from the source video."""
    deps = [dg.AssetKey(parent) for parent in DEPENDS_ON[name]] or [source_video.key]
    return dg.AssetSpec(name, deps=deps, group_name=VIDEO_GROUP, kinds=kinds, description=description, **kwargs)


def versioned(specs: Iterable[dg.AssetSpec], settings: Settings) -> list[dg.AssetSpec]:
    """The specs with the code versions ``settings`` give them: ``<step code version>.<digest of the determining
    settings>`` (bodyscript_pipeline/steps/versions.py)."""
    return [spec.replace_attributes(code_version=asset_version(spec.key.path[-1], settings)) for spec in specs]


FRAMES = _spec(
    "frames",
    {"video", "parquet"},
    "Probe of the source video and its frame index (frame, pts, ms); the source copied into the lake.",
)
LANDMARKS = _spec(
    "landmarks",
    {"mediapipe", "parquet"},
    "MediaPipe PoseLandmarker (VIDEO mode): one row per frame x person x landmark, person ids tracked across "
    "frames; undetected frames are one all-null row.",
)
OVERLAYS = _spec(
    "overlays",
    {"video"},
    "The skeleton drawn on every frame: H.264, yuv420p, faststart MP4 with the source's timing (short side at "
    "most BODYSCRIPT_OVERLAY_MAX_RESOLUTION), and a thumbnail, faces blurred (BODYSCRIPT_BLUR_FACES). Joins the "
    "segments the pose workers drew with the final person ids and draws the rest.",
)
CLEAN_LANDMARKS = _spec(
    "clean_landmarks",
    {"parquet"},
    "The cleaned layer: short gaps filled, tracks smoothed (zero-phase Butterworth), each value flagged; the "
    "raw landmarks stay untouched. Quality scores per video and person.",
)
# Skippable: a failed blocking quality check stops the step before them.
METRICS = _spec(
    "metrics",
    {"parquet"},
    "Joint angles and angular velocities per frame and person; range of motion per joint; the video's summary row.",
    skippable=True,
)
EXPORTS = _spec(
    "exports",
    {"csv", "png"},
    "Files for research tools: OpenSim .trc (cleaned world landmarks) and .mot (angles) per person, the long "
    "CSV, and a plot per joint of its angles over time.",
    skippable=True,
)

POSE_SPECS = (FRAMES, LANDMARKS)
DERIVED_SPECS = (OVERLAYS, CLEAN_LANDMARKS, METRICS, EXPORTS)
VIDEO_SPECS = (*POSE_SPECS, *DERIVED_SPECS)
VIDEO_ASSET_KEYS = [spec.key for spec in VIDEO_SPECS]

DETECTION_CHECK = "pose_detection"
STABILITY_CHECK = "pose_stability"
QUALITY_CHECKS = [
    dg.AssetCheckSpec(
        DETECTION_CHECK,
        asset=CLEAN_LANDMARKS.key,
        blocking=True,
        description="Detection rate and mean visibility at or above their thresholds; blocks metrics and "
        "exports of a video whose pose data cannot be trusted.",
    ),
    dg.AssetCheckSpec(
        STABILITY_CHECK,
        asset=CLEAN_LANDMARKS.key,
        description="Jitter and the fraction of filled frames at or below their thresholds (a warning).",
    ),
]
