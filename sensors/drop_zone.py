"""The drop-zone sensor: each new video version becomes a partition and a run; nothing runs twice."""

from __future__ import annotations

import dagster as dg

from assets import process_video_job, source_video, videos_partitions
from assets.partitions import SOURCE_URI_TAG, SOURCE_VERSION_TAG
from bodyscript_pipeline.drop_zone.listing import lister_for
from bodyscript_pipeline.drop_zone.scan import resume, scan_settling
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.pose import service as pose_service
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from sensors.drop_memory import KeyValueScanMemory
from sensors.priority import drop_run_tags

DROP_ZONE_SENSOR = "drop_zone_sensor"


def run_key_for(partition: str, version: str) -> str:
    """One run per object version: an identical re-upload never runs twice, a changed one runs again."""
    return f"{partition}@{version}"


def build_drop_zone_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name=DROP_ZONE_SENSOR,
        job=process_video_job,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lists the drop zone (BODYSCRIPT_DROP_URI) a bounded number of pages per tick and "
        "requests one run per new video version.",
    )
    def drop_zone_sensor(
        context: dg.SensorEvaluationContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.SensorResult:
        """A local drop folder is made until the sensor first takes a video (first start: ``$BODYSCRIPT_HOME/drop``
        need not exist); after that, a missing folder or bucket fails the tick, which keeps the cursor, so an
        unmounted disk neither forgets its videos nor runs them again when it is back. What the sensor knows of
        each object is in the instance's key-value store (sensors/drop_memory.py), the cursor a small position."""
        drop_uri = pipeline.settings.drop_uri
        client = pipeline.s3_client() if drop_uri.startswith("s3://") else None
        memory = KeyValueScanMemory(context.instance.run_storage)
        state = resume(context.cursor, memory)
        lister = lister_for(
            drop_uri, s3_client=client, page_size=settings.scan_page_size, create_local_root=not state.taken_any
        )
        result = scan_settling(
            lister,
            state,
            max_pages=settings.scan_max_pages,
            max_new=settings.scan_max_new,
            settle_seconds=settings.settle_s,
            quota_per_hour=settings.quota_per_hour,
            global_quota_per_hour=settings.quota_global_per_hour,
            memory=memory,
        )
        context.log.info(result.describe())
        service = pipeline.pose_service
        if (result.new or result.settling) and service is not None:
            # Warm the pose service while the runs are queued and start (a no-op when it is running).
            pose_service.start(service.home, service.idle_s)
        keys: list[str] = []
        runs: list[dg.RunRequest] = []
        events: list[dg.AssetObservation] = []
        for found in result.new:
            key = partition_key_for(found.obj.key)
            register_source(pipeline.settings.lake_uri, key, found.obj.uri, found.version)
            keys.append(key)
            runs.append(
                dg.RunRequest(
                    run_key=run_key_for(key, found.version),
                    partition_key=key,
                    tags={
                        SOURCE_URI_TAG: found.obj.uri,
                        SOURCE_VERSION_TAG: found.version,
                        **drop_run_tags(found.obj.key, settings.priority_tiers),
                    },
                )
            )
            events.append(
                dg.AssetObservation(
                    source_video.key,
                    partition=key,
                    metadata={"uri": found.obj.uri, "version": found.version, "size_bytes": found.obj.size},
                    tags={"dagster/data_version": found.version},
                )
            )
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[videos_partitions.build_add_request(keys)] if keys else [],
            asset_events=events,
            cursor=result.state.encode(),
            skip_reason=None if runs else result.describe(),
        )

    return drop_zone_sensor
