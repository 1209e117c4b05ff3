"""The one schema of each table: the typed rows writers build tables from match it field for field, and the
column lists the core shares are taken from it."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest

from bodyscript_pipeline.cleaning.quality import QualityScores
from bodyscript_pipeline.lake.lineage import LineageRow
from bodyscript_pipeline.lake.schemas import (
    IMAGE_COLUMNS,
    LANDMARK_FLOATS,
    LANDMARK_VALUES,
    LANDMARKS,
    LANDMARKS_CLEAN,
    SCHEMAS,
    WORLD_COLUMNS,
    TableRow,
)
from bodyscript_pipeline.metrics.angles import JointRange
from bodyscript_pipeline.steps.metrics import VideoRow

ROWS: list[type[TableRow]] = [QualityScores, JointRange, VideoRow, LineageRow]


def python_type(data_type: pa.DataType) -> type:
    if pa.types.is_dictionary(data_type):
        return python_type(data_type.value_type)
    if pa.types.is_boolean(data_type):
        return bool
    if pa.types.is_integer(data_type):
        return int
    if pa.types.is_floating(data_type):
        return float
    if pa.types.is_string(data_type):
        return str
    if pa.types.is_struct(data_type):
        return dict
    if pa.types.is_timestamp(data_type):
        return datetime
    raise AssertionError(f"no Python type for {data_type}")


def declared(annotation: Any) -> tuple[type, bool]:
    """A field's type and whether it may be None."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        assert len(kinds) == 1, annotation
        return typing.get_origin(kinds[0]) or kinds[0], type(None) in args
    return typing.get_origin(annotation) or annotation, False  # dict[str, Any]: dict


def test_every_typed_row_is_listed_here() -> None:
    assert set(TableRow.__subclasses__()) == set(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.__name__)
def test_typed_row_fields_are_the_schema_columns(row: type[TableRow]) -> None:
    schema = SCHEMAS[row.TABLE]
    assert row.columns() == tuple(schema.names), "the same columns in the same order"
    hints = typing.get_type_hints(row)
    for field in schema:
        kind, optional = declared(hints[field.name])
        assert kind is python_type(field.type), f"{row.TABLE}.{field.name}: {kind} for {field.type}"
        assert optional == field.nullable, f"{row.TABLE}.{field.name}: optional {optional}, nullable {field.nullable}"


def test_typed_rows_round_trip_through_their_table() -> None:
    scores = [
        QualityScores(None, 10, 8, 0.8, 0.75, None, 0.0),
        QualityScores(3, 9, 8, 8 / 9, 0.5, 2.25, 0.125),
    ]
    table = QualityScores.table(scores)
    assert table.schema.equals(SCHEMAS["quality"])
    assert QualityScores.rows(table) == scores  # values exact in float32
    assert scores[0].to_row() == table.to_pylist()[0]


def test_quality_thresholds_judge_scores_and_their_dict_view_alike() -> None:
    from bodyscript_pipeline.cleaning.quality import QualityThresholds

    video = QualityScores(None, 100, 40, 0.4, 0.3, 25.0, 0.5)
    thresholds = QualityThresholds()
    assert thresholds.blocking_failures(video) == thresholds.blocking_failures(video.to_row())
    assert len(thresholds.blocking_failures(video)) == 2
    assert thresholds.warnings(video) == thresholds.warnings(video.to_row())
    assert len(thresholds.warnings(video)) == 2


def test_landmark_columns_come_from_the_schemas() -> None:
    floats = [f.name for f in LANDMARKS if pa.types.is_floating(f.type)]
    # The order PoseEstimator fills its arrays in: MediaPipe's normalized landmark, then its world landmark.
    assert list(LANDMARK_FLOATS) == floats == ["x", "y", "z", "visibility", "presence", "world_x", "world_y", "world_z"]
    assert list(LANDMARK_VALUES) == [f.name for f in LANDMARKS_CLEAN if pa.types.is_floating(f.type)]
    assert set(LANDMARK_FLOATS) - set(LANDMARK_VALUES) == {"presence"}
    assert WORLD_COLUMNS == ("world_x", "world_y", "world_z")
    assert set(IMAGE_COLUMNS) <= set(LANDMARK_VALUES)


def test_fleet_summary_selects_the_schema_columns() -> None:
    from bodyscript_pipeline.steps.fleet_summary import FLEET_SQL

    select = FLEET_SQL.split("SELECT", 1)[1].split("FROM", 1)[0]
    names = [item.strip().split(" AS ")[-1].removeprefix("v.") for item in select.split(", ")]
    assert names == SCHEMAS["fleet_summary"].names
