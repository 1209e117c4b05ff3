"""Lake compaction on lakes the project's own steps wrote: the views answer alike before and after, with fresh and
compacted files mixed, a video restored or removed; and the swap's rules (videos being written, a manifest
replaced meanwhile)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.analytics import connect, scan
from bodyscript_pipeline.cleaning.filters import CleaningOptions
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.compaction import ManifestChanged, compact, load_manifest, remove, restore
from bodyscript_pipeline.lake.lineage import LineageRow, read_lineage, write_lineage
from bodyscript_pipeline.lake.paths import FRESH, LINEAGE, TABLES, VideoLake, marked_partitions, writing_partitions
from bodyscript_pipeline.lake.writing import begin_writing, end_writing
from bodyscript_pipeline.retention.artifacts import apply_retention
from bodyscript_pipeline.retention.partitions import last_written
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.clean_landmarks import clean_landmarks
from bodyscript_pipeline.steps.metrics import compute_metrics
from bodyscript_pipeline.steps.staleness import NO_LINEAGE, changes, stale_partitions
from bodyscript_pipeline.steps.versions import VIDEO_ASSETS
from tests.support.lineage_lake import lineage_row
from tests.support.s3_server import S3Server
from tests.support.synthetic_partition import make_partition

VIDEOS = [f"clip-{n}" for n in range(5)]


def make_video(lake_uri: str, video: str, seed: int) -> VideoLake:
    """A video's every table, from generated landmarks through the project's steps."""
    lake = make_partition(lake_uri, video, seed)
    clean_landmarks(lake_uri, video, CleaningOptions(10, 6.0, 0.5))
    compute_metrics(lake_uri, video, 0.5, "cleaned")
    return lake


CLOCK = {"processed_at_ms"}  # when a video was made: differs when it is made again


def figures(lake_uri: str) -> dict[str, dict[str, tuple]]:
    """Per view and video: the row count and the sum of every numeric column (but the clock's), as DuckDB
    answers them."""
    con = connect(lake_uri)
    found: dict[str, dict[str, tuple]] = {}
    for table in TABLES:
        columns = con.execute(f"DESCRIBE {table}").fetchall()
        numeric = [name for name, kind, *_ in columns if kind.split("(")[0] in NUMERIC and name not in CLOCK]
        sums = ", ".join(f"round(sum({name})::DOUBLE, 6)" for name in numeric)
        rows = con.execute(f"SELECT video, count(*), {sums} FROM {table} GROUP BY video").fetchall()
        found[table] = {row[0]: tuple(row[1:]) for row in rows}
    return found


NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT",
           "DOUBLE", "BOOLEAN"}  # fmt: skip


def polars_counts(lake_uri: str, table: str) -> dict[str, int]:
    counts = scan(lake_uri, table).group_by("video").len().collect()
    return dict(zip(counts["video"].to_list(), counts["len"].to_list(), strict=True))


def polars_texts(lake_uri: str, table: str) -> dict[str, list[tuple]]:
    """Per text column (``landmark``: Categorical, also read from compacted files): each video's values, counted."""
    frame = scan(lake_uri, table)
    texts = [name for name, kind in frame.collect_schema().items() if kind in (pl.String, pl.Categorical)]
    found = {}
    for name in texts:
        if name != "video":
            rows = frame.group_by("video", name).len().sort("video", name).collect()
            found[f"{name} {frame.collect_schema()[name]}"] = rows.rows()
    return found


def fresh_count(lake_uri: str) -> int:
    return sum(len(compaction.fresh_files(lake_uri, table)) for table in TABLES)


def run_video(lake_uri: str, video: str, seed: int) -> None:
    """What a run does: the video hidden, its files restored, written, then shown (marked fresh)."""
    begin_writing(lake_uri, video, "run-1")
    make_video(lake_uri, video, seed)
    end_writing(lake_uri, video)


@pytest.fixture
def lake_uri(tmp_path: Path) -> str:
    uri = f"file://{tmp_path / 'lake'}"
    for seed, video in enumerate(VIDEOS):
        make_video(uri, video, seed)
    return uri


def test_compacted_and_fresh_files_answer_every_view_like_the_per_video_files(lake_uri: str) -> None:
    before = figures(lake_uri)
    counts = {table: polars_counts(lake_uri, table) for table in TABLES}
    texts = {table: polars_texts(lake_uri, table) for table in TABLES}
    assert "landmark Categorical" in texts["landmarks"]
    assert all(len(before[table]) == len(VIDEOS) for table in TABLES)

    report = compact(lake_uri, file_rows=20_000)  # several files per landmark table
    assert report.videos == len(VIDEOS) and report.files_in == len(VIDEOS) * len(TABLES) == report.deleted
    assert fresh_count(lake_uri) == 0
    manifest = load_manifest(lake_uri)
    assert len(manifest.files("landmarks")) > 1
    assert figures(lake_uri) == before
    assert {table: polars_counts(lake_uri, table) for table in TABLES} == counts
    assert {table: polars_texts(lake_uri, table) for table in TABLES} == texts

    # A video run after compaction; a compacted one restored and run again (its per-video files and compacted rows
    # both there, its files marked fresh); one restored by a reader alone (not marked: its compacted rows count).
    run_video(lake_uri, "clip-new", 9)
    run_video(lake_uri, "clip-2", 2)
    assert set(restore(lake_uri, "clip-3")) == set(TABLES)
    after = figures(lake_uri)
    for table in TABLES:
        assert after[table].pop("clip-new")[0] > 0
        assert after[table] == before[table]
        assert polars_counts(lake_uri, table) == {
            **counts[table],
            "clip-new": polars_counts(lake_uri, table)["clip-new"],
        }


def test_compacted_files_are_sorted_by_video_in_row_groups(lake_uri: str) -> None:
    compact(lake_uri, file_rows=20_000)
    for file in compaction.file_uris(lake_uri, "landmarks"):
        meta = pq.read_metadata(file.removeprefix("file://"))
        landmark = meta.schema.to_arrow_schema().field("landmark")  # in the layout Polars reads fastest
        assert (landmark.type, landmark.metadata) == (
            compaction.polars_categorical().type,
            compaction.polars_categorical().metadata,
        )
        column = meta.schema.names.index("video")
        bounds = [(meta.row_group(g).column(column).statistics.min, meta.row_group(g).column(column).statistics.max)
                  for g in range(meta.num_row_groups)]  # fmt: skip
        assert all(lo <= hi for lo, hi in bounds)
        assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(bounds))
    con = connect(lake_uri)
    plan = "\n".join(
        str(row) for row in con.execute("EXPLAIN SELECT count(*) FROM landmarks WHERE video = 'clip-3'").fetchall()
    )
    assert "video='clip-3'" in plan.replace(" ", "")  # the filter reaches the Parquet scan (row-group statistics)


def test_restore_gives_back_each_file_as_it_was(lake_uri: str) -> None:
    lake = VideoLake(lake_uri, "clip-1")
    original = {table: pq.read_table(lake.table_part(table).removeprefix("file://")) for table in TABLES}
    compact(lake_uri)
    assert not storage.exists(lake.table_part("landmarks"))
    restore(lake_uri, "clip-1")
    for table in TABLES:
        back = pq.read_table(lake.table_part(table).removeprefix("file://"))
        assert back.equals(original[table]), table
        assert back.schema.metadata == original[table].schema.metadata, table


def test_removing_one_video_rewrites_the_files_without_only_its_rows(lake_uri: str) -> None:
    before = figures(lake_uri)
    kept = VideoLake(lake_uri, "clip-4")
    original = {table: pq.read_table(kept.table_part(table).removeprefix("file://")) for table in TABLES}
    compact(lake_uri, file_rows=20_000)
    index = compaction.read_index(lake_uri, load_manifest(lake_uri), "clip-3")
    old = {compaction.compacted_uri(lake_uri, file) for file in index["file"].to_pylist()}
    untouched = {uri for table in TABLES for uri in compaction.file_uris(lake_uri, table)} - old
    assert untouched  # several files a table: only those holding the video are rewritten
    removal = remove(lake_uri, ["clip-3"])
    assert removal.videos == {"clip-3"} and removal.rows == sum(before[t]["clip-3"][0] for t in TABLES)
    after = figures(lake_uri)
    for table in TABLES:
        assert "clip-3" not in after[table]
        assert after[table] == {v: f for v, f in before[table].items() if v != "clip-3"}
    for uri in old:  # the rows are gone at once, not kept for earlier readers
        assert not storage.exists(uri)
    for table in TABLES:
        files = compaction.file_uris(lake_uri, table)
        assert untouched & set(files) == {uri for uri in untouched if f"/{table}/" in uri}
        videos = [pq.read_table(uri.removeprefix("file://"), columns=["video"])["video"] for uri in files]
        assert {v for column in videos for v in column.to_pylist()} == set(VIDEOS) - {"clip-3"}
    assert restore(lake_uri, "clip-3") == []
    restore(lake_uri, "clip-4")  # a video carried over into rewritten files comes back as it was
    for table in TABLES:
        back = pq.read_table(kept.table_part(table).removeprefix("file://"))
        assert back.equals(original[table]) and back.schema.metadata == original[table].schema.metadata, table


def test_a_video_made_again_is_compacted_once_in_its_new_version(lake_uri: str) -> None:
    figures_before = figures(lake_uri)
    compact(lake_uri)
    run_video(lake_uri, "clip-0", 42)  # new outputs
    assert marked_partitions(lake_uri, FRESH) == ["clip-0"] and writing_partitions(lake_uri) == []
    remade = figures(lake_uri)
    assert remade != figures_before
    report = compact(lake_uri)
    assert report.videos == 1
    assert marked_partitions(lake_uri, FRESH) == []
    assert figures(lake_uri) == remade
    index = compaction.read_index(lake_uri, load_manifest(lake_uri))
    pairs = list(zip(index["video"].to_pylist(), index["table"].to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs)) == len(VIDEOS) * len(TABLES)


def test_videos_being_written_stay_per_video(lake_uri: str) -> None:
    begin_writing(lake_uri, "clip-4", "run-1")
    report = compact(lake_uri)
    assert report.videos == len(VIDEOS) - 1
    lake = VideoLake(lake_uri, "clip-4")
    assert all(storage.exists(lake.table_part(table)) for table in TABLES)
    end_writing(lake_uri, "clip-4")
    assert all(len(rows) == len(VIDEOS) for rows in figures(lake_uri).values())


def test_too_few_videos_compact_nothing(lake_uri: str) -> None:
    report = compact(lake_uri, min_videos=len(VIDEOS) + 1)
    assert report.files_out == 0 and fresh_count(lake_uri) == len(VIDEOS) * len(TABLES)
    assert not storage.exists(compaction.manifest_uri(lake_uri))


def test_a_manifest_replaced_meanwhile_commits_nothing(lake_uri: str) -> None:
    compact(lake_uri)
    read = load_manifest(lake_uri)
    run_video(lake_uri, "clip-new", 9)
    compact(lake_uri)  # another writer, after `read` was loaded
    with pytest.raises(ManifestChanged):
        compaction._commit(lake_uri, compaction.Manifest(read.generation + 1), read)
    assert load_manifest(lake_uri).generation == read.generation + 1
    assert all(len(rows) == len(VIDEOS) + 1 for rows in figures(lake_uri).values())


def test_compaction_on_s3(s3: S3Server) -> None:
    s3.client().create_bucket(Bucket="lake")
    lake_uri = "s3://lake/bodyscript"
    for seed, video in enumerate(VIDEOS[:2]):
        make_video(lake_uri, video, seed)
    before = figures(lake_uri)
    report = compact(lake_uri)
    assert report.deleted == 2 * len(TABLES) and fresh_count(lake_uri) == 0
    assert figures(lake_uri) == before
    assert polars_counts(lake_uri, "landmarks") == {v: before["landmarks"][v][0] for v in VIDEOS[:2]}
    assert set(restore(lake_uri, "clip-1")) == set(TABLES)
    remove(lake_uri, ["clip-0"])
    after = figures(lake_uri)
    assert all(after[t] == {v: f for v, f in before[t].items() if v != "clip-0"} for t in TABLES)
    assert scan(lake_uri, "videos").collect()["video"].to_list() == ["clip-1"]


def test_outputs_made_before_lineage_are_found_compacted(lake_uri: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path / "home")})
    found = changes(lake_uri, "clip-1", settings)
    assert found["landmarks"] == found["metrics"] == NO_LINEAGE
    compact(lake_uri)
    assert changes(lake_uri, "clip-1", settings) == found


def recorded_rows(lake_uri: str, video: str) -> dict[str, LineageRow]:
    """``read_lineage``, a setting missing from an older row's file read as unset (None), as the views read it."""
    rows = read_lineage(lake_uri, video)
    return {
        asset: dataclasses.replace(row, settings={k: v for k, v in row.settings.items() if v is not None})
        for asset, row in rows.items()
    }


def lineage_view(lake_uri: str) -> list[tuple]:
    rows = connect(lake_uri).execute(
        "SELECT video, asset, code_version, run_id, settings::VARCHAR FROM lineage ORDER BY video, asset"
    )
    return rows.fetchall()


def test_lineage_is_compacted_and_read_alike(lake_uri: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path / "home")})
    for video in VIDEOS:
        for asset in VIDEO_ASSETS:
            write_lineage(lake_uri, video, lineage_row(asset, settings, run_id=f"run-{video}"))
    # A row written before a setting was added: its file's settings struct lacks that field.
    old = LineageRow.table([lineage_row("exports", settings, run_id="run-old")])
    settings_column = old["settings"].combine_chunks()
    kept = [f for f in settings_column.type if f.name != settings_column.type.field(0).name]
    older = pa.StructArray.from_arrays([settings_column.field(f.name) for f in kept], fields=kept)
    write_table_raw = old.set_column(old.schema.get_field_index("settings"), "settings", older)
    pq.write_table(write_table_raw, VideoLake(lake_uri, "clip-4").lineage("exports").removeprefix("file://"))

    before = lineage_view(lake_uri)
    recorded = {video: recorded_rows(lake_uri, video) for video in VIDEOS}
    stale = stale_partitions(lake_uri, settings)
    assert len(before) == len(VIDEOS) * len(VIDEO_ASSETS) and recorded["clip-4"]["exports"].run_id == "run-old"

    report = compact(lake_uri)
    assert report.files_in == len(VIDEOS) * (len(TABLES) + len(VIDEO_ASSETS)) == report.deleted
    assert not compaction.fresh_files(lake_uri, LINEAGE)
    assert lineage_view(lake_uri) == before
    assert {video: recorded_rows(lake_uri, video) for video in VIDEOS} == recorded
    assert stale_partitions(lake_uri, settings) == stale
    assert scan(lake_uri, LINEAGE).collect().height == len(before)

    assert LINEAGE in restore(lake_uri, "clip-4")  # each asset's file back, the old one read as the views read it
    assert recorded_rows(lake_uri, "clip-4") == recorded["clip-4"]
    restored = Path(VideoLake(lake_uri, "clip-4").folder(LINEAGE).removeprefix("file://"))
    assert sorted(p.name for p in restored.iterdir()) == sorted(f"{asset}.parquet" for asset in VIDEO_ASSETS)

    # Retention ages the outputs out of the compacted files, never the lineage; the partitions op still sees it.
    apply_retention(lake_uri, 1, "delete", dry_run=False, now=time.time() + 2 * 86400)
    assert lineage_view(lake_uri) == before
    written = last_written(lake_uri)
    assert all(written[video].lineage for video in VIDEOS)
