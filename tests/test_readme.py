"""The README's five example questions run, in SQL and in Polars, on a lake built by a real run."""

from __future__ import annotations

import re

import polars as pl

from bodyscript_pipeline.analytics import connect, scan
from tests.support.demo_run import DemoRun
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
