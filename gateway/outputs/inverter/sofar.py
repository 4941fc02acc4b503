"""Sofar: Sofar's own HV battery protocol (dbc/inverters/sofar.dbc), 29-bit IDs, little-endian, each ID plus the
pack's `battery_id` in bits 12-15.

Every second: 0x351 limits, 0x355 SOC (capped at 99 %) and SOH, 0x356 measurements, 0x359 the pack's make-up,
0x35E manufacturer, 0x35F type and capacity, 0x30F the enable bits (byte 1: bit 0 discharge, bit 1 charge);
0x35A alarms only when they change. The inverter's queries, addressed to the pack by byte 0, are answered:
0x605 with 0x670 to 0x6C0, 0x705 with 0x770 to 0x784. Their contents beyond the pack, module and record numbers
are not documented publicly; like the public implementation, the answers carry those numbers and zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_le
from gateway.outputs.inverter.common import limits, modules_in_series, value
from gateway.outputs.inverter.profiles import (
    Builder,
    Group,
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

DBC = "sofar.dbc"
SOC_CAP = 99.0
"""Sofar stops charging at a reported 100 %; the public implementation never reports more than 99 %."""
REALTIME = {0x670: 0x00, 0x671: 0x01, 0x680: 0x02, 0x681: 0x03, 0x690: 0x0A, 0x691: 0x0B, 0x6A0: 0x0C, 0x6B0: 0x0D}
REALTIME |= {0x6C0: 0x0E}
"""0x605 inquiry -> answer, as answer frame ID -> inquiry byte."""
HISTORY = {0x770: 0, 0x771: 1, 0x772: 2, 0x773: 3, 0x780: 4, 0x781: 5, 0x782: 6, 0x783: 7, 0x784: 8}


def _soc(i: Input) -> Values:
    soc = i.snapshot.soc
    return {"StateOfCharge": None if soc is None else min(soc, SOC_CAP), "StateOfHealth": i.snapshot.soh}


def _status(i: Input) -> Values:
    s = i.snapshot
    return {"BatteryVoltage": s.voltage, "BatteryCurrent": s.current, "BatteryTemperature": value(s.temperature_max)}


def _configuration(i: Input) -> Values:
    series = modules_in_series(i.snapshot)
    return {
        "ParallelPacks": max(1, len(i.snapshot.strings)),
        "ModulesInSeries": series,
        "CanVersion": 1,
        "CellsInSeries": series * i.cells_in_series,
    }


def _alarms(_: Input) -> Values:
    return {"AlarmBits": 0, "WarningBits": 0}


def _manufacturer(_: Input) -> Values:
    return {"ManufacturerName": ascii_le("BMSGATE")}


def _info(i: Input) -> Values:
    return {
        "BatteryType": 1,
        "VersionMajor": FIRMWARE[0],
        "VersionMinor": FIRMWARE[1],
        "VersionPatch": 0,
        "NominalCapacity": i.snapshot.full_ah,
        "ManufacturerId": 0,
    }


def _enables(i: Input) -> Values:
    f = i.snapshot.flags
    return {"RemoteCommand": 0, "DischargeEnable": int(f.discharge_enable), "ChargeEnable": int(f.charge_enable)}


def _realtime(i: Input) -> Values:
    """An answer to 0x605 (pack, inquiry, sub-target): the pack, the sub-target, record 0."""
    r = i.request.ljust(8, b"\0")
    return {"PackId": i.options.battery_id, "SubTarget": r[2], "Record": 0}


def _history(i: Input) -> Values:
    """An answer to 0x705 (pack, inquiry, record, sub-target)."""
    r = i.request.ljust(8, b"\0")
    return {"PackId": i.options.battery_id, "SubTarget": r[3], "Record": r[2]}


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x351: limits,
        0x355: _soc,
        0x356: _status,
        0x359: _configuration,
        0x35A: _alarms,
        0x35E: _manufacturer,
        0x35F: _info,
        0x30F: _enables,
        **dict.fromkeys(REALTIME, _realtime),
        **dict.fromkeys(HISTORY, _history),
    }
)


def _query(can_id: int, inquiry: int) -> Trigger:
    return Trigger(frozenset({can_id}), ((0, 0xFF, "battery_id"), (1, 0xFF, inquiry)))


RULES = (
    *(Rule(f"query {inquiry:#04x}", _query(0x605, inquiry), parts(answer)) for answer, inquiry in REALTIME.items()),
    *(Rule(f"history {inquiry}", _query(0x705, inquiry), parts(answer)) for answer, inquiry in HISTORY.items()),
)

ROWS: tuple[Profile, ...] = (
    Profile(
        name="sofar",
        family="sofar",
        dbc=DBC,
        high_voltage=True,
        mode=Mode.BROADCAST,
        builders=BUILDERS,
        alarm_column="sofar",
        extended=True,
        groups=(
            Group(parts(0x351, 0x355, 0x356, 0x359, 0x35E, 0x35F, 0x30F), 1.0),
            Group(parts(0x35A), on_change=True),
        ),
        rules=RULES,
        urgent=frozenset({0x351, 0x30F}),
        expects=frozenset({0x605, 0x705}),
        timeout=120.0,
        options=frozenset({"battery_id"}),
        sim=(
            SimFrame(0x605, "00 00 00 00 00 00 00 00", 0.3, 5.0),
            SimFrame(0x705, "00 04 01 00 00 00 00 00", 0.6, 10.0),
        ),
        wiring=Wiring(
            "Sofar HYD HV hybrids with Sofar's own battery protocol",
            menu='battery "Default" / Sofar BTS protocol, battery ID as `battery_id` (for "PYLON" use `pylon-hv`'
            " with id_suffix = 1)",
        ),
        notes=(
            "Every ID plus `battery_id` << 12; SOC capped at 99 %; 0x30F enables: byte 1 bit 0 discharge, bit 1 "
            "charge; 0x35A when it changes. Queries 0x605/0x705 addressed to the pack are answered with its numbers "
            "(their other contents are not documented publicly). Sofar queries rarely: the silence timeout is 120 s."
        ),
        sources="Battery-Emulator SOFAR-CAN; ../shared/protocol/inverters.md (no second implementation found)",
    ),
)
