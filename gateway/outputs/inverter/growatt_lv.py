"""Growatt LV (Growatt BMS CAN protocol, low voltage, rev. 04): request/response on 11-bit IDs, big-endian
(dbc/inverters/growatt_lv.dbc). The inverter sends 0x301 every second; the battery answers 0x311 to 0x321.

0x315 to 0x318 (sixteen single cell voltages of one battery) are not sent: the bank has no single 16-cell
battery to report, and the inverter reads the bank's extremes from 0x319. 0x313 carries the voltage in 0.01 V;
0x319 bit 7 is charge enable and bit 6 discharge enable.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_be
from gateway.outputs.inverter.common import IDLE_A, cell_number, online, value
from gateway.outputs.inverter.profiles import (
    Builder,
    Input,
    Mode,
    Profile,
    Rule,
    SimFrame,
    Trigger,
    Wiring,
    parts,
)
from gateway.outputs.inverter.pylon_lv import FIRMWARE

DBC = "growatt_lv.dbc"
REQUEST = 0x301
ANSWER = parts(0x311, 0x312, 0x313, 0x314, 0x319, 0x320, 0x321)
MANUFACTURER = "BG"
"""ASCII in 0x312 and 0x320 (bms-gateway); the public implementations put a placeholder there."""
ALARMS = (
    "PackUnderVoltage",
    "PackOverVoltage",
    "CellUnderVoltage",
    "CellOverVoltage",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "CellImbalance",
    "ChargeUnderTemperature",
    "DischargeUnderTemperature",
    "ChargeOverTemperature",
    "DischargeOverTemperature",
)
PROTECTIONS = (*ALARMS, "ShortCircuit", "SystemError")
"""0x312's bits: Protect<name> (bytes 0-1) and Alarm<name> (bytes 2-3; Alarm... has no short circuit, no system
error, but an internal communication bit)."""


def _state(i: Input) -> int:
    """1 idle, 2 charging, 3 discharging."""
    current = i.snapshot.current
    if current is None or abs(current) < IDLE_A:
        return 1
    return 2 if current > 0 else 3


def _limits(i: Input) -> Values:
    lim = i.snapshot.limits
    state = _state(i)
    return {
        "ChargeVoltageLimit": lim.charge_voltage.value,
        "ChargeCurrentLimit": lim.charge_current.value,
        "DischargeCurrentLimit": lim.discharge_current.value,
        "StorageStatus": state,
        "ChargeState": state,
    }


def _alarms(i: Input) -> Values:
    names = [f"Protect{p}" for p in PROTECTIONS] + [f"Alarm{a}" for a in ALARMS] + ["AlarmInternalComm"]
    values: dict[str, float | None] = {name: int(name in i.active) for name in names}
    values["PackNumber"] = 1
    values["ManufacturerCode"] = ascii_be(MANUFACTURER, 2)
    values["TotalCells"] = i.cells_in_series
    return values


def _status(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "BatteryTemperature": value(s.temperature_max),
        "StateOfCharge": s.soc,
        "StateOfHealth": s.soh,
    }


def _capacity(i: Input) -> Values:
    s = i.snapshot
    vmax, vmin = value(s.cell_voltage_max), value(s.cell_voltage_min)
    cycles = [m.reading.cycle_count for m in online(s) if m.reading.cycle_count is not None]
    return {
        "RemainingCapacity": s.remaining_ah,
        "FullCapacity": s.full_ah,
        "CellVoltageDelta": None if vmax is None or vmin is None else vmax - vmin,
        "CycleCount": max(cycles, default=0),
    }


def _cells(i: Input) -> Values:
    s, f = i.snapshot, i.snapshot.flags
    return {
        "CellType": 0,
        "ForceChargeRequest2": int(f.force_charge),
        "ForceChargeRequest1": int(f.force_charge),
        "DischargeEnable": int(f.discharge_enable),
        "ChargeEnable": int(f.charge_enable),
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
        "MaxCellNumber": cell_number(s, s.cell_voltage_max, i.cells_in_series),
        "MinCellNumber": cell_number(s, s.cell_voltage_min, i.cells_in_series),
        "FaultyPack": 0,
    }


def _info(_: Input) -> Values:
    return {"Manufacturer": ascii_be(MANUFACTURER, 2), "HardwareVersion": 1, "SoftwareVersion": FIRMWARE[1]}


def _reserved(_: Input) -> Values:
    return {"Reserved": 0}


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {0x311: _limits, 0x312: _alarms, 0x313: _status, 0x314: _capacity, 0x319: _cells, 0x320: _info, 0x321: _reserved}
)

ROWS: tuple[Profile, ...] = (
    Profile(
        name="growatt-lv",
        family="growatt_lv",
        dbc=DBC,
        mode=Mode.REQUEST,
        builders=BUILDERS,
        alarm_column="growatt-lv",
        rules=(Rule("poll", Trigger(frozenset({REQUEST})), ANSWER),),
        expects=frozenset({REQUEST}),
        timeout=10.0,
        sim=(SimFrame(REQUEST, "00 00 00 00 00 00 00 00"),),
        wiring=Wiring(
            "Growatt LV hybrids (SPF, SPH LV) with Growatt's own lithium protocol",
            menu='battery type "Lithium", protocol "Growatt" / Li-ion type 1 (for "Pylon" use `pylontech`)',
        ),
        notes=(
            "0x313 voltage in 0.01 V; 0x319 bit 7 charge and bit 6 discharge enable. The status word of 0x311: "
            "state in bits 0-1 and 10-11 (one source), one source puts it elsewhere. 0x315-0x318 (single cells of "
            "one battery) are not sent."
        ),
        sources="Battery-Emulator GROWATT-LV-CAN; bms-to-inverter inverter-growatt-can",
    ),
)
