"""The ``bodyscript`` command line.

- ``bodyscript process VIDEO [--json] [--partition KEY] [--force]``: register the video as a partition and
  materialize, through the local Dagster instance (so the run also shows in the UI), those of its assets that are
  missing or stale (the source, the step's code or a setting that determines it changed) and everything
  downstream of them; says what it skipped and why. ``--force`` re-makes every asset.
- ``bodyscript status [VIDEO_OR_PARTITION ...] [--json]``: each asset of each video (every registered one if none
  is named): ``current``, ``stale`` and why, or ``missing``, from the lake's lineage and the current settings;
  runs nothing.
- ``bodyscript query SQL [--format table|csv|json|parquet] [--output FILE]``: one SELECT over the lake's DuckDB
  views, which reach nothing outside the lake.
- ``bodyscript export PARTITION --format csv|json|trc|mot [--person N] [--output FILE]``: one video's landmarks
  (or one person's OpenSim markers or angles) for other tools.
- ``bodyscript model``: fetch the pose model into the cache (``make setup`` runs it) and print its path.
- ``bodyscript monitor [--host 127.0.0.1] [--port 9464]``: serve the instance's and the lake's Prometheus metrics
  on ``/metrics`` (resources/metrics_exporter.py) until interrupted.
- ``bodyscript forget PARTITION | --source URI | --source-prefix URI [--include-source]``: erase everything derived
  from the videos (lake, archive, runs, asset events, partition), verify, and write an audit record.

Expected failures print one line on stderr and exit non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake.partition_keys import check_partition_key
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.pose import head_start
from bodyscript_pipeline.settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2


REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    """The local Dagster instance's home: ``DAGSTER_HOME``, else ``$BODYSCRIPT_HOME/dagster``, with the repo's
    ``dagster.yaml`` (SQLite storage, queued runs) installed there on first use."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and REPO_DAGSTER_YAML.is_file():
        shutil.copyfile(REPO_DAGSTER_YAML, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run() -> NoReturn:
    """The ``bodyscript`` command: ``main``, then an immediate exit once its output is flushed. Everything is
    written and committed by then; Python's own teardown of the Dagster it imported (about 0.6 s) buys nothing."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodyscript", description="Videos of people in, pose data out.")
    commands = parser.add_subparsers(dest="command", required=True)
    process = commands.add_parser("process", help="run the asset graph for one video through Dagster")
    process.add_argument("video", help="a local path, file:// or s3:// URI of a video")
    process.add_argument("--json", action="store_true", help="print one JSON object describing the outputs")
    process.add_argument("--partition", help="partition key to use (default: derived from the file name)")
    process.add_argument("--force", action="store_true", help="re-make every asset, current or not")
    status = commands.add_parser("status", help="which assets of each video are current, stale (and why) or missing")
    status.add_argument("videos", nargs="*", metavar="VIDEO_OR_PARTITION", help="default: every registered video")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    query = commands.add_parser("query", help="run SQL against the lake's views")
    query.add_argument("sql")
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    query.add_argument("--output", type=Path, help="write to this file instead of stdout (required for parquet)")
    export = commands.add_parser("export", help="export one video's landmarks as long CSV or JSON")
    export.add_argument("partition")
    export.add_argument("--format", choices=("csv", "json", "trc", "mot"), default="csv")
    export.add_argument("--person", type=int, default=0, help="the person id of a trc or mot export")
    export.add_argument("--output", type=Path, help="write to this file instead of stdout")
    commands.add_parser("model", help="fetch the pose model into the cache and print its path")
    monitor = commands.add_parser("monitor", help="serve Prometheus metrics of the runs, the queue and the lake")
    monitor.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    monitor.add_argument("--port", type=int, default=9464)
    monitor.add_argument("--interval", type=_seconds, default=15.0, help="seconds between reads of the instance")
    monitor.add_argument("--lake-interval", type=_seconds, default=300.0, help="seconds between walks of the lake")
    forget = commands.add_parser("forget", help="erase everything derived from a video, verify, write an audit record")
    target = forget.add_mutually_exclusive_group(required=True)
    target.add_argument("partition", nargs="?", help="the partition (video) to forget")
    target.add_argument("--source", metavar="URI", help="every partition registered from this source")
    target.add_argument("--source-prefix", "--prefix", dest="prefix", metavar="URI", help="sources under this folder")
    forget.add_argument("--include-source", action="store_true", help="delete the source object too")
    forget.add_argument("--json", action="store_true", help="print one JSON object describing what was removed")
    args = parser.parse_args(argv)
    if args.command == "process" and args.partition is not None:
        try:
            check_partition_key(args.partition)
        except BodyscriptError as exc:
            print(f"bodyscript: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        settings = Settings.from_env()
        if args.command == "process":
            try:
                return _process(settings, args.video, args.partition, as_json=args.json, force=args.force)
            finally:
                head_start.end()
        if args.command == "status":
            return _status(settings, args.videos, as_json=args.json)
        if args.command == "query":
            return _query(settings, args.sql, args.format, args.output)
        if args.command == "export":
            return _export(settings, args.partition, args.format, args.output, args.person)
        if args.command == "forget":
            return _forget(settings, args.partition, args.source, args.prefix, args.include_source, args.json)
        if args.command == "monitor":
            return _monitor(settings, args.host, args.port, args.interval, args.lake_interval)
        return _model(settings)
    except BodyscriptError as exc:
        print(f"bodyscript: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("bodyscript: interrupted", file=sys.stderr)
        return 130


def _forget(
    settings: Settings, partition: str | None, source: str | None, prefix: str | None, include: bool, as_json: bool
) -> int:

    ensure_dagster_home(settings)
    warnings.filterwarnings("ignore")
    import dagster as dg

    from sensors.forget import ForgetRequest, forget

    request = ForgetRequest(partition, source, prefix, include)
    with dg.DagsterInstance.get() as instance:
        report = forget(instance, settings, request, via="bodyscript forget")
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        for one in report.forgotten:
            print(f"{one.partition}:")
            print("".join(f"  removed {line}\n" for line in one.lines()), end="")
        print(report.summary())
        if not report.compacted:
            print("SQLite files busy, not vacuumed: deleted rows may linger in free pages until `forget` runs again")
        print(f"audit record: {report.audit_uri}")
    if report.remaining:
        left = report.remaining
        raise BodyscriptError(f"{len(left)} item(s) remain after erasure: {'; '.join(left[:5])}")
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: not a positive number of seconds")
    return value


def _monitor(settings: Settings, host: str, port: int, interval_s: float, lake_interval_s: float) -> int:
    """Serves until interrupted: Ctrl-C stops it even where a script started it in the background (``make dev``),
    which would have it ignore SIGINT."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_dagster_home(settings)
    warnings.filterwarnings("ignore")

    import dagster as dg

    from resources.metrics_exporter import serve_metrics

    with dg.DagsterInstance.get() as instance:
        serve_metrics(instance, settings, host, port, interval_s, lake_interval_s)
    return 0


def _model(settings: Settings) -> int:
    from bodyscript_pipeline.pose.model import ensure_model

    model = ensure_model(settings)
    print(model.path)
    return 0


def _source_uri(video: str) -> str:
    if "://" in video:
        if not video.startswith(("file://", "s3://")):
            raise BodyscriptError(f"{video}: only local paths, file:// and s3:// URIs are read")
        uri = video
    else:
        path = Path(video).expanduser().resolve()
        uri = "file://" + str(path)
    if not storage.exists(uri):
        raise BodyscriptError(f"{video}: no such file")
    return uri


def _partition_of(uri: str) -> str:
    """The partition key ``process`` gives a video without ``--partition``."""
    from bodyscript_pipeline.lake.partition_keys import partition_key_for

    return partition_key_for(Path(uri).name, identity=uri)


def _plan(states: dict[str, Any], force: bool) -> dict[str, str]:
    """What to materialize, in dependency order, and why: every asset that is not current (all with ``force``)."""
    if force:
        return dict.fromkeys(states, "forced (--force)")
    return {name: state.describe() for name, state in states.items() if state.state != "current"}


def _key(name: str) -> Any:
    import dagster as dg

    return dg.AssetKey(name)


def _source_version(uri: str | None) -> str | None:
    """The source object's version now, or None where it cannot be read (gone, or not reachable)."""
    from bodyscript_pipeline.lake.sources import object_version

    if uri is None:
        return None
    try:
        return object_version(uri)
    except (OSError, BodyscriptError):
        return None


def _process(settings: Settings, video: str, partition: str | None, as_json: bool, force: bool = False) -> int:
    uri = _source_uri(video)
    if settings.pose_service is not None:
        from bodyscript_pipeline.pose import service as pose_service

        # Starts warming up first thing (it takes a second or two), whether or not pose turns out to be needed:
        # later videos find it warm. Before the imports below (about 0.3 s), so the service starts on the core
        # this process leaves idle meanwhile.
        pose_service.start(settings.pose_service.home, settings.pose_service.idle_s)
    from bodyscript_pipeline.lake.sources import object_version, register_source
    from bodyscript_pipeline.steps.staleness import asset_states

    key = partition or _partition_of(uri)
    version = object_version(uri)
    states = asset_states(settings.lake_uri, key, settings, source_version=version)
    todo = _plan(states, force)
    if settings.pose_service is not None and "landmarks" in todo:
        from bodyscript_pipeline.steps.landmarks import begin_pose

        begin_pose(settings, uri, version)  # the video's pose begins in the service while Dagster loads
    ensure_dagster_home(settings)
    warnings.filterwarnings("ignore")

    import dagster as dg

    from assets.partitions import SOURCE_URI_TAG, SOURCE_VERSION_TAG, VIDEOS_PARTITIONS_NAME
    from assets.runs import ACTIVE, PROGRESS_PREFIX, partition_runs
    from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions

    instance = dg.DagsterInstance.get()
    busy = partition_runs(instance, key, [dg.DagsterRunStatus.QUEUED, *ACTIVE])
    if busy:
        raise BodyscriptError(f"partition {key} is already being processed by run {busy[0]}; try again once it ends")
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, [key])
    record = register_source(settings.lake_uri, key, uri, version)
    instance.report_runless_asset_event(
        dg.AssetObservation(
            "source_video",
            partition=key,
            metadata={"uri": record.uri, "version": record.version},
            tags={"dagster/data_version": record.version},
        )
    )
    defs = build_definitions(settings)
    skipped = {name: state.describe() for name, state in states.items() if name not in todo}
    if not as_json:
        for name in states:
            print(f"{name}: {skipped[name]}" if name in skipped else f"{name}: materializing ({todo[name]})")
        if not todo:
            print(f"{key}: nothing to do, every asset is current")
        sys.stdout.flush()
    if todo:
        job = defs.resolve_job_def(PROCESS_VIDEO_JOB)
        run_id = str(uuid.uuid4())
        native_log = settings.home / "logs" / f"{run_id}.log"
        show_bar = sys.stderr.isatty()
        with _stderr_to(native_log) as terminal:
            bar = _ProgressBar(instance, run_id, PROGRESS_PREFIX, terminal, list(todo)) if show_bar else None
            if bar:
                bar.start()
            try:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=key,
                    run_id=run_id,
                    asset_selection=[_key(name) for name in todo],
                    raise_on_error=False,
                    run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                    tags={"bodyscript/source": "cli", SOURCE_URI_TAG: record.uri, SOURCE_VERSION_TAG: record.version},
                )
            finally:
                if bar:
                    bar.stop()
        if not result.success:
            raise BodyscriptError(f"{key}: {_failure_reason(result)} (run {run_id})")
    summary = _summary(settings, key)
    if as_json:
        summary.update(materialized=list(todo), reasons=todo, skipped=skipped)
        print(json.dumps(summary))
    else:
        out = summary["outputs"]
        print(f"{key}: {summary['detected_frames']}/{summary['frames']} frames with a pose")
        for name, location in out.items():
            print(f"  {name:<15} {location}")
    return 0


def _status(settings: Settings, videos: list[str], as_json: bool) -> int:
    """Each asset's state per video, from the lake's lineage and the current settings; nothing runs."""
    ensure_dagster_home(settings)
    warnings.filterwarnings("ignore")

    import dagster as dg

    from assets.partitions import VIDEOS_PARTITIONS_NAME
    from bodyscript_pipeline.lake.sources import load_source
    from bodyscript_pipeline.steps.staleness import asset_states

    with dg.DagsterInstance.get() as instance:
        registered = instance.get_dynamic_partitions(VIDEOS_PARTITIONS_NAME)
    keys = [_status_key(one, registered) for one in videos] if videos else sorted(registered)
    report = []
    for key in keys:
        try:
            uri: str | None = load_source(settings.lake_uri, key).uri
        except BodyscriptError:
            uri = None
        report.append((key, uri, asset_states(settings.lake_uri, key, settings, _source_version(uri))))
    if as_json:
        videos_json = [
            {"partition": key, "source": uri, "assets": {name: state.as_json() for name, state in states.items()}}
            for key, uri, states in report
        ]
        print(json.dumps({"videos": videos_json}))
        return 0
    if not report:
        print("no videos registered; add one with `bodyscript process VIDEO`")
    for key, uri, states in report:
        print(f"{key}" + (f" ({uri})" if uri else " (no registered source)"))
        for name, state in states.items():
            print(f"  {name:<16} {state.describe()}")
    return 0


def _status_key(video: str, registered: list[str]) -> str:
    """A registered partition as it is; else the partition ``process`` gives the video at that path or URI."""
    if video in registered:
        return video
    try:
        uri = _source_uri(video)
    except BodyscriptError:
        raise BodyscriptError(f"{video}: neither a registered partition nor a video") from None
    return _partition_of(uri)


@contextmanager
def _stderr_to(log_path: Path) -> Iterator[TextIO]:
    """Send file descriptor 2 to ``log_path`` while the run executes: MediaPipe's native code logs there
    directly. Yields a stream to the real terminal for the progress bar."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    terminal = os.fdopen(os.dup(saved), "w")
    try:
        yield terminal
    finally:
        terminal.close()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _failure_reason(result: Any) -> str:
    """A failed blocking quality check's reason, or the first failed step and its one-line reason: the
    user-facing description of an expected failure, else the innermost exception's first line."""
    for check in result.get_asset_check_evaluations():
        if not check.passed and check.severity.value == "ERROR":
            return f"{check.asset_key.to_user_string()}: quality check {check.check_name} failed: {check.description}"
    for event in result.all_events:
        if event.is_step_failure:
            user = event.step_failure_data.user_failure_data
            if user is not None and user.description:
                asset = user.metadata.get("asset")  # which of the step's assets failed
                return f"{asset.value if asset else event.step_key}: {user.description}"
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            message = (error.message if error else "failed").strip().splitlines()[0]
            return f"{event.step_key}: {message}"
    return "run failed"


def _summary(settings: Settings, key: str) -> dict[str, Any]:
    from bodyscript_pipeline.lake.parquet import read_table

    lake = VideoLake(settings.lake_uri, key)
    video = read_table(lake.table_part("videos")).to_pylist()[0]
    quality = read_table(lake.table_part("quality")).to_pylist()
    return {
        "partition": key,
        "frames": video["frame_count"],
        "detected_frames": video["detected_frames"],
        "people": len(quality) - 1,
        "quality": {k: v for k, v in quality[0].items() if k != "person"},
        "outputs": {
            "frames": lake.frame_index,
            "landmarks": lake.table_part("landmarks"),
            "landmarks_clean": lake.table_part("landmarks_clean"),
            "quality": lake.table_part("quality"),
            "overlay": lake.overlay,
            "metrics": lake.table_part("frame_metrics"),
            "video_metrics": lake.table_part("video_metrics"),
            "thumbnail": lake.thumbnail,
            "exports": lake.folder("exports"),
        },
    }


class _ProgressBar:
    """Draws the run's progress on the terminal, asset by asset, from the materialization and progress events
    of the event log (``progress: done/total frames (asset)``)."""

    def __init__(self, instance: Any, run_id: str, prefix: str, out: TextIO, assets: list[str]) -> None:
        self._assets = assets
        self._out = out
        self._instance = instance
        self._run_id = run_id
        self._prefix = prefix
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._refresh()
        self._out.write("\n")
        self._out.flush()

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            self._refresh()

    def _refresh(self) -> None:
        try:
            self._draw(self._instance.all_logs(self._run_id))
        except Exception:
            return

    def _draw(self, events: list[Any]) -> None:
        finished: set[str] = set()
        current, fraction = "", 0.0
        for event in events:
            if event.is_dagster_event and event.dagster_event.is_step_materialization:
                finished.add(event.dagster_event.asset_key.to_user_string())
            elif event.user_message.startswith(self._prefix):
                counts, _, asset = event.user_message[len(self._prefix) :].partition("(")
                done, total = counts.split()[0].split("/")
                current, fraction = asset.rstrip(")").strip(), int(done) / max(1, int(total))
        total = len(self._assets)
        progress = (len(finished) + (fraction if current and current not in finished else 0.0)) / total
        pending = [asset for asset in self._assets if asset not in finished]
        label = (current if current in pending else pending[0]) if pending else "done"
        width = 30
        filled = int(progress * width)
        self._out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {progress:5.0%} {label:<15}")
        self._out.flush()


def _query(settings: Settings, sql: str, fmt: str, output: Path | None) -> int:
    """One SELECT over the lake's sandboxed views (``analytics.query``); the answer is written by Python, so
    the query itself never writes a file."""
    from bodyscript_pipeline.analytics import connect, query

    if fmt == "parquet" and output is None:
        raise BodyscriptError("--format parquet needs --output FILE")
    frame = query(connect(settings.lake_uri), sql)
    if fmt == "parquet":
        assert output is not None
        frame.write_parquet(output, compression="zstd")
        return 0
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str) + "\n"
    else:
        import polars as pl

        with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60):
            text = f"{frame}\n"
    _emit(text, output)
    return 0


def _export(settings: Settings, partition: str, fmt: str, output: Path | None, person: int = 0) -> int:
    from bodyscript_pipeline.exports.tables import write_json, write_long_csv
    from bodyscript_pipeline.lake.compaction import restore
    from bodyscript_pipeline.steps.exports import write_person_mot, write_person_trc

    writers: dict[str, Callable[[str, str, TextIO], int]] = {
        "csv": write_long_csv,
        "json": write_json,
        "trc": lambda lake, key, out: write_person_trc(lake, key, person, out),
        "mot": lambda lake, key, out: write_person_mot(lake, key, person, out),
    }
    writer = writers[fmt]
    restore(settings.lake_uri, partition)  # a compacted video's per-video files, back as they were
    if output is None:
        writer(settings.lake_uri, partition, sys.stdout)
        return 0
    staging = output.with_name(f".{output.name}.partial")
    with staging.open("w", encoding="utf-8", newline="") as out:
        writer(settings.lake_uri, partition, out)
    staging.replace(output)
    return 0


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
