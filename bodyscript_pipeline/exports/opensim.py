"""Writers for the files Sports2D writes and OpenSim reads: marker trajectories (.trc) and coordinates (.mot).

Both are tab-separated text with ``"\\n"`` line ends, laid out as Sports2D lays them out. Give the writers a
text stream opened with ``newline=""`` (or an ``io.StringIO``) so the line ends stay ``"\\n"`` everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TextIO

import numpy as np

_FORBIDDEN = ("\t", "\n", "\r")


def _check_text(what: str, value: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or any(c in value for c in _FORBIDDEN):
        raise ValueError(f"{what} must be a non-empty string without tabs or line breaks, got {value!r}")
    return value


def _check_names(what: str, names: Sequence[str], reserved: tuple[str, ...] = ()) -> list[str]:
    checked = [_check_text(what, name) for name in names]
    seen: set[str] = set(reserved)
    for name in checked:
        if name in seen:
            raise ValueError(f"{what} {name!r} appears more than once or is reserved")
        seen.add(name)
    return checked


def _vector(what: str, values: np.ndarray, n: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        expected = "(n,)" if n is None else f"({n},)"
        raise ValueError(f"{what} must have shape {expected}, got {array.shape}")
    return array


def _no_infinity(what: str, values: np.ndarray) -> None:
    if np.isinf(values).any():
        raise ValueError(f"{what} must be finite or NaN (missing), found infinity")


def _rate(rate_hz: float) -> str:
    if not math.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be a positive finite number, got {rate_hz!r}")
    return f"{rate_hz:g}"


def write_trc(
    out: TextIO,
    file_name: str,
    rate_hz: float,
    frame_numbers: np.ndarray,
    times_s: np.ndarray,
    marker_names: Sequence[str],
    xyz: np.ndarray,
    units: str = "m",
) -> int:
    """Write marker trajectories as an OpenSim .trc file (Sports2D's ``make_trc`` layout); return the rows written.

    ``xyz`` has shape (frames, markers, 3); a NaN coordinate is a missing marker and is written as an empty
    field, the OpenSim convention. Frame numbers must be integers and times finite.
    """
    _check_text("file_name", file_name)
    _check_text("units", units)
    rate = _rate(rate_hz)
    names = _check_names("marker name", marker_names)
    times = _vector("times_s", times_s)
    n, m = times.shape[0], len(names)
    if not np.isfinite(times).all():
        raise ValueError("times_s must be finite")
    frames_f = _vector("frame_numbers", frame_numbers, n)
    if not (np.isfinite(frames_f).all() and (frames_f == np.round(frames_f)).all()):
        raise ValueError("frame_numbers must be whole numbers")
    frames = [int(f) for f in frames_f]
    coords = np.asarray(xyz, dtype=np.float64)
    if coords.shape != (n, m, 3):
        raise ValueError(f"xyz must have shape (frames, markers, 3) = ({n}, {m}, 3), got {coords.shape}")
    _no_infinity("xyz", coords)

    header = [
        f"PathFileType\t4\t(X/Y/Z)\t{file_name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        "\t".join([rate, rate, str(n), str(m), units, rate, str(frames[0] if n else 0), str(n)]),
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, m + 1)),
        "",
    ]
    out.write("\n".join(header) + "\n")
    for frame, time, row in zip(frames, times.tolist(), coords.reshape(n, 3 * m).tolist(), strict=True):
        fields = "\t".join("" if math.isnan(v) else f"{v:.6f}" for v in row)
        out.write(f"{frame}\t{time:.6f}\t{fields}\n")
    return n


def write_mot(
    out: TextIO,
    times_s: np.ndarray,
    columns: Mapping[str, np.ndarray],
    in_degrees: bool = True,
    name: str = "Coordinates",
) -> int:
    """Write time series (e.g. joint angles) as an OpenSim storage .mot file, as Sports2D writes angles.

    Each column has shape (n,) like ``times_s``; NaN values are written as ``nan``. Returns the rows written.
    """
    _check_text("name", name)
    names = _check_names("column name", list(columns), reserved=("time",))
    times = _vector("times_s", times_s)
    n = times.shape[0]
    if not np.isfinite(times).all():
        raise ValueError("times_s must be finite")
    values = [_vector(f"column {key!r}", columns[key], n) for key in names]
    for key, column in zip(names, values, strict=True):
        _no_infinity(f"column {key!r}", column)
    table = np.column_stack([times, *values]) if n else np.empty((0, len(names) + 1))

    header = [
        name,
        "version=1",
        f"nRows={n}",
        f"nColumns={len(names) + 1}",
        f"inDegrees={'yes' if in_degrees else 'no'}",
        "",
        "Units are S.I. units (second, meters, Newtons, ...)",
        "If the header above contains a line with 'inDegrees', this indicates whether rotational values are in "
        "degrees (yes) or radians (no).",
        "",
        "endheader",
        "\t".join(["time", *names]),
    ]
    out.write("\n".join(header) + "\n")
    for row in table.tolist():
        out.write("\t".join("nan" if math.isnan(v) else f"{v:.6f}" for v in row) + "\n")
    return n
