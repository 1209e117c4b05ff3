"""Retention: a daily schedule that ages out derived artifacts, the partitions of videos past retention (their
lineage stays in the lake) and old run records, and a sensor that removes the partitions of source videos deleted
from the drop zone. Each has a dry-run mode.

The UI has no authentication, so what retention removes is the deployment's to say: a run's config may only
make it keep more (a longer age, a dry run), and the mode is never run config."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from assets import videos_partitions
from assets.lake_compaction import LAKE_MAINTENANCE_TAGS
from assets.partitions import PARTITION_TAG
from bodyscript_pipeline import storage
from bodyscript_pipeline.lake.sources import load_source
from bodyscript_pipeline.retention.artifacts import apply_retention
from bodyscript_pipeline.retention.partitions import last_written, past_retention
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from sensors.partition_removal import delete_partitions
from sensors.reprocess import IN_FLIGHT

RETENTION_JOB = "retention"
RETENTION_SCHEDULE = "retention_schedule"
SOURCE_CLEANUP_SENSOR = "source_cleanup_sensor"
CLEANUP_BATCH = 500
# A tick where more than this share of the checked partitions' sources vanished, and more than
# CLEANUP_MAX_VANISHED of them, looks like a broken drop zone (unmounted, renamed), not users deleting videos.
CLEANUP_MAX_VANISHED_SHARE = 0.10
CLEANUP_MAX_VANISHED = 5
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
ARTIFACTS_OP = "remove_aged_artifacts"
PARTITIONS_OP = "remove_aged_partitions"
RUNS_OP = "purge_old_runs"
PARTITIONS_SHOWN = 20  # removed partition keys named in the step's metadata and log


ARTIFACT_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("table", "string"),
        dg.TableColumn("partition", "string"),
        dg.TableColumn("bytes", "int"),
        dg.TableColumn("age_days", "float"),
    ]
)


class ArtifactRetentionConfig(dg.Config):
    older_than_days: float | None = Field(
        default=None, description="At least BODYSCRIPT_RETENTION_DAYS (unset: that); a run may keep more, never less."
    )
    dry_run: bool | None = Field(
        default=None, description="Unset: BODYSCRIPT_RETENTION_DRY_RUN; true turns a dry run on, never off."
    )


class RunRetentionConfig(dg.Config):
    older_than_days: float | None = Field(
        default=None, description="At least BODYSCRIPT_RUN_RETENTION_DAYS (unset: that); a run may keep more."
    )
    dry_run: bool | None = Field(
        default=None, description="Unset: BODYSCRIPT_RETENTION_DRY_RUN; true turns a dry run on, never off."
    )


def _refused(description: str) -> dg.Failure:
    return dg.Failure(description=f"refused run config: {description}", allow_retries=False)


def _days(op: str, asked: float | None, floor: float, variable: str) -> float:
    if asked is None:
        return floor
    if not asked >= floor:
        raise _refused(
            f"{op}.older_than_days={asked:g}: must be at least {floor:g} ({variable}); a run may keep more, never less"
        )
    return asked


def _dry_run(op: str, asked: bool | None, settings: Settings) -> bool:
    if asked is None:
        return settings.retention_dry_run
    if settings.retention_dry_run and not asked:
        raise _refused(f"{op}.dry_run=false: accepts only true, the deployment runs dry (BODYSCRIPT_RETENTION_DRY_RUN)")
    return asked


def _artifact_policy(settings: Settings, config: ArtifactRetentionConfig) -> tuple[float, bool]:
    days = _days(ARTIFACTS_OP, config.older_than_days, settings.retention_days, "BODYSCRIPT_RETENTION_DAYS")
    return days, _dry_run(ARTIFACTS_OP, config.dry_run, settings)


def _run_policy(settings: Settings, config: RunRetentionConfig) -> tuple[float, bool]:
    days = _days(RUNS_OP, config.older_than_days, settings.run_retention_days, "BODYSCRIPT_RUN_RETENTION_DAYS")
    return days, _dry_run(RUNS_OP, config.dry_run, settings)


def _op_config(run_config: Mapping[str, Any], op: str) -> dict[str, Any]:
    return ((run_config.get("ops") or {}).get(op) or {}).get("config") or {}


def _check_run_config(settings: Settings, run_config: Mapping[str, Any]) -> None:
    """Both configured steps' config, checked by each step before it acts, so a refused one fails the run before
    anything is removed."""
    _artifact_policy(settings, ArtifactRetentionConfig(**_op_config(run_config, ARTIFACTS_OP)))
    _run_policy(settings, RunRetentionConfig(**_op_config(run_config, RUNS_OP)))


def _artifacts_op(settings: Settings) -> dg.OpDefinition:
    mode = settings.retention_mode

    @dg.op(
        name=ARTIFACTS_OP, out=dg.Out(dg.Nothing), description="Delete or archive derived artifacts older than N days."
    )
    def remove_aged_artifacts(
        context: dg.OpExecutionContext, config: ArtifactRetentionConfig, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.Output:
        _check_run_config(settings, context.run_config)
        older_than_days, dry_run = _artifact_policy(settings, config)
        report = apply_retention(pipeline.settings.lake_uri, older_than_days, mode, dry_run)
        verb = "would " + mode if dry_run else mode + "d"
        context.log.info(f"{verb} {len(report.artifacts)} artifact folder(s) of {report.partitions} partition(s)")
        rows = [
            dg.TableRecord(
                {"table": a.table, "partition": a.partition, "bytes": a.bytes, "age_days": round(a.age_days, 1)}
            )
            for a in report.artifacts[:100]
        ]
        return dg.Output(
            None,
            metadata={
                "dry_run": dry_run,
                "mode": mode,
                "older_than_days": older_than_days,
                "artifact_folders": len(report.artifacts),
                "partitions": report.partitions,
                "bytes": report.bytes,
                "artifacts": dg.MetadataValue.table(rows, schema=ARTIFACT_COLUMNS),
            },
        )

    return remove_aged_artifacts


@dataclass(frozen=True)
class PartitionRemoval:
    """What one retention run did to the ``videos`` partition set (or would do, in a dry run)."""

    before: int  # partitions in the set before
    past_retention: int  # of them, videos past retention
    in_flight: int  # of those, with a run queued or running: kept this time
    removed: list[str]  # at most the batch size, in key order
    left: int  # past retention and not removed: for the next runs
    method: str  # how they were deleted (sensors/partition_removal.py)


def remove_partitions_past_retention(
    instance: dg.DagsterInstance, lake_uri: str, older_than_days: float, dry_run: bool, batch: int
) -> PartitionRemoval:
    """Remove at most ``batch`` partitions of videos past retention from ``videos``; a video with a run queued or
    running stays (its run would find no partition)."""
    registered = instance.get_dynamic_partitions(videos_partitions.name)
    aged = past_retention(last_written(lake_uri), registered, older_than_days)
    busy = _partitions_in_flight(instance)
    candidates = [key for key in aged if key not in busy]
    removed = candidates[:batch]
    method = "none (dry run)" if dry_run else delete_partitions(instance, videos_partitions.name, removed)
    return PartitionRemoval(
        before=len(registered),
        past_retention=len(aged),
        in_flight=len(aged) - len(candidates),
        removed=removed,
        left=len(candidates) - len(removed),
        method=method,
    )


def _partitions_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """The partitions of the runs not started, queued or running (one query, whatever the number of partitions)."""
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))
    return {r.dagster_run.tags[PARTITION_TAG] for r in records if PARTITION_TAG in r.dagster_run.tags}


def _partitions_op(settings: Settings) -> dg.OpDefinition:
    batch = settings.retention_partition_batch

    @dg.op(
        name=PARTITIONS_OP,
        ins={"after_artifacts": dg.In(dg.Nothing)},
        out=dg.Out(dg.Nothing),
        description="Remove the partitions of videos past retention from the videos partition set (their lineage "
        "stays in the lake), at most BODYSCRIPT_RETENTION_PARTITION_BATCH per run.",
    )
    def remove_aged_partitions_op(
        context: dg.OpExecutionContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.Output:
        """Past retention as the artifacts step's config says (its age and dry run), after it removed them."""
        _check_run_config(settings, context.run_config)
        config = ArtifactRetentionConfig(**_op_config(context.run_config, ARTIFACTS_OP))
        older_than_days, dry_run = _artifact_policy(settings, config)
        done = remove_partitions_past_retention(
            context.instance, pipeline.settings.lake_uri, older_than_days, dry_run, batch
        )
        shown = ", ".join(done.removed[:PARTITIONS_SHOWN]) + (" ..." if len(done.removed) > PARTITIONS_SHOWN else "")
        context.log.info(
            f"{'would remove' if dry_run else 'removed'} {len(done.removed)} of {done.past_retention} partition(s) "
            f"past retention ({done.in_flight} with a run in flight kept, {done.left} left for the next runs; "
            f"{done.method})" + (f": {shown}" if shown else "")
        )
        return dg.Output(
            None,
            metadata={
                "dry_run": dry_run,
                "older_than_days": older_than_days,
                "batch_size": batch,
                "partitions_before": done.before,
                "past_retention": done.past_retention,
                "in_flight": done.in_flight,
                "partitions_removed": len(done.removed),
                "left_for_next_runs": done.left,
                "partitions_after": done.before - (0 if dry_run else len(done.removed)),
                "method": done.method,
                "removed": dg.MetadataValue.text(shown),
            },
        )

    return remove_aged_partitions_op


def _runs_op(settings: Settings) -> dg.OpDefinition:
    @dg.op(name=RUNS_OP, out=dg.Out(dg.Nothing), description="Purge finished run records older than N days.")
    def purge_old_runs(context: dg.OpExecutionContext, config: RunRetentionConfig) -> dg.Output:
        _check_run_config(settings, context.run_config)
        older_than_days, dry_run = _run_policy(settings, config)
        cutoff = datetime.fromtimestamp(time.time() - older_than_days * 86400, tz=UTC)
        records = context.instance.get_run_records(filters=dg.RunsFilter(statuses=FINISHED, created_before=cutoff))
        old = [r.dagster_run.run_id for r in records if r.dagster_run.run_id != context.run_id]
        if not dry_run:
            for run_id in old:
                context.instance.delete_run(run_id)
        context.log.info(f"{'would purge' if dry_run else 'purged'} {len(old)} run record(s)")
        return dg.Output(None, metadata={"dry_run": dry_run, "older_than_days": older_than_days, "runs": len(old)})

    return purge_old_runs


def build_retention(settings: Settings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    remove_aged_artifacts, purge_old_runs = _artifacts_op(settings), _runs_op(settings)
    remove_aged_partitions = _partitions_op(settings)

    @dg.job(
        name=RETENTION_JOB,
        tags=LAKE_MAINTENANCE_TAGS,
        description=f"Age out derived artifacts (never source videos; mode: {settings.retention_mode}), remove the "
        "partitions of videos past retention (their lineage stays) and purge old run records. Run config may only "
        "make a run keep more than the deployment's settings.",
        config=dg.RunConfig(
            ops={
                ARTIFACTS_OP: ArtifactRetentionConfig(
                    older_than_days=settings.retention_days, dry_run=settings.retention_dry_run
                ),
                RUNS_OP: RunRetentionConfig(
                    older_than_days=settings.run_retention_days, dry_run=settings.retention_dry_run
                ),
            }
        ),
    )
    def retention_job() -> None:
        remove_aged_partitions(remove_aged_artifacts())
        purge_old_runs()

    schedule = dg.ScheduleDefinition(
        name=RETENTION_SCHEDULE,
        job=retention_job,
        cron_schedule="0 3 * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Daily retention at 03:00; turn it on in the UI (Automation) once its dry run looks right.",
    )
    return retention_job, schedule


def build_source_cleanup_sensor(settings: Settings) -> dg.SensorDefinition:
    dry_run = settings.retention_dry_run

    @dg.sensor(
        name=SOURCE_CLEANUP_SENSOR,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Removes the partitions of videos deleted from the drop zone (their data stays in the lake "
        "until retention ages it out); refuses while the drop zone's root is missing or too many sources vanish "
        "at once.",
    )
    def source_cleanup_sensor(
        context: dg.SensorEvaluationContext, pipeline: dg.ResourceParam[PipelineResource]
    ) -> dg.SensorResult:
        partitions = sorted(context.instance.get_dynamic_partitions(videos_partitions.name))
        start = int(context.cursor or 0)
        if start >= len(partitions):
            start = 0
        batch = partitions[start : start + CLEANUP_BATCH]
        gone = [key for key in batch if _source_deleted(pipeline, key)]
        refusal = _cleanup_refusal(pipeline.settings.drop_uri, len(batch), gone) if gone else None
        if refusal:
            context.log.error(refusal)
            return dg.SensorResult(cursor=context.cursor, skip_reason=refusal)
        action = "would remove" if dry_run else "removing"
        message = f"checked {len(batch)} partition(s) from #{start}; {action} {len(gone)}: {', '.join(gone[:20])}"
        context.log.info(message)
        return dg.SensorResult(
            dynamic_partitions_requests=[videos_partitions.build_delete_request(gone)] if gone and not dry_run else [],
            cursor=str(start + len(batch)),
            skip_reason=message if not gone or dry_run else None,
        )

    return source_cleanup_sensor


def _cleanup_refusal(drop_uri: str, checked: int, gone: list[str]) -> str | None:
    """Why the vanished sources must not be acted on this tick, or None."""
    missing = _drop_root_missing(drop_uri)
    if missing:
        return f"refusing to remove {len(gone)} partition(s): the drop zone root {drop_uri} {missing}"
    if len(gone) > CLEANUP_MAX_VANISHED and len(gone) > CLEANUP_MAX_VANISHED_SHARE * checked:
        return (
            f"refusing to remove partitions: {len(gone)} of {checked} checked sources vanished at once (more than "
            f"{CLEANUP_MAX_VANISHED_SHARE:.0%} and {CLEANUP_MAX_VANISHED}); check the drop zone {drop_uri}, and "
            f"delete the partitions by hand if intended: {', '.join(gone[:20])}"
        )
    return None


def _drop_root_missing(drop_uri: str) -> str | None:
    """What is wrong with the drop zone's root (local: not a directory; S3: its bucket cannot be reached), or None."""
    if drop_uri.startswith("s3://"):
        bucket, _, prefix = drop_uri.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        try:
            # A listing of the drop prefix: what the pipeline's policy allows (HeadBucket needs an unconditioned
            # s3:ListBucket, which it does not have).
            storage.s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as error:  # any failure to see the bucket: a missing root
            return f"is missing: bucket {bucket} cannot be reached ({' '.join(str(error).split())})"
        return None
    path = storage.local_path(drop_uri)
    if path is not None and not path.is_dir():
        return "is missing: not a directory (unmounted or renamed?)"
    return None


def _source_deleted(pipeline: PipelineResource, partition: str) -> bool:
    """Only drop-zone sources count: a partition made by the CLI from a user's own file is the user's."""
    try:
        source = load_source(pipeline.settings.lake_uri, partition)
    except Exception:
        return False
    return source.uri.startswith(pipeline.settings.drop_uri.rstrip("/") + "/") and not storage.exists(source.uri)
