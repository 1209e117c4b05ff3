"""The README's five example questions run, in SQL and in Polars, on a lake built by a real run; so do its lineage
questions, on lineage rows recorded for partitions written with the lake's own writers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import polars as pl

from bodyscript_pipeline.analytics import connect, scan
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.lineage import record_lineage
from tests.support.demo_run import DemoRun
from tests.support.lineage_lake import FULL_MODEL, LITE_MODEL, lineage_partition
from tests.support.repo import REPO

README = REPO / "README.md"


def examples() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("Five questions") : text.index("### Storage layout")]
    sql = re.findall(r"```sql\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    return list(zip(sql, python, strict=True))


def test_five_questions_answer_alike_in_sql_and_polars(demo_run: DemoRun) -> None:
    pairs = examples()
    assert len(pairs) == 5
    lake = demo_run.settings.lake_uri
    con = connect(lake)
    for sql, python in pairs:
        from_sql = con.sql(sql).pl()
        from_polars = eval(python.strip(), {"pl": pl, "scan": scan, "lake": lake})
        assert isinstance(from_polars, pl.DataFrame)
        assert from_sql.height == from_polars.height, sql
        assert from_sql.height > 0 or "0.8" in sql, f"the demo lake answers: {sql}"


def lineage_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split("\n## Versions, staleness and lineage\n", 1)[1].split("\n## ", 1)[0]
    sql = re.findall(r"```sql\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    return list(zip(sql, python, strict=True))


def test_the_lineage_questions_answer_alike_in_sql_and_polars(tmp_path: Path) -> None:
    """The README's lineage queries, on lineage rows record_lineage wrote for videos made with the full model at
    6 Hz (two of them), the full model at 8 Hz, and the lite model at 6 Hz."""
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)})
    lake = settings.lake_uri
    made = {
        "full-6hz-a": (FULL_MODEL, 6.0),
        "full-6hz-b": (FULL_MODEL, 6.0),
        "full-8hz": (FULL_MODEL, 8.0),
        "lite-6hz": (LITE_MODEL, 6.0),
    }
    for video, (model, cutoff) in made.items():
        lineage_partition(lake, video, model_sha256=model)
        for asset in ("frames", "landmarks", "clean_landmarks"):
            record_lineage(lake, video, asset, dataclasses.replace(settings, smooth_cutoff_hz=cutoff), "run-1")
    pairs = lineage_examples()
    assert len(pairs) == 2
    answers = [["full-6hz-a", "full-6hz-b"], ["full-6hz-a", "full-6hz-b", "lite-6hz"]]
    con = connect(lake)
    for (sql, python), videos in zip(pairs, answers, strict=True):
        from_sql = con.sql(sql).pl()
        from_polars = eval(python.strip(), {"pl": pl, "scan": scan, "lake": lake})
        assert isinstance(from_polars, pl.DataFrame)
        assert from_sql["video"].to_list() == from_polars["video"].to_list() == videos, sql
        assert from_sql.columns == from_polars.columns
    assert con.sql(pairs[1][0]).pl()["cutoff_hz"].to_list() == [6.0, 6.0, 6.0]
