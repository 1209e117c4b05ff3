"""``source_video``: the dropped video object. Never materialized here: the drop-zone sensor (and ``bodyscript
process``) observe it with its URI and version."""

import dagster as dg

from assets.partitions import videos_partitions

VIDEO_GROUP = "video"  # the per-video assets' group in the UI

source_video = dg.AssetSpec(
    "source_video",
    partitions_def=videos_partitions,
    group_name=VIDEO_GROUP,
    description="The dropped video object; observed with its URI and version (ETag, or size and mtime).",
    kinds={"video"},
)
