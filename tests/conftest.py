"""Shared fixtures: the real clip and model from ``../shared``, and a fresh BodyScript home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bodyscript_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def model_source() -> str:
    """Where tests fetch the official model from: BODYSCRIPT_MODEL_SOURCE, else the copy in ../shared."""
    source = os.environ.get("BODYSCRIPT_MODEL_SOURCE") or str(SHARED / "models" / "pose_landmarker_full.task")
    if "://" not in source and not Path(source).is_file():
        pytest.fail(f"pose model not found at {source}; set BODYSCRIPT_MODEL_SOURCE")
    return source


@pytest.fixture(scope="session")
def demo_video() -> Path:
    path = SHARED / "videos" / "sports2d_demo.mp4"
    if not path.is_file():
        pytest.fail(f"real test clip missing: {path}")
    return path


@pytest.fixture
def bodyscript_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_source: str) -> Settings:
    """A fresh BODYSCRIPT_HOME (and DAGSTER_HOME inside it) for one test; returns its settings."""
    home = tmp_path / "home"
    monkeypatch.setenv("BODYSCRIPT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("BODYSCRIPT_MODEL_SOURCE", model_source)
    for name in ("BODYSCRIPT_LAKE_URI", "BODYSCRIPT_DROP_URI", "BODYSCRIPT_MODEL", "BODYSCRIPT_MODEL_SHA256"):
        monkeypatch.delenv(name, raising=False)
    return Settings.from_env()
