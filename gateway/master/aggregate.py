"""Aggregation: series strings from modules, the bank from parallel strings, and bank-wide extremes."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.master.memo import Memo
from gateway.master.model import Electrical, Extreme, ModuleReading

Extremes = tuple[Extreme | None, Extreme | None, Extreme | None, Extreme | None]


def module_capacity(reading: ModuleReading, default_ah: float) -> tuple[float, float]:
    """(remaining, full) Ah of a module: reported capacity, else nominal, else the configured rating (the first
    that is positive, so `full` never is 0)."""
    full = reading.full_capacity
    if full is None or not full > 0:  # not "<= 0": a NaN is not a capacity either
        full = reading.nominal_capacity
        if full is None or not full > 0:
            full = default_ah
    remaining = reading.remaining_capacity
    if remaining is None:
        remaining = full * (reading.soc or 0.0) / 100.0
    return max(0.0, min(remaining, full)), full


def series(modules: Sequence[ModuleReading], default_ah: float) -> Electrical:
    """A series string: voltages add, the current is one (mean of the sensors), and the string can only
    discharge what its emptiest module holds and charge what its fullest module still takes."""
    if len(modules) == 1:
        m = modules[0]
        remaining, full = module_capacity(m, default_ah)
        return Electrical(
            m.voltage or 0.0,
            m.current or 0.0,
            remaining,
            full,
            100.0 * remaining / full if full > 0 else 0.0,
            m.soh if m.soh is not None else 0.0,
            full,
        )
    capacities = [module_capacity(m, default_ah) for m in modules]
    remaining = min(r for r, _ in capacities)
    headroom = min(f - r for r, f in capacities)
    full = remaining + headroom
    return Electrical(
        voltage=sum(m.voltage or 0.0 for m in modules),
        current=sum(m.current or 0.0 for m in modules) / len(modules),
        remaining_ah=remaining,
        full_ah=full,
        soc=100.0 * remaining / full if full > 0 else 0.0,
        soh=min(m.soh if m.soh is not None else 0.0 for m in modules),
        capacity_ah=min(f for _, f in capacities),
    )


def parallel(strings: Sequence[Electrical]) -> Electrical:
    """Parallel strings: the median voltage, summed current and capacity, capacity-weighted SOC and SOH."""
    full = sum(s.full_ah for s in strings)
    weights = [s.full_ah / full for s in strings] if full > 0 else [1.0 / len(strings)] * len(strings)
    return Electrical(
        voltage=statistics.median(s.voltage for s in strings),
        current=sum(s.current for s in strings),
        remaining_ah=sum(s.remaining_ah for s in strings),
        full_ah=full,
        soc=sum(w * s.soc for w, s in zip(weights, strings, strict=True)),
        soh=sum(w * s.soh for w, s in zip(weights, strings, strict=True)),
        capacity_ah=sum(s.capacity_ah for s in strings),
    )


def extremes(modules: Iterable[ModuleReading]) -> Extremes:
    """(max cell voltage, min cell voltage, max temperature, min temperature), each with module and index."""
    vmax = vmin = tmax = tmin = None
    for m in modules:
        a = m.address
        if m.cell_voltage_max is not None and (vmax is None or m.cell_voltage_max > vmax.value):
            vmax = Extreme(m.cell_voltage_max, a, m.cell_voltage_max_index or 0)
        if m.cell_voltage_min is not None and (vmin is None or m.cell_voltage_min < vmin.value):
            vmin = Extreme(m.cell_voltage_min, a, m.cell_voltage_min_index or 0)
        if m.temperature_max is not None and (tmax is None or m.temperature_max > tmax.value):
            tmax = Extreme(m.temperature_max, a, m.temperature_max_index or 0)
        if m.temperature_min is not None and (tmin is None or m.temperature_min < tmin.value):
            tmin = Extreme(m.temperature_min, a, m.temperature_min_index or 0)
    return vmax, vmin, tmax, tmin


@dataclass(slots=True)
class Aggregates:
    """`series` per string, `parallel` of the strings and the bank's `extremes`, each redone only when one of its
    inputs (a module's reading, a string's values, the configured capacity) is another object than last tick."""

    _series: Memo[Electrical] = field(default_factory=Memo)
    _parallel: Memo[Electrical] = field(default_factory=Memo)
    _extremes: Memo[Extremes] = field(default_factory=Memo)

    def forget(self) -> None:
        self._series.forget()
        self._parallel.forget()
        self._extremes.forget()

    def series(self, string: tuple[int, ...], modules: Sequence[ModuleReading], default_ah: float) -> Electrical:
        """`series` of `modules`, the readings of `string`."""
        inputs = (*modules, default_ah)
        cached = self._series.get(string, inputs)
        return self._series.put(string, inputs, series(modules, default_ah)) if cached is None else cached

    def parallel(self, strings: Sequence[Electrical]) -> Electrical:
        inputs = tuple(strings)
        cached = self._parallel.get(None, inputs)
        return self._parallel.put(None, inputs, parallel(strings)) if cached is None else cached

    def extremes(self, modules: Sequence[ModuleReading]) -> Extremes:
        inputs = tuple(modules)
        cached = self._extremes.get(None, inputs)
        return self._extremes.put(None, inputs, extremes(modules)) if cached is None else cached
