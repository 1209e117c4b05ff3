"""The exporter's metric families (``bodyscript_*``), on their own registry.

Counters and histograms count what the exporter read since it started (Prometheus's ``rate`` and ``increase``
bridge its restarts); gauges are the state of the last refresh. Label values known in advance are created at
zero, so every series exists from the first scrape and a rate over it is 0, not absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("success", "failure", "canceled")
DELEGATES = ("cpu", "gpu")
QUOTAS = ("prefix", "global")
SOURCES = ("instance", "lake")

SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200)
FRAMES_PER_S = (1, 2, 5, 10, 20, 30, 50, 100, 200, 500, 1000)
COST = (0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)


@dataclass(frozen=True)
class PipelineMetrics:
    registry: CollectorRegistry
    video_runs: Counter
    video_processing_seconds: Histogram
    queue_depth: Gauge
    queue_oldest_wait_seconds: Gauge
    video_runs_in_progress: Gauge
    queue_wait_seconds: Histogram
    step_seconds: Histogram
    frames_per_second: Histogram
    estimated_cost: Counter
    video_estimated_cost: Histogram
    pose_delegate: Counter
    pose_delegate_fallbacks: Counter
    lake_bytes: Gauge
    drop_zone_backlog: Gauge
    drop_zone_quota_refusals: Counter
    drop_zone_new_versions: Counter
    drop_zone_last_tick_timestamp: Gauge
    records_read: Counter
    refresh_errors: Counter
    refresh_seconds: Gauge
    last_refresh_timestamp: Gauge

    @classmethod
    def create(
        cls, steps: Iterable[str], assets: Iterable[str], registry: CollectorRegistry | None = None
    ) -> PipelineMetrics:
        """The families on ``registry`` (a new one by default), with ``steps`` and ``assets`` at zero."""
        r = registry if registry is not None else CollectorRegistry()
        metrics = cls(
            registry=r,
            video_runs=Counter(
                "bodyscript_video_runs", "Finished runs of the process_video job, by outcome.", ["outcome"], registry=r
            ),
            video_processing_seconds=Histogram(
                "bodyscript_video_processing_seconds",
                "Start to end of each successful process_video run.",
                buckets=SECONDS,
                registry=r,
            ),
            queue_depth=Gauge("bodyscript_queue_depth", "process_video runs waiting in the run queue.", registry=r),
            queue_oldest_wait_seconds=Gauge(
                "bodyscript_queue_oldest_wait_seconds",
                "How long the oldest queued process_video run has waited.",
                registry=r,
            ),
            video_runs_in_progress=Gauge(
                "bodyscript_video_runs_in_progress", "process_video runs starting or running.", registry=r
            ),
            queue_wait_seconds=Histogram(
                "bodyscript_queue_wait_seconds",
                "Creation to start of each process_video run: its time in the run queue.",
                buckets=SECONDS,
                registry=r,
            ),
            step_seconds=Histogram(
                "bodyscript_step_seconds",
                "Duration of each successful step of a process_video run, by step.",
                ["step"],
                buckets=SECONDS,
                registry=r,
            ),
            frames_per_second=Histogram(
                "bodyscript_frames_per_second",
                "Frames per second of each materialization, by asset (landmarks: pose inference).",
                ["asset"],
                buckets=FRAMES_PER_S,
                registry=r,
            ),
            estimated_cost=Counter(
                "bodyscript_estimated_cost",
                "Estimated cost of the steps' seconds at their pool's pod-hour price (BODYSCRIPT_COST_*_POD_HOUR), "
                "by step.",
                ["step"],
                registry=r,
            ),
            video_estimated_cost=Histogram(
                "bodyscript_video_estimated_cost",
                "Estimated cost of each successful process_video run (the sum over its materializations).",
                buckets=COST,
                registry=r,
            ),
            pose_delegate=Counter(
                "bodyscript_pose_delegate",
                "Pose inferences per delegate they ran on (gpu, cpu).",
                ["delegate"],
                registry=r,
            ),
            pose_delegate_fallbacks=Counter(
                "bodyscript_pose_delegate_fallbacks",
                "Pose inferences that wanted the GPU and ran on the CPU.",
                registry=r,
            ),
            lake_bytes=Gauge(
                "bodyscript_lake_bytes", "Bytes stored under each top-level folder of the lake.", ["table"], registry=r
            ),
            drop_zone_backlog=Gauge(
                "bodyscript_drop_zone_backlog",
                "Videos the last completed drop-zone tick listed and left for later, by reason.",
                ["reason"],
                registry=r,
            ),
            drop_zone_quota_refusals=Counter(
                "bodyscript_drop_zone_quota_refusals",
                "Videos a drop-zone tick left because of an hourly quota (counted again at each tick), by quota.",
                ["quota"],
                registry=r,
            ),
            drop_zone_new_versions=Counter(
                "bodyscript_drop_zone_new_versions", "New video versions the drop-zone ticks took.", registry=r
            ),
            drop_zone_last_tick_timestamp=Gauge(
                "bodyscript_drop_zone_last_tick_timestamp_seconds",
                "When the drop zone was last scanned (0: no scan seen yet).",
                registry=r,
            ),
            records_read=Counter(
                "bodyscript_exporter_records_read",
                "Records the exporter read from the Dagster instance.",
                registry=r,
            ),
            refresh_errors=Counter(
                "bodyscript_exporter_refresh_errors", "Refreshes that failed, by source.", ["source"], registry=r
            ),
            refresh_seconds=Gauge(
                "bodyscript_exporter_refresh_seconds",
                "Duration of the last refresh, by source.",
                ["source"],
                registry=r,
            ),
            last_refresh_timestamp=Gauge(
                "bodyscript_exporter_last_refresh_timestamp_seconds",
                "When the last successful refresh ended.",
                ["source"],
                registry=r,
            ),
        )
        for outcome in OUTCOMES:
            metrics.video_runs.labels(outcome)
        for step in steps:
            metrics.step_seconds.labels(step)
            metrics.estimated_cost.labels(step)
        for asset in assets:
            metrics.frames_per_second.labels(asset)
        for delegate in DELEGATES:
            metrics.pose_delegate.labels(delegate)
        for quota in QUOTAS:
            metrics.drop_zone_quota_refusals.labels(quota)
        for source in SOURCES:
            metrics.refresh_errors.labels(source)
        return metrics

    def set_lake_bytes(self, usage: Mapping[str, int]) -> None:
        """The lake's bytes per table; a table gone from the lake is gone from the metrics."""
        gone = {labels["table"] for labels in self._label_sets(self.lake_bytes)} - usage.keys()
        for table in gone:
            self.lake_bytes.remove(table)
        for table, size in usage.items():
            self.lake_bytes.labels(table).set(size)

    @staticmethod
    def _label_sets(gauge: Gauge) -> list[dict[str, str]]:
        return [sample.labels for family in gauge.collect() for sample in family.samples]
