"""Asking for the GPU delegate where none can start falls back to the CPU, says so, and still works."""

from __future__ import annotations

import numpy as np
import pytest

from bodyscript_pipeline.model import ensure_model
from bodyscript_pipeline.pose import PoseEstimator
from bodyscript_pipeline.settings import Settings


def test_gpu_request_falls_back_to_cpu_with_a_reason(
    bodyscript_home: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    model = ensure_model(bodyscript_home)
    with PoseEstimator(model.path, delegate="gpu") as estimator:
        result = estimator.detect(np.zeros((240, 320, 3), np.uint8), 0)
        if estimator.delegate == "gpu":
            pytest.skip("this machine has a working GPU delegate: nothing to fall back from")
        assert estimator.fallback_reason
        assert "running on the CPU" in caplog.text
        assert result.shape == (0, 33, 8)
    with PoseEstimator(model.path, delegate="cpu") as estimator:
        assert estimator.delegate == "cpu" and estimator.fallback_reason is None
