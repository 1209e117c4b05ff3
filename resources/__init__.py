"""Dagster resources: the pipeline's settings, pose model and S3 access, as configured by the environment.

Credentials are never part of resource config (so never shown in the UI): boto3 and s3fs read them from the
standard ``AWS_*`` variables or the pod's mounted identity.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg

from bodyscript_pipeline import storage
from bodyscript_pipeline.cleaning import CleaningOptions
from bodyscript_pipeline.model import ModelFile, ensure_model
from bodyscript_pipeline.overlay_video import OverlayStyle
from bodyscript_pipeline.pose import PoseOptions
from bodyscript_pipeline.pose_service import PoseService
from bodyscript_pipeline.quality import QualityThresholds
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.validation import Limits


def step_io_manager(settings: Settings) -> dg.ConfigurableIOManager | None:
    """Where small step outputs (pose ranges and their records) live between pods: beside an S3 lake, in its
    bucket. ``None`` keeps Dagster's default (files under ``DAGSTER_HOME``), which every local step shares."""
    if settings.executor != "k8s" or not settings.lake_uri.startswith("s3://"):
        return None
    # dagster_aws costs more than half a second to import: only the k8s code location on S3 pays for it.
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    bucket, _, prefix = settings.lake_uri.removeprefix("s3://").partition("/")
    return S3PickleIOManager(
        s3_resource=S3Resource(endpoint_url=storage.s3_endpoint_url(), region_name=storage.s3_region()),
        s3_bucket=bucket,
        s3_prefix=f"{prefix.strip('/')}/dagster-io".lstrip("/"),
    )


class PipelineResource(dg.ConfigurableResource):
    """Where the drop zone and lake are, which pose model runs, and how output links are made."""

    home: str
    lake_uri: str
    drop_uri: str
    model_variant: str
    model_source: str
    model_sha256: str
    min_visibility: float
    pose_workers: int
    pose_delegate: str
    cost_cpu_pod_hour: float
    cost_gpu_pod_hour: float
    max_bytes: int
    max_duration_s: float
    max_pixels: int
    max_frames: int
    presign_expiry_s: int
    num_poses: int = 1
    pose_tiles: int = 0
    track_max_gap: int = 15
    fill_max_gap: int = 10
    smooth_cutoff_hz: float = 6.0
    metrics_landmarks: str = "cleaned"
    overlay_max_resolution: int = 720
    pose_range_frames: int = 9000
    pose_service_idle_s: float = 0.0
    quality_min_detection_rate: float = 0.5
    quality_min_visibility: float = 0.5
    quality_max_jitter_px: float = 20.0
    quality_max_filled: float = 0.25

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineResource:
        return cls(
            home=str(settings.home),
            lake_uri=settings.lake_uri,
            drop_uri=settings.drop_uri,
            model_variant=settings.model_variant,
            model_source=settings.model_source,
            model_sha256=settings.model_sha256,
            min_visibility=settings.min_visibility,
            pose_workers=settings.pose_workers,
            pose_delegate=settings.pose_delegate,
            cost_cpu_pod_hour=settings.cost_cpu_pod_hour,
            cost_gpu_pod_hour=settings.cost_gpu_pod_hour,
            max_bytes=settings.limits.max_bytes,
            max_duration_s=settings.limits.max_duration_s,
            max_pixels=settings.limits.max_pixels,
            max_frames=settings.limits.max_frames,
            presign_expiry_s=settings.presign_expiry_s,
            num_poses=settings.num_poses,
            pose_tiles=settings.pose_tiles,
            track_max_gap=settings.track_max_gap,
            fill_max_gap=settings.fill_max_gap,
            smooth_cutoff_hz=settings.smooth_cutoff_hz,
            metrics_landmarks=settings.metrics_landmarks,
            overlay_max_resolution=settings.overlay_max_resolution,
            pose_range_frames=settings.pose_range_frames,
            pose_service_idle_s=settings.pose_service.idle_s if settings.pose_service else 0.0,
            quality_min_detection_rate=settings.quality.min_detection_rate,
            quality_min_visibility=settings.quality.min_visibility,
            quality_max_jitter_px=settings.quality.max_jitter_px,
            quality_max_filled=settings.quality.max_filled,
        )

    def settings(self) -> Settings:
        base = Settings.from_env({"BODYSCRIPT_HOME": self.home, "BODYSCRIPT_MODEL": self.model_variant})
        return dataclasses.replace(
            base,
            lake_uri=self.lake_uri,
            drop_uri=self.drop_uri,
            model_source=self.model_source,
            model_sha256=self.model_sha256,
            min_visibility=self.min_visibility,
            pose_workers=self.pose_workers,
            pose_delegate=self.pose_delegate,
            cost_cpu_pod_hour=self.cost_cpu_pod_hour,
            cost_gpu_pod_hour=self.cost_gpu_pod_hour,
            limits=self.limits,
            presign_expiry_s=self.presign_expiry_s,
        )

    @property
    def pose_options(self) -> PoseOptions:
        return PoseOptions(self.num_poses, self.pose_tiles or None, self.pose_delegate, self.track_max_gap)

    @property
    def pose_service(self) -> PoseService | None:
        return PoseService(Path(self.home), self.pose_service_idle_s) if self.pose_service_idle_s > 0 else None

    @property
    def overlay_style(self) -> OverlayStyle:
        return OverlayStyle(self.overlay_max_resolution, self.min_visibility, label_people=self.num_poses > 1)

    @property
    def cleaning(self) -> CleaningOptions:
        return CleaningOptions(self.fill_max_gap, self.smooth_cutoff_hz, self.min_visibility)

    @property
    def quality(self) -> QualityThresholds:
        return QualityThresholds(
            self.quality_min_detection_rate,
            self.quality_min_visibility,
            self.quality_max_jitter_px,
            self.quality_max_filled,
        )

    @property
    def limits(self) -> Limits:
        return Limits(self.max_bytes, self.max_duration_s, self.max_pixels, self.max_frames)

    def model(self) -> ModelFile:
        """The pose model file, fetched into the cache on first use and hash-checked."""
        return ensure_model(self.settings())

    def s3_client(self) -> Any:
        """The S3 client of this process, created once (see ``storage.s3_client``)."""
        return storage.s3_client()

    def download_link(self, uri: str) -> str | None:
        """A presigned, expiring HTTPS link for an ``s3://`` object; None for local files."""
        if not uri.startswith("s3://"):
            return None
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        # Signature V4 (the client's): what MinIO and every current S3 region accept, with an explicit expiry.
        return self.s3_client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.presign_expiry_s
        )
