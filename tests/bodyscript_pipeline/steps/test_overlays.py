"""The overlays step's reading of the landmarks: whole frames, whatever the batch size."""

from __future__ import annotations

import polars as pl

from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS


def test_overlay_reads_whole_frames_across_batches(lake: VideoLake) -> None:
    """Undetected frames are one row, so reading batches cut frames in two; each frame still comes whole."""
    from bodyscript_pipeline.steps.overlays import _poses_by_frame

    raw = pl.read_parquet(lake.table_part("landmarks").removeprefix("file://")).drop_nulls("person")
    expected = raw.group_by("frame_index").agg(pl.col("person").n_unique()).sort("frame_index")
    for rows in (NUM_LANDMARKS * 7 + 5, 100, 10_000_000):  # batch sizes that split frames, and one batch
        got = [(f, len(ids), poses.shape) for f, ids, poses in _poses_by_frame(lake.table_part("landmarks"), rows)]
        assert [f for f, _, _ in got] == expected["frame_index"].to_list(), rows
        assert [n for _, n, _ in got] == expected["person"].to_list()
        assert all(shape == (n, NUM_LANDMARKS, 3) for _, n, shape in got)
