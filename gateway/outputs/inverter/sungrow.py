"""Sungrow: the SBR battery's own CAN, 11-bit IDs, little-endian (dbc/inverters/sungrow.dbc).

Handshake: nothing goes out until the inverter speaks (0x100 to 0x109, or 0x151/0x191 when it looks for a BYD
battery). Then every second the head frames (0x402, 0x500 with the SOC, 0x401), the battery's data on 0x700 to
0x706, and its copies on 0x000 to 0x006 (0x005 with the end stop: 1 full when charging is forbidden, 2 empty at
SOC 0) and 0x501 to 0x506 (0x504 with the current's sign reversed), as the one public implementation sends them.
Its per-module frames (serials, production dates, cell types, module SOCs: 0x007 to 0x00E, 0x013 to 0x01E, 0x707
to 0x71F) and the Modbus-over-CAN answers on 0x1E0 are not sent: the SBR's inverter runs without them in that
implementation's reports, and they describe modules the gateway does not have. Beta, as it is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values
from gateway.outputs.inverter.common import energy_wh, limits, online, value
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

DBC = "sungrow.dbc"
HEARD = frozenset({0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x108, 0x109, 0x151, 0x191})
RUN, STANDBY = 2, 1
"""0x705 byte 0: the battery's state."""
FULL, EMPTY = 1, 2
"""0x005 byte 1: the end stop."""
MODEL_BASE = 8420
"""0x705 model id: 8420 + modules (SBR096 = 8423 with three)."""


def _head402(_: Input) -> Values:
    return {"HeadByte2": 0x55}


def _init500(i: Input) -> Values:
    return {
        "InitByte0": 0x01,
        "InitByte1": 0x01,
        "InitByte2": 0x03,
        "InitByte3": 0xFF,
        "InitByte5": 0x01,
        "StateOfCharge": i.snapshot.soc,
    }


def _zero(name: str) -> Builder:
    return lambda _: {name: 0}


def _charge(i: Input) -> Values:
    s = i.snapshot
    return {
        "StateOfCharge": s.soc,
        "StateOfHealth": s.soh,
        "RemainingEnergy": energy_wh(s, s.remaining_ah),
        "FullEnergy": energy_wh(s, s.full_ah),
    }


def _energy(_: Input) -> Values:
    return {"ChargedEnergy": 0, "DischargedEnergy": 0}


def _status(sign: float) -> Builder:
    def build(i: Input) -> Values:
        s = i.snapshot
        return {
            "BatteryVoltage": s.voltage,
            "BatteryCurrent": None if s.current is None else sign * s.current,
            "BatteryVoltage2": s.voltage,
            "MaxTemperature": value(s.temperature_max),
        }

    return build


def _state(end_stop: bool) -> Builder:
    def build(i: Input) -> Values:
        s = i.snapshot
        stop = 0
        if end_stop:
            if not s.flags.charge_enable or s.limits.charge_current.value <= 0:
                stop = FULL
            elif s.soc is not None and s.soc <= 0:
                stop = EMPTY
        return {
            "BatteryState": RUN if s.valid else STANDBY,
            "EndStop": stop,
            "AlwaysOne": 1,
            "ModelId": MODEL_BASE + len(online(s)),
            "StateVoltage": s.voltage,
        }

    return build


def _cells(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxTemperature": value(s.temperature_max),
        "MinTemperature": value(s.temperature_min),
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
    }


def _copies(base: int, *, end_stop: bool = False, sign: float = 1.0) -> dict[int, Builder]:
    return {
        base + 1: limits,
        base + 2: _charge,
        base + 3: _energy,
        base + 4: _status(sign),
        base + 5: _state(end_stop),
        base + 6: _cells,
    }


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x402: _head402,
        0x500: _init500,
        0x401: _zero("HeadByte0"),
        0x000: _zero("RunByte0"),
        0x700: _zero("RunByte0"),
        **_copies(0x000, end_stop=True),
        **_copies(0x700),
        **_copies(0x500, sign=-1.0),
    }
)

SET = parts(
    0x402, 0x500, 0x401,
    0x000, 0x001, 0x002, 0x003, 0x004, 0x005, 0x006,
    0x700, 0x701, 0x702, 0x703, 0x704, 0x705, 0x706,
    0x501, 0x502, 0x503, 0x504, 0x505, 0x506,
)  # fmt: skip

ROWS: tuple[Profile, ...] = (
    Profile(
        name="sungrow",
        family="sungrow",
        dbc=DBC,
        high_voltage=True,
        mode=Mode.HANDSHAKE,
        builders=BUILDERS,
        alarm_column="sungrow",
        groups=(Group(SET, 1.0),),
        cyclic_in=frozenset({"started"}),
        rules=(Rule("start", Trigger(HEARD), (), frozenset({"idle"}), then="started"),),
        paired=frozenset({"started"}),
        urgent=frozenset({0x001, 0x005, 0x501, 0x505, 0x701, 0x705}),
        expects=HEARD,
        timeout=30.0,
        sim=(
            SimFrame(0x101, "65 00 00 00 00 00 00 00", 0.0, None),
            SimFrame(0x100, "00 00 00 00 00 00 00 00", 0.1, 1.0),
            SimFrame(0x108, "00 00 00 00 00 00 00 00", 0.2, 1.0),
        ),
        wiring=Wiring(
            "Sungrow SH-RT, SH-RS and SH-T hybrids set to a Sungrow SBR battery",
            menu="battery type: Sungrow (SBR); for a BYD setting use `byd-hvs`",
        ),
        notes=(
            "Starts when the inverter speaks. Its data on 0x701-0x706 with copies on 0x001-0x006 (end stop) and "
            "0x501-0x506 (current sign reversed), head frames 0x402/0x500/0x401. Per-module frames and Modbus over "
            "CAN (0x1E0) are not sent. One public implementation, itself beta; no alarm bits are decoded."
        ),
        sources="Battery-Emulator SUNGROW-CAN (no second implementation found)",
    ),
)
