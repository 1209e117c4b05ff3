"""The Prometheus exporter's Dagster half: reads the instance incrementally into the ``bodyscript_*`` metrics.

It lives in the Dagster layer because it reads the Dagster instance; ``bodyscript monitor``
(bodyscript_pipeline/cli.py) starts it, and the Dagster-free parts are in ``bodyscript_pipeline/monitoring/``.

A refresh costs the same whatever the history holds. It reads only what is new since the last refresh, through
storage-id cursors over the run-status events (RUN_START for queue waits; RUN_SUCCESS, RUN_FAILURE and
RUN_CANCELED for outcomes) and timestamp cursors over the drop-zone sensor's ticks, each with a limit (a
backlog is caught up over the next refreshes). Each run that ended is read once: its step stats, which carry
its materializations' metadata (frames per second, estimated cost, pose delegate). The queue is two counts by
status and its oldest run. The first refresh reads only the newest records of each kind (``backfill``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.instigation_logger import get_instigation_log_records
from dagster._core.execution.stats import StepEventStatus
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from prometheus_client import disable_created_metrics, start_http_server

from assets import DERIVED_STEP, POSE_STEP, PROCESS_VIDEO_JOB, VIDEO_ASSET_KEYS
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.monitoring.families import DELEGATES, PipelineMetrics
from bodyscript_pipeline.monitoring.lake_usage import bytes_per_table
from bodyscript_pipeline.monitoring.refresh_loop import RefreshLoop
from bodyscript_pipeline.monitoring.scan_summary import ScanCounts, parse_scan_summary
from bodyscript_pipeline.settings import Settings
from sensors.drop_zone import DROP_ZONE_SENSOR

RUN_START = dg.DagsterEventType.RUN_START
OUTCOMES = {
    dg.DagsterEventType.RUN_SUCCESS: "success",
    dg.DagsterEventType.RUN_FAILURE: "failure",
    dg.DagsterEventType.RUN_CANCELED: "canceled",
}
QUEUED = [dg.DagsterRunStatus.QUEUED]
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class ReadLimits:
    """The most records of each kind one refresh reads."""

    events: int = 200  # run-status events per event type
    backfill: int = 200  # the newest run-status events per type the first refresh reads
    ticks: int = 20  # drop-zone ticks per sensor state (one every 5 s or more)


def step_name(step_key: str) -> str:
    """A step key without its graph prefix and dynamic mapping key: ``graph.infer_pose_range[frames_0_9]`` is
    ``infer_pose_range``, so the label's values stay few."""
    return step_key.split("[", 1)[0].rsplit(".", 1)[-1]


class InstanceMetrics:
    """What changed in the Dagster instance since the last refresh, into ``metrics``. One thread at a time."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        metrics: PipelineMetrics,
        limits: ReadLimits | None = None,
        job_name: str = PROCESS_VIDEO_JOB,
        sensor_name: str = DROP_ZONE_SENSOR,
    ) -> None:
        self.instance = instance
        self.metrics = metrics
        self.limits = limits or ReadLimits()
        self.job_name = job_name
        self.sensor_name = sensor_name
        self._event_after: dict[dg.DagsterEventType, int | None] = dict.fromkeys((RUN_START, *OUTCOMES), None)
        self._tick_after: dict[str, float] = {}
        self._read = 0

    def refresh(self) -> int:
        """One refresh; returns how many records it read from the instance."""
        self._read = 0
        self._runs()
        self._queue()
        self._drop_zone()
        self.metrics.records_read.inc(self._read)
        return self._read

    def _counted(self, records: Sequence[Any]) -> Sequence[Any]:
        self._read += len(records)
        return records

    def _status_changes(self, event_type: dg.DagsterEventType) -> list[dg.EventLogRecord]:
        after = self._event_after[event_type]
        if after is None:
            newest = self.instance.fetch_run_status_changes(event_type, limit=self.limits.backfill).records
            records = list(reversed(newest))
        else:
            records = self.instance.fetch_run_status_changes(
                dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=after),
                limit=self.limits.events,
                ascending=True,
            ).records
        self._event_after[event_type] = max([after or 0, *(record.storage_id for record in records)])
        return [r for r in self._counted(records) if r.event_log_entry.job_name == self.job_name]

    def _runs(self) -> None:
        events = {event_type: self._status_changes(event_type) for event_type in self._event_after}
        run_ids = sorted({record.run_id for records in events.values() for record in records})
        runs: dict[str, dg.RunRecord] = {}
        if run_ids:
            found = self.instance.get_run_records(dg.RunsFilter(run_ids=run_ids), limit=len(run_ids))
            runs = {record.dagster_run.run_id: record for record in self._counted(found)}
        for event in events[RUN_START]:
            run = runs.get(event.run_id)
            if run is not None and run.start_time is not None:
                self.metrics.queue_wait_seconds.observe(max(0.0, run.start_time - run.create_timestamp.timestamp()))
        for event_type, outcome in OUTCOMES.items():
            for event in events[event_type]:
                self.metrics.video_runs.labels(outcome).inc()
                self._ended(event.run_id, runs.get(event.run_id), outcome == "success")

    def _ended(self, run_id: str, run: dg.RunRecord | None, success: bool) -> None:
        """A run that ended: its duration, its steps' durations, and its materializations' figures."""
        if success and run is not None and run.start_time is not None and run.end_time is not None:
            self.metrics.video_processing_seconds.observe(max(0.0, run.end_time - run.start_time))
        cost, materialized = 0.0, False
        for step in self._counted(self.instance.get_run_step_stats(run_id)):
            name = step_name(step.step_key)
            if step.status == StepEventStatus.SUCCESS and step.start_time and step.end_time:
                self.metrics.step_seconds.labels(name).observe(max(0.0, step.end_time - step.start_time))
            for entry in self._counted(step.materialization_events):
                materialization = entry.asset_materialization
                if materialization is None:
                    continue
                materialized = True
                cost += self._materialized(name, materialization)
        if success and materialized:
            self.metrics.video_estimated_cost.observe(cost)

    def _materialized(self, step: str, materialization: dg.AssetMaterialization) -> float:
        """Records one materialization's figures (assets/metadata.py); returns its estimated cost."""
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        frames_per_s = _number(metadata.get("frames_per_s"))
        if frames_per_s:
            self.metrics.frames_per_second.labels(materialization.asset_key.to_user_string()).observe(frames_per_s)
        delegate = metadata.get("pose_delegate")
        if isinstance(delegate, str):
            self.metrics.pose_delegate.labels(delegate if delegate in DELEGATES else "other").inc()
            if "pose_delegate_fallback" in metadata:
                self.metrics.pose_delegate_fallbacks.inc()
        cost = _number(metadata.get("estimated_cost")) or 0.0
        if cost > 0:
            self.metrics.estimated_cost.labels(step).inc(cost)
        return cost

    def _queue(self) -> None:
        queued = dg.RunsFilter(job_name=self.job_name, statuses=QUEUED)
        self.metrics.queue_depth.set(self.instance.get_runs_count(queued))
        self.metrics.video_runs_in_progress.set(
            self.instance.get_runs_count(dg.RunsFilter(job_name=self.job_name, statuses=IN_PROGRESS))
        )
        oldest = self.instance.get_run_records(queued, limit=1, order_by="create_timestamp", ascending=True)
        waited = time.time() - oldest[0].create_timestamp.timestamp() if self._counted(oldest) else 0.0
        self.metrics.queue_oldest_wait_seconds.set(max(0.0, waited))

    def _drop_zone(self) -> None:
        """The sensor's ticks since the last refresh, oldest first; stops at one still running."""
        states = self._counted(self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR))
        latest: tuple[float, ScanCounts] | None = None
        for state in (s for s in states if s.name == self.sensor_name):
            after = self._tick_after.get(state.selector_id)
            ticks = self.instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=after, limit=self.limits.ticks
            )
            for tick in reversed(self._counted(ticks)):
                if tick.status == TickStatus.STARTED:
                    break
                self._tick_after[state.selector_id] = tick.timestamp
                counts = self._scan_counts(tick)
                if counts is None:
                    continue
                self.metrics.drop_zone_new_versions.inc(counts.new)
                self.metrics.drop_zone_quota_refusals.labels("prefix").inc(counts.over_prefix_quota)
                self.metrics.drop_zone_quota_refusals.labels("global").inc(counts.over_global_quota)
                if latest is None or tick.timestamp > latest[0]:
                    latest = (tick.timestamp, counts)
        if latest is not None:
            self.metrics.drop_zone_last_tick_timestamp.set(latest[0])
            for reason, count in latest[1].backlog.items():
                self.metrics.drop_zone_backlog.labels(reason).set(count)

    def _scan_counts(self, tick: Any) -> ScanCounts | None:
        """The scan summary of a tick: its skip reason when it requested no run, else a line of its log."""
        if tick.skip_reason:
            return parse_scan_summary(tick.skip_reason)
        if not tick.log_key:
            return None
        for record in self._counted(get_instigation_log_records(self.instance, tick.log_key)):
            counts = parse_scan_summary(str(record.get("msg", "")))
            if counts is not None:
                return counts
        return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Exporter:
    """The metrics of the instance and the lake, each refreshed by its own thread, served over HTTP."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        settings: Settings,
        interval_s: float = 15.0,
        lake_interval_s: float = 300.0,
        limits: ReadLimits | None = None,
    ) -> None:
        steps = (POSE_STEP, DERIVED_STEP)
        self.metrics = PipelineMetrics.create(steps, [key.to_user_string() for key in VIDEO_ASSET_KEYS])
        self.instance_metrics = InstanceMetrics(instance, self.metrics, limits)
        self._loops = [
            RefreshLoop("instance", self.instance_metrics.refresh, interval_s, self.metrics),
            RefreshLoop(
                "lake", lambda: self.metrics.set_lake_bytes(bytes_per_table(settings.lake_uri)), lake_interval_s,
                self.metrics,
            ),
        ]  # fmt: skip
        self._server: Any = None

    def start(self, host: str, port: int) -> None:
        """Serves ``http://host:port/metrics`` once the instance has been read once."""
        self._loops[0].refresh_once()
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.metrics.registry)
        except OSError as exc:
            raise BodyscriptError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        for loop in self._loops:
            loop.start(skip_first=loop is self._loops[0])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        for loop in self._loops:
            loop.stop()


def serve_metrics(
    instance: dg.DagsterInstance, settings: Settings, host: str, port: int, interval_s: float, lake_interval_s: float
) -> None:
    """Serves the metrics until interrupted."""
    disable_created_metrics()  # no ``*_created`` series: Prometheus does not need them
    exporter = Exporter(instance, settings, interval_s, lake_interval_s)
    exporter.start(host, port)
    print(f"serving metrics on http://{host}:{port}/metrics", flush=True)
    try:
        while True:  # short sleeps: a signal another thread received still interrupts the main thread soon
            time.sleep(1)
    finally:
        exporter.stop()
