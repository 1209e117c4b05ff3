"""What every per-video step does around its work, whichever executor runs it: one run per partition writes,
the source version the run was launched for, retries of transient faults, expected failures without retry,
the lineage of each asset it wrote, and progress the CLI draws its bar from."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

from assets.partitions import PARTITION_TAG, SOURCE_VERSION_TAG
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.lineage import record_lineage

PROGRESS_PREFIX = "progress:"
# Transient faults (storage hiccups, a killed worker) are retried with exponential backoff and jitter;
# expected failures (bad video, missing model) raise Failure(allow_retries=False) and fail at once.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@contextmanager
def user_errors(asset: str) -> Iterator[None]:
    """Expected failures (bad video, missing model) fail the step with their one-line reason and no retry;
    ``asset`` says which of the step's assets failed."""
    try:
        yield
    except BodyscriptError as exc:
        metadata = {"reason": str(exc), "asset": asset}
        raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from None


ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
PARTITION_WAIT_S = 10
PARTITION_WAIT_RETRIES = 360  # an hour


def partition_runs(instance: dg.DagsterInstance, partition: str, statuses: list[dg.DagsterRunStatus]) -> list[str]:
    """Ids of the runs of one video partition in these states."""
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: partition}, statuses=statuses))
    return [record.dagster_run.run_id for record in records]


def only_run_of_partition(context: dg.OpExecutionContext) -> None:
    """At most one run per partition writes its outputs: the run queue holds a second one back (dagster.yaml:
    one run per ``dagster/partition`` value); a run that meets another anyway (``bodyscript process`` bypasses the
    queue, or an instance keeps an older dagster.yaml) waits for it, before writing anything."""
    others = [r for r in partition_runs(context.instance, context.partition_key, ACTIVE) if r != context.run_id]
    if others:
        context.log.info(f"partition {context.partition_key} is being processed by run {others[0]}; waiting for it")
        raise dg.RetryRequested(max_retries=PARTITION_WAIT_RETRIES, seconds_to_wait=PARTITION_WAIT_S)


def pinned_version(context: dg.OpExecutionContext) -> str | None:
    """The source version this run was launched for (None: the registered one, when the step starts)."""
    return context.run.tags.get(SOURCE_VERSION_TAG)


def lineage(context: dg.OpExecutionContext, settings: Settings, asset: dg.AssetKey) -> None:
    """One lineage row in the lake for the asset this step has just written: its version and the values that
    determine it, and this run (what ``stale_partitions`` compares with the current versions)."""
    record_lineage(settings.lake_uri, context.partition_key, asset.to_user_string(), settings, context.run_id)


def progress_logger(context: dg.OpExecutionContext, asset: str, every: int = 10) -> Callable[[int, int], None]:
    """Logs ``progress: done/total frames (asset)`` about ``every`` percent; the CLI draws its bar from these."""
    last = [-1]

    def report(done: int, total: int) -> None:
        step = max(1, total * every // 100)
        if done == total or done // step != last[0]:
            last[0] = done // step
            context.log.info(f"{PROGRESS_PREFIX} {done}/{total} frames ({asset})")

    return report
