"""Landmark track cleaning in pure numpy: gap filling and zero-phase low-pass smoothing.

:func:`fill_gaps` linearly interpolates short interior runs of missing samples, in time (so a variable
frame rate is handled). :func:`smooth` applies a 2nd-order Butterworth low-pass (bilinear transform with
prewarping) run forward then backward (filtfilt): zero phase lag and an effective 4th-order magnitude
response, -6 dB at the cutoff. This is the filter Sports2D and OpenSim users apply to marker data, and a
6 Hz cutoff is the common biomechanics choice for human movement. Each run of consecutive finite samples
is filtered on its own; missing samples stay missing.

Arrays are ``(n, k)``: time along axis 0, one column per coordinate. 1-D ``(n,)`` arrays are accepted too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_CUTOFF_HZ = 6.0
_BLOCK = 64  # samples per block of the blocked recursion in _Biquad.lfilter


def _as_2d(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """A float64 copy as ``(n, k)``, and whether the input was 1-D."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {arr.shape}")
    return arr, False


def fill_gaps(values: np.ndarray, times_s: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate (in time) each interior run of at most ``max_gap`` missing rows, per column.

    Non-finite values count as missing. Leading/trailing runs and longer gaps stay NaN; ``max_gap <= 0``
    fills nothing. Returns the filled float64 copy and a bool mask, True exactly where a value was filled.
    """
    out, flat = _as_2d(values)
    n = out.shape[0]
    t = np.asarray(times_s, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"times_s has shape {t.shape}, expected ({n},)")
    if not np.all(np.diff(t) > 0):
        raise ValueError("times_s must be strictly increasing")
    mask = np.zeros(out.shape, dtype=bool)
    if max_gap > 0 and n > 2:
        finite = np.isfinite(out)
        rows = np.arange(n)[:, None]
        prev = np.maximum.accumulate(np.where(finite, rows, -1), axis=0)  # last finite row at or before
        nxt = np.minimum.accumulate(np.where(finite, rows, n)[::-1], axis=0)[::-1]  # first at or after
        mask = ~finite & (prev >= 0) & (nxt < n) & (nxt - prev - 1 <= max_gap)
        r, c = np.nonzero(mask)
        p, q = prev[r, c], nxt[r, c]
        w = (t[r] - t[p]) / (t[q] - t[p])
        out[r, c] = out[p, c] + w * (out[q, c] - out[p, c])
    return (out[:, 0], mask[:, 0]) if flat else (out, mask)


def butterworth_coefficients(cutoff_hz: float, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of the 2nd-order Butterworth low-pass biquad (bilinear transform, prewarped), ``a[0] == 1``."""
    if not (fs_hz > 0 and 0 < cutoff_hz < fs_hz / 2):
        raise ValueError(f"cutoff must be in (0, fs/2): cutoff={cutoff_hz} Hz, fs={fs_hz} Hz")
    k = math.tan(math.pi * cutoff_hz / fs_hz)
    k2 = k * k
    norm = 1.0 / (1.0 + math.sqrt(2.0) * k + k2)
    b = np.array([k2, 2.0 * k2, k2]) * norm
    a = np.array([1.0, 2.0 * (k2 - 1.0) * norm, (1.0 - math.sqrt(2.0) * k + k2) * norm])
    return b, a


@dataclass(frozen=True)
class _Biquad:
    """A biquad prepared for filtering many columns at once.

    The recursion ``y[i] = w[i] - a1 y[i-1] - a2 y[i-2]`` (``w`` the FIR part plus initial state) is run in
    blocks of ``_BLOCK`` samples: ``y_block = T @ w_block + P @ (y[-1], y[-2])`` with ``T`` the lower
    triangular Toeplitz matrix of the all-pole impulse response ``h`` and ``P = [h[1:], -a2 h]``, so the
    Python loop is over blocks rather than samples.
    """

    b: np.ndarray
    zi: np.ndarray  # steady-state DF2-transposed state for a unit step (scipy's lfilter_zi)
    t: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, b: np.ndarray, a: np.ndarray) -> _Biquad:
        b = np.asarray(b, dtype=np.float64)
        a = np.asarray(a, dtype=np.float64)
        if b.shape != (3,) or a.shape != (3,) or a[0] == 0:
            raise ValueError("expected biquad coefficients: b and a of length 3, a[0] != 0")
        b, a = b / a[0], a / a[0]
        _, a1, a2 = a
        gain = b.sum() / a.sum()  # DC gain: steady-state output for a unit step
        zi = np.array([b[1] + b[2] - (a1 + a2) * gain, b[2] - a2 * gain])
        h = np.zeros(_BLOCK + 1)
        h[0], h[1] = 1.0, -a1
        for i in range(2, _BLOCK + 1):
            h[i] = -a1 * h[i - 1] - a2 * h[i - 2]
        lag = np.subtract.outer(np.arange(_BLOCK), np.arange(_BLOCK))
        t = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
        p = np.column_stack([h[1:], -a2 * h[:-1]])
        return cls(b, zi, t, p)

    def lfilter(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Filter ``x`` (m, k) along axis 0 from DF2-transposed initial state ``z`` (2, k)."""
        m = x.shape[0]
        w = self.b[0] * x
        w[1:] += self.b[1] * x[:-1]
        w[2:] += self.b[2] * x[:-2]
        w[0] += z[0]
        if m > 1:
            w[1] += z[1]
        y = np.empty_like(w)
        state = np.zeros((2, x.shape[1]))  # (y[s-1], y[s-2])
        for s in range(0, m, _BLOCK):
            e = min(s + _BLOCK, m)
            ln = e - s
            y[s:e] = self.t[:ln, :ln] @ w[s:e] + self.p[:ln] @ state
            if e < m:
                state = y[e - 2 : e][::-1]
        return y

    def filtfilt(self, x: np.ndarray) -> np.ndarray:
        """Forward-backward filter ``x`` (n, k), odd-reflection padded, steady-state initial conditions."""
        n = x.shape[0]
        if n == 0:
            return x.copy()
        pad = min(n - 1, 3 * 3)  # scipy: padlen = 3 * max(len(a), len(b))
        ext = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2 : -pad - 2 : -1]])
        y = self.lfilter(ext, np.outer(self.zi, ext[0]))
        y = self.lfilter(y[::-1], np.outer(self.zi, y[-1]))
        return y[::-1][pad : pad + n]


def filtfilt(values: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Zero-phase biquad filtering along axis 0 (like ``scipy.signal.filtfilt`` with ``padtype='odd'``).

    ``values`` must be all finite. Padding is ``min(n - 1, 9)`` samples of odd reflection at both ends.
    """
    x, flat = _as_2d(values)
    if not np.all(np.isfinite(x)):
        raise ValueError("filtfilt needs finite values; use smooth() for data with gaps")
    y = _Biquad.of(b, a).filtfilt(x)
    return y[:, 0] if flat else y


def smooth(
    values: np.ndarray, fs_hz: float, cutoff_hz: float = DEFAULT_CUTOFF_HZ, min_run: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Butterworth filtfilt each column's runs of ``>= min_run`` consecutive finite rows independently.

    Missing values stay missing and shorter runs are left as they are. With ``cutoff_hz >= fs_hz / 2``
    (nothing to remove) or ``cutoff_hz <= 0`` the values come back unchanged. Returns the smoothed float64
    copy and a bool mask, True where a value was smoothed.
    """
    if not fs_hz > 0:
        raise ValueError(f"fs_hz must be positive, got {fs_hz}")
    out, flat = _as_2d(values)
    mask = np.zeros(out.shape, dtype=bool)
    if 0 < cutoff_hz < fs_hz / 2 and out.size:
        biquad = _Biquad.of(*butterworth_coefficients(cutoff_hz, fs_hz))
        # Every run of finite rows, as (column, start, length); runs of equal length are filtered together.
        edges = np.diff(np.pad(np.isfinite(out).T.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        col, start = np.nonzero(edges == 1)
        length = np.nonzero(edges == -1)[1] - start
        keep = length >= min_run
        col, start, length = col[keep], start[keep], length[keep]
        order = np.argsort(length, kind="stable")
        for batch in np.split(order, np.flatnonzero(np.diff(length[order])) + 1):
            if not batch.size:
                continue
            first, ln = start[batch[0]], length[batch[0]]
            rows: slice | np.ndarray
            cols: slice | np.ndarray
            if np.all(start[batch] == first):  # the usual case: whole rows missing together; slice, no gather
                rows = slice(first, first + ln)
                cols = slice(None) if batch.size == out.shape[1] else col[batch]
            else:
                rows, cols = start[batch] + np.arange(ln)[:, None], col[batch]
            out[rows, cols] = biquad.filtfilt(out[rows, cols])
            mask[rows, cols] = True
    return (out[:, 0], mask[:, 0]) if flat else (out, mask)


@dataclass(frozen=True)
class CleaningOptions:
    """The cleaned layer's settings: longest gap filled (frames), smoothing cut-off (0: none), and the
    visibility below which a landmark is left out of the jitter measure."""

    fill_max_gap: int = 10
    smooth_cutoff_hz: float = DEFAULT_CUTOFF_HZ
    min_visibility: float = 0.5
