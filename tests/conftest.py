"""Shared fixtures: the real clip and model from ``../shared``, and a fresh BodyScript home per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodyscript_pipeline.settings import Settings
from tests.support.demo_run import demo_run  # noqa: F401 - the session's real-clip run, shared by several test files
from tests.support.repo import REPO
from tests.support.s3_server import S3Server, running_s3_server

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
    # Most tests feed generated or tiny clips where the model finds few people or none; the quality gate has
    # its own tests (test_bad_input's nobody-in-view test, test_cleaned_layer) and is opened here for the rest.
    monkeypatch.setenv("BODYSCRIPT_QUALITY_MIN_DETECTION_RATE", "0")
    # Every test has its own home, so its own warm pose service: let each go soon after its test.
    monkeypatch.setenv("BODYSCRIPT_POSE_SERVICE_IDLE_S", "20")
    for name in ("BODYSCRIPT_LAKE_URI", "BODYSCRIPT_DROP_URI", "BODYSCRIPT_MODEL", "BODYSCRIPT_MODEL_SHA256"):
        monkeypatch.delenv(name, raising=False)
    return Settings.from_env()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """An empty S3 endpoint, with the AWS_* variables pointing at it for this test."""
    s3_server.reset()
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    yield s3_server
