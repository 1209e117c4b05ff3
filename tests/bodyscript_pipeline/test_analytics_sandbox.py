"""The query engine reaches the lake and nothing else: no file outside it read or written, no database
attached, no extension installed or loaded, no setting changed once the views exist. On a local lake and on an
S3 lake read through fsspec (moto's server); through the connection and through the real CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.analytics import connect
from tests.support.s3_server import S3Server

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
SECRET = "hush-hush\n"


@dataclass(frozen=True)
class Lake:
    uri: str
    outside: str  # a readable object beside the lake that queries must not reach
    written: Path  # a local folder outside the lake where a query might try to write


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _fill(lake_uri: str) -> None:
    videos = pa.table({"frame_count": pa.array([12], pa.int64()), "detection_rate": [0.9]})
    storage.write_bytes(storage.join(lake_uri, "videos", "video=clip", "part-0.parquet"), _parquet(videos))


@pytest.fixture(params=["file", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    monkeypatch.setenv("BODYSCRIPT_HOME", str(tmp_path / "home"))
    for name in ("BODYSCRIPT_DROP_URI", "BODYSCRIPT_STEP_RECORDS_URI", "BODYSCRIPT_S3_PUBLIC_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    written = tmp_path / "elsewhere"
    written.mkdir()
    if request.param == "file":
        uri = f"file://{tmp_path / 'lake'}"
        outside = tmp_path / "lake-private" / "secret.txt"  # a sibling whose name starts like the lake's
        outside.parent.mkdir()
        outside.write_text(SECRET)
        outside_uri = str(outside)
    else:
        s3: S3Server = request.getfixturevalue("s3")
        client = s3.client()
        client.create_bucket(Bucket="lake")
        client.create_bucket(Bucket="drop")
        client.put_object(Bucket="lake", Key="bodyscript-dagster-io/storage/run/pose/first", Body=SECRET.encode())
        client.put_object(Bucket="drop", Key="incoming/secret.txt", Body=SECRET.encode())
        uri = "s3://lake/bodyscript"
        outside_uri = "s3://lake/bodyscript-dagster-io/storage/run/pose/first"
        monkeypatch.setenv("BODYSCRIPT_DROP_URI", "s3://drop/incoming")
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", uri)
    _fill(uri)
    yield Lake(uri, outside_uri, written)


def escaping(lake: Lake) -> list[str]:
    """Statements that would reach outside the lake."""
    target = lake.written
    return [
        f"COPY (SELECT 1) TO '{target}/x.csv'",
        f"SELECT * FROM read_text('{lake.outside}')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"ATTACH '{target}/x.db'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
    ]


def more_escaping(lake: Lake) -> list[str]:
    target = lake.written
    return [
        f"SELECT * FROM glob('{target}/*')",
        f"EXPORT DATABASE '{target}/export'",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
        f"SELECT * FROM read_text('{lake.uri.removeprefix('file://')}/../{Path(lake.outside).parent.name}/x')",
    ]


def test_the_connection_reads_the_views(lake: Lake) -> None:
    con = connect(lake.uri)
    assert con.execute("SELECT video, frame_count FROM videos").fetchall() == [("clip", 12)]
    assert con.execute("SELECT count(*) FROM landmarks").fetchone() == (0,), "an empty table is an empty view"


def test_the_connection_refuses_everything_outside_the_lake(lake: Lake) -> None:
    """The sandbox itself, without the CLI's read-only statement check."""
    con = connect(lake.uri)
    for sql in [*escaping(lake), *more_escaping(lake)]:
        with pytest.raises(duckdb.Error):
            con.execute(sql).fetchall()
    assert list(lake.written.iterdir()) == [], "nothing written outside the lake"
    assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)
    assert con.execute("SELECT current_setting('autoload_known_extensions')").fetchone() == (False,)
    assert con.execute("SELECT count(*) FROM videos").fetchone() == (1,), "still usable after the refusals"


def query(sql: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BODYSCRIPT, "query", sql, *args], capture_output=True, text=True, timeout=120)


def test_the_cli_refuses_each_escape_with_one_line(lake: Lake) -> None:
    for sql in escaping(lake):
        done = query(sql)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, (sql, done.stderr)
        assert lines[0].startswith("bodyscript: error: query "), (sql, lines)
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(lake.written.iterdir()) == [], "nothing written outside the lake"
    done = query(f"SELECT * FROM read_text('{lake.outside}')")
    assert done.stderr.startswith("bodyscript: error: query reaches outside the lake: "), done.stderr
    assert SECRET.strip() not in done.stderr + done.stdout


def test_the_cli_refuses_more_than_one_statement(lake: Lake) -> None:
    done = query(f"SELECT 1; COPY (SELECT 1) TO '{lake.written}/x.csv'")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(lake.written.iterdir()) == []


def test_the_cli_answers_queries_in_every_format(lake: Lake, tmp_path: Path) -> None:
    sql = "SELECT video, frame_count FROM videos"
    as_json = query(sql, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{"video": "clip", "frame_count": 12}]
    target = tmp_path / "out.parquet"
    done = query(sql, "--format", "parquet", "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(target).to_pylist() == [{"video": "clip", "frame_count": 12}]
    as_csv = tmp_path / "out.csv"
    done = query(sql, "--format", "csv", "--output", str(as_csv))
    assert done.returncode == 0, done.stderr
    assert as_csv.read_text().splitlines() == ["video,frame_count", "clip,12"]
    described = query("DESCRIBE videos", "--format", "json")
    assert described.returncode == 0, described.stderr
    assert "frame_count" in {row["column_name"] for row in json.loads(described.stdout)}
