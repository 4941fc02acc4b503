"""Piecewise-linear tables: derating factors and the fan curve."""

from __future__ import annotations

from gateway.config import Table


def interpolate(table: Table, x: float) -> float:
    """The table's value at x, linear between points and flat beyond both ends.

    A straight scan: tables have a handful of points, and this runs for every module on every tick.
    """
    x0, y0 = table[0]
    if x <= x0:
        return y0
    for x1, y1 in table:
        if x < x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        x0, y0 = x1, y1
    return y0


def factor(table: Table, x: float | None) -> float:
    """A derating table's factor (0..1) at x; unknown x derates to 0, the safe case."""
    if x is None:
        return 0.0
    return interpolate(table, x) / 100.0
