"""The specs of the per-video assets and the quality checks of the cleaned layer: what each asset is, what it
depends on, its kinds and code version. Which step computes which asset is up to assets/pose.py and
assets/derived.py (assets/pose_ranges.py under Kubernetes); these specs do not depend on settings."""

import dagster as dg

from assets.source_video import VIDEO_GROUP, source_video


def _spec(name: str, deps: list[dg.AssetSpec], kinds: set[str], description: str, **kwargs: bool) -> dg.AssetSpec:
    return dg.AssetSpec(
        name, deps=deps, group_name=VIDEO_GROUP, code_version="1", kinds=kinds, description=description, **kwargs
    )


FRAMES = _spec(
    "frames",
    [source_video],
    {"video", "parquet"},
    "Probe of the source video and its frame index (frame, pts, ms); the source copied into the lake.",
)
LANDMARKS = _spec(
    "landmarks",
    [FRAMES],
    {"mediapipe", "parquet"},
    "MediaPipe PoseLandmarker (VIDEO mode): one row per frame x person x landmark, person ids tracked across "
    "frames; undetected frames are one all-null row.",
)
OVERLAYS = _spec(
    "overlays",
    [LANDMARKS],
    {"video"},
    "The skeleton drawn on every frame: H.264, yuv420p, faststart MP4 with the source's timing (short side at "
    "most BODYSCRIPT_OVERLAY_MAX_RESOLUTION), and a thumbnail, faces blurred (BODYSCRIPT_BLUR_FACES). Joins the "
    "segments the pose workers drew with the final person ids and draws the rest.",
)
CLEAN_LANDMARKS = _spec(
    "clean_landmarks",
    [LANDMARKS],
    {"parquet"},
    "The cleaned layer: short gaps filled, tracks smoothed (zero-phase Butterworth), each value flagged; the "
    "raw landmarks stay untouched. Quality scores per video and person.",
)
# Skippable: a failed blocking quality check stops the step before them.
METRICS = _spec(
    "metrics",
    [LANDMARKS, CLEAN_LANDMARKS],
    {"parquet"},
    "Joint angles and angular velocities per frame and person; range of motion per joint; the video's summary row.",
    skippable=True,
)
EXPORTS = _spec(
    "exports",
    [CLEAN_LANDMARKS, METRICS],
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
