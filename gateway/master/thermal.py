"""Thermal view of the stack: gradient by position, heat accumulation in the middle, fan duty."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from gateway.config import Table
from gateway.master.alarms import Condition
from gateway.master.model import AlarmCode, Level
from gateway.master.tables import interpolate


def by_position(temperatures: Mapping[int, float], positions: Mapping[int, int]) -> dict[int, list[int]]:
    """Stack position -> the addresses with a temperature at that position, bottom first (a position may hold
    several modules)."""
    out: dict[int, list[int]] = {}
    for address in temperatures:
        out.setdefault(positions.get(address, address), []).append(address)
    return dict(sorted(out.items()))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def gradient(temperatures: Mapping[int, float], layers: Mapping[int, list[int]]) -> float | None:
    """Mean temperature at the top position minus that at the bottom, degC (None with under 2 positions)."""
    if len(layers) < 2:
        return None
    stack = list(layers.values())
    return _mean([temperatures[a] for a in stack[-1]]) - _mean([temperatures[a] for a in stack[0]])


def heat_accumulation(
    temperatures: Mapping[int, float], layers: Mapping[int, list[int]], delta: float
) -> Iterator[tuple[int, float]]:
    """Middle modules running more than `delta` above the mean of the outer (bottom and top) ones."""
    if len(layers) < 3:
        return
    stack = list(layers.values())
    outer = _mean([temperatures[a] for a in stack[0] + stack[-1]])
    for layer in stack[1:-1]:
        for address in layer:
            excess = temperatures[address] - outer
            if excess > delta:
                yield address, excess


def fan_duty(table: Table, temperature_max: float | None) -> int:
    """Fan duty in percent for the bank's highest temperature (0 when no module reports one)."""
    if temperature_max is None:
        return 0
    return min(100, math.ceil(interpolate(table, temperature_max)))


def conditions(temperatures: Mapping[int, float], layers: Mapping[int, list[int]], delta: float) -> Iterator[Condition]:
    """`heat_accumulation` warnings for the middle modules running hot."""
    for address, excess in heat_accumulation(temperatures, layers, delta):
        yield Condition(
            AlarmCode.HEAT_ACCUMULATION,
            Level.WARNING,
            address,
            f"module {address} {excess:.1f} degC above the outer ones",
            excess,
        )
