"""Fixtures shared by the steps' tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bodyscript_pipeline.lake.paths import VideoLake
from tests.support.synthetic_partition import make_partition


@pytest.fixture
def lake(tmp_path: Path) -> VideoLake:
    return make_partition(f"file://{tmp_path / 'lake'}", "synthetic")
