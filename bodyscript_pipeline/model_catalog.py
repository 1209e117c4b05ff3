"""The MediaPipe Pose Landmarker bundles the project knows, with their official URLs and SHA-256."""

from __future__ import annotations

from dataclasses import dataclass

_BASE = "https://storage.googleapis.com/mediapipe-models/pose_landmarker"


@dataclass(frozen=True)
class ModelSpec:
    variant: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"pose_landmarker_{self.variant}.task"


MODEL_VARIANTS: dict[str, ModelSpec] = {
    spec.variant: spec
    for spec in (
        ModelSpec(
            "lite",
            f"{_BASE}/pose_landmarker_lite/float16/latest/pose_landmarker_lite.task",
            "59929e1d1ee95287735ddd833b19cf4ac46d29bc7afddbbf6753c459690d574a",
        ),
        ModelSpec(
            "full",
            f"{_BASE}/pose_landmarker_full/float16/latest/pose_landmarker_full.task",
            "4eaa5eb7a98365221087693fcc286334cf0858e2eb6e15b506aa4a7ecdcec4ad",
        ),
        ModelSpec(
            "heavy",
            f"{_BASE}/pose_landmarker_heavy/float16/latest/pose_landmarker_heavy.task",
            "64437af838a65d18e5ba7a0d39b465540069bc8aae8308de3e318aad31fcbc7b",
        ),
    )
}
