"""Piecewise-linear tables: derating factors and the fan curve."""

from __future__ import annotations

from bisect import bisect_right

from gateway.config import Table


def interpolate(table: Table, x: float) -> float:
    """The table's value at x, linear between points and flat beyond both ends."""
    if x <= table[0][0]:
        return table[0][1]
    if x >= table[-1][0]:
        return table[-1][1]
    i = bisect_right(table, x, key=lambda point: point[0])
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def factor(table: Table, x: float | None) -> float:
    """A derating table's factor (0..1) at x; unknown x derates to 0, the safe case."""
    if x is None:
        return 0.0
    return interpolate(table, x) / 100.0
