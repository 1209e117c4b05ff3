"""Forgetting a video: ``bodyscript forget`` and the ``forget`` job remove everything derived from it from the
lake (``bodyscript_pipeline.retention.erasure``) and the Dagster instance (``sensors.erasure``), check that nothing
is left, and write an audit record that names nothing.

A request names one partition, every partition registered from one source URI, or every partition whose
registered source URI starts with a folder prefix (one uploader's folder)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from assets.lake_compaction import LAKE_MAINTENANCE_TAGS
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.partition_keys import check_partition_key
from bodyscript_pipeline.retention.erasure import (
    LakeErasure,
    erase_from_lake,
    partitions_of_source,
    partitions_under,
    prefix_of,
    registered_source,
    remaining_in_lake,
    source_uri_of,
    step_record_roots,
    write_audit,
)
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from sensors.erasure import (
    ERASED,
    InstanceErasure,
    Naming,
    check_idle,
    compact_sqlite,
    erase_from_instance,
    partition_runs,
    remaining_in_instance,
)

FORGET_JOB = "forget"
FORGET_OP = "forget_videos"


@dataclass(frozen=True)
class ForgetRequest:
    partition: str | None = None
    source_uri: str | None = None
    prefix: str | None = None
    include_source: bool = False

    @property
    def kind(self) -> str:
        return "partition" if self.partition else "source" if self.source_uri else "prefix"

    def checked(self) -> "ForgetRequest":
        """The request with its target normalized; a one-line error unless exactly one target is given."""
        given = [name for name in ("partition", "source_uri", "prefix") if getattr(self, name)]
        if len(given) != 1:
            raise BodyscriptError("name exactly one of partition, source_uri or prefix")
        if self.partition:
            return ForgetRequest(partition=check_partition_key(self.partition), include_source=self.include_source)
        if self.source_uri:
            return ForgetRequest(source_uri=source_uri_of(self.source_uri), include_source=self.include_source)
        return ForgetRequest(prefix=prefix_of(str(self.prefix)), include_source=self.include_source)

    def partitions(self, lake_uri: str) -> list[str]:
        """The partitions to forget: the one named, or those the registry has from the source or prefix."""
        if self.partition:
            return [self.partition]
        if self.source_uri:
            found = partitions_of_source(lake_uri, self.source_uri)
        else:
            found = partitions_under(lake_uri, str(self.prefix))
        if not found:
            raise BodyscriptError(
                f"no video is registered from {self.source_uri or self.prefix} (never processed, or already forgotten)"
            )
        return found


@dataclass
class Forgotten:
    """One partition's erasure: what went from the lake and the instance, and what a fresh scan still found."""

    naming: Naming
    lake: LakeErasure
    instance: InstanceErasure
    logs: list[str]
    remaining: list[str] = field(default_factory=list)

    @property
    def partition(self) -> str:
        return self.naming.partition

    def lines(self) -> list[str]:
        runs = [f"run {run_id}" for run_id in self.instance.runs]
        partition = [f"dynamic partition {self.partition}"] if self.instance.partition else []
        return [*self.lake.locations, *self.logs, *runs, *partition]


@dataclass
class ForgetReport:
    request: ForgetRequest
    forgotten: list[Forgotten]
    compacted: bool
    audit_uri: str = ""

    @property
    def remaining(self) -> list[str]:
        return [item for one in self.forgotten for item in one.remaining]

    def counts(self) -> dict[str, int]:
        """The audit record's figures: counts only."""
        lake = [one.lake for one in self.forgotten]
        held = [one.instance for one in self.forgotten]
        return {
            "objects": sum(e.objects for e in lake) + sum(len(one.logs) for one in self.forgotten),
            "bytes": sum(e.bytes for e in lake),
            "fleet_rows": sum(e.rows for e in lake),
            "sources": sum(e.sources for e in lake),
            "runs": sum(len(e.runs) for e in held),
            "asset_events": sum(e.asset_events for e in held),
            "check_executions": sum(e.check_executions for e in held),
            "redacted_records": sum(e.redacted_events for e in held),
            "redacted_ticks": sum(e.redacted_ticks for e in held),
            "dynamic_partitions": sum(e.partition for e in held),
        }

    def summary(self) -> str:
        c = self.counts()
        return (
            f"forgot {len(self.forgotten)} partition(s): {c['objects']} object(s) ({c['bytes']} bytes), "
            f"{c['fleet_rows']} fleet row(s), {c['sources']} source(s), {c['runs']} run(s), "
            f"{c['asset_events']} asset event(s), {c['check_executions']} check execution(s), "
            f"{c['redacted_records'] + c['redacted_ticks']} record(s) redacted, "
            f"{c['dynamic_partitions']} dynamic partition(s)"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "request": self.request.kind,
            "partitions": {
                one.partition: {"removed": one.lines(), "remaining": one.remaining} for one in self.forgotten
            },
            "removed": self.counts(),
            "remaining": self.remaining,
            "compacted": self.compacted,
            "audit": self.audit_uri,
        }


def forget(
    instance: dg.DagsterInstance,
    settings: Settings,
    request: ForgetRequest,
    via: str,
    keep_run_id: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ForgetReport:
    """Erase every partition of the request, verify each by a fresh scan, and write the audit record. Nothing
    is removed while a run of one of them is queued or running."""
    request = request.checked()
    lake_uri = settings.lake_uri
    partitions = request.partitions(lake_uri)
    check_idle(instance, partitions)
    step_records = step_record_roots(lake_uri, settings.step_records_uri)
    forgotten = []
    for partition in partitions:
        source = registered_source(lake_uri, partition)
        naming = Naming(partition, source.uri if source else None)
        runs = partition_runs(instance, partition)
        lake = erase_from_lake(lake_uri, partition, runs, step_records, source, request.include_source)
        logs = _delete_cli_logs(settings.home, runs)
        one = Forgotten(naming, lake, erase_from_instance(instance, naming, keep_run_id), logs)
        for line in one.lines():
            log(f"removed {naming.pattern().sub(ERASED, line)}")
        forgotten.append(one)
    compacted = compact_sqlite(instance, {shard for one in forgotten for shard in one.instance.shards})
    for one in forgotten:
        source_uri = one.naming.source_uri if request.include_source else None
        one.remaining = remaining_in_lake(lake_uri, one.partition, one.instance.runs, step_records, source_uri)
        one.remaining += [str(path) for path in _cli_logs(settings.home, one.instance.runs) if path.exists()]
        one.remaining += remaining_in_instance(instance, one.naming, keep_run_id)
    report = ForgetReport(request, forgotten, compacted)
    report.audit_uri = write_audit(lake_uri, request.kind, partitions, report.counts(), len(report.remaining), via)
    return report


def _cli_logs(home: Path, run_ids: list[str]) -> list[Path]:
    """``bodyscript process`` keeps each run's native log (MediaPipe's own output) in ``$BODYSCRIPT_HOME/logs``."""
    return [home / "logs" / f"{run_id}.log" for run_id in run_ids]


def _delete_cli_logs(home: Path, run_ids: list[str]) -> list[str]:
    deleted = []
    for path in _cli_logs(home, run_ids):
        if path.is_file():
            path.unlink()
            deleted.append(str(path))
    return deleted


class ForgetConfig(dg.Config):
    partition: str | None = Field(default=None, description="The partition (video) to forget.")
    source_uri: str | None = Field(default=None, description="Forget every partition registered from this source.")
    prefix: str | None = Field(
        default=None, description="Forget every partition whose registered source URI starts with this folder ('/')."
    )
    include_source: bool = Field(default=False, description="Delete the source object too.")


def build_forget_job() -> dg.JobDefinition:
    @dg.op(name=FORGET_OP, out=dg.Out(dg.Nothing), description="Erase the videos of the request and verify it.")
    def forget_videos(
        context: dg.OpExecutionContext, config: ForgetConfig, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.Output:
        request = ForgetRequest(config.partition, config.source_uri, config.prefix, config.include_source)
        try:
            report = forget(
                context.instance, pipeline.settings, request, "forget job", context.run_id, context.log.info
            )
        except BodyscriptError as exc:
            raise dg.Failure(description=f"refused: {exc}", allow_retries=False) from None
        context.log.info(report.summary())
        metadata: dict[str, Any] = {**report.counts(), "remaining": len(report.remaining), "audit": report.audit_uri}
        if report.remaining:
            raise dg.Failure(
                description=f"{len(report.remaining)} item(s) remain after erasure",
                metadata=metadata,
                allow_retries=False,
            )
        return dg.Output(None, metadata=metadata)

    @dg.job(
        name=FORGET_JOB,
        description="Forget videos: every file, row, run, asset event and partition derived from one partition, "
        "one source URI or a source folder prefix; verified, with an audit record.",
        tags=LAKE_MAINTENANCE_TAGS,
    )
    def forget_job() -> None:
        forget_videos()

    return forget_job
