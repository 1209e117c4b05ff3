"""The lake as an analytical store: DuckDB views and Polars LazyFrames over the same Parquet files.

Tables (schemas in :mod:`bodyscript_pipeline.lake.schemas`): ``videos``, ``frames``, ``landmarks``,
``landmarks_clean``, ``quality``, ``frame_metrics``, ``video_metrics`` and ``lineage`` (one row per asset: what
made it), each Hive-partitioned by ``video=<partition>`` so every row carries ``video``; and ``fleet_summary``
(one file, one row per video). A table with no files yet is empty, with the
right columns. Works on ``file://`` and ``s3://`` lakes: DuckDB reads S3 through fsspec (no extension to
download), Polars through its own object store client configured from the same AWS variables.

The DuckDB connection is a sandbox: it reaches files under the lake only (``enable_external_access=false``
with the lake as the one allowed directory, for local paths and the fsspec filesystem alike), never installs
or loads an extension, and its configuration is locked once the views exist. Within the lake it could still
write (DuckDB has no read-only directories): :func:`query` runs one ``SELECT`` only, for SQL from users.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.lake import compaction
from bodyscript_pipeline.lake.compaction import COMPACTED_TABLES
from bodyscript_pipeline.lake.paths import (
    FILE_PATTERNS,
    FRESH,
    LINEAGE,
    TABLES,
    WRITING,
    file_pattern,
    fleet_summary_uri,
    marked_partitions,
    marker_pattern,
    partition_of,
    writing_partitions,
)
from bodyscript_pipeline.lake.schemas import SCHEMAS

VIEWS = (*TABLES, LINEAGE, "fleet_summary")
# Tables whose files may differ in columns or struct fields (a run-scope setting added later is a new field of
# ``lineage.settings``): read by name, a field missing from older files is null.
EVOLVING = frozenset({LINEAGE})


def _pattern(lake_uri: str, table: str) -> str:
    if table == "fleet_summary":
        return fleet_summary_uri(lake_uri)
    return file_pattern(lake_uri, table)


def _has_files(lake_uri: str, table: str) -> bool:
    """Whether the table has a file; over a local lake, without listing every video's folder."""
    if table == "fleet_summary":
        return storage.exists(fleet_summary_uri(lake_uri))
    root = storage.local_path(storage.join(lake_uri, table))
    if root is None:
        return bool(storage.glob(_pattern(lake_uri, table)))
    if not root.is_dir():
        return False
    with os.scandir(root) as folders:
        return any(
            folder.name.startswith("video=") and any(Path(folder.path).glob(FILE_PATTERNS[table])) for folder in folders
        )


def _empty(table: str) -> pa.Table:
    schema = SCHEMAS[table]
    if table != "fleet_summary":
        schema = schema.append(pa.field("video", pa.string()))
    return schema.empty_table()


def connect(lake_uri: str, tables: Iterable[str] = VIEWS, by_name: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table (or only ``tables``: a caller that reads one
    table lists no other), confined to the lake (see the module). ``by_name=False`` reads an evolving table's
    files as its first file is, without reading every file's schema first: several times faster over thousands
    of files, for a caller that reads only columns every version of the table has (the reprocessing sensor)."""
    con, local = _sandbox(lake_uri)
    _writing_view(con, lake_uri, local)
    sources = Sources(lake_uri)
    for table in tables:
        if table not in VIEWS:
            raise ValueError(f"unknown table {table!r}; tables: {', '.join(VIEWS)}")
        _view(con, lake_uri, table, local, by_name, sources)
    con.execute("SET lock_configuration = true")
    return con


class Sources:
    """Where each table's rows are, as the views and scans read them. A lake never compacted: every per-video
    file (a Hive pattern, matched at each query). A compacted lake (``lake.compaction``): its compacted files,
    less the videos marked fresh since, whose per-video files are read instead; looked up when opened, so no
    listing of every video's folder."""

    def __init__(self, lake_uri: str) -> None:
        self.lake_uri = lake_uri
        self.manifest = compaction.load_manifest(lake_uri)
        self.compacted = self.manifest.generation > 0
        self.marked = marked_partitions(lake_uri, FRESH) if self.compacted else []

    def compacted_files(self, table: str) -> list[str]:
        return compaction.file_uris(self.lake_uri, table, self.manifest) if table in COMPACTED_TABLES else []

    def fresh_files(self, table: str) -> list[str] | None:
        """The per-video files to read: a list in a compacted lake, None where the Hive pattern says."""
        if not self.compacted or table not in COMPACTED_TABLES:
            return None
        return compaction.fresh_for_views(self.lake_uri, table, self.marked)


def _sandbox(lake_uri: str) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A connection that reaches files under the lake only; and whether the lake is local."""
    # DuckDB also allows its spill folder: a private one, never the working directory's ``.tmp``.
    spill = f"{tempfile.gettempdir()}/bodyscript-duckdb-{uuid.uuid4().hex}"
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "temp_directory": spill}
    )
    fs, _ = storage.filesystem(lake_uri)
    local = isinstance(fs, LocalFileSystem)
    if not local:
        con.register_filesystem(fs)  # before external access is off: the lake's S3 objects come through it
    lake_dir = lake_uri.removeprefix("file://") if local else lake_uri
    con.execute("SET allowed_directories = ?", [[lake_dir.rstrip("/") + "/"]])
    con.execute("SET enable_external_access = false")
    return con, local


def _view(
    con: duckdb.DuckDBPyConnection, lake_uri: str, table: str, local: bool, by_name: bool, sources: Sources
) -> None:
    """The table's view (:class:`Sources`), less the videos a run is writing."""
    compacted, fresh = sources.compacted_files(table), sources.fresh_files(table)
    pattern = _sql_path(_pattern(lake_uri, table), local)
    if fresh is None:
        fresh_source = pattern if _has_files(lake_uri, table) else None
    else:
        fresh_source = "[" + ", ".join(_sql_path(uri, local) for uri in fresh) + "]" if fresh else None
    if fresh_source is None and not compacted:
        con.register(f"_empty_{table}", _empty(table))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")  # noqa: S608 - names are constants
        return
    if table == "fleet_summary":
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({pattern})")  # noqa: S608
        return
    # Names are constants and locations quoted (_sql_path) in every statement here.
    shown = f"video NOT IN (SELECT video FROM {WRITING_VIEW})"  # noqa: S608
    branches = []
    by_names = ", union_by_name = true" if table in EVOLVING and by_name else ""
    if compacted:
        files = ", ".join(_sql_path(uri, local) for uri in compacted)
        marked = ", ".join(sorted({_sql_text(partition_of(uri)[0]) for uri in fresh or []}))
        superseded = f" AND video NOT IN ({marked})" if marked else ""
        branches.append(f"SELECT * FROM read_parquet([{files}]{by_names}) WHERE {shown}{superseded}")  # noqa: S608
    if fresh_source is not None:
        options = ", hive_partitioning = true, hive_types = {'video': VARCHAR}" + by_names
        branches.append(f"SELECT * FROM read_parquet({fresh_source}{options}) WHERE {shown}")  # noqa: S608
    con.execute(f"CREATE VIEW {table} AS " + " UNION ALL BY NAME ".join(branches))


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_path(uri: str, local: bool) -> str:
    """A lake location as a SQL string literal."""
    return _sql_text(uri.removeprefix("file://") if local else uri)


OUTSIDE = "query reaches outside the lake"


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """The answer to one user query: a single ``SELECT`` (``WITH``, ``DESCRIBE``, ``SUMMARIZE`` included) on
    a :func:`connect` connection. Anything else, and any reach outside the lake, is a one-line
    ``BodyscriptError``."""
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1:
            raise BodyscriptError(f"query refused: one SELECT statement at a time (got {len(statements)})")
        if statements[0].type != duckdb.StatementType.SELECT:
            verb = (statements[0].query.split(None, 1) or ["?"])[0].upper()
            raise BodyscriptError(f"query refused: only SELECT statements read the lake (got {verb})")
        return con.sql(sql).pl()
    except duckdb.PermissionException as exc:
        reason = str(exc).splitlines()[0].removeprefix("Permission Error: ")
        raise BodyscriptError(f"{OUTSIDE}: {reason.split(' - ', 1)[0]}") from None
    except duckdb.Error as exc:
        raise BodyscriptError(str(exc).splitlines()[0]) from None


WRITING_VIEW = "_writing"


def _writing_view(con: duckdb.DuckDBPyConnection, lake_uri: str, local: bool) -> None:
    """The partitions a run is writing now (their markers), looked up at each query."""
    pattern = _sql_path(marker_pattern(lake_uri, WRITING), local)
    con.execute(
        f"CREATE VIEW {WRITING_VIEW} AS SELECT regexp_extract(file, 'video=([^/]+)/', 1) AS video "  # noqa: S608
        f"FROM glob({pattern})"
    )


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
    """A Polars LazyFrame over one lake table (with ``video`` from the Hive folders, or the compacted files'
    column), read as :func:`connect`'s views are."""
    if table not in VIEWS:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(VIEWS)}")
    sources = Sources(lake_uri)
    compacted, fresh = sources.compacted_files(table), sources.fresh_files(table)
    pattern = _pattern(lake_uri, table)
    if fresh is None:
        fresh = [pattern] if _has_files(lake_uri, table) else []
    if not fresh and not compacted:
        return pl.from_arrow(_empty(table)).lazy()  # type: ignore[union-attr]
    remote = pattern.startswith("s3://")
    options = polars_storage_options() if remote else None

    def source(uris: list[str]) -> list[str]:
        return uris if remote else [uri.removeprefix("file://") for uri in uris]

    if table == "fleet_summary":
        return pl.scan_parquet(source([pattern]), storage_options=options)
    frames = []
    evolving: dict[str, object] = {}
    if table in EVOLVING:  # every file read as the current schema: older files' missing fields are null
        evolving = {
            "missing_columns": "insert",
            "cast_options": pl.ScanCastOptions(missing_struct_fields="insert", extra_struct_fields="ignore"),
        }
        current = pl.Schema(pl.from_arrow(_empty(table)).schema)  # type: ignore[union-attr]
    if compacted:
        merged = pl.scan_parquet(
            source(compacted),
            storage_options=options,
            **({**evolving, "schema": current} if evolving else {}),  # type: ignore[arg-type]
        )
        marked = sorted({partition_of(uri)[0] for uri in fresh if uri != pattern})
        frames.append(merged.filter(~pl.col("video").is_in(marked)) if marked else merged)
    if fresh:
        if evolving:
            evolving["schema"] = pl.Schema({k: v for k, v in current.items() if k != "video"})
        frames.append(
            pl.scan_parquet(
                source(fresh),
                hive_partitioning=True,
                hive_schema={"video": pl.String},
                storage_options=options,
                **evolving,  # type: ignore[arg-type]
            )
        )
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal")
    writing = writing_partitions(lake_uri)
    return frame.filter(~pl.col("video").is_in(writing)) if writing else frame  # else no read of video for it
