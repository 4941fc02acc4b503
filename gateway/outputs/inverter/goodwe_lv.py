"""GoodWe LV: GoodWe's own low-voltage protocol (dbc/inverters/goodwe_lv.dbc), 11-bit IDs, little-endian,
broadcast every second: 0x453 packs, 0x455 alarms and warnings, 0x456 limits, 0x457 SOC and SOH in 0.01 %,
0x458 voltage, current and temperature. GoodWe LV inverters that offer a "Pylon" setting can use `pylontech`
instead; this profile is for the ones that want GoodWe's own frames."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values
from gateway.outputs.inverter.common import limits, value
from gateway.outputs.inverter.profiles import Builder, Group, Input, Mode, Profile, SimFrame, Wiring, parts

DBC = "goodwe_lv.dbc"
ALARMS = (
    "ChargeOverVoltage",
    "DischargeUnderVoltage",
    "OverTemperature",
    "UnderTemperature",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "Precharge",
    "Other",
    "ShortCircuit",
    "DischargeBreaker",
    "ChargeBreaker",
    "InternalComm",
)
WARNINGS = (
    "ChargeOverVoltage",
    "DischargeUnderVoltage",
    "OverTemperature",
    "UnderTemperature",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "InternalComm",
    "CellImbalance",
)


def _packs(i: Input) -> Values:
    return {"BatteryPacks": i.modules_count}


def _alarms(i: Input) -> Values:
    names = [f"Alarm{a}" for a in ALARMS] + [f"Warning{w}" for w in WARNINGS]
    return {name: int(name in i.active) for name in names}


def _soc(i: Input) -> Values:
    return {"StateOfCharge": i.snapshot.soc, "StateOfHealth": i.snapshot.soh}


def _status(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "BatteryTemperature": value(s.temperature_max),
    }


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {0x453: _packs, 0x455: _alarms, 0x456: limits, 0x457: _soc, 0x458: _status}
)

ROWS: tuple[Profile, ...] = (
    Profile(
        name="goodwe-lv",
        family="goodwe_lv",
        dbc=DBC,
        mode=Mode.BROADCAST,
        builders=BUILDERS,
        alarm_column="goodwe-lv",
        groups=(Group(parts(0x453, 0x455, 0x456, 0x457, 0x458), 1.0),),
        expects=frozenset({0x305}),
        timeout=30.0,
        sim=(SimFrame(0x305, "00 00 00 00 00 00 00 00"),),
        wiring=Wiring(
            "GoodWe LV hybrids (ES, EM, ET-LV) set to GoodWe's own lithium protocol",
            menu='battery "Lithium", the GoodWe LV protocol (for a "Pylon" setting use `pylontech`)',
        ),
        notes=(
            "One public implementation only (bms-to-inverter); its 0x455 bits follow it. GoodWe's own frames to the"
            " battery are not documented publicly: a 0x305 keep-alive counts if it sends one."
        ),
        sources="bms-to-inverter inverter-goodwe-can (the frame list of ../shared/protocol/inverters.md agrees)",
    ),
)
