"""OpenSim .trc/.mot writers, read back with parsers written here from the format description."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from bodyscript_pipeline.exports.opensim import write_mot, write_trc


def _number(field: str) -> float:
    return math.nan if field == "" else float(field)


def parse_trc(text: str) -> dict:
    """A .trc: file type line, header keys, header values, marker names (3 columns each), X/Y/Z labels, a blank
    line, then rows of frame number, time and X/Y/Z per marker, empty fields for missing markers."""
    lines = text.split("\n")
    assert lines[-1] == "", "the file ends with a line end"
    lines = lines[:-1]
    assert lines[0].split("\t")[:3] == ["PathFileType", "4", "(X/Y/Z)"]
    header = dict(zip(lines[1].split("\t"), lines[2].split("\t"), strict=True))
    name_fields = lines[3].split("\t")
    assert name_fields[:2] == ["Frame#", "Time"]
    markers = name_fields[2::3]
    assert all(f == "" for i, f in enumerate(name_fields[2:]) if i % 3), "two empty fields follow each name"
    assert lines[4].split("\t")[2:] == [f"{axis}{i}" for i in range(1, len(markers) + 1) for axis in "XYZ"]
    assert lines[5] == ""
    frames, times, coords = [], [], []
    for line in lines[6:]:
        fields = line.split("\t")
        assert len(fields) == 2 + 3 * len(markers), line
        frames.append(int(fields[0]))
        times.append(float(fields[1]))
        coords.append([_number(f) for f in fields[2:]])
    return {
        "file_name": lines[0].split("\t")[3],
        "header": header,
        "markers": markers,
        "frames": np.array(frames),
        "times": np.array(times),
        "xyz": np.array(coords, dtype=float).reshape(len(frames), len(markers), 3),
    }


def parse_mot(text: str) -> dict:
    """A .mot: a name line, key=value header lines and free text up to ``endheader``, the column names, then
    numeric rows (``nan`` for missing values)."""
    lines = text.split("\n")
    assert lines[-1] == ""
    end = lines.index("endheader")
    header = dict(line.split("=", 1) for line in lines[1:end] if "=" in line)
    names = lines[end + 1].split("\t")
    rows = [[float(f) for f in line.split("\t")] for line in lines[end + 2 : -1]]
    assert all(len(row) == len(names) for row in rows)
    return {"name": lines[0], "header": header, "names": names, "rows": np.array(rows, dtype=float)}


def _markers(n: int = 50, m: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    frames = np.arange(12, 12 + n)
    times = (frames - 12) / 30.0
    xyz = rng.normal(0.0, 1.5, size=(n, m, 3))
    xyz[5, 1, :] = np.nan
    xyz[20:25, 0, :] = np.nan
    xyz[49, 2, :] = np.nan  # the last marker of the last row: trailing empty fields
    return frames, times, xyz


def test_trc_reads_back() -> None:
    frames, times, xyz = _markers()
    names = ["RHip", "RKnee", "RAnkle"]
    out = io.StringIO()
    assert write_trc(out, "walk.trc", 30.0, frames, times, names, xyz) == 50
    trc = parse_trc(out.getvalue())
    header = trc["header"]
    assert trc["file_name"] == "walk.trc"
    assert float(header["DataRate"]) == 30.0
    assert float(header["CameraRate"]) == 30.0
    assert float(header["OrigDataRate"]) == 30.0
    assert int(header["NumFrames"]) == 50
    assert int(header["OrigNumFrames"]) == 50
    assert int(header["NumMarkers"]) == 3
    assert header["Units"] == "m"
    assert int(header["OrigDataStartFrame"]) == 12
    assert trc["markers"] == names
    np.testing.assert_array_equal(trc["frames"], frames)
    np.testing.assert_allclose(trc["times"], times, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(trc["xyz"]), np.isnan(xyz))
    np.testing.assert_allclose(trc["xyz"], xyz, atol=1e-6, equal_nan=True)
    assert "\r" not in out.getvalue()


def test_trc_layout_matches_sports2d() -> None:
    out = io.StringIO()
    write_trc(out, "a.trc", 29.97, np.array([0]), np.array([0.0]), ["A", "B"], np.zeros((1, 2, 3)), units="mm")
    lines = out.getvalue().split("\n")
    assert lines[0] == "PathFileType\t4\t(X/Y/Z)\ta.trc"
    assert lines[2] == "29.97\t29.97\t1\t2\tmm\t29.97\t0\t1"
    assert lines[3] == "Frame#\tTime\tA\t\t\tB\t\t"
    assert lines[4] == "\t\tX1\tY1\tZ1\tX2\tY2\tZ2"
    assert lines[5] == ""
    assert lines[6] == "0\t0.000000" + "\t0.000000" * 6


def test_mot_reads_back() -> None:
    n = 40
    times = np.arange(n) / 25.0
    rng = np.random.default_rng(3)
    columns = {name: rng.uniform(-120, 120, n) for name in ("right knee", "left knee", "right hip", "trunk")}
    columns["left knee"][[0, 7, 8, 39]] = np.nan
    out = io.StringIO()
    assert write_mot(out, times, columns) == n
    mot = parse_mot(out.getvalue())
    assert mot["name"] == "Coordinates"
    assert int(mot["header"]["nRows"]) == n
    assert int(mot["header"]["nColumns"]) == 5
    assert mot["header"]["inDegrees"] == "yes"
    assert mot["header"]["version"] == "1"
    assert mot["names"] == ["time", *columns]
    assert mot["rows"].shape == (n, 5)
    np.testing.assert_allclose(mot["rows"][:, 0], times, atol=1e-6)
    for i, values in enumerate(columns.values(), start=1):
        np.testing.assert_array_equal(np.isnan(mot["rows"][:, i]), np.isnan(values))
        np.testing.assert_allclose(mot["rows"][:, i], values, atol=1e-6, equal_nan=True)


def test_mot_in_radians() -> None:
    out = io.StringIO()
    write_mot(out, np.array([0.0, 0.1]), {"q": np.array([0.5, np.nan])}, in_degrees=False, name="Angles")
    mot = parse_mot(out.getvalue())
    assert mot["name"] == "Angles"
    assert mot["header"]["inDegrees"] == "no"
    assert "0.100000\tnan" in out.getvalue()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"xyz": np.zeros((50, 2, 3))},  # fewer markers than names
        {"xyz": np.zeros((49, 3, 3))},  # fewer frames than times
        {"xyz": np.zeros((50, 3, 2))},  # two coordinates
        {"frame_numbers": np.arange(49)},
        {"frame_numbers": np.arange(50) + 0.5},
        {"times_s": np.zeros((50, 1))},
        {"marker_names": ["A", "B\tC", "D"]},
        {"marker_names": ["A", "B\nC", "D"]},
        {"marker_names": ["A", "A", "D"]},
        {"file_name": "a\tb.trc"},
        {"rate_hz": 0.0},
    ],
)
def test_trc_rejects_bad_input(kwargs: dict) -> None:
    frames, times, xyz = _markers()
    args = {
        "file_name": "x.trc",
        "rate_hz": 30.0,
        "frame_numbers": frames,
        "times_s": times,
        "marker_names": ["A", "B", "D"],
        "xyz": xyz,
    } | kwargs
    out = io.StringIO()
    with pytest.raises(ValueError):
        write_trc(out, **args)
    assert out.getvalue() == "", "nothing is written before validation passes"


@pytest.mark.parametrize(
    ("times", "columns"),
    [
        (np.zeros(3), {"a": np.zeros(4)}),
        (np.zeros(3), {"a": np.zeros((3, 1))}),
        (np.zeros((3, 2)), {"a": np.zeros(3)}),
        (np.zeros(3), {"a\tb": np.zeros(3)}),
        (np.zeros(3), {"a\nb": np.zeros(3)}),
        (np.zeros(3), {"time": np.zeros(3)}),
    ],
)
def test_mot_rejects_bad_input(times: np.ndarray, columns: dict) -> None:
    with pytest.raises(ValueError):
        write_mot(io.StringIO(), times, columns)
