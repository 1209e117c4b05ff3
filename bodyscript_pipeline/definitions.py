"""The Dagster code location: ``dagster dev -m bodyscript_pipeline.definitions`` loads ``defs``."""

from __future__ import annotations

import dagster as dg

from assets import PROCESS_VIDEO_ASSETS, PROCESS_VIDEO_JOB, fleet_summary, process_video_job, source_video
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from sensors import build_automation

__all__ = ["PROCESS_VIDEO_JOB", "build_definitions", "defs"]


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """BODYSCRIPT_EXECUTOR: one process per step (default), all steps in one process, or one pod per step."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if settings.executor == "in_process":
        return dg.in_process_executor
    return dg.multiprocess_executor


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    automation = build_automation(settings)
    return dg.Definitions(
        executor=executor_for(settings),
        assets=[source_video, *PROCESS_VIDEO_ASSETS, fleet_summary],
        jobs=[process_video_job, *automation.jobs],
        sensors=automation.sensors,
        schedules=automation.schedules,
        resources={"pipeline": PipelineResource.from_settings(settings)},
    )


defs = build_definitions()
