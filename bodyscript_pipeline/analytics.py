"""The lake as an analytical store: DuckDB views and Polars LazyFrames over the same Parquet files.

Tables (schemas in :mod:`bodyscript_pipeline.schemas`): ``videos``, ``frames``, ``landmarks``,
``frame_metrics``, ``video_metrics``, each Hive-partitioned by ``video=<partition>`` so every row carries
``video``; and ``fleet_summary`` (one file, one row per video). A table with no files yet is empty, with the
right columns. Works on ``file://`` and ``s3://`` lakes: DuckDB reads S3 through fsspec (no extension to
download), Polars through its own object store client configured from the same AWS variables.
"""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import TABLES, fleet_summary_uri
from bodyscript_pipeline.schemas import SCHEMAS

PARTITIONED_FILES = {table: "index.parquet" if table == "frames" else "part-*.parquet" for table in TABLES}
VIEWS = (*TABLES, "fleet_summary")


def _pattern(lake_uri: str, table: str) -> str:
    if table == "fleet_summary":
        return fleet_summary_uri(lake_uri)
    return f"{lake_uri.rstrip('/')}/{table}/video=*/{PARTITIONED_FILES[table]}"


def _has_files(lake_uri: str, table: str) -> bool:
    fs, pattern = storage.filesystem(_pattern(lake_uri, table))
    return bool(fs.glob(pattern))


def _empty(table: str) -> pa.Table:
    schema = SCHEMAS[table]
    if table != "fleet_summary":
        schema = schema.append(pa.field("video", pa.string()))
    return schema.empty_table()


def connect(lake_uri: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table."""
    con = duckdb.connect()
    fs, _ = storage.filesystem(lake_uri)
    local = isinstance(fs, LocalFileSystem)
    if not local:
        con.register_filesystem(fs)
    for table in VIEWS:
        if not _has_files(lake_uri, table):
            con.register(f"_empty_{table}", _empty(table))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")  # noqa: S608 - names are constants
            continue
        pattern = _pattern(lake_uri, table)
        if local:
            pattern = pattern.removeprefix("file://")
        pattern = pattern.replace("'", "''")
        options = "" if table == "fleet_summary" else ", hive_partitioning = true, hive_types = {'video': VARCHAR}"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}'{options})")  # noqa: S608
    return con


def polars_storage_options() -> dict[str, str]:
    """Polars' object-store options from the standard AWS variables (MinIO/moto endpoints included)."""
    options = {}
    endpoint = storage.s3_endpoint_url()
    if endpoint:
        options["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            options["aws_allow_http"] = "true"
    region = storage.s3_region()
    if region:
        options["aws_region"] = region
    return options


def scan(lake_uri: str, table: str) -> pl.LazyFrame:
    """A Polars LazyFrame over one lake table (with ``video`` from the Hive folders)."""
    if table not in VIEWS:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(VIEWS)}")
    if not _has_files(lake_uri, table):
        return pl.from_arrow(_empty(table)).lazy()  # type: ignore[union-attr]
    pattern = _pattern(lake_uri, table)
    remote = pattern.startswith("s3://")
    source = pattern if remote else pattern.removeprefix("file://")
    options = polars_storage_options() if remote else None
    if table == "fleet_summary":
        return pl.scan_parquet(source, storage_options=options)
    return pl.scan_parquet(source, hive_partitioning=True, hive_schema={"video": pl.String}, storage_options=options)


def lazy_tables(lake_uri: str) -> dict[str, pl.LazyFrame]:
    return {table: scan(lake_uri, table) for table in VIEWS}
