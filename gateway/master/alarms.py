"""Alarm conditions from module values and module alarm bits, and the tracker that gives them a life.

A condition is raised at its threshold and, once raised, holds until the value is back by the hysteresis band;
the tracker then keeps the alarm for `alarm_hold` seconds more, so a value dithering at a threshold produces
one alarm, not a stream of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gateway.config import BankSection, LimitsSection
from gateway.master.model import ALARM_BITS, Alarm, AlarmCode, Level, ModuleReading, ModuleState
from gateway.values import frozen

BIT_CODES = (
    AlarmCode.CELL_OVER_VOLTAGE,
    AlarmCode.CELL_UNDER_VOLTAGE,
    AlarmCode.PACK_OVER_VOLTAGE,
    AlarmCode.PACK_UNDER_VOLTAGE,
    AlarmCode.CHARGE_OVER_TEMPERATURE,
    AlarmCode.DISCHARGE_OVER_TEMPERATURE,
    AlarmCode.CHARGE_UNDER_TEMPERATURE,
    AlarmCode.DISCHARGE_UNDER_TEMPERATURE,
    AlarmCode.CHARGE_OVER_CURRENT,
    AlarmCode.DISCHARGE_OVER_CURRENT,
    AlarmCode.CELL_IMBALANCE,
    AlarmCode.MODULE_FAULT,
    AlarmCode.MODULE_FAULT,
    AlarmCode.MODULE_FAULT,
    AlarmCode.MODULE_FAULT,
    AlarmCode.MODULE_FAULT,
)
"""The alarm code of each module alarm bit (protocol order: InternalCommunication..Other are module faults)."""
_ORDER = {code: n for n, code in enumerate(AlarmCode)}
"""Alarms are listed in code order, so payloads do not reorder when alarms come and go."""


@frozen
class Condition:
    """One alarm condition present now, for one module (None for the bank)."""

    code: AlarmCode
    level: Level
    module: int | None
    detail: str
    value: float | None = None
    """The measured value, where the condition has one (degC, V, V/cell, A, V of spread)."""


Previous = Mapping[tuple[AlarmCode, int | None], Level]
"""Last tick's raw level per (code, module): raised conditions hold until back by the hysteresis band."""


def _high(value: float | None, thresholds: tuple[float, float], band: float, was: Level | None) -> Level | None:
    if value is None:
        return None
    warning, protection = thresholds
    if value >= protection - (band if was is Level.PROTECTION else 0.0):
        return Level.PROTECTION
    if value >= warning - (band if was is not None else 0.0):
        return Level.WARNING
    return None


def _low(value: float | None, thresholds: tuple[float, float], band: float, was: Level | None) -> Level | None:
    if value is None:
        return None
    return _high(-value, (-thresholds[0], -thresholds[1]), band, was)


def quiet(reading: ModuleReading, bank: BankSection, limits: LimitsSection) -> bool:
    """True when a module shows no alarm condition at all: every value inside its warning thresholds, no alarm
    bit, no fault. The common case on every tick; the master skips the full check for such a module unless it
    had a condition on the last tick (hysteresis needs the full check)."""
    r = reading
    if r.warnings or r.protections or r.fault_code or r.module_state == ModuleState.FAULT:
        return False
    vmax, vmin, tmax, tmin, voltage = (
        r.cell_voltage_max,
        r.cell_voltage_min,
        r.temperature_max,
        r.temperature_min,
        r.voltage,
    )
    if vmax is None or vmin is None or tmax is None or tmin is None or voltage is None:
        return False
    per_cell = voltage / (r.cells_in_series or r.cell_count or bank.cells_in_series)
    current = r.current or 0.0
    return (
        vmax < limits.cell_over_voltage[0]
        and vmin > limits.cell_under_voltage[0]
        and limits.pack_under_voltage[0] < per_cell < limits.pack_over_voltage[0]
        and tmax < limits.charge_over_temperature[0]
        and tmax < limits.discharge_over_temperature[0]
        and tmin > limits.charge_under_temperature[0]
        and tmin > limits.discharge_under_temperature[0]
        and current < limits.over_current[0] * bank.rated_charge_current / 100.0
        and -current < limits.over_current[0] * bank.rated_discharge_current / 100.0
        and vmax - vmin < limits.cell_imbalance[0]
    )


def module_conditions(
    reading: ModuleReading, bank: BankSection, limits: LimitsSection, previous: Previous
) -> Iterator[Condition]:
    """The alarm conditions one module's values and alarm bits show now."""
    a = reading.address
    v_band, t_band = limits.voltage_hysteresis, limits.temperature_hysteresis
    cells = reading.cells_in_series or reading.cell_count or bank.cells_in_series
    per_cell = None if reading.voltage is None or not cells else reading.voltage / cells
    spread = (
        None
        if reading.cell_voltage_max is None or reading.cell_voltage_min is None
        else reading.cell_voltage_max - reading.cell_voltage_min
    )
    current = reading.current or 0.0
    checks = (
        (AlarmCode.CELL_OVER_VOLTAGE, _high, reading.cell_voltage_max, limits.cell_over_voltage, v_band, "V"),
        (AlarmCode.CELL_UNDER_VOLTAGE, _low, reading.cell_voltage_min, limits.cell_under_voltage, v_band, "V"),
        (AlarmCode.PACK_OVER_VOLTAGE, _high, per_cell, limits.pack_over_voltage, v_band, "V/cell"),
        (AlarmCode.PACK_UNDER_VOLTAGE, _low, per_cell, limits.pack_under_voltage, v_band, "V/cell"),
        (
            AlarmCode.CHARGE_OVER_TEMPERATURE,
            _high,
            reading.temperature_max,
            limits.charge_over_temperature,
            t_band,
            "degC",
        ),
        (
            AlarmCode.DISCHARGE_OVER_TEMPERATURE,
            _high,
            reading.temperature_max,
            limits.discharge_over_temperature,
            t_band,
            "degC",
        ),
        (
            AlarmCode.CHARGE_UNDER_TEMPERATURE,
            _low,
            reading.temperature_min,
            limits.charge_under_temperature,
            t_band,
            "degC",
        ),
        (
            AlarmCode.DISCHARGE_UNDER_TEMPERATURE,
            _low,
            reading.temperature_min,
            limits.discharge_under_temperature,
            t_band,
            "degC",
        ),
        (
            AlarmCode.CHARGE_OVER_CURRENT,
            _high,
            max(current, 0.0),
            _percent_of(limits.over_current, bank.rated_charge_current),
            bank.rated_charge_current * 0.05,
            "A",
        ),
        (
            AlarmCode.DISCHARGE_OVER_CURRENT,
            _high,
            max(-current, 0.0),
            _percent_of(limits.over_current, bank.rated_discharge_current),
            bank.rated_discharge_current * 0.05,
            "A",
        ),
    )
    for code, compare, value, thresholds, band, unit in checks:
        level = compare(value, thresholds, band, previous.get((code, a)))
        if level is not None:
            yield Condition(code, level, a, f"{value:.3f} {unit}", value)
    if spread is not None:
        level = _high(spread, limits.cell_imbalance, 0.01, previous.get((AlarmCode.CELL_IMBALANCE, a)))
        if level is Level.PROTECTION and abs(current) >= limits.rest_current:
            level = Level.WARNING
        if level is not None:
            yield Condition(AlarmCode.CELL_IMBALANCE, level, a, f"{spread * 1000:.0f} mV", spread)
    if reading.module_state == ModuleState.FAULT or reading.fault_code:
        yield Condition(AlarmCode.MODULE_FAULT, Level.PROTECTION, a, f"module fault, code {reading.fault_code}")
    yield from _bit_conditions(reading.warnings, Level.WARNING, "Warn", a)
    yield from _bit_conditions(reading.protections, Level.PROTECTION, "Prot", a)


def _percent_of(thresholds: tuple[float, float], rated: float) -> tuple[float, float]:
    return thresholds[0] * rated / 100.0, thresholds[1] * rated / 100.0


def _bit_conditions(bits: int, level: Level, prefix: str, address: int) -> Iterator[Condition]:
    n = 0
    while bits:
        if bits & 1:
            yield Condition(BIT_CODES[n], level, address, f"module reports {prefix}{ALARM_BITS[n]}")
        bits >>= 1
        n += 1


@dataclass(slots=True)
class _Active:
    since: float
    last_seen: float
    last_protection: float | None
    modules: tuple[int, ...]
    detail: str
    value: float | None = None


@dataclass(slots=True)
class AlarmTracker:
    """Active alarms by code: raised at once, cleared `hold` seconds after their last condition."""

    active: dict[AlarmCode, _Active] = field(default_factory=dict)
    previous: dict[tuple[AlarmCode, int | None], Level] = field(default_factory=dict)
    flagged: frozenset[int | None] = frozenset()
    """Modules with any condition on the last update."""

    def update(self, conditions: Iterable[Condition], now: float, hold: float) -> tuple[Alarm, ...]:
        by_code: dict[AlarmCode, list[Condition]] = {}
        previous: dict[tuple[AlarmCode, int | None], Level] = {}
        for c in conditions:
            by_code.setdefault(c.code, []).append(c)
            key = (c.code, c.module)
            if previous.get(key) is not Level.PROTECTION:
                previous[key] = c.level
        self.previous = previous
        self.flagged = frozenset(module for _, module in previous)
        for code, found in by_code.items():
            modules = tuple(sorted({c.module for c in found if c.module is not None}))
            protection = any(c.level is Level.PROTECTION for c in found)
            detail = "; ".join(sorted({c.detail for c in found}))
            value = min(found, key=_worst_first).value
            entry = self.active.get(code)
            if entry is None:
                entry = self.active[code] = _Active(now, now, None, modules, detail)
            entry.last_seen, entry.modules, entry.detail, entry.value = now, modules, detail, value
            if protection:
                entry.last_protection = now
        for code in [c for c, e in self.active.items() if c not in by_code and now - e.last_seen >= hold]:
            del self.active[code]
        return tuple(
            Alarm(
                code=code,
                level=Level.PROTECTION
                if e.last_protection is not None and now - e.last_protection < hold
                else Level.WARNING,
                modules=e.modules,
                since=e.since,
                detail=e.detail,
                value=e.value,
            )
            for code, e in sorted(self.active.items(), key=lambda item: _ORDER[item[0]])
        )


def _worst_first(c: Condition) -> tuple[bool, int]:
    """Protection before warning, then the lowest module address: whose value an alarm shows."""
    return c.level is not Level.PROTECTION, -1 if c.module is None else c.module
