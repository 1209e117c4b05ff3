"""While a run writes a partition, the lake's views leave it out: a marker under ``writing/`` says so."""

from __future__ import annotations

import json

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.compaction import restore
from bodyscript_pipeline.lake.paths import WRITING, VideoLake


def begin_writing(lake_uri: str, partition: str, run_id: str) -> None:
    """Hide the partition from the lake's views until :func:`end_writing`: its outputs are about to change. A
    compacted partition gets its per-video files back first, so the run's steps read and write them as ever."""
    storage.write_bytes(VideoLake(lake_uri, partition).writing, json.dumps({"run_id": run_id}).encode())
    restore(lake_uri, partition)


def end_writing(lake_uri: str, partition: str) -> None:
    """Every output of the run is written: the partition's new set shows in the views at once (its per-video
    files, marked fresh, rather than any compacted rows of it)."""
    lake = VideoLake(lake_uri, partition)
    storage.write_bytes(lake.fresh, b"{}")
    storage.delete_tree(lake.folder(WRITING))
