"""Dagster resources: the pipeline's settings and pose model, as configured by the environment."""

from __future__ import annotations

import dagster as dg

from bodyscript_pipeline.model import ModelFile, ensure_model
from bodyscript_pipeline.settings import Settings


class PipelineResource(dg.ConfigurableResource):
    """Where the lake is and which pose model runs; built from ``BODYSCRIPT_*`` variables."""

    home: str
    lake_uri: str
    model_variant: str
    model_source: str
    model_sha256: str
    min_visibility: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineResource:
        return cls(
            home=str(settings.home),
            lake_uri=settings.lake_uri,
            model_variant=settings.model_variant,
            model_source=settings.model_source,
            model_sha256=settings.model_sha256,
            min_visibility=settings.min_visibility,
        )

    def settings(self) -> Settings:
        base = Settings.from_env({"BODYSCRIPT_HOME": self.home, "BODYSCRIPT_MODEL": self.model_variant})
        return Settings(
            home=base.home,
            lake_uri=self.lake_uri,
            drop_uri=base.drop_uri,
            model_variant=self.model_variant,
            model_source=self.model_source,
            model_sha256=self.model_sha256,
            min_visibility=self.min_visibility,
            dagster_home=base.dagster_home,
        )

    def model(self) -> ModelFile:
        """The pose model file, fetched into the cache on first use and hash-checked."""
        return ensure_model(self.settings())
