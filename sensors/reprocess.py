"""The reprocessing sensor: re-materializes what a changed version made stale (the model, a setting that
determines an asset, a step's code), exactly the affected assets of each video and everything downstream of
them, as a controlled trickle.

Each tick compares the lake's lineage with the current versions (``stale_partitions``: the assets whose recorded
version differs, the direct causes) and requests at most ``BODYSCRIPT_REPROCESS_MAX_RUNS`` minus the reprocessing
runs still queued or running, one per video, at a lower priority than fresh drops. A model change across 10,000
videos thus queues a few runs at a time, never 10,000 at once; a video with a run queued or running waits for it;
nothing unaffected runs. Off (stopped until an operator starts it in the UI) with ``BODYSCRIPT_REPROCESS=false``.
"""

from __future__ import annotations

import hashlib
import json
import time

import dagster as dg

from assets import process_video_job, videos_partitions
from assets.runs import ACTIVE, partition_runs
from bodyscript_pipeline.settings import REPROCESS_PRIORITY, Settings
from bodyscript_pipeline.steps.staleness import stale_partitions
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS, asset_version, downstream
from sensors.priority import PRIORITY_TAG  # every drop's tier goes before reprocessing (REPROCESS_PRIORITY)

REPROCESS_SENSOR = "reprocess_sensor"
REPROCESS_TAG = "bodyscript/reprocess"  # its value: why the run reprocesses, in one line
SENSOR_NAME_TAG = "dagster/sensor_name"  # the daemon tags each run a sensor requests with the sensor's name
RUN_KEY_TAG = "dagster/run_key"  # ... and with its run key
NOTHING_STALE = "nothing stale"
RESCAN_S = 3600  # a tick that found nothing stale is trusted this long while the versions stay the same
IN_FLIGHT = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, *ACTIVE]


def reprocess_runs_in_flight(instance: dg.DagsterInstance) -> int:
    """The reprocessing runs requested and not yet ended (not started, queued, starting, started)."""
    records = instance.get_run_records(dg.RunsFilter(tags={SENSOR_NAME_TAG: REPROCESS_SENSOR}, statuses=IN_FLIGHT))
    return sum(1 for record in records if REPROCESS_TAG in record.dagster_run.tags)


def targets(reasons: dict[str, str]) -> list[str]:
    """The changed assets and every per-video asset downstream of them, in dependency order (under Kubernetes
    too: the graph of assets/pose_ranges.py runs a subset, its pose pod doing nothing when neither frames nor
    landmarks are made)."""
    changed = frozenset(reasons)
    made_again = changed | set(downstream(changed))
    return [asset for asset in VIDEO_ASSETS if asset in made_again]


def reasons_line(reasons: dict[str, str]) -> str:
    """``asset: reason; asset: reason`` in one line, assets in dependency order."""
    line = "; ".join(f"{asset}: {reasons[asset]}" for asset in VIDEO_ASSETS if asset in reasons)
    return " ".join(line.split())


def target_digest(assets: list[str], settings: Settings) -> str:
    """A digest of the versions the run makes: a later change of any of them is a new run key."""
    versions = {asset: asset_version(asset, settings) for asset in assets}
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]


def reprocess_requests(
    instance: dg.DagsterInstance, settings: Settings, stale: dict[str, dict[str, str]], in_flight: int
) -> dg.SensorResult | dg.SkipReason:
    """The tick's decision, given what is stale and how many reprocessing runs are queued or running: at most
    the free budget of runs, in partition order."""
    if not stale:
        return dg.SkipReason(f"{NOTHING_STALE}: every video's assets have their current versions")
    budget = settings.reprocess_max_runs - in_flight
    if budget <= 0:
        return dg.SkipReason(
            f"{len(stale)} video(s) stale; {in_flight} reprocessing run(s) queued or running already use the "
            f"budget of {settings.reprocess_max_runs} (BODYSCRIPT_REPROCESS_MAX_RUNS)"
        )
    registered = set(instance.get_dynamic_partitions(videos_partitions.name))
    requests: list[dg.RunRequest] = []
    forgotten = busy = tried = 0
    for partition in sorted(stale):
        if len(requests) == budget:
            break
        if partition not in registered:
            forgotten += 1
            continue
        if partition_runs(instance, partition, IN_FLIGHT):
            busy += 1
            continue
        reasons = stale[partition]
        assets = targets(reasons)
        run_key = f"reprocess:{partition}:{target_digest(assets, settings)}"
        if already_requested(instance, run_key):
            # Its run to these versions ended without making them current (it failed): the daemon would drop a
            # request with the same key, and it must not hold a place in the budget every tick.
            tried += 1
            continue
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                partition_key=partition,
                asset_selection=[dg.AssetKey(asset) for asset in assets],
                tags={REPROCESS_TAG: reasons_line(reasons), PRIORITY_TAG: str(REPROCESS_PRIORITY)},
            )
        )
    if not requests:
        return dg.SkipReason(
            f"{len(stale)} video(s) stale, none to reprocess now: {busy} with a run queued or running, "
            f"{tried} whose reprocessing to these versions already ran and failed, {forgotten} no longer registered"
        )
    return dg.SensorResult(run_requests=requests)


def already_requested(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Whether this sensor has had a run with this key (the daemon never launches a key twice)."""
    tags = {SENSOR_NAME_TAG: REPROCESS_SENSOR, RUN_KEY_TAG: run_key}
    return bool(instance.get_run_records(dg.RunsFilter(tags=tags), limit=1))


def versions_digest(settings: Settings) -> str:
    """A digest of every per-video asset's current version."""
    return target_digest(list(VIDEO_ASSETS), settings)


def clean_since(cursor: str | None, versions: str) -> float | None:
    """When a tick last found nothing stale at these ``versions`` (None: not since they are current). A steady
    deployment then reads no lineage at all; every ``RESCAN_S`` it checks again anyway (a run launched before a
    version change may record the old version after that check)."""
    try:
        state = json.loads(cursor or "{}")
    except ValueError:
        return None
    return state.get("clean_at") if state.get("versions") == versions else None


def build_reprocess_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name=REPROCESS_SENSOR,
        job=process_video_job,
        minimum_interval_seconds=settings.reprocess_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.reprocess else dg.DefaultSensorStatus.STOPPED,
        description="Re-materializes the assets a changed version made stale (model, settings, code) and "
        "everything downstream of them, at most BODYSCRIPT_REPROCESS_MAX_RUNS runs queued or running at once, "
        "behind fresh drops.",
    )
    def reprocess_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        versions = versions_digest(settings)
        checked = clean_since(context.cursor, versions)
        if checked is not None and time.time() - checked < RESCAN_S:
            return dg.SkipReason(
                f"nothing stale at these versions (every video checked {time.time() - checked:.0f} s ago)"
            )
        in_flight = reprocess_runs_in_flight(context.instance)
        if in_flight >= settings.reprocess_max_runs:  # no room for a run: the lake is not read
            return dg.SkipReason(
                f"{in_flight} reprocessing run(s) queued or running use the budget of {settings.reprocess_max_runs} "
                "(BODYSCRIPT_REPROCESS_MAX_RUNS)"
            )
        stale = stale_partitions(settings.lake_uri, settings)
        result = reprocess_requests(context.instance, settings, stale, in_flight)
        clean = isinstance(result, dg.SkipReason) and (result.skip_message or "").startswith(NOTHING_STALE)
        cursor = json.dumps({"versions": versions, "clean_at": time.time() if clean else None})
        if isinstance(result, dg.SkipReason):
            context.log.info(result.skip_message or "")
            context.update_cursor(cursor)
            return result
        context.log.info(f"requested {len(result.run_requests or [])} reprocessing run(s)")
        return dg.SensorResult(run_requests=result.run_requests, cursor=cursor)

    return reprocess_sensor
