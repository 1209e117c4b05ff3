"""The ``videos`` dynamic partitions: one partition per source video (keys: ``partition_keys``)."""

import dagster as dg

VIDEOS_PARTITIONS_NAME = "videos"
videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITIONS_NAME)
