"""Reconstructable jobs: executors that start a process (or pod) per step rebuild the job in each child from a
module-level function, so tests that run them point here."""

from __future__ import annotations

import dagster as dg

from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions


def process_video_from_env() -> dg.JobDefinition:
    """The product's ``process_video`` job with the settings of the environment (BODYSCRIPT_EXECUTOR...)."""
    return build_definitions().resolve_job_def(PROCESS_VIDEO_JOB)
