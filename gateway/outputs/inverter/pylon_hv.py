"""Pylon HV (Pylontech Force H and the batteries that copy it): request/response on 29-bit IDs
(dbc/inverters/pylon_hv.dbc).

Nothing goes out unasked. The inverter sends 0x4200: byte 0 = 0x00 asks for the ensemble information (0x4210 to
0x4290, in one burst), 0x02 for the system information (0x7310 to 0x7340). The sources disagree on the layout of
the numbers: little-endian with currents offset by 3000 A (bms-to-inverter, diyBMS's Pylon Force emulation, the
Sermatec and Deye HV protocol texts they cite), against big-endian without the offset (Battery-Emulator's
default, with both as options). The DBC is the common default; the options `byte_order` and `current_offset`
derive the other layouts, and `id_suffix` = 1 gives the IDs ending in 1 that Sofar wants (0x4211, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_le
from gateway.outputs.inverter.common import (
    basic_state,
    cell_number,
    charge_forbidden,
    discharge_forbidden,
    limits,
    module_extremes,
    modules_in_series,
    value,
)
from gateway.outputs.inverter.profiles import (
    Builder,
    Input,
    Mode,
    Options,
    Profile,
    Rule,
    SimFrame,
    Trigger,
    Wiring,
    parts,
)
from gateway.outputs.inverter.pylon_lv import FIRMWARE

DBC = "pylon_hv.dbc"
REQUEST = 0x4200
ENSEMBLE = parts(0x4210, 0x4220, 0x4230, 0x4240, 0x4250, 0x4260, 0x4270, 0x4280, 0x4290)
SYSTEM = parts(0x7310, 0x7320, 0x7330, 0x7340)
FORBIDDEN = 0xAA
"""0x4280: charging (byte 0) or discharging (byte 1) forbidden."""
CELL_VOLTAGE = 3.2
"""LiFePO4 nominal cell voltage: 0x7320's voltage level is cells x this."""
ALARMS = (
    "CellLowVoltage",
    "CellHighVoltage",
    "PackLowVoltage",
    "PackHighVoltage",
    "ChargeLowTemperature",
    "ChargeHighTemperature",
    "DischargeLowTemperature",
    "DischargeHighTemperature",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "ModuleLowVoltage",
    "ModuleHighVoltage",
)
"""0x4250's alarm (warning level) and protection bits: Alarm<name>, Protect<name>."""
ERRORS = (
    "VoltageSensor",
    "TemperatureSensor",
    "InternalComm",
    "InputOverVoltage",
    "InputReversal",
    "Relay",
    "Damage",
    "Other",
)
"""0x4250's error bits: Error<name>."""


def _status(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "BmsTemperature": value(s.temperature_max),
        "StateOfCharge": s.soc,
        "StateOfHealth": s.soh,
    }


def _cells(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
        "MaxCellVoltageNumber": cell_number(s, s.cell_voltage_max, i.cells_in_series),
        "MinCellVoltageNumber": cell_number(s, s.cell_voltage_min, i.cells_in_series),
    }


def _temperatures(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxCellTemperature": value(s.temperature_max),
        "MinCellTemperature": value(s.temperature_min),
        "MaxCellTemperatureNumber": 0 if s.temperature_max is None else s.temperature_max.index,
        "MinCellTemperatureNumber": 0 if s.temperature_min is None else s.temperature_min.index,
    }


def _bits(i: Input) -> Values:
    f = i.snapshot.flags
    values: dict[str, float | None] = {
        "BasicStatus": basic_state(i),
        "ForceChargeRequest": int(f.force_charge),
        "BalanceChargeRequest": int(f.full_charge),
        "CyclePeriod": 0,
    }
    names = [f"Error{e}" for e in ERRORS] + [f"{p}{a}" for p in ("Alarm", "Protect") for a in ALARMS]
    values.update({name: int(name in i.active) for name in names})
    return values


def _modules(i: Input) -> Values:
    m = module_extremes(i.snapshot)
    return {
        "MaxModuleVoltage": None if m.voltage_max is None else m.voltage_max[0],
        "MinModuleVoltage": None if m.voltage_min is None else m.voltage_min[0],
        "MaxModuleVoltageNumber": 0 if m.voltage_max is None else m.voltage_max[1],
        "MinModuleVoltageNumber": 0 if m.voltage_min is None else m.voltage_min[1],
    }


def _module_temperatures(i: Input) -> Values:
    m = module_extremes(i.snapshot)
    return {
        "MaxModuleTemperature": None if m.temperature_max is None else m.temperature_max[0],
        "MinModuleTemperature": None if m.temperature_min is None else m.temperature_min[0],
        "MaxModuleTemperatureNumber": 0 if m.temperature_max is None else m.temperature_max[1],
        "MinModuleTemperatureNumber": 0 if m.temperature_min is None else m.temperature_min[1],
    }


def _forbidden(i: Input) -> Values:
    return {
        "ChargeForbidden": FORBIDDEN if charge_forbidden(i) else 0,
        "DischargeForbidden": FORBIDDEN if discharge_forbidden(i) else 0,
    }


def _fault(_: Input) -> Values:
    return {"FaultExtension": 0}


def _versions(_: Input) -> Values:
    return {
        "HardwareVersion": 1,
        "HardwareMajor": 1,
        "HardwareMinor": 0,
        "SoftwareMajor": FIRMWARE[0],
        "SoftwareMinor": FIRMWARE[1],
        "SoftwareDevelopmentMajor": 0,
        "SoftwareDevelopmentMinor": 0,
    }


def _composition(i: Input) -> Values:
    series = modules_in_series(i.snapshot)
    cells = series * i.cells_in_series
    return {
        "TotalCells": cells,
        "ModulesInSeries": series,
        "CellsPerModule": i.cells_in_series,
        "VoltageLevel": int(cells * CELL_VOLTAGE),
        "CapacityAh": i.snapshot.full_ah,
    }


def _name1(_: Input) -> Values:
    return {"ManufacturerName1": ascii_le("PYLONTEC")}


def _name2(_: Input) -> Values:
    return {"ManufacturerName2": ascii_le("H")}


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x4210: _status,
        0x4220: limits,
        0x4230: _cells,
        0x4240: _temperatures,
        0x4250: _bits,
        0x4260: _modules,
        0x4270: _module_temperatures,
        0x4280: _forbidden,
        0x4290: _fault,
        0x7310: _versions,
        0x7320: _composition,
        0x7330: _name1,
        0x7340: _name2,
    }
)

ROWS: tuple[Profile, ...] = (
    Profile(
        name="pylon-hv",
        family="pylon_hv",
        dbc=DBC,
        high_voltage=True,
        mode=Mode.REQUEST,
        builders=BUILDERS,
        alarm_column="pylon-hv",
        extended=True,
        rules=(
            Rule("ensemble", Trigger(frozenset({REQUEST}), ((0, 0xFF, 0x00),)), ENSEMBLE),
            Rule("system", Trigger(frozenset({REQUEST}), ((0, 0xFF, 0x02),)), SYSTEM),
        ),
        expects=frozenset({REQUEST}),
        timeout=10.0,
        options=frozenset({"byte_order", "current_offset", "id_suffix"}),
        defaults=Options(byte_order="little", current_offset=True),
        offset_signals=frozenset({"BatteryCurrent", "ChargeCurrentLimit", "DischargeCurrentLimit"}),
        sim=(SimFrame(REQUEST, "00 00 00 00 00 00 00 00"), SimFrame(REQUEST, "02 00 00 00 00 00 00 00", 0.5, 10.0)),
        wiring=Wiring(
            'GoodWe HV, Deye HV, Sofar HV, Solis, Growatt and other inverters with a "Pylon HV" battery setting',
            menu='battery "Pylontech HV" / "PYLON" high voltage (CAN); Deye: byte_order="little", '
            "current_offset=true; Sofar: id_suffix=1",
        ),
        notes=(
            "Sources disagree on the layout: little-endian with a +3000 A current offset (the default; Deye needs"
            ' it) against big-endian without it: options `byte_order` ("little"/"big") and `current_offset`. DCL'
            " is sent positive (one source sends 3000 A - DCL). Sofar wants IDs ending in 1: `id_suffix = 1`."
        ),
        sources=(
            "Battery-Emulator PYLON-CAN; bms-to-inverter inverter-pylon-hv-can; diyBMS v4 pylonforce_canbus "
            "(Sermatec / Deye HV protocol texts)"
        ),
    ),
)
