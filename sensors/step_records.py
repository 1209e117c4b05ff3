"""Step records go with their run: when a run ends, the records its steps passed each other through S3 (the
step IO manager's ``<step records>/storage/<run_id>/``) are deleted.

A failed run that Dagster will retry keeps them (the retry, from failure, reads the records of the steps that
succeeded), and so does a run re-executed while another of its group still runs: the records of a run group
(a run and its re-executions) go together, when its last run ends. A re-execution from failure launched by
hand after that finds them gone: re-execute all steps instead. Endings are read from the event log, so a run
deleted before the next tick leaves its records behind."""

from __future__ import annotations

import json

import dagster as dg
from dagster._core.storage.tags import WILL_RETRY_TAG

from bodyscript_pipeline import storage
from bodyscript_pipeline.settings import Settings

STEP_RECORDS_SENSOR = "step_records_cleanup_sensor"
ENDINGS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 20  # run endings read per kind and tick: a tick costs at most 60 runs' listings
MAX_GROUP = 20  # runs of one group cleaned at once (a run and its retries and re-executions)


def build_step_records_sensor(settings: Settings) -> dg.SensorDefinition:
    records_uri = settings.step_records_uri

    @dg.sensor(
        name=STEP_RECORDS_SENSOR,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Deletes the step records of ended runs under {records_uri}/storage/.",
    )
    def step_records_cleanup(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = _cursor(context.cursor)
        ended: dict[str, None] = {}
        for kind in ENDINGS:
            changes = context.instance.fetch_run_status_changes(
                dg.RunStatusChangeRecordsFilter(kind, after_storage_id=after[kind.value]),
                limit=RUNS_PER_TICK,
                ascending=True,
            )
            for record in changes.records:
                after[kind.value] = record.storage_id
                ended[record.run_id] = None
        deleted = 0
        for run_id in ended:
            for done in _group_to_clean(context.instance, run_id):
                deleted += storage.delete_prefix(f"{records_uri}/storage/{done}")
        reason = f"{len(ended)} run(s) ended, {deleted} step record(s) deleted" if ended else "no finished run"
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(after))

    return step_records_cleanup


def _cursor(raw: str | None) -> dict[str, int]:
    """The last run ending seen, per kind (storage ids); from the start of the event log at first."""
    seen = json.loads(raw) if raw else {}
    return {kind.value: int(seen.get(kind.value, -1)) for kind in ENDINGS}


def _group_to_clean(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The runs whose records may go now that ``run_id`` ended: its whole group once every run of it has ended
    and no retry is still to come; else none (the group's last run to end cleans up)."""
    runs = _group(instance, run_id)
    known = [run for run in runs.values() if run is not None]
    parents = {run.parent_run_id for run in known}
    for run in known:
        awaits_retry = run.tags.get(WILL_RETRY_TAG) == "true" and run.run_id not in parents
        if not run.is_finished or awaits_retry:
            return []
    return list(runs) if len(runs) <= MAX_GROUP else [run_id]


def _group(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.DagsterRun | None]:
    """The run, its ancestors (whose records a re-execution from failure reads) and the runs Dagster groups
    with it (retries and re-executions of the same root). None: a deleted run, whose records nothing reads."""
    runs: dict[str, dg.DagsterRun | None] = {}
    next_id: str | None = run_id
    while next_id and next_id not in runs and len(runs) <= MAX_GROUP:
        run = instance.get_run_by_id(next_id)
        runs[next_id] = run
        next_id = run.parent_run_id if run else None
    try:
        group = instance.get_run_group(run_id) if runs[run_id] else None
    except dg.DagsterRunNotFoundError:  # its root run was deleted (run retention): the lineage is all there is
        group = None
    runs.update({other.run_id: other for other in (group[1] if group else [])})
    return runs
