"""Dagster resources: the pipeline's settings, pose model and S3 access, as configured by the environment.

Credentials are never part of resource config (so never shown in the UI): boto3 and s3fs read them from the
standard ``AWS_*`` variables or the pod's mounted identity.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from bodyscript_pipeline import storage
from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.overlay.video import OverlayStyle
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ModelFile, ensure_model
from bodyscript_pipeline.pose.service import PoseService
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.landmarks import overlay_style, pose_options


def step_io_manager(settings: Settings) -> dg.IOManagerDefinition:
    """Where small step outputs (pose ranges and their records) live between pods: under k8s on an S3 lake,
    ``BODYSCRIPT_STEP_RECORDS_URI``, outside the lake (they are pickles: whoever can write them runs code in
    the next pod, so only the pipeline may), until the run ends (sensors/step_records.py); else files under
    ``DAGSTER_HOME``, which every local step shares. Its config schema is empty: no launch may point it at
    other files."""
    if not settings.step_records_on_s3:
        return dg.IOManagerDefinition(
            resource_fn=lambda init: dg.FilesystemIOManager().create_io_manager(init), config_schema={}
        )
    # dagster_aws costs more than half a second to import: only the k8s code location on S3 pays for it.
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    bucket, _, prefix = settings.step_records_uri.removeprefix("s3://").partition("/")
    manager = S3PickleIOManager(  # keys: <prefix>/storage/<run_id>/<step>/<output>
        s3_resource=S3Resource(endpoint_url=storage.s3_endpoint_url(), region_name=storage.s3_region()),
        s3_bucket=bucket,
        s3_prefix=prefix.strip("/"),
    )
    return dg.IOManagerDefinition(resource_fn=lambda _: manager, config_schema={})


def pipeline_resource(settings: Settings) -> dg.ResourceDefinition:
    """The ``pipeline`` resource of the code location: an empty config schema, so a launch that tries to
    configure it is refused rather than silently ignored."""
    pipeline = PipelineResource(settings)
    return dg.ResourceDefinition(
        resource_fn=lambda _: pipeline,
        config_schema={},
        description="Drop zone, lake, pose model and limits: set by the deployment's environment only.",
    )


class PipelineResource:
    """Where the drop zone and lake are, which pose model runs, and how output links are made.

    Deployment settings come from the environment only (``Settings``): this resource has no run config, so
    nobody who reaches the UI can redirect writes, swap the model or lift the input limits at launch. Bind it
    as ``dg.ResourceParam[PipelineResource]``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineResource:
        return cls(settings)

    @property
    def pose_options(self) -> PoseOptions:
        return pose_options(self.settings)

    @property
    def pose_service(self) -> PoseService | None:
        return self.settings.pose_service

    @property
    def overlay_style(self) -> OverlayStyle:
        return overlay_style(self.settings)

    @property
    def cleaning(self) -> CleaningOptions:
        s = self.settings
        return CleaningOptions(s.fill_max_gap, s.smooth_cutoff_hz, s.min_visibility)

    def model(self) -> ModelFile:
        """The pose model file, fetched into the cache on first use and hash-checked."""
        return ensure_model(self.settings)

    def s3_client(self) -> Any:
        """The S3 client of this process, created once (see ``storage.s3_client``)."""
        return storage.s3_client()

    def download_link(self, uri: str) -> str | None:
        """A presigned, expiring link for an ``s3://`` object at the public endpoint (HTTPS, or loopback HTTP:
        ``BODYSCRIPT_S3_PUBLIC_ENDPOINT``), never valid longer than the credentials that signed it; None for
        local files."""
        if not uri.startswith("s3://"):
            return None
        return storage.presigned_url(uri, self.settings.presign_expiry_s, self.settings.s3_public_endpoint)
