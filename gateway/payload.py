"""The snapshot as JSON-ready dicts: what replay writes, what MQTT publishes, what Modbus and HA read from.

Keys are stable: installers script against them. Floats are rounded to 3 decimals (mV, 0.001 A), which keeps
payloads small and every value exact to its sensor's resolution.

Points in time (`t`, an alarm's `since`, the inverter's `last_seen`) are ISO 8601 UTC strings: the master's
monotonic times converted at this edge by a `gateway.clock.Anchor` (`wall`). Durations (a module's `age`) stay
seconds.
"""

from __future__ import annotations

from typing import Any

from gateway.clock import UNIX, Anchor
from gateway.master.model import (
    ALARM_BITS,
    Alarm,
    BankSnapshot,
    Energy,
    Extreme,
    Lifecycle,
    Limit,
    ModuleReading,
    ModuleState,
    ModuleView,
)


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _extreme(e: Extreme | None) -> dict[str, Any] | None:
    return None if e is None else {"value": _r(e.value), "module": e.module, "cell": e.index}


def _limit(limit: Limit | None) -> dict[str, Any] | None:
    return None if limit is None else {"value": _r(limit.value), "bound_by": limit.bound_by}


def _state_name(value: int | None) -> str | None:
    if value is None:
        return None
    try:
        return ModuleState(value).name.lower()
    except ValueError:
        return None


def energy_dict(energy: Energy | None) -> dict[str, Any] | None:
    """Lifetime energy in kWh (to the Wh), or None before the history has been read."""
    if energy is None:
        return None
    return {"charged_kwh": _r(energy.charged_wh / 1000.0), "discharged_kwh": _r(energy.discharged_wh / 1000.0)}


def module_energy(s: BankSnapshot, address: int) -> Energy | None:
    """A module's lifetime energy in a snapshot (None when the snapshot carries none)."""
    return None if s.energy is None else s.energy.modules.get(address)


def alarm_dict(alarm: Alarm, *, wall: Anchor = UNIX) -> dict[str, Any]:
    return {
        "code": alarm.code,
        "level": str(alarm.level),
        "modules": list(alarm.modules),
        "since": wall.iso(alarm.since),
        "detail": alarm.detail,
    }


def bank_dict(s: BankSnapshot, *, wall: Anchor = UNIX) -> dict[str, Any]:
    """The bank part of a snapshot (everything but the per-module details); `wall` converts its times."""
    lim = s.limits
    delta = None
    if s.cell_voltage_max is not None and s.cell_voltage_min is not None:
        delta = s.cell_voltage_max.value - s.cell_voltage_min.value
    return {
        "seq": s.seq,
        "t": wall.iso(s.t),
        "valid": s.valid,
        "reason": s.reason,
        "voltage": _r(s.voltage),
        "current": _r(s.current),
        "power": _r(s.power),
        "soc": _r(s.soc),
        "soh": _r(s.soh),
        "remaining_ah": _r(s.remaining_ah),
        "full_ah": _r(s.full_ah),
        "cell_voltage_max": _extreme(s.cell_voltage_max),
        "cell_voltage_min": _extreme(s.cell_voltage_min),
        "cell_voltage_delta": _r(delta),
        "temperature_max": _extreme(s.temperature_max),
        "temperature_min": _extreme(s.temperature_min),
        "temperature_gradient": _r(s.temperature_gradient),
        "limits": {
            "charge_current": _limit(lim.charge_current),
            "discharge_current": _limit(lim.discharge_current),
            "charge_voltage": _limit(lim.charge_voltage),
            "discharge_voltage": _limit(lim.discharge_voltage),
        },
        "flags": {
            "charge_enable": s.flags.charge_enable,
            "discharge_enable": s.flags.discharge_enable,
            "force_charge": s.flags.force_charge,
            "full_charge": s.flags.full_charge,
        },
        "fan_duty": s.fan_duty,
        "energy": energy_dict(None if s.energy is None else s.energy.bank),
        "modules_online": list(s.addresses(Lifecycle.ONLINE)),
        "modules_pending": list(s.addresses(Lifecycle.PENDING)),
        "modules_isolated": list(s.addresses(Lifecycle.ISOLATED)),
        "modules_offline": list(s.addresses(Lifecycle.OFFLINE)),
        "modules_rejected": list(s.addresses(Lifecycle.REJECTED)),
        "strings": [list(string) for string in s.strings],
        "alarms": [alarm_dict(a, wall=wall) for a in s.alarms],
        "inverter": None
        if s.inverter is None
        else {"name": s.inverter.name, "last_seen": wall.iso(s.inverter.last_seen)},
    }


def age(reading: ModuleReading, now: float) -> float | None:
    """Seconds since the module's last ModuleStatus (None before the first)."""
    status_seen = reading.seen.get("status")
    return _r(now - status_seen) if status_seen is not None else None


def module_dict(view: ModuleView, now: float, energy: Energy | None = None) -> dict[str, Any]:
    """One module as the master sees it (without the per-cell arrays: see `cells_dict`), with its lifetime
    `energy` (`module_energy` of the snapshot)."""
    r = view.reading
    lim = view.limits
    return {
        "address": r.address,
        "position": view.position,
        "string": view.string,
        "state": str(view.lifecycle),
        "reason": view.reason,
        "isolate_reason": view.isolate_reason.name.lower(),
        "age": age(r, now),
        "voltage": _r(r.voltage),
        "current": _r(r.current),
        "power": _r(r.voltage * r.current) if r.voltage is not None and r.current is not None else None,
        "soc": _r(r.soc),
        "soh": _r(r.soh),
        "module_state": _state_name(r.module_state),
        "cell_voltage_max": _r(r.cell_voltage_max),
        "cell_voltage_min": _r(r.cell_voltage_min),
        "cell_voltage_max_index": r.cell_voltage_max_index,
        "cell_voltage_min_index": r.cell_voltage_min_index,
        "cell_voltage_delta": _r(r.cell_voltage_max - r.cell_voltage_min)
        if r.cell_voltage_max is not None and r.cell_voltage_min is not None
        else None,
        "balancing_cells": r.balancing_cells,
        "temperature_max": _r(r.temperature_max),
        "temperature_min": _r(r.temperature_min),
        "power_stage_temperature": _r(r.power_stage_temperature),
        "remaining_ah": _r(r.remaining_capacity),
        "full_ah": _r(r.full_capacity),
        "internal_resistance": _r(r.internal_resistance),
        "cycle_count": r.cycle_count,
        "firmware": ".".join(map(str, r.firmware)) if r.firmware else None,
        "reported_limits": {
            "charge_current": _r(r.charge_current_limit),
            "discharge_current": _r(r.discharge_current_limit),
            "charge_voltage": _r(r.charge_voltage_limit),
            "discharge_voltage": _r(r.discharge_voltage_limit),
        },
        "limits": None
        if lim is None
        else {
            "charge_current": _limit(lim.charge_current),
            "discharge_current": _limit(lim.discharge_current),
            "charge_voltage": _limit(lim.charge_voltage),
            "discharge_voltage": _limit(lim.discharge_voltage),
        },
        "share": _r(view.share),
        "warnings": [ALARM_BITS[i] for i in range(16) if r.warnings >> i & 1],
        "protections": [ALARM_BITS[i] for i in range(16) if r.protections >> i & 1],
        "fault_code": r.fault_code,
        "mismatch": list(view.mismatch),
        "energy": energy_dict(energy),
    }


def cells_dict(view: ModuleView) -> dict[str, Any]:
    """A module's per-cell values: voltages (V), balancing flags, sensor temperatures (degC, null = no sensor)."""
    r = view.reading
    return {
        "address": r.address,
        "voltages": [_r(v) for v in r.cell_voltages],
        "balancing": list(r.cell_balancing),
        "temperatures": [_r(v) for v in r.cell_temperatures],
    }


def snapshot_dict(s: BankSnapshot, *, wall: Anchor = UNIX) -> dict[str, Any]:
    """The whole snapshot: the bank, and per module its values and cells (replay's JSON lines)."""
    out = bank_dict(s, wall=wall)
    out["modules"] = {
        str(a): {**module_dict(v, s.t, module_energy(s, a)), "cells": cells_dict(v)} for a, v in s.modules.items()
    }
    return out


def lookup(payload: dict[str, Any], path: str) -> Any:
    """A value by dotted path ("limits.charge_current.value"); None where any step is missing."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
