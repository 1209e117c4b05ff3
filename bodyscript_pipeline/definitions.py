"""The Dagster code location: ``dagster dev -m bodyscript_pipeline.definitions`` loads ``defs``.

Everything is built from the ``Settings`` given to :func:`build_definitions`, pods' placement included; only
``defs``, the code location Dagster loads, reads them from the environment."""

from __future__ import annotations

import dagster as dg

from assets import (
    PROCESS_VIDEO_JOB,
    fleet_summary_asset,
    lake_compaction_asset,
    process_video_assets,
    process_video_job,
    source_video,
)
from bodyscript_pipeline.settings import Settings
from resources import pipeline_resource, step_io_manager
from sensors import build_automation
from sensors.forget import build_forget_job

__all__ = ["PROCESS_VIDEO_JOB", "build_definitions", "defs"]


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """BODYSCRIPT_EXECUTOR: every step of a run in the run's own process (default: a video's two steps cost
    less than a process start-up each, and pose inference runs in its own worker processes anyway), one
    process per step, or one pod per step."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        # Pods take image, env and mounts from the deployment (the run launcher's config) only: a launch
        # that tries to configure the executor is refused.
        return k8s_job_executor.configured(lambda _: {}, config_schema={}, name="k8s")
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


def video_assets_for(settings: Settings) -> list[dg.AssetsDefinition]:
    """The per-video assets: two steps; under k8s the same two pods for a short video, and a GPU pod per
    further frame range for a long one (assets/pose_ranges.py)."""
    if settings.executor != "k8s":
        return process_video_assets(settings)
    from assets.pose_ranges import video_assets_by_range

    return [video_assets_by_range(settings)]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    automation = build_automation(settings)
    return dg.Definitions(
        executor=executor_for(settings),
        assets=[
            source_video,
            *video_assets_for(settings),
            fleet_summary_asset(settings),
            lake_compaction_asset(settings),
        ],
        jobs=[process_video_job, *automation.jobs, build_forget_job()],
        sensors=automation.sensors,
        schedules=automation.schedules,
        resources={"pipeline": pipeline_resource(settings), "io_manager": step_io_manager(settings)},
    )


defs = build_definitions()
