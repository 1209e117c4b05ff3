"""The research exports of a generated partition, read back by independent parsers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES
from bodyscript_pipeline.steps import clean_landmarks as cleaned_layer
from bodyscript_pipeline.steps.exports import write_exports, write_person_trc
from bodyscript_pipeline.steps.metrics import compute_metrics
from tests.bodyscript_pipeline.exports.test_opensim import parse_mot, parse_trc
from tests.support.synthetic_partition import GAP_LONG, cleaned


def test_exports_read_back(lake: VideoLake) -> None:
    cleaned_layer.clean_landmarks(lake.lake_uri, lake.partition, CleaningOptions(10, 6.0, 0.5))
    compute_metrics(lake.lake_uri, lake.partition, 0.5, "cleaned")
    result = write_exports(lake.lake_uri, lake.partition)
    assert result.people == [0, 1]
    folder = Path(lake.folder("exports").removeprefix("file://"))
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["person-0.trc", "person-0.mot", "person-1.trc", "person-1.mot", "landmarks.csv"]
        + [f"angles-{k}.png" for k in ("knee", "hip", "ankle", "shoulder", "elbow")]
    )

    trc = parse_trc((folder / "person-0.trc").read_text())
    assert trc["markers"] == list(LANDMARK_NAMES)
    assert trc["header"]["NumFrames"] == "280" and trc["header"]["Units"] == "m"
    assert trc["frames"][0] == 1 and trc["frames"][-1] == 280
    assert np.isnan(trc["xyz"][GAP_LONG.start]).all(), "frames without the person are empty markers"
    clean0 = cleaned(lake).filter((pl.col("person") == 0) & (pl.col("frame_index") == 10)).sort("landmark_id")
    assert np.allclose(trc["xyz"][10, :, 0], clean0["world_x"].to_numpy(), atol=1e-6)
    assert np.allclose(trc["xyz"][10, :, 1], -clean0["world_y"].to_numpy(), atol=1e-6), "y up in OpenSim"
    assert np.allclose(trc["times"][:3], [0.0, 0.033, 0.067])

    mot = parse_mot((folder / "person-1.mot").read_text())
    assert mot["header"]["nRows"] == "280" and mot["header"]["inDegrees"] == "yes"
    assert mot["names"][0] == "time" and "left_knee" in mot["names"]
    metrics = pl.read_parquet(lake.table_part("frame_metrics").removeprefix("file://")).filter(pl.col("person") == 1)
    column = mot["names"].index("left_knee")
    assert np.allclose(mot["rows"][:, column], metrics["left_knee_angle_deg"].to_numpy(), atol=1e-5, equal_nan=True)

    long = pl.read_csv(folder / "landmarks.csv")
    assert long.height == pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).height
    assert set(result.plots) == {"knee", "hip", "ankle", "shoulder", "elbow"}
    assert all(png.startswith(b"\x89PNG") for png in result.plots.values())

    buffer = io.StringIO()
    with pytest.raises(Exception, match="person 7"):
        write_person_trc(lake.lake_uri, lake.partition, 7, buffer)
