"""Retention: a daily schedule that ages out derived artifacts and old run records, and a sensor that
removes the partitions of source videos deleted from the drop zone. Each has a dry-run mode."""

import time

import dagster as dg

from assets import videos_partitions
from bodyscript_pipeline import storage
from bodyscript_pipeline.retention import apply_retention
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.sources import load_source
from resources import PipelineResource

RETENTION_JOB = "retention"
RETENTION_SCHEDULE = "retention_schedule"
SOURCE_CLEANUP_SENSOR = "source_cleanup_sensor"
CLEANUP_BATCH = 500
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


ARTIFACT_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("table", "string"),
        dg.TableColumn("partition", "string"),
        dg.TableColumn("bytes", "int"),
        dg.TableColumn("age_days", "float"),
    ]
)


class ArtifactRetentionConfig(dg.Config):
    older_than_days: float = 30.0
    mode: str = "delete"
    dry_run: bool = False


class RunRetentionConfig(dg.Config):
    older_than_days: float = 90.0
    dry_run: bool = False


@dg.op(out=dg.Out(dg.Nothing), description="Delete or archive derived artifacts older than N days.")
def remove_aged_artifacts(
    context: dg.OpExecutionContext, config: ArtifactRetentionConfig, pipeline: PipelineResource
) -> dg.Output:
    report = apply_retention(pipeline.lake_uri, config.older_than_days, config.mode, config.dry_run)
    verb = "would " + config.mode if config.dry_run else config.mode + "d"
    context.log.info(f"{verb} {len(report.artifacts)} artifact folder(s) of {report.partitions} partition(s)")
    rows = [
        dg.TableRecord({"table": a.table, "partition": a.partition, "bytes": a.bytes, "age_days": round(a.age_days, 1)})
        for a in report.artifacts[:100]
    ]
    return dg.Output(
        None,
        metadata={
            "dry_run": config.dry_run,
            "mode": config.mode,
            "older_than_days": config.older_than_days,
            "artifact_folders": len(report.artifacts),
            "partitions": report.partitions,
            "bytes": report.bytes,
            "artifacts": dg.MetadataValue.table(rows, schema=ARTIFACT_COLUMNS),
        },
    )


@dg.op(out=dg.Out(dg.Nothing), description="Purge finished run records older than N days.")
def purge_old_runs(context: dg.OpExecutionContext, config: RunRetentionConfig) -> dg.Output:
    cutoff = time.time() - config.older_than_days * 86400
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, created_before=_as_datetime(cutoff))
    )
    old = [r.dagster_run.run_id for r in records if r.dagster_run.run_id != context.run_id]
    if not config.dry_run:
        for run_id in old:
            context.instance.delete_run(run_id)
    context.log.info(f"{'would purge' if config.dry_run else 'purged'} {len(old)} run record(s)")
    return dg.Output(
        None, metadata={"dry_run": config.dry_run, "older_than_days": config.older_than_days, "runs": len(old)}
    )


def _as_datetime(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def build_retention(settings: Settings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    @dg.job(
        name=RETENTION_JOB,
        description="Age out derived artifacts (never source videos) and purge old run records.",
        config=dg.RunConfig(
            ops={
                "remove_aged_artifacts": ArtifactRetentionConfig(
                    older_than_days=settings.retention_days,
                    mode=settings.retention_mode,
                    dry_run=settings.retention_dry_run,
                ),
                "purge_old_runs": RunRetentionConfig(
                    older_than_days=settings.run_retention_days, dry_run=settings.retention_dry_run
                ),
            }
        ),
    )
    def retention_job() -> None:
        remove_aged_artifacts()
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
        "until retention ages it out).",
    )
    def source_cleanup_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource) -> dg.SensorResult:
        partitions = sorted(context.instance.get_dynamic_partitions(videos_partitions.name))
        start = int(context.cursor or 0)
        if start >= len(partitions):
            start = 0
        batch = partitions[start : start + CLEANUP_BATCH]
        gone = [key for key in batch if _source_deleted(pipeline, key)]
        action = "would remove" if dry_run else "removing"
        message = f"checked {len(batch)} partition(s) from #{start}; {action} {len(gone)}: {', '.join(gone[:20])}"
        context.log.info(message)
        return dg.SensorResult(
            dynamic_partitions_requests=[videos_partitions.build_delete_request(gone)] if gone and not dry_run else [],
            cursor=str(start + len(batch)),
            skip_reason=message if not gone or dry_run else None,
        )

    return source_cleanup_sensor


def _source_deleted(pipeline: PipelineResource, partition: str) -> bool:
    """Only drop-zone sources count: a partition made by the CLI from a user's own file is the user's."""
    try:
        source = load_source(pipeline.lake_uri, partition)
    except Exception:
        return False
    return source.uri.startswith(pipeline.drop_uri.rstrip("/") + "/") and not storage.exists(source.uri)
