"""Sensors and schedules: drop-zone automation and retention."""

from dataclasses import dataclass

import dagster as dg

from bodyscript_pipeline.settings import Settings
from sensors.drop_zone import DROP_ZONE_SENSOR, build_drop_zone_sensor
from sensors.retention import (
    RETENTION_JOB,
    RETENTION_SCHEDULE,
    SOURCE_CLEANUP_SENSOR,
    build_retention,
    build_source_cleanup_sensor,
)


@dataclass(frozen=True)
class Automation:
    sensors: list[dg.SensorDefinition]
    schedules: list[dg.ScheduleDefinition]
    jobs: list[dg.JobDefinition]


def build_automation(settings: Settings) -> Automation:
    retention_job, retention_schedule = build_retention(settings)
    return Automation(
        sensors=[build_drop_zone_sensor(settings), build_source_cleanup_sensor(settings)],
        schedules=[retention_schedule],
        jobs=[retention_job],
    )


__all__ = [
    "DROP_ZONE_SENSOR",
    "RETENTION_JOB",
    "RETENTION_SCHEDULE",
    "SOURCE_CLEANUP_SENSOR",
    "Automation",
    "build_automation",
]
