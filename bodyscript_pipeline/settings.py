"""Settings read from environment variables, with defaults that work on a laptop.

| variable                   | default                                   |
|----------------------------|-------------------------------------------|
| ``BODYSCRIPT_HOME``        | ``./.bodyscript`` (root of all local state) |
| ``BODYSCRIPT_LAKE_URI``    | ``file://$BODYSCRIPT_HOME/lake``          |
| ``BODYSCRIPT_DROP_URI``    | ``file://$BODYSCRIPT_HOME/drop``          |
| ``BODYSCRIPT_MODEL``       | ``full`` (``lite``, ``full`` or ``heavy``)  |
| ``BODYSCRIPT_MODEL_SOURCE``| the official MediaPipe URL of that model  |
| ``BODYSCRIPT_MODEL_SHA256``| the official hash of that model           |
| ``BODYSCRIPT_MIN_VISIBILITY`` | ``0.5`` (landmarks below are not drawn or measured) |
| ``DAGSTER_HOME``           | ``$BODYSCRIPT_HOME/dagster``              |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.model_catalog import MODEL_VARIANTS


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_uri: str
    drop_uri: str
    model_variant: str
    model_source: str
    model_sha256: str
    min_visibility: float
    dagster_home: Path

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("BODYSCRIPT_HOME") or ".bodyscript").expanduser().resolve()
        variant = (env.get("BODYSCRIPT_MODEL") or "full").strip().lower()
        if variant not in MODEL_VARIANTS:
            raise BodyscriptError(
                f"BODYSCRIPT_MODEL={variant!r} is not a pose model; choose one of {', '.join(MODEL_VARIANTS)}"
            )
        spec = MODEL_VARIANTS[variant]
        try:
            min_visibility = float(env.get("BODYSCRIPT_MIN_VISIBILITY") or 0.5)
        except ValueError as exc:
            raise BodyscriptError(f"BODYSCRIPT_MIN_VISIBILITY must be a number: {exc}") from None
        return cls(
            home=home,
            lake_uri=_as_uri(env.get("BODYSCRIPT_LAKE_URI") or str(home / "lake")),
            drop_uri=_as_uri(env.get("BODYSCRIPT_DROP_URI") or str(home / "drop")),
            model_variant=variant,
            model_source=env.get("BODYSCRIPT_MODEL_SOURCE") or spec.url,
            model_sha256=(env.get("BODYSCRIPT_MODEL_SHA256") or spec.sha256).lower(),
            min_visibility=min_visibility,
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
        )


def _as_uri(location: str) -> str:
    """Plain paths become absolute ``file://`` URIs; URIs with a scheme are kept as given."""
    if "://" in location:
        return location.rstrip("/")
    return "file://" + str(Path(location).expanduser().resolve())
