"""The lake as an analytical store: DuckDB views and Polars agree with the Parquet files, exports read back,
and the fleet summary follows new partitions."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import FLEET_SUMMARY_KEY, fleet_summary_asset, process_video_assets, videos_partitions
from bodyscript_pipeline.analytics import VIEWS, connect, scan
from bodyscript_pipeline.exports.tables import LONG_COLUMNS
from bodyscript_pipeline.lake.paths import TABLES
from bodyscript_pipeline.lake.schemas import SCHEMAS
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_NAMES
from bodyscript_pipeline.steps.fleet_summary import build_fleet_summary
from resources import PipelineResource
from tests.support.demo_run import DEMO_FRAMES, DemoRun
from tests.support.video_factory import clip_of

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))


def read_direct(run: DemoRun, table: str) -> pl.DataFrame:
    uri = run.lake.frame_index if table == "frames" else run.lake.table_part(table)
    return pl.read_parquet(run.path(uri))


@pytest.mark.parametrize("table", TABLES)
def test_views_match_the_parquet_files(demo_run: DemoRun, table: str) -> None:
    direct = read_direct(demo_run, table)
    con = connect(demo_run.settings.lake_uri)
    viewed = con.sql(f"SELECT * FROM {table} WHERE video = '{demo_run.partition}'").pl()
    assert viewed.height == direct.height > 0
    assert viewed.drop("video").columns == direct.columns == SCHEMAS[table].names
    key = ["frame_index"] if "frame_index" in direct.columns else direct.columns[:2]
    order = [*key, *(c for c in ("person", "landmark_id", "joint") if c in direct.columns and c not in key)]
    left = viewed.drop("video").sort(order, nulls_last=True)
    right = direct.sort(order, nulls_last=True)
    assert left.cast({c: pl.String for c in ("landmark",) if c in direct.columns}).equals(
        right.cast({c: pl.String for c in ("landmark",) if c in direct.columns})
    )
    lazy = scan(demo_run.settings.lake_uri, table).filter(pl.col("video") == demo_run.partition).collect()
    assert lazy.height == direct.height


def test_typical_questions_agree_between_duckdb_and_polars(demo_run: DemoRun) -> None:
    lake = demo_run.settings.lake_uri
    con = connect(lake)
    sql_rate = con.execute(
        "SELECT count(DISTINCT frame_index) FILTER (WHERE person IS NOT NULL) / count(DISTINCT frame_index) "
        "FROM landmarks"
    ).fetchone()[0]
    lazy = scan(lake, "landmarks")
    polars_rate = (
        lazy.select(
            pl.col("frame_index").filter(pl.col("person").is_not_null()).n_unique() / pl.col("frame_index").n_unique()
        )
        .collect()
        .item()
    )
    assert sql_rate == pytest.approx(polars_rate) == pytest.approx(demo_run.metadata("landmarks")["detection_rate"])
    past = con.execute("SELECT count(*) FROM frame_metrics WHERE right_knee_angle_deg > 60").fetchone()[0]
    polars_past = scan(lake, "frame_metrics").filter(pl.col("right_knee_angle_deg") > 60).collect().height
    assert past == polars_past > 0
    names = con.execute("SELECT DISTINCT landmark FROM landmarks WHERE landmark IS NOT NULL").fetchall()
    assert sorted(n for (n,) in names) == sorted(LANDMARK_NAMES)


def test_empty_lake_has_typed_empty_views(tmp_path: Path) -> None:
    con = connect(f"file://{tmp_path}")
    for view in VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == 0
    assert "right_knee_angle_deg" in con.sql("SELECT * FROM frame_metrics").columns


def test_export_csv_and_json_read_back(demo_run: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_HOME", str(demo_run.settings.home))
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", demo_run.settings.lake_uri)
    out_csv = tmp_path / "landmarks.csv"
    done = subprocess.run([BODYSCRIPT, "export", demo_run.partition, "--format", "csv", "--output", str(out_csv)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert tuple(rows[0].keys()) == LONG_COLUMNS
    direct = read_direct(demo_run, "landmarks")
    assert len(rows) == direct.height
    detected = [r for r in rows if r["person"]]
    first = direct.filter(pl.col("person").is_not_null()).row(0, named=True)
    assert detected[0]["landmark"] == first["landmark"] == "nose"
    assert float(detected[0]["x"]) == pytest.approx(first["x"], abs=1e-6)

    done = subprocess.run([BODYSCRIPT, "export", demo_run.partition, "--format", "json"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["landmark_names"] == list(LANDMARK_NAMES)
    assert [f["frame_index"] for f in data["frames"]] == list(range(DEMO_FRAMES)), "every frame exactly once"
    with_people = [f for f in data["frames"] if f["people"]]
    assert len(with_people) == demo_run.metadata("landmarks")["detected_frames"]
    assert all(len(f["people"][0]["landmarks"]) == 33 for f in with_people)


def test_query_formats(demo_run: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCRIPT_HOME", str(demo_run.settings.home))
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", demo_run.settings.lake_uri)
    sql = "SELECT video, frame_count FROM videos"
    as_json = subprocess.run([BODYSCRIPT, "query", sql, "--format", "json"], capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout) == [{"video": demo_run.partition, "frame_count": DEMO_FRAMES}]
    as_csv = subprocess.run([BODYSCRIPT, "query", sql, "--format", "csv"], capture_output=True, text=True, timeout=60)
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["video", "frame_count"], [demo_run.partition, "230"]]
    target = tmp_path / "out.parquet"
    subprocess.run([BODYSCRIPT, "query", sql, "--format", "parquet", "--output", str(target)], check=True, timeout=60)
    assert pl.read_parquet(target).rows() == [(demo_run.partition, DEMO_FRAMES)]
    bad = subprocess.run([BODYSCRIPT, "query", "SELECT nope FROM videos"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_fleet_summary_follows_new_partitions(bodyscript_home: Settings, demo_video: Path, tmp_path: Path) -> None:
    """After a partition's metrics materialize, the automation condition requests the fleet summary, once."""
    from bodyscript_pipeline.definitions import build_definitions

    defs = build_definitions(bodyscript_home)
    resources = {"pipeline": PipelineResource.from_settings(bodyscript_home)}
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.get_num_requested(FLEET_SUMMARY_KEY) == 0, "nothing processed yet"

        clip = clip_of(demo_video, tmp_path / "short.mp4", 15, size=(884, 496))
        instance.add_dynamic_partitions(videos_partitions.name, ["short"])
        register_source(bodyscript_home.lake_uri, "short", f"file://{clip}")
        assert dg.materialize(
            process_video_assets(bodyscript_home), instance=instance, partition_key="short", resources=resources
        ).success
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert after.get_num_requested(FLEET_SUMMARY_KEY) == 1, "a completed partition triggers a rebuild"
        dg.materialize([fleet_summary_asset(bodyscript_home)], instance=instance, resources=resources)
        settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        assert settled.get_num_requested(FLEET_SUMMARY_KEY) == 0, "no new partition, no rebuild"
    summary = build_fleet_summary(bodyscript_home.lake_uri).table.to_pylist()
    assert [row["video"] for row in summary] == ["short"]
    assert summary[0]["frame_count"] == 15


def test_a_partition_being_written_is_left_out_of_the_views_until_its_run_ends(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """While a run writes a partition's outputs, readers of the views and scans see none of them (never a
    half-written set); the moment the run ends, they see them all."""
    import shutil

    from bodyscript_pipeline.lake.writing import begin_writing, end_writing

    lake = tmp_path / "lake"
    shutil.copytree(demo_run.path(demo_run.settings.lake_uri), lake)
    lake_uri = f"file://{lake}"
    con = connect(lake_uri)  # opened before the run starts: the markers are looked up at each query

    def counts() -> dict[str, int]:
        viewed = {
            t: con.execute(f"SELECT count(*) FROM {t} WHERE video = '{demo_run.partition}'").fetchall()[0][0]
            for t in TABLES
        }
        scanned = {t: scan(lake_uri, t).filter(pl.col("video") == demo_run.partition).collect().height for t in TABLES}
        assert viewed == scanned
        return viewed

    assert all(counts().values())
    begin_writing(lake_uri, demo_run.partition, "run-1")
    assert not any(counts().values())
    end_writing(lake_uri, demo_run.partition)
    assert all(counts().values())
