"""The real run queue, looked at one step at a time: an instance with the repo's dagster.yaml (its
QueuedRunCoordinator and tag limits), runs queued with the tags a sensor gives them, and Dagster's queue daemon
(``QueuedRunCoordinatorDaemon``) run one iteration per call, which says which runs it started, in order.

The queue orders runs by their tags alone, so each run is of a one-step job, and the launcher is Dagster's
synchronous one, which executes the run while the daemon launches it: a run started is finished before the next
is launched, and its slot is free at the next look."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from tests.support.observed_runs import install_dagster_yaml
from tests.support.repo import REPO

SYNC_LAUNCHER = {"module": "dagster._core.launcher.sync_in_memory_run_launcher", "class": "SyncInMemoryRunLauncher"}


@dg.op
def queued_step() -> None:
    return None


@dg.job(executor_def=dg.in_process_executor)  # no process per step: the run is its tags
def queued_job() -> None:
    queued_step()


QUEUED_ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=__name__)), "__repository__"),
    queued_job.name,
)


def queue_instance(home: Path, max_concurrent_runs: int) -> dg.DagsterInstance:
    """A SQLite instance in ``home`` with the repo's dagster.yaml, but ``max_concurrent_runs``, runs dequeued in
    priority order one after the other (no threads) and the synchronous launcher."""
    repo = yaml.safe_load((REPO / "dagster.yaml").read_text())
    runs = {**repo["concurrency"]["runs"], "max_concurrent_runs": max_concurrent_runs}
    install_dagster_yaml(
        home,
        concurrency={**repo["concurrency"], "runs": runs},
        run_queue={**repo["run_queue"], "dequeue_use_threads": False},
        run_launcher=SYNC_LAUNCHER,
    )
    return dg.DagsterInstance.from_config(str(home))


def enqueue(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    """Queue a run with ``tags`` (as the daemon queues a sensor's run request); returns its id."""
    run = instance.create_run_for_job(
        queued_job,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.NOT_STARTED,
        tags=tags,
        remote_job_origin=QUEUED_ORIGIN,
        job_code_origin=dg.reconstructable(queued_job).get_python_origin(),
    )
    instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # queueing needs no workspace
    return run.run_id


def _queued(instance: dg.DagsterInstance) -> set[str]:
    return {r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))}


@contextmanager
def queue_daemon(instance: dg.DagsterInstance) -> Iterator[Callable[[], list[str]]]:
    """A function that runs one iteration of the queue daemon and returns the runs it started, in start order."""
    with (
        QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon,
        create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace,
    ):

        def look() -> list[str]:
            waiting = _queued(instance)
            list(daemon.run_iteration(workspace))
            started = waiting - _queued(instance)
            records = instance.get_run_records(dg.RunsFilter(run_ids=list(started))) if started else []
            return [r.dagster_run.run_id for r in sorted(records, key=lambda r: r.start_time or 0.0)]

        yield look
