"""Bank snapshots built by hand, with round numbers the golden tests of the inverter profiles compute bytes from.

`hv_snapshot()`: one string of four modules in series (64 cells), the bank of a high-voltage tower:
  voltage 204.8 V, current -12.3 A (discharging), SOC 75 %, SOH 98 %, 75 of 100 Ah;
  CVL 220.8 V, DVL 179.2 V, CCL 50.0 A, DCL 80.0 A; charge and discharge enabled;
  cells 3.345 V (module 2, cell 7) and 3.301 V (module 1, cell 3); temperatures 25.4 degC (module 1, sensor 2)
  and 22.0 degC (module 2, sensor 1);
  modules at positions 1-4 (= addresses): voltages 51.2, 51.3, 51.1, 51.2 V; their highest temperatures 25.4,
  24.0, 23.5, 23.0 and lowest 23.0, 22.0, 22.5, 22.2 degC.
`lv_snapshot()`: four 48 V modules in parallel, each its own string: 52.31 V, +20.5 A (charging), SOC 80 %,
  SOH 97 %, 320 of 400 Ah; CVL 55.2 V, DVL 48.0 V, CCL 150.0 A, DCL 200.0 A; cells 3.345 / 3.301 V,
  temperatures 25.4 / 22.0 degC as above; modules 51.2-52.4 V.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from gateway.master.model import (
    Alarm,
    AlarmCode,
    BankSnapshot,
    Extreme,
    Flags,
    IsolateReason,
    Level,
    Lifecycle,
    Limit,
    Limits,
    ModuleReading,
    ModuleView,
    empty_snapshot,
)


def module(
    address: int,
    voltage: float,
    tmax: float,
    tmin: float,
    *,
    lifecycle: Lifecycle = Lifecycle.ONLINE,
    ccl: float = 100.0,
    dcl: float = 100.0,
) -> ModuleView:
    limits = Limits(Limit(ccl, "test"), Limit(dcl, "test"), Limit(56.0, "test"), Limit(46.0, "test"))
    reading = ModuleReading(address=address, voltage=voltage, temperature_max=tmax, temperature_min=tmin)
    return ModuleView(
        reading=reading,
        lifecycle=lifecycle,
        reason="",
        position=address,
        string=None,
        limits=limits,
        share=None,
        isolate_reason=IsolateReason.NONE,
    )


HV_MODULES = MappingProxyType(
    {
        1: module(1, 51.2, 25.4, 23.0),
        2: module(2, 51.3, 24.0, 22.0),
        3: module(3, 51.1, 23.5, 22.5),
        4: module(4, 51.2, 23.0, 22.2),
    }
)
LV_MODULES = MappingProxyType(
    {
        1: module(1, 52.3, 25.4, 23.0),
        2: module(2, 52.4, 24.0, 22.0),
        3: module(3, 51.2, 23.5, 22.5),
        4: module(4, 52.3, 23.0, 22.2),
    }
)


def _snapshot(base: dict[str, Any], values: dict[str, Any]) -> BankSnapshot:
    cvl, ccl, dcl, dvl = (values.pop(k, base.pop(k)) for k in ("cvl", "ccl", "dcl", "dvl"))
    base["limits"] = Limits(Limit(ccl, "test"), Limit(dcl, "test"), Limit(cvl, "test"), Limit(dvl, "test"))
    base["flags"] = Flags(charge_enable=ccl > 0, discharge_enable=dcl > 0)
    return replace(empty_snapshot(values.pop("t", 0.0)), **{**base, **values})


def hv_snapshot(**values: Any) -> BankSnapshot:
    base: dict[str, Any] = {
        "seq": 1,
        "valid": True,
        "reason": "",
        "voltage": 204.8,
        "current": -12.3,
        "soc": 75.0,
        "soh": 98.0,
        "remaining_ah": 75.0,
        "full_ah": 100.0,
        "cell_voltage_max": Extreme(3.345, 2, 7),
        "cell_voltage_min": Extreme(3.301, 1, 3),
        "temperature_max": Extreme(25.4, 1, 2),
        "temperature_min": Extreme(22.0, 2, 1),
        "cvl": 220.8,
        "ccl": 50.0,
        "dcl": 80.0,
        "dvl": 179.2,
        "modules": HV_MODULES,
        "strings": ((1, 2, 3, 4),),
    }
    return _snapshot(base, values)


def lv_snapshot(**values: Any) -> BankSnapshot:
    base: dict[str, Any] = {
        "seq": 1,
        "valid": True,
        "reason": "",
        "voltage": 52.31,
        "current": 20.5,
        "soc": 80.0,
        "soh": 97.0,
        "remaining_ah": 320.0,
        "full_ah": 400.0,
        "cell_voltage_max": Extreme(3.345, 2, 7),
        "cell_voltage_min": Extreme(3.301, 1, 3),
        "temperature_max": Extreme(25.4, 1, 2),
        "temperature_min": Extreme(22.0, 2, 1),
        "cvl": 55.2,
        "ccl": 150.0,
        "dcl": 200.0,
        "dvl": 48.0,
        "modules": LV_MODULES,
        "strings": ((1,), (2,), (3,), (4,)),
    }
    return _snapshot(base, values)


def alarm(code: str, level: Level) -> Alarm:
    return Alarm(code=AlarmCode(code), level=level, modules=(1,), since=0.0)


def hexes(data: bytes) -> str:
    return data.hex(" ").upper()


def assert_values(
    decoded: Mapping[int, Mapping[str, float | str]], expected: Mapping[int, Mapping[str, float | str]]
) -> None:
    """Every frame an independent decoder read agrees with the values expected, frame by frame."""
    assert decoded.keys() == expected.keys()
    for can_id, values in expected.items():
        assert decoded[can_id] == pytest.approx(values), hex(can_id)
