"""Sensors and schedules: drop-zone automation, reprocessing of what a changed version made stale, retention, and
the cleanup of ended runs' step records."""

from dataclasses import dataclass

import dagster as dg

from assets import FLEET_SUMMARY_KEY
from assets.lake_compaction import LAKE_COMPACTION_KEY, LAKE_MAINTENANCE_TAGS
from bodyscript_pipeline.settings import Settings
from sensors.drop_zone import DROP_ZONE_SENSOR, build_drop_zone_sensor
from sensors.reprocess import REPROCESS_SENSOR, build_reprocess_sensor
from sensors.retention import (
    RETENTION_JOB,
    RETENTION_SCHEDULE,
    SOURCE_CLEANUP_SENSOR,
    build_retention,
    build_source_cleanup_sensor,
)
from sensors.step_records import STEP_RECORDS_SENSOR, build_step_records_sensor


@dataclass(frozen=True)
class Automation:
    sensors: list[dg.SensorDefinition]
    schedules: list[dg.ScheduleDefinition]
    jobs: list[dg.JobDefinition]


FLEET_AUTOMATION_SENSOR = "fleet_automation_sensor"
LAKE_COMPACTION_SENSOR = "lake_compaction_sensor"


def build_automation(settings: Settings) -> Automation:
    retention_job, retention_schedule = build_retention(settings)
    # Evaluates the fleet summary's automation condition; on by default, unlike Dagster's default one.
    fleet_sensor = dg.AutomationConditionSensorDefinition(
        FLEET_AUTOMATION_SENSOR,
        target=[FLEET_SUMMARY_KEY],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,  # a rebuild is a run: a burst of drops should not pay for one every 30 s
    )
    # Evaluates the lake compaction's hourly condition; its runs carry the lake-maintenance tag (one at a time).
    compaction_sensor = dg.AutomationConditionSensorDefinition(
        LAKE_COMPACTION_SENSOR,
        target=[LAKE_COMPACTION_KEY],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        run_tags=LAKE_MAINTENANCE_TAGS,
    )
    sensors = [
        build_drop_zone_sensor(settings),
        build_reprocess_sensor(settings),
        build_source_cleanup_sensor(settings),
        fleet_sensor,
        compaction_sensor,
    ]
    if settings.step_records_on_s3:  # elsewhere they stay in DAGSTER_HOME, as Dagster keeps them
        sensors.append(build_step_records_sensor(settings))
    return Automation(
        sensors=sensors,
        schedules=[retention_schedule],
        jobs=[retention_job],
    )


__all__ = [
    "DROP_ZONE_SENSOR",
    "FLEET_AUTOMATION_SENSOR",
    "LAKE_COMPACTION_SENSOR",
    "REPROCESS_SENSOR",
    "RETENTION_JOB",
    "RETENTION_SCHEDULE",
    "SOURCE_CLEANUP_SENSOR",
    "STEP_RECORDS_SENSOR",
    "Automation",
    "build_automation",
]
