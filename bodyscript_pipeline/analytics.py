"""DuckDB views over the lake: ``videos``, ``frames``, ``landmarks``, ``frame_metrics``, ``video_metrics``.

Each view reads its table's Parquet files with Hive partitioning, so every row carries ``video``
(the partition key). A table with no files yet is an empty view with the right columns.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from bodyscript_pipeline import storage
from bodyscript_pipeline.lake import TABLES
from bodyscript_pipeline.schemas import SCHEMAS

TABLE_FILES = {table: "index.parquet" if table == "frames" else "part-*.parquet" for table in TABLES}


def connect(lake_uri: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    fs, root = storage.filesystem(lake_uri)
    if isinstance(fs, LocalFileSystem):
        base = root
    else:
        con.register_filesystem(fs)
        base = lake_uri
    for table in TABLES:
        pattern = f"{base.rstrip('/')}/{table}/video=*/{TABLE_FILES[table]}".replace("'", "''")
        if fs.glob(f"{root.rstrip('/')}/{table}/video=*/{TABLE_FILES[table]}"):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "  # noqa: S608
                "hive_types = {'video': VARCHAR})"
            )
        else:
            empty = SCHEMAS[table].append(pa.field("video", pa.string())).empty_table()
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")  # noqa: S608 - names are constants
    return con
