"""Lifetime counters per module and for the bank, integrated from the readings: pure, driven by the core.

Per module, between consecutive ModuleStatus samples (trapezoids, so a ramp is integrated as exactly as a step):
charged and discharged Ah and Wh, equivalent full cycles (discharged Ah over the nominal capacity), seconds above
`HOT` and below `COLD`, and the extremes ever of cell voltage and temperature, each with its time. A silence
longer than `bank.module_timeout` is a gap, not a long sample: nothing is counted across it. For the bank, the
modules' energies add up; its charge adds up over parallel strings and is the mean of a series string's modules
(they carry one current); its time hot and cold and its extremes come from the snapshot's extremes.

A daily sample per scope shows ageing: SOH, full capacity, internal resistance and cycle count as last seen that
day (UTC), and the widest cell spread of the day.

`Lifetime` holds the totals since the history began (restored at start) plus what it has counted since; the
writer takes the scopes that changed once a second and stores them as absolute values, so a batch lost to a
failed write or a kill costs only the time since the last one.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from types import MappingProxyType

from gateway.config import BankSection
from gateway.master.model import BankSnapshot, Energy, EnergyTotals, Extreme, Lifecycle, ModuleReading
from gateway.values import frozen

HOT = 45.0
"""degC: time with a temperature above this counts as hot."""
COLD = 0.0
"""degC: time with a temperature below this counts as cold."""
BANK = 0
"""The bank's scope; modules are 1..31."""
DAY = 86_400.0
_SKIPPED = frozenset({Lifecycle.OFFLINE, Lifecycle.REJECTED})
"""Not counted: silent modules (their values are old) and modules that are not this bank's."""


@frozen
class Peak:
    """An extreme value and when it was seen."""

    value: float
    t: float


@frozen(kw_only=True)
class Counters:
    """One scope's lifetime counters, as stored."""

    charged_ah: float = 0.0
    discharged_ah: float = 0.0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0
    cycles: float = 0.0
    """Equivalent full cycles: discharged Ah over the nominal capacity."""
    seconds_hot: float = 0.0
    seconds_cold: float = 0.0
    cell_voltage_max: Peak | None = None
    cell_voltage_min: Peak | None = None
    temperature_max: Peak | None = None
    temperature_min: Peak | None = None
    since: float | None = None
    """When counting began (the history's first sample of this scope)."""
    updated: float | None = None
    """The last sample counted."""


@frozen(kw_only=True)
class Daily:
    """One scope's ageing sample for one UTC day."""

    day: str
    """YYYY-MM-DD, UTC."""
    t: float
    """The day's latest sample when it was stored (a sample is stored when one of its values changes)."""
    soh: float | None = None
    capacity_ah: float | None = None
    resistance_mohm: float | None = None
    cell_spread_max: float | None = None
    """V: the widest spread between a module's highest and lowest cell that day (the bank's: its extremes)."""
    cycle_count: int | None = None
    """The module's own cycle counter."""


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


class _Scope:
    """What one scope counts, mutable (the hot path), with its last sample and today's ageing values."""

    __slots__ = (
        "aged",
        "capacity",
        "charged_ah",
        "charged_wh",
        "cold",
        "cycle_count",
        "cycles",
        "day",
        "day_t",
        "dirty",
        "discharged_ah",
        "discharged_wh",
        "energy",
        "hot",
        "last_i",
        "last_p",
        "last_t",
        "peaks",
        "resistance",
        "since",
        "soh",
        "spread",
        "updated",
    )

    def __init__(self) -> None:
        self.charged_ah = self.discharged_ah = self.charged_wh = self.discharged_wh = 0.0
        self.cycles = self.hot = self.cold = 0.0
        self.peaks: list[Peak | None] = [None, None, None, None]
        """cell voltage max, min, temperature max, min."""
        self.since: float | None = None
        self.updated: float | None = None
        self.last_t: float | None = None
        self.last_i: float | None = None
        self.last_p = 0.0
        self.day = -1
        self.day_t = 0.0
        self.soh: float | None = None
        self.capacity: float | None = None
        self.resistance: float | None = None
        self.spread: float | None = None
        self.cycle_count: int | None = None
        self.dirty = False
        """Counted something since the counters were last taken."""
        self.aged = False
        """Today's ageing values changed since the daily sample was last taken."""
        self.energy: Energy | None = None

    def add(self, ah: float, wh: float, nominal_ah: float) -> None:
        if ah >= 0.0:
            self.charged_ah += ah
        else:
            self.discharged_ah -= ah
            self.cycles -= ah / nominal_ah
        if wh >= 0.0:
            self.charged_wh += wh
        else:
            self.discharged_wh -= wh

    def extremes(self, t: float, high: float | None, low: float | None, offset: int) -> None:
        peaks = self.peaks
        if high is not None and ((peak := peaks[offset]) is None or high > peak.value):
            peaks[offset] = Peak(high, t)
        if low is not None and ((peak := peaks[offset + 1]) is None or low < peak.value):
            peaks[offset + 1] = Peak(low, t)

    def temperature_time(self, dt: float, high: float | None, low: float | None) -> None:
        if high is not None and high > HOT:
            self.hot += dt
        if low is not None and low < COLD:
            self.cold += dt

    def ageing(
        self,
        t: float,
        soh: float | None,
        capacity: float | None,
        spread: float | None,
        *,
        resistance: float | None = None,
        cycle_count: int | None = None,
    ) -> None:
        """Today's ageing values; the sample is due for writing when one of them changes (not on every tick)."""
        day = int(t // DAY)
        if day != self.day:
            self.day, self.soh, self.capacity, self.resistance, self.spread, self.cycle_count = (
                day,
                None,
                None,
                None,
                None,
                None,
            )
            self.aged = True
        self.day_t = t
        if soh is not None and soh != self.soh:
            self.soh, self.aged = soh, True
        if capacity is not None and capacity != self.capacity:
            self.capacity, self.aged = capacity, True
        if resistance is not None and resistance != self.resistance:
            self.resistance, self.aged = resistance, True
        if cycle_count is not None and cycle_count != self.cycle_count:
            self.cycle_count, self.aged = cycle_count, True
        if spread is not None and (self.spread is None or spread > self.spread):
            self.spread, self.aged = spread, True

    def counters(self) -> Counters:
        vmax, vmin, tmax, tmin = self.peaks
        return Counters(
            charged_ah=self.charged_ah,
            discharged_ah=self.discharged_ah,
            charged_wh=self.charged_wh,
            discharged_wh=self.discharged_wh,
            cycles=self.cycles,
            seconds_hot=self.hot,
            seconds_cold=self.cold,
            cell_voltage_max=vmax,
            cell_voltage_min=vmin,
            temperature_max=tmax,
            temperature_min=tmin,
            since=self.since,
            updated=self.updated,
        )

    def daily(self) -> Daily | None:
        if self.day < 0:
            return None
        return Daily(
            day=day_of(self.day * DAY),
            t=self.day_t,
            soh=self.soh,
            capacity_ah=self.capacity,
            resistance_mohm=self.resistance,
            cell_spread_max=self.spread,
            cycle_count=self.cycle_count,
        )

    def restore(self, counters: Counters | None, daily: Daily | None) -> None:
        if counters is not None:
            c = counters
            self.charged_ah, self.discharged_ah, self.charged_wh, self.discharged_wh = (
                c.charged_ah,
                c.discharged_ah,
                c.charged_wh,
                c.discharged_wh,
            )
            self.cycles, self.hot, self.cold = c.cycles, c.seconds_hot, c.seconds_cold
            self.peaks = [c.cell_voltage_max, c.cell_voltage_min, c.temperature_max, c.temperature_min]
            self.since, self.updated = c.since, c.updated
        if daily is not None:
            self.day = calendar.timegm(time.strptime(daily.day, "%Y-%m-%d")) // int(DAY)
            self.day_t = daily.t
            self.soh, self.capacity, self.resistance = daily.soh, daily.capacity_ah, daily.resistance_mohm
            self.spread, self.cycle_count = daily.cell_spread_max, daily.cycle_count
        self.energy = None

    def energy_now(self) -> Energy:
        energy = self.energy
        if energy is None or energy.charged_wh != self.charged_wh or energy.discharged_wh != self.discharged_wh:
            energy = self.energy = Energy(self.charged_wh, self.discharged_wh)
        return energy


class Lifetime:
    """The lifetime counters of the bank and of every module seen, fed one snapshot per tick."""

    def __init__(self) -> None:
        self._scopes: dict[int, _Scope] = {BANK: _Scope()}
        self._bank_t: float | None = None
        self._totals: EnergyTotals | None = None

    def restore(self, counters: Mapping[int, Counters], daily: Mapping[int, Daily]) -> None:
        """Take back the stored totals (before the first `update`): counting goes on from them."""
        for scope in counters.keys() | daily.keys():
            self._scopes.setdefault(scope, _Scope()).restore(counters.get(scope), daily.get(scope))
        self._totals = None

    def update(self, s: BankSnapshot, bank: BankSection, *, fresh: bool = True) -> None:
        """Count what the snapshot's readings add. `fresh` is False for a snapshot that repeats old values (the
        fail-safe set while master steps fail): the modules' samples are old then and count nothing anyway, and
        the bank's time hot or cold does not run on."""
        gap, nominal = bank.module_timeout, bank.capacity_ah
        added: dict[int, tuple[float, float]] = {}
        scopes = self._scopes
        for address, view in s.modules.items():
            if view.lifecycle in _SKIPPED:
                continue
            r = view.reading
            seen = r.seen.get("status")
            if seen is None:
                continue
            scope = scopes.get(address)
            if scope is None:
                scope = scopes[address] = _Scope()
            if seen != scope.last_t:
                step = self._module(scope, r, seen, gap, r.nominal_capacity or nominal)
                if step is not None:
                    added[address] = step
        if fresh:
            self._bank(s, added, gap, nominal)

    def _module(
        self, scope: _Scope, r: ModuleReading, seen: float, gap: float, nominal: float
    ) -> tuple[float, float] | None:
        """One new ModuleStatus sample: the trapezoid since the last one; (Ah, Wh) added, None across a gap."""
        i, v = r.current, r.voltage
        last_t, last_i, last_p = scope.last_t, scope.last_i, scope.last_p
        power = 0.0 if i is None or v is None else i * v
        scope.last_t, scope.last_i, scope.last_p = seen, (None if v is None else i), power
        step = None
        if last_t is not None and last_i is not None and i is not None and v is not None:
            dt = seen - last_t
            if 0.0 < dt <= gap:
                ah = (i + last_i) * dt / 7200.0
                wh = (power + last_p) * dt / 7200.0
                scope.add(ah, wh, nominal)
                scope.temperature_time(dt, r.temperature_max, r.temperature_min)
                if scope.since is None:
                    scope.since = last_t
                scope.updated = seen
                step = (ah, wh)
        scope.extremes(r.seen.get("cells", seen), r.cell_voltage_max, r.cell_voltage_min, 0)
        scope.extremes(r.seen.get("temperatures", seen), r.temperature_max, r.temperature_min, 2)
        vmax, vmin = r.cell_voltage_max, r.cell_voltage_min
        spread = None if vmax is None or vmin is None else vmax - vmin
        scope.ageing(seen, r.soh, r.full_capacity, spread, resistance=r.internal_resistance, cycle_count=r.cycle_count)
        scope.dirty = True
        return step

    def _bank(self, s: BankSnapshot, added: Mapping[int, tuple[float, float]], gap: float, nominal: float) -> None:
        scope = self._scopes[BANK]
        t, last = s.t, self._bank_t
        self._bank_t = t
        strings = s.strings or tuple((a,) for a in added)
        if added:
            ah = wh = 0.0
            for string in strings:
                steps = [added[a] for a in string if a in added]
                if steps:
                    ah += sum(step[0] for step in steps) / len(steps)
                    wh += sum(step[1] for step in steps)
            scope.add(ah, wh, nominal * max(1, len(strings)))
            if scope.since is None:
                scope.since = t
            scope.updated = t
        if last is not None and 0.0 < t - last <= gap:
            scope.temperature_time(t - last, _value(s.temperature_max), _value(s.temperature_min))
        vmax, vmin = _value(s.cell_voltage_max), _value(s.cell_voltage_min)
        scope.extremes(t, vmax, vmin, 0)
        scope.extremes(t, _value(s.temperature_max), _value(s.temperature_min), 2)
        if s.modules:
            scope.ageing(t, s.soh, s.full_ah, None if vmax is None or vmin is None else vmax - vmin)
        scope.dirty = True

    def energy(self) -> EnergyTotals:
        """The lifetime energy of the bank and of each module now, for the snapshot (objects reused while a
        scope's energy stays the same)."""
        scopes = self._scopes
        bank = scopes[BANK].energy_now()
        totals = self._totals
        modules = {a: scope.energy_now() for a, scope in scopes.items() if a != BANK}
        if (
            totals is None
            or totals.bank is not bank
            or len(totals.modules) != len(modules)
            or any(totals.modules.get(a) is not e for a, e in modules.items())
        ):
            totals = self._totals = EnergyTotals(bank, MappingProxyType(modules))
        return totals

    def take(self) -> tuple[dict[int, Counters], dict[int, Daily]]:
        """The counters and daily samples of the scopes that changed since the last `take`."""
        counters: dict[int, Counters] = {}
        daily: dict[int, Daily] = {}
        for address, scope in self._scopes.items():
            if scope.dirty:
                scope.dirty = False
                counters[address] = scope.counters()
            if scope.aged and (sample := scope.daily()) is not None:
                scope.aged = False
                daily[address] = sample
        return counters, daily

    def counters(self) -> dict[int, Counters]:
        """Every scope's counters now."""
        return {address: scope.counters() for address, scope in sorted(self._scopes.items())}


def _value(extreme: Extreme | None) -> float | None:
    return None if extreme is None else extreme.value
