"""Builders for module readings and master runs with explicit timestamps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway import config
from gateway.master.inputs import TickInput
from gateway.master.master import Master, Tick
from gateway.master.model import InverterInfo, ModuleReading

GROUPS = ("status", "limits", "cells", "temperatures", "alarms", "info", "capacity")


def reading(address: int, t: float, **values: Any) -> ModuleReading:
    """A healthy typical module (16 cells, 100 Ah, 100 A) resting at 60 % SOC, fresh at `t`."""
    base: dict[str, Any] = {
        "address": address,
        "voltage": 53.0,
        "current": 0.0,
        "soc": 60.0,
        "soh": 98.0,
        "module_state": 1,
        "alive": int(t * 10) % 16,
        "charge_current_limit": 100.0,
        "discharge_current_limit": 100.0,
        "charge_voltage_limit": 56.0,
        "discharge_voltage_limit": 46.0,
        "cell_voltage_max": 3.32,
        "cell_voltage_min": 3.30,
        "cell_voltage_max_index": 2,
        "cell_voltage_min_index": 5,
        "cell_count": 16,
        "temperature_max": 25.0,
        "temperature_min": 22.0,
        "temperature_max_index": 1,
        "temperature_min_index": 2,
        "firmware": (1, 4, 2),
        "cells_in_series": 16,
        "nominal_capacity": 100.0,
        "cycle_count": 100,
        "remaining_capacity": None,
        "full_capacity": 100.0,
        "seen": dict.fromkeys(GROUPS, t),
        "first_seen": 0.0,
    }
    base.update(values)
    if base["remaining_capacity"] is None:
        base["remaining_capacity"] = base["full_capacity"] * base["soc"] / 100.0
    return ModuleReading(**base)


def configured(**sections: Mapping[str, Any]) -> config.Config:
    """A validated config from TOML-like sections, e.g. `configured(bank={"strings": [[1, 2]]})`."""
    return config.parse(dict(sections))


def master(**sections: Mapping[str, Any]) -> Master:
    return Master(configured(**sections))


def tick_input(
    cfg: config.Config,
    now: float,
    readings: Mapping[int, ModuleReading],
    *,
    dt: float = 0.1,
    inverter: InverterInfo | None = None,
    starting: bool = False,
) -> TickInput:
    """What one tick of the master hands its rules, for driving a rule module directly."""
    return TickInput(now, dt, readings, inverter, cfg.bank, cfg.limits, starting)


def run(
    m: Master,
    start: float,
    stop: float,
    readings: Callable[[float], Mapping[int, ModuleReading]],
    step: float = 0.1,
) -> Tick:
    """Step the master at `step` intervals over [start, stop]; returns the last tick."""
    n = round((stop - start) / step)
    tick = None
    for i in range(n + 1):
        t = start + i * step
        tick = m.step(t, readings(t))
    assert tick is not None
    return tick


def bank(*addresses: int, **values: Any) -> Callable[[float], dict[int, ModuleReading]]:
    """Readings of identical healthy modules at every t."""
    return lambda t: {a: reading(a, t, **values) for a in addresses}
