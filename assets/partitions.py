"""The ``videos`` dynamic partitions: one partition per source video (keys: ``partition_keys``)."""

import dagster as dg

VIDEOS_PARTITIONS_NAME = "videos"
videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITIONS_NAME)

# Tags of a video's run: the source object and the version it was launched for (the run processes that
# version or fails; a newer one has its own run).
SOURCE_URI_TAG = "bodyscript/source_uri"
SOURCE_VERSION_TAG = "bodyscript/source_version"
PARTITION_TAG = "dagster/partition"
