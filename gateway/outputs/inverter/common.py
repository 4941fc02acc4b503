"""Values several protocol families read the same way from a snapshot. Pure; never computes what the master owns
(limits, flags, alarms): it only picks, converts and locates."""

from __future__ import annotations

from gateway.master.model import BankSnapshot, Extreme, Lifecycle, ModuleView
from gateway.outputs.inverter.codec import Values
from gateway.outputs.inverter.profiles import Input
from gateway.values import frozen

IDLE_A = 0.5
"""Within this current (A) of 0 the bank is idle for the protocols that report a state."""


def limits(i: Input) -> Values:
    """The master's four limits, under the names every family's DBC gives them (each encodes its own scaling)."""
    lim = i.snapshot.limits
    return {
        "ChargeVoltageLimit": lim.charge_voltage.value,
        "DischargeVoltageLimit": lim.discharge_voltage.value,
        "ChargeCurrentLimit": lim.charge_current.value,
        "DischargeCurrentLimit": lim.discharge_current.value,
    }


def value(extreme: Extreme | None) -> float | None:
    return None if extreme is None else extreme.value


def cell_number(snapshot: BankSnapshot, extreme: Extreme | None, cells_in_series: int) -> int:
    """A cell's number across the stack (1-based): its index within its module, after the cells of the modules
    below it (the module's stack position). 0 when unknown."""
    if extreme is None:
        return 0
    module = snapshot.modules.get(extreme.module)
    position = extreme.module if module is None else module.position
    return (max(position, 1) - 1) * cells_in_series + extreme.index


def temperature_mean(snapshot: BankSnapshot) -> float | None:
    """The middle of the bank's highest and lowest temperature, as the BYD and SMA frames want an average."""
    tmax, tmin = value(snapshot.temperature_max), value(snapshot.temperature_min)
    if tmax is None or tmin is None:
        return tmax if tmin is None else tmin
    return (tmax + tmin) / 2


def online(snapshot: BankSnapshot) -> list[ModuleView]:
    return [m for _, m in sorted(snapshot.modules.items()) if m.lifecycle is Lifecycle.ONLINE]


@frozen
class ModuleExtremes:
    """The highest and lowest module voltage and temperature among the modules online, with stack positions."""

    voltage_max: tuple[float, int] | None
    voltage_min: tuple[float, int] | None
    temperature_max: tuple[float, int] | None
    temperature_min: tuple[float, int] | None


def module_extremes(snapshot: BankSnapshot) -> ModuleExtremes:
    volts = [(m.reading.voltage, m.position) for m in online(snapshot) if m.reading.voltage is not None]
    hot = [(m.reading.temperature_max, m.position) for m in online(snapshot) if m.reading.temperature_max is not None]
    cold = [(m.reading.temperature_min, m.position) for m in online(snapshot) if m.reading.temperature_min is not None]
    return ModuleExtremes(
        voltage_max=max(volts, key=lambda v: (v[0], -v[1]), default=None),
        voltage_min=min(volts, key=lambda v: (v[0], v[1]), default=None),
        temperature_max=max(hot, key=lambda v: (v[0], -v[1]), default=None),
        temperature_min=min(cold, key=lambda v: (v[0], v[1]), default=None),
    )


def modules_in_series(snapshot: BankSnapshot) -> int:
    """The longest string's module count (1 for a parallel LV bank)."""
    return max((len(s) for s in snapshot.strings), default=1) or 1


def energy_wh(snapshot: BankSnapshot, ah: float | None) -> float | None:
    """Ampere-hours as watt-hours at the bank's present voltage (what the public implementations do)."""
    if ah is None or snapshot.voltage is None:
        return None
    return ah * snapshot.voltage


def basic_state(i: Input) -> int:
    """0 sleep (the fail-safe set), 1 charge, 2 discharge, 3 idle: the state Pylon HV's 0x4250 reports."""
    s = i.snapshot
    if not s.valid:
        return 0
    if s.current is None or abs(s.current) < IDLE_A:
        return 3
    return 1 if s.current > 0 else 2


def charge_forbidden(i: Input) -> bool:
    s = i.snapshot
    return not s.flags.charge_enable or s.limits.charge_current.value <= 0


def discharge_forbidden(i: Input) -> bool:
    s = i.snapshot
    return not s.flags.discharge_enable or s.limits.discharge_current.value <= 0
