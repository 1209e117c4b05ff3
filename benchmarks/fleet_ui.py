"""Fleet scale: the UI's Partitions tab and asset catalog at the ``videos`` partition set's bounded size.

Run by hand (not a test), each size a few minutes at most on two cores:
    .venv/bin/python benchmarks/fleet_ui.py [--sizes 10000 25000 50000 100000] [--asset landmarks] [--browser]

One real SQLite Dagster instance (the repo's dagster.yaml, in a temporary ``$BODYSCRIPT_HOME/dagster``) and the real
``dagster-webserver`` on the repo's workspace.yaml (code location ``bodyscript_pipeline.definitions:defs``). The
partition set grows through ``--sizes`` in turn: for each size, the new keys (``partition_key_for`` of
``site-NN/clip-NNNNNNN.mp4``, about 41 characters, uploads spread over ``--days``) are added with
``instance.add_dynamic_partitions``; every video has a ``source_video`` observation with its data version (as the
drop-zone sensor reports it), and all but the newest ``--unprocessed`` share a materialization of each of the six
processed assets, with data and code version tags. Those events are runless and written in bulk into the event
log's index shard, where Dagster's SQLite storage keeps and reads every asset event: rows made by the storage's own
``_event_to_row`` from one serialized event per asset, their data-version tags indexed, each asset's latest event
recorded as ``store_event`` records it. (``report_runless_asset_event`` takes 10-30 ms an event here, two SQLite
transactions: hours for 100,000 videos' 700,000 events.)

Then the GraphQL queries a browser sends when a person opens the asset's Partitions tab
(``/assets/<asset>?view=partitions``: the partition health query, the asset's definition and live data, ...) and
the asset catalog (``/assets``: the asset records, the workspace's assets, every asset's live data with its
partition counts, ...), with their texts and fragments taken from the webserver's bundled webapp (the sources its
source maps carry), are timed over HTTP one at a time: a first call (which also brings Dagster's partition status
cache up to date with the new events), then the median of ``--repeat``; and the response bytes. The app shell's
queries that no partition count changes (permissions, instance warnings, code location status) are left out.

With ``--browser``, Debian's chromium (headless, over the DevTools protocol) opens each page: a first load, then
``--repeat`` loads (the webapp's cache of the workspace kept, as for a returning user); the seconds until the
Partitions tab lists partition keys and until the catalog shows each asset's materialized partition count, and the
GraphQL requests the last load sent, each with its time (concurrent, so each includes waiting on the others). A page
load includes the app's own start (about a second here, whatever the partition count), so the tab is also timed as
a person reaches it in the running app: from a click on the Partitions tab of the asset's loaded overview.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
import dagster_webserver
import sqlalchemy as db
import websocket
import yaml
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG
from dagster._core.events import AssetObservationData, DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetEventTagsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import deserialize_value

from assets import videos_partitions
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.settings import Settings
from tests.support.observed_runs import dagster_process, install_dagster_yaml
from tests.support.repo import REPO

DAY = 86400
TARGET_S = 1.0
CHROMIUM = "/usr/bin/chromium"
WEBAPP = Path(dagster_webserver.__file__).parent / "webapp" / "build" / "_next" / "static" / "chunks"
SOURCE = "source_video"
PROCESSED = ("frames", "landmarks", "overlays", "clean_landmarks", "metrics", "exports")
KEY_MARK, TIME_MARK, VERSION_MARK = "@@key@@", 1111111111.5, "@@version@@"
HEALTH, CATALOG_LIVE = "tab: PartitionHealthQuery", "catalog: AssetGraphLiveQuery"
KEY_PATTERN = r"site-\d+-clip-\d+-mp4-[0-9a-f]{16}"


# --- the UI's GraphQL documents ------------------------------------------------------------------------------

_DEFINITION = re.compile(r"\b(query|fragment|mutation|subscription)\s+(\w+)")
_SPREAD = re.compile(r"\.\.\.\s*(?!on\b)(\w+)")


def _definitions(body: str) -> Iterator[tuple[str, str]]:
    """(name, text) of each operation and fragment in one ``gql`` template's text."""
    position = 0
    while match := _DEFINITION.search(body, position):
        opening = body.find("{", match.end())
        if opening < 0:
            return
        depth, end = 0, len(body)
        for index in range(opening, len(body)):
            depth += {"{": 1, "}": -1}.get(body[index], 0)
            if depth == 0:
                end = index + 1
                break
        yield match.group(2), body[match.start() : end]
        position = end


def ui_definitions() -> dict[str, str]:
    """Every named operation and fragment of the bundled webapp, from the sources its source maps carry."""
    found: dict[str, str] = {}
    for path in sorted(WEBAPP.glob("*.js.map")):
        for content in json.loads(path.read_text()).get("sourcesContent") or []:
            for body in re.findall(r"gql`(.*?)`", content or "", re.S):
                found.update(_definitions(re.sub(r"\$\{[^}]*\}", "", body)))
    return found


def ui_document(definitions: dict[str, str], operation: str) -> str:
    """The operation with every fragment it spreads, directly or through other fragments."""
    needed, pending = [operation], [operation]
    while pending:
        for name in _SPREAD.findall(definitions[pending.pop()]):
            if name not in needed:
                needed.append(name)
                pending.append(name)
    return "\n\n".join(definitions[name] for name in needed)


# --- the instance's partitions and asset events ---------------------------------------------------------------


def video_keys(count: int) -> list[str]:
    return [partition_key_for(f"site-{i % 40:02d}/clip-{i:07d}.mp4") for i in range(count)]


def _template(asset: str) -> EventLogEntry:
    """One runless event of ``asset`` with marks where each video's key, time and data version go."""
    tags = {DATA_VERSION_TAG: VERSION_MARK}
    if asset == SOURCE:
        uri = f"s3://bodyscript-drop/{KEY_MARK}.mp4"
        observation = dg.AssetObservation(
            asset, partition=KEY_MARK, metadata={"uri": uri, "version": VERSION_MARK}, tags=tags
        )
        kind, data = DagsterEventType.ASSET_OBSERVATION, AssetObservationData(observation)
    else:
        metadata = {
            "path": dg.MetadataValue.path(f"/lake/{asset}/video={KEY_MARK}/part-0.parquet"),
            "rows": 1800,
            "bytes": 412_000,
            "model": "pose_landmarker_full",
            "seconds": 4.2,
        }
        tags[CODE_VERSION_TAG] = "v3"
        materialization = dg.AssetMaterialization(asset, partition=KEY_MARK, metadata=metadata, tags=tags)
        kind, data = DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization)
    event = DagsterEvent(event_type_value=kind.value, job_name="", event_specific_data=data)
    return EventLogEntry(
        user_message="",
        level=20,
        job_name="",
        run_id="",
        error_info=None,
        timestamp=TIME_MARK,
        step_key=None,
        dagster_event=event,
    )


@dataclass
class EventWriter:
    """Asset events of many videos written in bulk into the SQLite event log's index shard."""

    instance: dg.DagsterInstance
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        storage = self.storage
        for asset in (SOURCE, *PROCESSED):
            self.templates[asset] = storage._event_to_row(_template(asset))

    @property
    def storage(self) -> SqlEventLogStorage:
        storage = self.instance.event_log_storage
        assert isinstance(storage, SqlEventLogStorage)
        return storage

    def write(self, asset: str, videos: Sequence[tuple[str, float]]) -> None:
        """One event of ``asset`` for each (key, time) of ``videos``."""
        if not videos:
            return
        row = self.templates[asset]
        text, mark = row["event"], repr(TIME_MARK)
        rows, versions = [], []
        for key, at in videos:
            version = hashlib.sha256(f"{asset}/{key}".encode()).hexdigest()
            versions.append(version)
            event = text.replace(KEY_MARK, key).replace(VERSION_MARK, version).replace(mark, repr(at))
            rows.append({**row, "event": event, "partition": key, "timestamp": _utc(at)})
        storage = self.storage
        with storage.index_transaction() as conn:
            before = conn.execute(db.select(db.func.max(SqlEventLogStorageTable.c.id))).scalar() or 0
            for start in range(0, len(rows), 20_000):
                conn.execute(SqlEventLogStorageTable.insert(), rows[start : start + 20_000])
            column = SqlEventLogStorageTable.c.id
            ids = conn.execute(db.select(column).where(column > before).order_by(column)).all()
            assert len(ids) == len(rows)
            tag_rows = [
                {"event_id": event_id, "asset_key": row["asset_key"], "key": DATA_VERSION_TAG, "value": version}
                for (event_id,), version in zip(ids, versions, strict=True)
            ]
            for start in range(0, len(tag_rows), 20_000):
                conn.execute(AssetEventTagsTable.insert(), tag_rows[start : start + 20_000])
            # the asset's latest event, recorded as store_event records it
            storage._store_asset_event(conn, deserialize_value(rows[-1]["event"], EventLogEntry), ids[-1][0])


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


@dataclass
class FleetInstance:
    """The ``videos`` partition set grown in turn, the newest ``unprocessed`` share only observed."""

    instance: dg.DagsterInstance
    keys: list[str]
    times: list[float]
    unprocessed: float
    writer: EventWriter
    size: int = 0
    processed: int = 0

    def grow(self, size: int) -> float:
        started = time.perf_counter()
        new = list(zip(self.keys[self.size : size], self.times[self.size : size], strict=True))
        self.instance.add_dynamic_partitions(videos_partitions.name, [key for key, _ in new])
        self.writer.write(SOURCE, new)
        processed = size - round(size * self.unprocessed)
        done = [
            (k, at + 60)
            for k, at in zip(self.keys[self.processed : processed], self.times[self.processed : processed], strict=True)
        ]
        for asset in PROCESSED:
            self.writer.write(asset, done)
        self.size, self.processed = size, processed
        return time.perf_counter() - started


# --- the webserver and its GraphQL -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: dict[str, Any], timeout: float = 120) -> tuple[float, bytes]:
    """Seconds until the whole response was read, and the response."""
    request = urllib.request.Request(f"{url}/graphql", json.dumps(body).encode(), {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read()
    return time.perf_counter() - started, data


def _location_loaded(url: str) -> bool:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus"
        " locationOrLoadError { __typename } } } } }"
    )
    try:
        _, data = post(url, {"query": query}, timeout=5)
    except OSError:
        return False
    entries = json.loads(data)["data"]["workspaceOrError"]["locationEntries"]
    return bool(entries) and all(
        e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries
    )


@dataclass(frozen=True)
class Webserver:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the webserver's process (all its threads) has used: what a query costs on an idle core,
        whatever else the machine runs at the same time (wall time on a busy machine waits for a core)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def webserver(dagster_home: Path, env: dict[str, str], log: Path) -> Iterator[Webserver]:
    """``dagster-webserver`` on the repo's workspace.yaml, once the code location has loaded."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["dagster-webserver", "-h", "127.0.0.1", "-p", str(port)]
    with dagster_process(command, dagster_home, env, log) as process:
        deadline = time.monotonic() + 180
        while not _location_loaded(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not serve the code location: see {log}")
            time.sleep(0.5)
        yield Webserver(url, process.pid)


@dataclass(frozen=True)
class Timing:
    first_s: float
    median_s: float
    min_s: float
    cpu_s: float  # the webserver's CPU seconds, median
    bytes: int


def time_query(server: Webserver, document: str, operation: str, variables: dict[str, Any], repeat: int) -> Timing:
    body = {"operationName": operation, "query": document, "variables": variables}
    first, data = post(server.url, body)
    answer = json.loads(data)
    if answer.get("errors"):
        raise RuntimeError(f"{operation}: {answer['errors']}")
    seconds, cpu = [], []
    for _ in range(repeat):
        used = server.cpu_seconds()
        seconds.append(post(server.url, body)[0])
        cpu.append(server.cpu_seconds() - used)
    return Timing(first, statistics.median(seconds), min(seconds), statistics.median(cpu), len(data))


# --- a real browser on the pages ----------------------------------------------------------------------------


@dataclass
class GraphqlCall:
    operation: str
    sent: float
    done: float | None = None
    bytes: int = 0


class Browser:
    """Debian's chromium, headless, driven over the DevTools protocol (one page)."""

    def __init__(self, profile: Path) -> None:
        port = free_port()
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1600,1000",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            self.socket = websocket.create_connection(_page_socket(port), timeout=120, suppress_origin=True)
            self.call("Network.enable")
            self.call("Page.enable")
        except BaseException:
            self._stop()
            raise

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                return dict(message.get("result", {}))
            self.events.append(message)

    def wait_for(self, expression: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            if answer.get("result", {}).get("value") is True:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{expression}: not true within {timeout:.0f} s")
            time.sleep(0.05)

    def open_until(self, url: str, expression: str) -> float:
        """Seconds from navigating (from a blank page) to ``url`` until ``expression`` is true in the page."""
        self.call("Page.navigate", url="about:blank")
        self.wait_for("location.href === 'about:blank'")
        self.events.clear()
        started = time.perf_counter()
        self.call("Page.navigate", url=url)
        self.wait_for(expression)
        return time.perf_counter() - started

    def click_until(self, element: str, expression: str) -> float:
        """Seconds from clicking ``element`` (JavaScript naming it) in the loaded page until ``expression`` is true
        (and false before)."""
        before = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if before.get("result", {}).get("value") is True:
            raise RuntimeError(f"{expression}: true before the click")
        self.events.clear()
        started = time.perf_counter()
        self.call("Runtime.evaluate", expression=f"({element}).click()")
        self.wait_for(expression)
        return time.perf_counter() - started

    def graphql_calls(self) -> list[GraphqlCall]:
        """The page's GraphQL requests since the last ``open_until``, in the order sent."""
        calls: dict[str, GraphqlCall] = {}
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Network.requestWillBeSent" and "/graphql" in params["request"]["url"]:
                body = params["request"].get("postData") or ""
                match = re.search(r'"operationName"\s*:\s*"(\w+)"', body)
                name = match.group(1) if match else params["request"]["url"].rsplit("=", 1)[-1]
                calls[params["requestId"]] = GraphqlCall(name, params["timestamp"])
            elif event.get("method") == "Network.loadingFinished" and params["requestId"] in calls:
                calls[params["requestId"]].done = params["timestamp"]
                calls[params["requestId"]].bytes = int(params["encodedDataLength"])
        return sorted(calls.values(), key=lambda call: call.sent)

    def close(self) -> None:
        self.socket.close()
        self._stop()

    def _stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def _page_socket(port: int, timeout: float = 60) -> str:
    """The DevTools websocket of the blank page chromium opened on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                pages = [t for t in json.loads(response.read()) if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("chromium did not start")
        time.sleep(0.2)


def keys_shown(count: int) -> str:
    """JavaScript: true once the page shows at least ``count`` distinct partition keys (the list's rows)."""
    return f"new Set(document.body.innerText.match(/{KEY_PATTERN}/g) || []).size >= {count}"


# --- the benchmark ----------------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    build_s: float
    timings: dict[str, Timing]
    tab_shown_s: list[float] = field(default_factory=list)
    tab_switch_s: list[float] = field(default_factory=list)
    catalog_shown_s: list[float] = field(default_factory=list)


def page_queries(fleet: FleetInstance, asset: str, location: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (operation, variables) of what the pages send (as --browser records them), without the
    app shell's queries that no partition count changes (permissions, instance warnings, code location status)."""
    one = [{"path": [asset]}]
    every = [{"path": [name]} for name in sorted((SOURCE, *PROCESSED, "fleet_summary"))]
    return {
        HEALTH: ("PartitionHealthQuery", {"assetKey": one[0]}),
        "tab: AssetViewDefinitionQuery": ("AssetViewDefinitionQuery", {"assetKey": one[0]}),
        "tab: AssetGraphLiveQuery": ("AssetGraphLiveQuery", {"assetKeys": one}),
        "tab: AssetStaleStatusDataQuery": ("AssetStaleStatusDataQuery", {"assetKeys": one}),
        "tab: AssetsFreshnessInfoQuery": ("AssetsFreshnessInfoQuery", {"assetKeys": one}),
        "tab: AssetRecordsQuery": ("AssetRecordsQuery", {"limit": 1000}),
        "click: AssetPartitionDetailQuery": (
            "AssetPartitionDetailQuery",
            {"assetKey": one[0], "partitionKey": fleet.keys[fleet.processed - 1]},
        ),
        "catalog: AssetRecordsQuery": ("AssetRecordsQuery", {"limit": 1000}),
        "catalog: LocationWorkspaceAssetsQuery": ("LocationWorkspaceAssetsQuery", {"name": location}),
        CATALOG_LIVE: ("AssetGraphLiveQuery", {"assetKeys": every}),
        "catalog: AssetStaleStatusDataQuery": ("AssetStaleStatusDataQuery", {"assetKeys": every}),
        "catalog: AssetsFreshnessInfoQuery": ("AssetsFreshnessInfoQuery", {"assetKeys": every}),
    }


def measure(
    server: Webserver, definitions: dict[str, str], fleet: FleetInstance, asset: str, location: str, repeat: int
) -> dict[str, Timing]:
    return {
        label: time_query(server, ui_document(definitions, operation), operation, variables, repeat)
        for label, (operation, variables) in page_queries(fleet, asset, location).items()
    }


def browse(browser: Browser, page: str, shown: str, repeat: int) -> tuple[list[float], list[GraphqlCall]]:
    """Seconds until ``page`` shows what ``shown`` tests: a first load, then ``repeat`` loads (the webapp's
    IndexedDB cache of the workspace kept, as for a returning user); the last load's GraphQL requests."""
    browser.open_until(page, shown)
    seconds = [browser.open_until(page, shown) for _ in range(repeat)]
    time.sleep(2)  # the page's queries still in flight finish
    browser.call("Runtime.evaluate", expression="1")
    return seconds, browser.graphql_calls()


PARTITIONS_TAB = "[...document.querySelectorAll('a')].find(a => a.textContent.trim() === 'Partitions')"


def switch(browser: Browser, overview: str, shown: str, repeat: int) -> tuple[list[float], list[GraphqlCall]]:
    """Seconds from clicking the asset page's Partitions tab, in the loaded app on the asset's overview, until
    ``shown`` is true: how a person reaches the tab. The app's own start is left out."""
    seconds = []
    for _ in range(repeat + 1):  # the first, as in browse(), warms the webapp's cache
        browser.open_until(overview, f"Boolean({PARTITIONS_TAB})")
        time.sleep(2)  # the overview's own queries finish
        seconds.append(browser.click_until(PARTITIONS_TAB, shown))
    time.sleep(2)
    browser.call("Runtime.evaluate", expression="1")
    return seconds[1:], browser.graphql_calls()


def catalog_shown(fleet: FleetInstance) -> str:
    """JavaScript: true once each processed asset's row shows its materialized partition count."""
    count = json.dumps(f"{fleet.processed:,}")
    return f"document.body.innerText.split({count}).length - 1 >= {len(PROCESSED)}"


def print_browsed(what: str, seconds: list[float], calls: list[GraphqlCall]) -> None:
    print(
        f"  browser, {what} after {statistics.median(seconds):.2f} s (median of {len(seconds)}: "
        f"{', '.join(f'{s:.2f}' for s in seconds)}); the last load's GraphQL requests:"
    )
    for call in calls:
        took = f"{call.done - call.sent:6.3f} s" if call.done is not None else "   (open)"
        print(f"    {call.operation:<36} {took} {call.bytes:>12,} B")


def _kb(count: int) -> str:
    return f"{count / 1000:,.0f} kB"


def _total(timings: list[Timing]) -> str:
    return f"{sum(t.median_s for t in timings):5.2f} s {_kb(sum(t.bytes for t in timings)):>8}"


def _three(timing: Timing) -> str:
    return f"{timing.median_s:5.2f} {timing.min_s:5.2f} {timing.cpu_s:5.2f} s"


def _shown(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):5.2f} s" if seconds else "   -   "


def _largest_under(results: list[SizeResult], seconds: str) -> int | None:
    held = [r.size for r in results if getattr(r.timings[HEALTH], seconds) < TARGET_S]
    return max(held) if held else None


def report(results: list[SizeResult], uploads_per_day: int) -> None:
    print(
        "\n(wall median, wall min, webserver CPU; tab = the Partitions tab's queries, catalog = the catalog's;"
        " browser = until shown, median: tab = the page loaded, tab click = the tab clicked in the loaded app)\n"
        "    size | tab: PartitionHealthQuery      | tab, all 6       | catalog: AssetGraphLiveQuery  "
        "| catalog, all 5   | browser: tab | tab click | catalog"
    )
    for result in results:
        t = result.timings
        health, live = t[HEALTH], t[CATALOG_LIVE]
        tab = [x for label, x in t.items() if label.startswith("tab:")]
        catalog = [x for label, x in t.items() if label.startswith("catalog:")]
        print(
            f"{result.size:>8,} | {_three(health)} {_kb(health.bytes):>8} | {_total(tab)} | {_three(live)} "
            f"{_kb(live.bytes):>6} | {_total(catalog)} | {_shown(result.tab_shown_s):>12} | "
            f"{_shown(result.tab_switch_s):>9} | {_shown(result.catalog_shown_s):>7}"
        )
    largest = max(r.size for r in results)
    print(
        f"\nthe Partitions tab's health query under {TARGET_S:.0f} s, up to (of the sizes measured); at"
        f" {uploads_per_day:,} uploads a day the partition set holds about {uploads_per_day:,} x"
        " BODYSCRIPT_RETENTION_DAYS videos, so the target holds for:"
    )
    for what, seconds in (("wall, median", "median_s"), ("wall, best", "min_s"), ("webserver CPU", "cpu_s")):
        bound = _largest_under(results, seconds)
        if bound is None:
            print(f"  {what:<14} none of the sizes measured")
            continue
        more = " or more" if bound == largest else ""
        print(
            f"  {what:<14} {bound:>8,} partitions{more}: BODYSCRIPT_RETENTION_DAYS <= {bound // uploads_per_day}{more}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 25_000, 50_000, 100_000])
    parser.add_argument("--asset", default="landmarks")
    parser.add_argument("--days", type=float, default=30.0, help="the uploads spread over these days")
    parser.add_argument("--unprocessed", type=float, default=0.01, help="share of the newest videos not processed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uploads-per-day", type=int, default=1000, help="for the retention bound printed")
    parser.add_argument("--browser", action="store_true", help="also time the pages in headless chromium")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    if args.browser and not shutil.which(CHROMIUM):
        parser.error(f"--browser needs {CHROMIUM}")
    definitions = ui_definitions()
    location = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"]["location_name"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BODYSCRIPT_HOME": str(Path(tmp) / "home")}
        settings = Settings.from_env(env)
        install_dagster_yaml(settings.dagster_home)
        now = time.time()
        spacing = args.days * DAY / sizes[-1]
        times = [now - (sizes[-1] - i) * spacing for i in range(sizes[-1])]
        results: list[SizeResult] = []
        with (
            dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance,
            webserver(settings.dagster_home, env, Path(tmp) / "webserver.log") as server,
        ):
            url = server.url
            print(f"dagster-webserver {url} on the repo's workspace.yaml and dagster.yaml (SQLite, {tmp})")
            fleet = FleetInstance(instance, video_keys(sizes[-1]), times, args.unprocessed, EventWriter(instance))
            for size in sizes:
                build = fleet.grow(size)
                result = SizeResult(size, build, measure(server, definitions, fleet, args.asset, location, args.repeat))
                print(
                    f"{size:,} partitions ({fleet.processed:,} processed), built in {build:.1f} s "
                    f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
                )
                for label, timing in result.timings.items():
                    print(
                        f"  {label:<38} {timing.median_s:6.3f} s median of {args.repeat} (min {timing.min_s:6.3f},"
                        f" first {timing.first_s:6.3f}), webserver CPU {timing.cpu_s:5.2f} s, {timing.bytes:>10,} B"
                    )
                if args.browser:
                    browser = Browser(Path(tmp) / f"chromium-{size}")
                    try:
                        tab = f"{url}/assets/{args.asset}?view=partitions"
                        result.tab_shown_s, calls = browse(browser, tab, keys_shown(10), args.repeat)
                        print_browsed("the Partitions tab lists partitions", result.tab_shown_s, calls)
                        overview = f"{url}/assets/{args.asset}"
                        result.tab_switch_s, calls = switch(browser, overview, keys_shown(10), args.repeat)
                        print_browsed("a click on the Partitions tab lists partitions", result.tab_switch_s, calls)
                        catalog = f"{url}/assets"
                        result.catalog_shown_s, calls = browse(browser, catalog, catalog_shown(fleet), args.repeat)
                        print_browsed("the catalog shows the partition counts", result.catalog_shown_s, calls)
                    finally:
                        browser.close()
                results.append(result)
                sys.stdout.flush()
        report(results, args.uploads_per_day)


if __name__ == "__main__":
    main()
