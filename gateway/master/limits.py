"""Coordinated limits: each module's effective limits, then strings (series), then the bank (parallel).

The rule that holds everything together: no module is ever asked for more than its own effective limit.
A series string carries one current, so its limit is its weakest module's. Parallel strings share the bank
current by their resistance, so the bank limit is min over strings of (string limit / string share): the string
that takes the largest share relative to its limit binds. `Shares` measures those shares; `Limiter` keeps the
bounds of a string that just left (it may still be connected) and slews rising limits. Every value carries the
rule that bound it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.config import BankSection, LimitsSection
from gateway.master.inputs import TickInput
from gateway.master.memo import Memo, same_values
from gateway.master.model import Electrical, Limit, Limits, ModuleReading
from gateway.master.tables import factor

MIN_CURRENT = 0.1
"""Current limits below this (the inverter protocol's resolution) are 0, so flags and limits agree."""


NO_CELL_DATA = "module's own limit, no cell data"
"""Why a module's limit is its own when its profile sends no cell voltages (or temperatures): its BMS watches them."""


def module_limits(reading: ModuleReading, bank: BankSection, limits: LimitsSection) -> Limits:
    """min(reported limit, rating) x every derating factor; an unknown input derates to zero.

    Inputs the module's profile never sends (`reading.absent`) are no input: their rules do not apply, and the
    module's own reported limit is authoritative ("module's own limit, no cell data"). Without its own current
    limits (a DBC without them) the rating alone is in force.
    """
    a = reading.address
    absent = reading.absent
    reported = "charge_current_limit" not in absent
    charge = _derated(
        reading.charge_current_limit if reported else bank.rated_charge_current,
        bank.rated_charge_current,
        a,
        (
            ("cell_voltage", _factor(limits.charge_cell_voltage, reading, "cell_voltage_max")),
            ("temperature", _temperature_factor(limits.charge_temperature, reading)),
            ("soc", factor(limits.charge_soc, reading.soc)),
        ),
        absent,
    )
    discharge = _derated(
        reading.discharge_current_limit if reported else bank.rated_discharge_current,
        bank.rated_discharge_current,
        a,
        (
            ("cell_voltage", _factor(limits.discharge_cell_voltage, reading, "cell_voltage_min")),
            ("temperature", _temperature_factor(limits.discharge_temperature, reading)),
            ("soc", factor(limits.discharge_soc, reading.soc)),
        ),
        absent,
    )
    # The module's own BMS may forbid a direction outright (a Pylontech battery's 0x35C flags): that is 0 A, and so
    # is a permit its profile sends but that is not known (missing data never raises a limit).
    if _forbidden(reading, "charge_permitted"):
        charge = Limit(0.0, f"module {a} forbids charging")
    if _forbidden(reading, "discharge_permitted"):
        discharge = Limit(0.0, f"module {a} forbids discharging")
    # Voltages: the module's own if they are tighter, always within [cells x DVL per cell, cells x CVL per cell].
    # A reported CVL below that floor is not a voltage to charge to (0 V would read as "charge to 0 V"): the
    # module is telling us not to charge it, so its charge current is 0 and its CVL stays at the floor.
    cells = bank.cells_in_series
    cvl = Limit(cells * limits.charge_voltage_per_cell, "charge_voltage_per_cell")
    dvl = Limit(cells * limits.discharge_voltage_per_cell, "discharge_voltage_per_cell")
    reported_cvl, reported_dvl = reading.charge_voltage_limit, reading.discharge_voltage_limit
    if reported_cvl is not None and reported_cvl < cvl.value:
        cvl = Limit(max(reported_cvl, dvl.value), f"reported module {a}")
        if reported_cvl < dvl.value:
            charge = Limit(0.0, f"reported module {a} charge voltage {reported_cvl:g} V")
    if reported_dvl is not None and reported_dvl > dvl.value:
        dvl = Limit(min(reported_dvl, cvl.value), f"reported module {a}")
    return Limits(charge, discharge, cvl, dvl)


def _forbidden(reading: ModuleReading, key: str) -> bool:
    permit = getattr(reading, key)
    return permit == 0 or (permit is None and key not in reading.absent)


def _factor(table: tuple[tuple[float, float], ...], reading: ModuleReading, key: str) -> float:
    """The table's factor at the reading's `key`; 1 when the module's profile never sends it (not an input)."""
    return 1.0 if key in reading.absent else factor(table, getattr(reading, key))


def _temperature_factor(table: tuple[tuple[float, float], ...], reading: ModuleReading) -> float:
    return min(_factor(table, reading, "temperature_max"), _factor(table, reading, "temperature_min"))


def _derated(
    reported: float | None,
    rating: float,
    address: int,
    factors: tuple[tuple[str, float], ...],
    absent: frozenset[str] = frozenset(),
) -> Limit:
    if reported is None:
        return Limit(0.0, f"no reported limit module {address}")
    if reported >= rating:
        value, bound = rating, f"rating module {address}"
    else:
        own = f": {NO_CELL_DATA}" if "cell_voltage_max" in absent else ""
        value, bound = max(reported, 0.0), f"reported module {address}{own}"
    lowest = 1.0
    for rule, f in factors:
        value *= f
        if f < lowest:
            lowest, bound = f, f"{rule} module {address}"
    return Limit(value, bound)


def string_limits(modules: Sequence[Limits]) -> Limits:
    """A series string: the weakest module's currents; voltages add up (named after a module that reported
    its own voltage limit, if any did)."""
    if len(modules) == 1:
        return modules[0]
    return Limits(
        charge_current=min((m.charge_current for m in modules), key=_value),
        discharge_current=min((m.discharge_current for m in modules), key=_value),
        charge_voltage=_sum(m.charge_voltage for m in modules),
        discharge_voltage=_sum(m.discharge_voltage for m in modules),
    )


def _sum(limits: Iterable[Limit]) -> Limit:
    limits = list(limits)
    bound = next((x.bound_by for x in limits if x.bound_by.startswith("reported")), limits[0].bound_by)
    return Limit(sum(x.value for x in limits), bound)


def _value(limit: Limit) -> float:
    return limit.value


def parallel_current(limits: Sequence[Limit], shares: Sequence[float], names: Sequence[str]) -> Limit:
    """Bank current limit of parallel strings: min(limit_i / share_i), capped at the sum of the limits.

    `names` names each string for the "current_share" rule (its first module). A string whose limit is not
    reduced by any rule but whose share binds is reported as "current_share module N".
    """
    total = sum(limit.value for limit in limits)
    best = Limit(total, limits[0].bound_by if len(limits) == 1 else "sum of module limits")
    if len(limits) > 1 and all(limit.bound_by.startswith("rating") for limit in limits):
        best = Limit(total, "rating")
    for limit, share, name in zip(limits, shares, names, strict=True):
        if share <= 0.0:
            continue
        value = limit.value / share
        if value < best.value:
            reduced = not limit.bound_by.startswith("rating")
            best = Limit(value, limit.bound_by if reduced or len(limits) == 1 else f"current_share {name}")
    return best


# -- shares ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Shares:
    """Each string's share of the bank current, as the limits must assume it.

    Measured (I_string / I_bank) whenever the bank current is large enough to measure. A measured share that rises
    applies at once: the limit must fit the share the string takes now. One that falls decays with
    `share_smoothing`, so the next load step does not find a limit that is too high, and only while the bank's
    strings stay the same. Never below the string's capacity share, which is never 0.
    """

    _smoothed: dict[tuple[int, ...], float] = field(default_factory=dict)
    _bank: tuple[tuple[int, ...], ...] = ()
    """The strings of the last tick: a share decays only while they stay the same."""
    _learned: dict[tuple[int, ...], float] = field(default_factory=dict)
    """Shares restored from before a restart, for strings not admitted since: where each starts when it joins."""
    _by_capacity: Memo[list[float]] = field(default_factory=Memo)
    """The capacity shares, redone only when a string's values changed (an unchanged share keeps its object)."""

    def forget(self) -> None:
        """Drop the remembered capacity shares (full-recompute mode)."""
        self._by_capacity.forget()

    def export(self) -> tuple[tuple[tuple[int, ...], float], ...]:
        """Each string's learned share (restored ones not yet used included), for the history."""
        return tuple(sorted({**self._learned, **self._smoothed}.items()))

    def restore(self, shares: Sequence[tuple[tuple[int, ...], float]]) -> None:
        """Take back learned shares from before a restart; each applies when its string is admitted again."""
        self._learned = {tuple(s): min(1.0, max(0.0, v)) for s, v in shares}

    def update(
        self, tick: TickInput, admitted: Sequence[tuple[int, ...]], strings: Sequence[Electrical]
    ) -> list[float]:
        lim, bank = tick.limits, tick.bank
        # In a tick where the bank changed (a string left or joined) the bank current is another sum: a share may
        # rise on it, never decay, so that a string lost from the data cannot lower the others' shares.
        settled = tuple(admitted) == self._bank
        self._bank = tuple(admitted)
        if not settled:  # else every string here was in the bank last tick, as it is now
            kept = set(admitted)
            self._smoothed = {s: v for s, v in self._smoothed.items() if s in kept}
        if not admitted:
            return []
        if self._learned:
            for string in admitted:
                if string not in self._smoothed and string in self._learned:
                    self._smoothed[string] = self._learned.pop(string)
        inputs = tuple(strings)
        by_capacity = self._by_capacity.get(None, inputs)
        if by_capacity is None:
            capacity = sum(e.capacity_ah for e in strings)
            by_capacity = self._by_capacity.put(None, inputs, [e.capacity_ah / capacity for e in strings])
        total = sum(e.current for e in strings)
        rated = bank.rated_charge_current if total >= 0 else bank.rated_discharge_current
        if abs(total) > lim.share_threshold / 100.0 * rated * len(admitted):
            direction = math.copysign(1.0, total)
            flowing = [max(0.0, direction * e.current) for e in strings]
            alpha = 1.0 - math.exp(-tick.dt / lim.share_smoothing) if settled else 0.0
            flow = sum(flowing)
            for string, f in zip(admitted, flowing, strict=True):
                measured = f / flow
                old = self._smoothed.get(string, measured)
                if not measured >= old:  # a falling share (or a NaN) decays
                    self._smoothed[string] = old + alpha * (measured - old)
                elif measured != old or measured == 0.0 or string not in self._smoothed:
                    self._smoothed[string] = measured  # else the same number: it keeps its object (memo.Memo)
        return [max(self._smoothed.get(s, 0.0), c) for s, c in zip(admitted, by_capacity, strict=True)]


# -- the bank's limits -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """What a string implied for the bank at its last tick in it (its limits, its share, its CVL), kept for
    `offline_hold` seconds after it left: a silent module may still be connected. The bounds (current limits divided
    by the share) are worked out only once it has left."""

    limits: Limits
    share: float
    charge_voltage: Limit
    left: float | None = None


@dataclass(slots=True)
class Limiter:
    """Module limits (cached), the bank's limits from them, held bounds of strings that left, and the slew."""

    _cache: dict[int, tuple[ModuleReading, BankSection, LimitsSection, tuple[float | None, ...], Limits]] = field(
        default_factory=dict
    )
    _held: dict[tuple[int, ...], _Held] = field(default_factory=dict)
    _last_charge: float = 0.0
    _last_discharge: float = 0.0
    _last_voltage: float | None = None

    def forget(self) -> None:
        """Drop the cached module limits (full-recompute mode)."""
        self._cache.clear()

    def module(self, tick: TickInput, r: ModuleReading) -> Limits:
        """`module_limits`, remembered per module while its inputs and the config stay the same (`same_values`): most
        ticks change a module's current and alive counter, not what its limits depend on."""
        bank, limits = tick.bank, tick.limits
        cached = self._cache.get(r.address)
        if cached is not None and cached[0] is r and cached[1] is bank and cached[2] is limits:
            return cached[4]
        values = (
            r.charge_current_limit,
            r.discharge_current_limit,
            r.charge_voltage_limit,
            r.discharge_voltage_limit,
            r.cell_voltage_max,
            r.cell_voltage_min,
            r.temperature_max,
            r.temperature_min,
            r.soc,
            r.charge_permitted,
            r.discharge_permitted,
        )
        if (
            cached is not None
            and cached[1] is bank
            and cached[2] is limits
            and cached[0].absent is r.absent
            and same_values(cached[3], values)
        ):
            result = cached[4]
        else:
            result = module_limits(r, bank, limits)
        self._cache[r.address] = (r, bank, limits, values, result)
        return result

    def bank(
        self,
        tick: TickInput,
        *,
        admitted: Sequence[tuple[int, ...]],
        per_module: Mapping[int, Limits],
        shares: Sequence[float],
        strings: Sequence[Electrical],
        total: Electrical,
    ) -> Limits:
        """The bank's limits: parallel strings by their shares, held bounds, the slew, and the charge voltage."""
        bank = tick.bank
        per_string = [string_limits([per_module[a] for a in s]) for s in admitted]
        names = [f"module {s[0]}" for s in admitted]
        charge = parallel_current([s.charge_current for s in per_string], shares, names)
        discharge = parallel_current([s.discharge_current for s in per_string], shares, names)
        cvls = [_string_cvl(tick, s, lims, e) for s, lims, e in zip(admitted, per_string, strings, strict=True)]
        cvl = min(cvls, key=_value)
        dvl = max((s.discharge_voltage for s in per_string), key=_value)
        # A string that just left the bank may still be connected: its last bounds stay in force a while.
        held_now = self._held
        for string, lims, share, string_cvl in zip(admitted, per_string, shares, cvls, strict=True):
            held = held_now.get(string)
            if held is None:
                held_now[string] = _Held(lims, share, string_cvl)
            else:
                held.limits, held.share, held.charge_voltage, held.left = lims, share, string_cvl, None
        if len(held_now) > len(admitted):
            inside = set(admitted)
            for string, held in list(held_now.items()):
                if string in inside:
                    continue
                if held.left is None:
                    held.left = tick.now
                if tick.now - held.left > bank.offline_hold:
                    del held_now[string]
                    continue
                why = f" (held: module {string[0]} left the bank)"
                lims, share = held.limits, held.share
                charge = min(
                    charge, Limit(lims.charge_current.value / share, lims.charge_current.bound_by + why), key=_value
                )
                discharge = min(
                    discharge,
                    Limit(lims.discharge_current.value / share, lims.discharge_current.bound_by + why),
                    key=_value,
                )
                cvl = min(cvl, Limit(held.charge_voltage.value, held.charge_voltage.bound_by + why), key=_value)
                dvl = max(dvl, Limit(lims.discharge_voltage.value, lims.discharge_voltage.bound_by + why), key=_value)
        slew = tick.limits.slew_rate / 100.0 * tick.dt * len(admitted)
        charge, self._last_charge = _slewed(charge, self._last_charge, slew * bank.rated_charge_current)
        discharge, self._last_discharge = _slewed(discharge, self._last_discharge, slew * bank.rated_discharge_current)
        if charge.value == 0.0 and total.voltage < cvl.value:
            cvl = Limit(total.voltage, f"charge_stop ({charge.bound_by})")
        floor = _lowest(tick, min(admitted, key=len))  # the shortest string's: `_lowest` grows with the length
        if cvl.value < floor:
            # Never 0 V or below a voltage the string can have: a module reporting 0 V must not read as "charge to
            # 0 V". Any plausible voltage is kept, so a charge stop holds CVL at the bank's voltage however low.
            cvl = Limit(floor, cvl.bound_by)
        self.remember(total)
        return Limits(charge, discharge, cvl, dvl)

    def stopped(self, reason: str, total: Electrical | None, dvl: float) -> Limits:
        """The limits while the master cannot vouch for the bank: no current, and CVL holding the bank where it is;
        with no voltage known never 0 V (an inverter could read "charge to 0 V"): the last known one, else DVL."""
        self._last_charge = self._last_discharge = 0.0
        cvl = (total.voltage if total is not None else 0.0) or self._last_voltage or dvl
        self.remember(total)
        zero = Limit(0.0, reason)
        return Limits(zero, zero, Limit(cvl, reason), Limit(dvl, reason))

    def remember(self, total: Electrical | None) -> None:
        if total is not None and total.voltage > 0.0:
            self._last_voltage = total.voltage


def _string_cvl(tick: TickInput, string: tuple[int, ...], limits: Limits, electrical: Electrical) -> Limit:
    """The string's charge voltage, pulled down by what its highest cell is over the per-cell target, so no cell
    is pushed past it while the others catch up (balancing-aware CVL); never below a voltage it can have."""
    cvl = limits.charge_voltage
    target = tick.limits.charge_voltage_per_cell
    for a in string:
        r = tick.readings[a]
        if r.cell_voltage_max is not None and r.cell_voltage_max > target:
            value = max(electrical.voltage - (r.cell_voltage_max - target), _lowest(tick, string))
            if value < cvl.value:
                cvl = Limit(value, f"balancing module {a} cell {r.cell_voltage_max_index or 0}")
    return cvl


def _lowest(tick: TickInput, string: tuple[int, ...]) -> float:
    """The lowest voltage the string can really have: every cell at the cell under-voltage protection (2.50 V);
    below it a reading is implausible (a module reporting 0 V), not a voltage to hold CVL at."""
    return len(string) * tick.bank.cells_in_series * tick.limits.cell_under_voltage[1]


def _slewed(target: Limit, last: float, step: float) -> tuple[Limit, float]:
    """(limit to report, value to slew from next): rising limits move at most `step`, falling ones apply at once,
    and limits below MIN_CURRENT are reported as 0 while the ramp keeps counting."""
    limit = target if target.value <= last + step else Limit(last + step, "slew_rate")
    if limit.value < MIN_CURRENT:
        return Limit(0.0, limit.bound_by), limit.value
    return limit, limit.value
