"""The BYD Battery-Box HVS family, 11-bit IDs, big-endian: BYD's own CAN (byd-hvs, dbc/inverters/byd_hvs.dbc) and
its dialect inside SMA's battery CAN (sma-hv, sma-sbs, dbc/inverters/sma_byd.dbc).

- byd-hvs (GoodWe HV, Deye HV, Sungrow, Solis): nothing goes out until the inverter speaks (0x091, 0x0D1, 0x111,
  0x151 or 0x191). Then the identity frames once (0x250, 0x290, 0x2D0, 0x3D0 x 4), and again whenever 0x151
  asks (byte 0 bit 0); limits 0x110 every 2 s (DCL before CCL), 0x150, 0x1D0 and 0x210 every 10 s, alarms 0x190
  every 60 s.
- sma-hv (Sunny Tripower / Sunny Boy Smart Energy): nothing until the inverter asks to pair (0x5E7 or 0x660);
  then the pairing frames one every 250 ms (0x558, 0x598 serial, 0x5D8 "BYD", 0x618 x 4, then the data frames);
  once paired, 0x358 (limits) and 0x158 (faults and warnings) every 2 s, 0x518, 0x4D8 and 0x3D8 every 10 s,
  0x458 every 60 s.
- sma-sbs (Sunny Boy Storage): the whole set, identity frames included, every 0.1 s from the start, and at once
  on a pairing request.

The real battery transmits only while the inverter's hardware enable line is high. The gateway does not read
that line: it follows the CAN handshake only, and the enable output of the inverter may stay unconnected.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_be
from gateway.outputs.inverter.common import energy_wh, limits, online, temperature_mean, value
from gateway.outputs.inverter.profiles import (
    Builder,
    Group,
    Input,
    Mode,
    Options,
    Profile,
    Rule,
    SimFrame,
    Trigger,
    Wiring,
    parts,
    repeated,
)
from gateway.outputs.inverter.pylon_lv import FIRMWARE

NAME = ("Battery", "-Box Pr", "emium H", "VS")
"""Battery-Box Premium HVS, seven characters per frame after an index byte."""
SERIAL = 1
"""The serial number the identity frames carry."""
READY, STOP = 3, 2
"""0x4D8 byte 6: the battery's state."""
_ACTIVE, _CLEAR = 1, 2
"""0x158: each message is two bits, 01 active, 10 not."""


def _energy_kwh(i: Input) -> float | None:
    wh = energy_wh(i.snapshot, i.snapshot.full_ah)
    return None if wh is None else wh / 1000


def _states(i: Input) -> Values:
    s = i.snapshot
    return {
        "StateOfCharge": s.soc,
        "StateOfHealth": s.soh,
        "RemainingCapacity": s.remaining_ah,
        "FullCapacity": s.full_ah,
    }


def _byd_alarms(_: Input) -> Values:
    return {"AlarmByte0": 0, "AlarmByte1": 0, "AlarmByte2": 3}


def _byd_info(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "AverageTemperature": temperature_mean(s),
        "InfoByte6": 0x03,
        "InfoByte7": 0x08,
    }


def _temperatures(i: Input) -> Values:
    s = i.snapshot
    return {"MaxTemperature": value(s.temperature_max), "MinTemperature": value(s.temperature_min)}


def _byd_identity(i: Input) -> Values:
    return {
        "FirmwareMajor": FIRMWARE[0],
        "FirmwareMinor": FIRMWARE[1],
        "Model": 0x66,
        "Capacity": _energy_kwh(i),
        "IdentityByte6": 0x02,
        "IdentityByte7": 0x09,
    }


def _serial(_: Input) -> Values:
    return {"SerialNumber": SERIAL}


def _vendor(_: Input) -> Values:
    return {"VendorIndex": 0, "VendorName": ascii_be("BYD", 7)}


def _name(i: Input) -> Values:
    return {"NameIndex": i.part, "NameText": ascii_be(NAME[i.part], 7)}


BYD_BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x110: limits,
        0x150: _states,
        0x190: _byd_alarms,
        0x1D0: _byd_info,
        0x210: _temperatures,
        0x250: _byd_identity,
        0x290: _serial,
        0x2D0: _vendor,
        0x3D0: _name,
    }
)

# -- the SMA dialect ---------------------------------------------------------------------------------------------------

FAULTS = (
    "SystemDefect",
    "CellOverVoltage",
    "CellUnderVoltage",
    "HighTemperature",
    "LowTemperature",
    "HighTemperature2",
    "LowTemperature2",
    "Overload",
    "Overload2",
    "SwitchPosition",
    "ShortCircuit",
    "HardwareFault",
    "Imbalance",
    "ServiceLife",
    "ThermalManagement",
    "HardwareFault2",
)
"""0x158 bytes 0-3, two bits per message (Fault<name>)."""
WARNINGS = (*FAULTS[:7], "SelfDiagnosis", "SelfDiagnosis2", *FAULTS[9:])
"""0x158 bytes 4-7 (Warning<name>): the faults' list, with self-diagnosis where the faults have overload."""


def _faults(i: Input) -> Values:
    names = [f"Fault{f}" for f in FAULTS] + [f"Warning{w}" for w in WARNINGS]
    return {name: _ACTIVE if name in i.active else _CLEAR for name in names}


def _sma_states(i: Input) -> Values:
    s = i.snapshot
    return {"StateOfCharge": s.soc, "StateOfHealth": s.soh, "RemainingCapacity": s.remaining_ah}


def _sma_energy(_: Input) -> Values:
    return {"ChargedEnergy": 0, "DischargedEnergy": 0}


def _sma_info(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "AverageTemperature": temperature_mean(s),
        "BatteryState": READY if s.valid else STOP,
        "InfoByte7": 0x08,
    }


def _sma_cells(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxTemperature": value(s.temperature_max),
        "MinTemperature": value(s.temperature_min),
        "CellVoltageSum": s.voltage,
        "MinCellVoltage": value(s.cell_voltage_min),
        "MaxCellVoltage": value(s.cell_voltage_max),
    }


def _sma_identity(i: Input) -> Values:
    return {
        "SoftwareMajor": FIRMWARE[0],
        "SoftwareMinor": FIRMWARE[1],
        "Modules": len(online(i.snapshot)),
        "Capacity": _energy_kwh(i),
        "IdentityByte6": 0x04,
        "IdentityByte7": 0x09,
    }


SMA_BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x158: _faults,
        0x358: limits,
        0x3D8: _sma_states,
        0x458: _sma_energy,
        0x4D8: _sma_info,
        0x518: _sma_cells,
        0x558: _sma_identity,
        0x598: _serial,
        0x5D8: _vendor,
        0x618: _name,
    }
)

# -- the rows ----------------------------------------------------------------------------------------------------------

BYD_HEARD = frozenset({0x091, 0x0D1, 0x111, 0x151, 0x191})
BYD_IDENTITY = (*parts(0x250, 0x290, 0x2D0), *repeated(0x3D0, 4))
SMA_HEARD = frozenset({0x360, 0x3E0, 0x420, 0x560, 0x5E0, 0x5E7, 0x660})
SMA_PAIRING = frozenset({0x5E7, 0x660})
SMA_IDENTITY = (*parts(0x558, 0x598, 0x5D8), *repeated(0x618, 4))
SMA_DATA = parts(0x358, 0x3D8, 0x458, 0x4D8, 0x518)
SMA_SIM = (
    SimFrame(0x5E7, "00 00 00 00 00 00 00 00", 0.0, None),
    SimFrame(0x360, "0F A0 00 00 00 00 00 00", 0.2, 1.0),
    SimFrame(0x420, "65 00 00 00 00 00 00 00", 0.4, 10.0),
)
"""The simulated SMA inverter: a pairing request, then its measurements every second and the time."""
SMA_SOURCES = "Battery-Emulator SMA-BYD-HVS-CAN, SMA-BYD-H-CAN and SMA-SBS-BYD-CAN (three variants of the dialect)"

ROWS: tuple[Profile, ...] = (
    Profile(
        name="byd-hvs",
        family="byd_hvs",
        dbc="byd_hvs.dbc",
        high_voltage=True,
        mode=Mode.HANDSHAKE,
        builders=BYD_BUILDERS,
        alarm_column="byd-hvs",
        groups=(
            Group(parts(0x110), 2.0),
            Group(parts(0x150, 0x1D0, 0x210), 10.0),
            Group(parts(0x190), 60.0),
        ),
        cyclic_in=frozenset({"started"}),
        rules=(
            Rule("identity", Trigger(frozenset({0x151}), ((0, 0x01, 0x01),)), BYD_IDENTITY, frozenset({"started"})),
            Rule("start", Trigger(BYD_HEARD), BYD_IDENTITY, frozenset({"idle"}), then="started"),
        ),
        paired=frozenset({"started"}),
        urgent=frozenset({0x110}),
        expects=BYD_HEARD,
        timeout=30.0,
        options=frozenset({"deye_soc_workaround"}),
        sim=(
            SimFrame(0x151, "01 00 00 00 00 00 00 00", 0.0, None),
            SimFrame(0x091, "0F A0 00 00 00 FA 00 00", 0.1, 2.0),
            SimFrame(0x0D1, "02 EE 00 00 00 00 00 00", 0.2, 2.0),
            SimFrame(0x111, "65 00 00 00 00 00 00 00", 0.3, 10.0),
        ),
        wiring=Wiring(
            "GoodWe HV (ET, EH), Deye HV (SUN-xK-SG01HP3), Sungrow SH-RT/RS, Solis RHI",
            menu='battery brand "BYD" (HVS/HVM); Deye: BMS protocol "BYD"',
        ),
        notes=(
            "Waits for the inverter to speak first, then identity and cyclic frames. DCL comes before CCL in 0x110."
            " 0x190's alarm bits are not decoded publicly: it carries a healthy battery's bytes and the limits do"
            " the stopping. Deye HV ignores a zero current limit too: `deye_soc_workaround` is available."
        ),
        sources="Battery-Emulator BYD-CAN; ../shared/protocol/inverters.md (no second implementation found)",
    ),
    Profile(
        name="sma-hv",
        family="byd_hvs",
        dbc="sma_byd.dbc",
        high_voltage=True,
        mode=Mode.HANDSHAKE,
        builders=SMA_BUILDERS,
        alarm_column="sma-byd",
        groups=(
            Group(parts(0x358, 0x158), 2.0),
            Group(parts(0x518, 0x4D8, 0x3D8), 10.0),
            Group(parts(0x458), 60.0),
        ),
        cyclic_in=frozenset({"paired"}),
        rules=(Rule("pairing", Trigger(SMA_PAIRING), (*SMA_IDENTITY, *SMA_DATA), then="paired", spacing=0.25),),
        paired=frozenset({"paired"}),
        urgent=frozenset({0x358, 0x158}),
        expects=SMA_HEARD,
        timeout=60.0,
        sim=SMA_SIM,
        wiring=Wiring(
            "SMA Sunny Tripower Smart Energy, Sunny Boy Smart Energy",
            menu='battery "BYD Battery-Box Premium HVS" (pairs by itself); the enable line is not needed',
        ),
        notes=(
            "Pairs on 0x5E7/0x660: identity and data one frame every 250 ms, then cyclic. Sends 0x158 (faults and "
            "warnings) with the limits, as the BYD-H and SBS variants do (the public HVS variant omits it). The "
            "hardware enable line is ignored. Lifetime energy (0x458) is 0: the gateway keeps no such counter here."
        ),
        sources=SMA_SOURCES,
    ),
    Profile(
        name="sma-sbs",
        family="byd_hvs",
        dbc="sma_byd.dbc",
        high_voltage=True,
        mode=Mode.BROADCAST,
        builders=SMA_BUILDERS,
        alarm_column="sma-byd",
        groups=(Group((*SMA_IDENTITY, *parts(0x158), *SMA_DATA)),),
        period=0.1,
        rules=(Rule("pairing", Trigger(SMA_PAIRING), (*SMA_IDENTITY, *parts(0x158), *SMA_DATA)),),
        expects=SMA_HEARD,
        timeout=60.0,
        sim=SMA_SIM,
        defaults=Options(),
        wiring=Wiring(
            "SMA Sunny Boy Storage",
            menu='battery "BYD Battery-Box Premium HVS"; the enable line is not needed',
        ),
        notes=(
            "The whole set with the identity frames every 0.1 s, as a Sunny Boy Storage expects them continuously,"
            " and at once on a pairing request. The hardware enable line is ignored."
        ),
        sources=SMA_SOURCES,
    ),
)
