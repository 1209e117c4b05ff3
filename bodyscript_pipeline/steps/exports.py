"""Files researchers open in their own tools, per video: OpenSim ``.trc`` markers and ``.mot`` angles per
person (as Sports2D writes them), the long CSV, and a PNG plot of each joint's angles over time.

``.trc`` markers are the cleaned world landmarks in metres, turned to OpenSim's axes: MediaPipe's x right,
y down, z towards the camera become x right, y up, z away from the camera (a 180 degree turn about x, so
the frame stays right-handed). Frames where the person is missing have empty marker fields.
``.mot`` columns are the ``frame_metrics`` angles in degrees, one row per frame the person was measured in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.exports.opensim import write_mot, write_trc
from bodyscript_pipeline.exports.plots import angle_plot_png
from bodyscript_pipeline.exports.tables import write_long_csv
from bodyscript_pipeline.lake.parquet import read_table
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.schemas import WORLD_COLUMNS
from bodyscript_pipeline.overlay.drawing import person_colour
from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, angle_column
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from bodyscript_pipeline.steps.frames import load_probe

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"

MIN_EXPORT_FRAMES = 10  # people tracked for fewer frames (usually brief false detections) get no files
PLOTTED_PEOPLE = 3  # the people with the most frames get a line in the angle plots
JOINT_KINDS = tuple(dict.fromkeys(name.split("_", 1)[1] for name in JOINT_NAMES))


def _require(uri: str, what: str) -> str:
    if not storage.exists(uri):
        raise BodyscriptError(f"no {what} at {uri}: run the pipeline for this video first")
    return uri


class ExportSources:
    """What the exports of one video read, each table read once, when first needed: the cleaned world landmarks
    and the angles of every person, each frame's time, the frame rate. (Read per person instead, a 60 s clip with
    24 people took 48 reads of whole tables.)"""

    def __init__(self, lake_uri: str, partition: str) -> None:
        self.partition = partition
        self.lake = VideoLake(lake_uri, partition)

    @cached_property
    def landmarks(self) -> pa.Table:
        """frame_index, person and the world columns of landmarks_clean."""
        uri = _require(self.lake.table_part("landmarks_clean"), "cleaned landmarks")
        return read_table(uri, columns=["frame_index", "person", *WORLD_COLUMNS])

    @cached_property
    def metrics(self) -> pa.Table:
        return read_table(_require(self.lake.table_part("frame_metrics"), "metrics"))

    @cached_property
    def frame_times_ms(self) -> np.ndarray:
        return read_table(self.lake.frame_index, columns=["timestamp_ms"])["timestamp_ms"].to_numpy()

    @cached_property
    def fps(self) -> float:
        return load_probe(self.lake).fps


def _person_rows(table: pa.Table, person: int, what: str) -> pa.Table:
    """One person's rows of ``table``, in its order."""
    rows = table.filter(pc.equal(table["person"], person))
    if not rows.num_rows:
        raise BodyscriptError(f"person {person} has no {what} in this video")
    return rows


def write_person_trc(lake_uri: str, partition: str, person: int, out: TextIO) -> int:
    """One person's cleaned world landmarks as an OpenSim ``.trc``; returns the rows written."""
    return _write_trc(ExportSources(lake_uri, partition), person, out)


def _write_trc(sources: ExportSources, person: int, out: TextIO) -> int:
    table = _person_rows(sources.landmarks, person, "cleaned landmarks")
    frame = table["frame_index"].to_numpy()[::NUM_LANDMARKS].astype(np.int64)
    world = np.stack([table[c].to_numpy(zero_copy_only=False) for c in WORLD_COLUMNS], -1)
    world = world.reshape(-1, NUM_LANDMARKS, 3).astype(np.float64) * np.array([1.0, -1.0, -1.0])
    first, last = int(frame[0]), int(frame[-1])
    xyz = np.full((last - first + 1, NUM_LANDMARKS, 3), np.nan)
    xyz[frame - first] = world
    return write_trc(
        out,
        f"{sources.partition}_person-{person}.trc",
        sources.fps,
        np.arange(first, last + 1) + 1,  # OpenSim frame numbers start at 1
        sources.frame_times_ms[first : last + 1] / 1000.0,
        LANDMARK_NAMES,
        xyz,
        units="m",
    )


def write_person_mot(lake_uri: str, partition: str, person: int, out: TextIO) -> int:
    """One person's joint angles as an OpenSim ``.mot`` (degrees); returns the rows written."""
    return _write_mot(ExportSources(lake_uri, partition), person, out)


def _write_mot(sources: ExportSources, person: int, out: TextIO) -> int:
    table = _person_rows(sources.metrics, person, "metrics")
    times = table["timestamp_ms"].to_numpy() / 1000.0
    columns = {
        name: table[angle_column(name)].to_numpy(zero_copy_only=False).astype(np.float64) for name in JOINT_NAMES
    }
    return write_mot(out, times, columns, in_degrees=True)


def angle_plots(table: pa.Table) -> dict[str, bytes]:
    """A PNG per joint (knee, hip, ...) of a video's ``frame_metrics``: each plotted person's left and right angle
    over time."""
    person = table["person"].to_numpy()
    counts = {int(p): int((person == p).sum()) for p in np.unique(person)}
    plotted = sorted(counts, key=lambda p: (-counts[p], p))[:PLOTTED_PEOPLE]
    plots = {}
    for kind in JOINT_KINDS:
        series: dict[str, np.ndarray] = {}
        colours: dict[str, tuple[int, int, int]] = {}
        times: list[np.ndarray] = []
        for p in plotted:
            rows = person == p
            t = table["timestamp_ms"].to_numpy()[rows] / 1000.0
            for side in ("left", "right"):
                label = f"P{p} {side}"
                values = table[angle_column(f"{side}_{kind}")].to_numpy(zero_copy_only=False)[rows]
                series[label] = values.astype(np.float64)
                colours[label] = _shade(person_colour(p), side)
                times.append(t)
        plots[kind] = _plot(kind, times, series, colours)
    return plots


def _shade(colour: tuple[int, int, int], side: str) -> tuple[int, int, int]:
    """The person's colour for the left side, a darker shade of it for the right."""
    if side == "left":
        return colour
    r, g, b = colour
    return (r * 3 // 5, g * 3 // 5, b * 3 // 5)


def _plot(
    kind: str, times: list[np.ndarray], series: dict[str, np.ndarray], colours: dict[str, tuple[int, int, int]]
) -> bytes:
    """People are measured in different frames: put every series on the union of their times, NaN elsewhere."""
    if not series:
        return angle_plot_png(f"{kind} angle (deg)", np.empty(0), {})
    axis = np.unique(np.concatenate(times))
    aligned = {}
    for (label, values), t in zip(series.items(), times, strict=True):
        full = np.full(len(axis), np.nan)
        full[np.searchsorted(axis, t)] = values
        aligned[label] = full
    return angle_plot_png(f"{kind} angle (deg)", axis, aligned, colours)


@dataclass(frozen=True)
class ExportsResult:
    files: list[str]
    people: list[int]
    plots: dict[str, bytes]


def write_exports(lake_uri: str, partition: str) -> ExportsResult:
    """Every export of one video into ``<lake>/exports/video=<partition>/``."""
    lake = VideoLake(lake_uri, partition)
    quality = read_table(_require(lake.table_part("quality"), "quality scores")).to_pylist()
    people = [
        int(r["person"]) for r in quality if r["person"] is not None and r["detected_frames"] >= MIN_EXPORT_FRAMES
    ]
    sources = ExportSources(lake_uri, partition)
    metric_people = set(sources.metrics["person"].to_pylist())
    files = []
    for person in people:
        files.append(_write_text(lake.export_file(f"person-{person}.trc"), _write_trc, sources, person))
        if person in metric_people:
            files.append(_write_text(lake.export_file(f"person-{person}.mot"), _write_mot, sources, person))
    csv_uri = lake.export_file("landmarks.csv")
    with storage.staged_output(csv_uri) as local, local.open("w", encoding="utf-8", newline="") as out:
        write_long_csv(lake_uri, partition, out)
    files.append(csv_uri)
    plots = angle_plots(sources.metrics)
    for kind, png in plots.items():
        uri = lake.export_file(f"angles-{kind}.png")
        storage.write_bytes(uri, png)
        files.append(uri)
    return ExportsResult(files, people, plots)


def _write_text(
    uri: str, writer: Callable[[ExportSources, int, TextIO], int], sources: ExportSources, person: int
) -> str:
    with storage.staged_output(uri) as local, local.open("w", encoding="utf-8", newline="") as out:
        writer(sources, person, out)  # streamed to a file: a long video's .trc is tens of MB
    return uri
