"""The estimator's tiles cover a wide frame with overlap; asking for the GPU delegate where none can start
falls back to the CPU, says so, and still works."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bodyscript_pipeline.pose.estimator import PoseEstimator, tiles_for
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.settings import Settings


def test_tiles_cover_the_frame_with_overlap() -> None:
    assert tiles_for(1768, 994, num_poses=1) == tiles_for(1768, 994, num_poses=1, tiles=1)
    assert len(tiles_for(1768, 994, num_poses=1)) == 1, "one person: the whole frame, as before"
    wide = tiles_for(1896, 746, num_poses=3)
    assert len(wide) == 3 and wide[0].x0 == 0 and wide[-1].x0 + wide[-1].width == 1896
    assert all(t.width == t.height == 746 for t in wide)
    assert all(a.x0 + a.width - b.x0 >= 0.2 * 746 for a, b in itertools.pairwise(wide)), "20 % overlap"
    tall = tiles_for(720, 1600, num_poses=2)
    assert tall[0].y0 == 0 and tall[-1].y0 + tall[-1].height == 1600 and tall[0].width == 720
    assert len(tiles_for(1000, 900, num_poses=4)) == 1, "a near-square frame is not tiled"


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
