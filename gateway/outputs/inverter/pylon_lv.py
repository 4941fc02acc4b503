"""The Pylon LV family: one well-behaved Pylontech-style battery on CAN (dbc/inverters/pylontech.dbc).

500 kbit/s, 11-bit IDs, little-endian, broadcast: the whole set every period. Profiles: pylontech (Pylon 1.2),
pylontech-1.3, victron, sma-lv (SMA Sunny Island, 0.1 s; `sma` is its old name), deye-lv (the 1.2 set with
Deye's SOC workaround as an option). What the inverter sends back: 0x305 keep-alive and 0x307 identification
(its name in bytes 4-7); neither is required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from gateway import __version__
from gateway.master.model import Lifecycle
from gateway.outputs.inverter.codec import Values, ascii_le, codec, text_le
from gateway.outputs.inverter.common import limits
from gateway.outputs.inverter.profiles import Builder, Group, Input, Mode, Profile, SimFrame, Wiring, parts

KEEPALIVE = 0x305
IDENTIFICATION = 0x307
INVERTER_IDS = frozenset({KEEPALIVE, IDENTIFICATION})
"""Frames the inverter sends; everything else on the inverter bus is ignored (python-can does not echo ours)."""
DBC = "pylontech.dbc"

PYLON_BITS = (
    "OverVoltage",
    "UnderVoltage",
    "OverTemperature",
    "UnderTemperature",
    "DischargeOverCurrent",
    "ChargeOverCurrent",
    "InternalError",
)
"""0x359's bits: signals Protection<bit> and Warning<bit>."""
PAIRS = (
    "HighVoltage",
    "LowVoltage",
    "HighTemperature",
    "LowTemperature",
    "HighTemperatureCharge",
    "LowTemperatureCharge",
    "HighDischargeCurrent",
    "HighChargeCurrent",
    "Contactor",
    "ShortCircuit",
    "BmsInternal",
    "CellImbalance",
)
"""0x35A's pairs: signals Alarm<pair> and Warning<pair>."""
_HALVES = ("Alarm", "Warning")
_ACTIVE, _OK = 1, 2

_version = re.match(r"(\d+)\.(\d+)", __version__)
FIRMWARE = (int(_version[1]), int(_version[2])) if _version else (0, 0)
KELVIN = 273.15


def _soc(i: Input) -> Values:
    return {"StateOfCharge": i.snapshot.soc, "StateOfHealth": i.snapshot.soh}


def _status(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "BatteryTemperature": None if s.temperature_max is None else s.temperature_max.value,
    }


def _protections(i: Input) -> Values:
    names = [f"{prefix}{bit}" for prefix in ("Protection", "Warning") for bit in PYLON_BITS]
    values: dict[str, float | None] = {name: int(name in i.active) for name in names}
    values["ModuleCount"] = i.modules_count
    values["ManufacturerCode"] = ascii_le("PN")
    return values


def _alarm_pairs(i: Input) -> Values:
    values: dict[str, float | None] = {}
    for prefix in _HALVES:
        pairs = {pair: f"{prefix}{pair}" in i.active for pair in PAIRS}
        values[f"{prefix}General"] = _ACTIVE if any(pairs.values()) else _OK
        values.update({f"{prefix}{pair}": _ACTIVE if on else _OK for pair, on in pairs.items()})
    return values


def _requests(i: Input) -> Values:
    f = i.snapshot.flags
    return {
        "ChargeEnable": int(f.charge_enable),
        "DischargeEnable": int(f.discharge_enable),
        "ForceChargeRequest1": int(f.force_charge),
        "ForceChargeRequest2": int(f.force_charge),
        "FullChargeRequest": int(f.full_charge),
    }


def _manufacturer(_: Input) -> Values:
    return {"ManufacturerName": ascii_le("PYLON   ")}


def _info(i: Input) -> Values:
    return {
        "Chemistry": ascii_le("LI"),
        "FirmwareMajor": FIRMWARE[0],
        "FirmwareMinor": FIRMWARE[1],
        "OnlineCapacity": i.snapshot.full_ah,
    }


def _module_counts(i: Input) -> Values:
    online = [v for v in i.snapshot.modules.values() if v.lifecycle is Lifecycle.ONLINE]
    return {
        "ModulesOnline": len(online),
        "ModulesBlockingCharge": sum(1 for v in online if v.limits is None or v.limits.charge_current.value <= 0),
        "ModulesBlockingDischarge": sum(1 for v in online if v.limits is None or v.limits.discharge_current.value <= 0),
        "ModulesOffline": len(i.snapshot.modules) - len(online),
    }


def _cell_extremes(i: Input) -> Values:
    s = i.snapshot
    vmin, vmax, tmin, tmax = s.cell_voltage_min, s.cell_voltage_max, s.temperature_min, s.temperature_max
    return {
        "MinCellVoltage": None if vmin is None else vmin.value,
        "MaxCellVoltage": None if vmax is None else vmax.value,
        "MinCellTemperature": None if tmin is None else tmin.value + KELVIN,
        "MaxCellTemperature": None if tmax is None else tmax.value + KELVIN,
    }


def _installed(i: Input) -> Values:
    return {"InstalledCapacity": i.snapshot.full_ah}


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x351: limits,
        0x355: _soc,
        0x356: _status,
        0x359: _protections,
        0x35A: _alarm_pairs,
        0x35C: _requests,
        0x35E: _manufacturer,
        0x35F: _info,
        0x372: _module_counts,
        0x373: _cell_extremes,
        0x379: _installed,
    }
)


def identify(can_id: int, data: bytes) -> str | None:
    """The inverter's name from 0x307 (ASCII in bytes 4-7), decoded with the DBC; None for 0x305."""
    if can_id != IDENTIFICATION:
        return None
    return text_le(int(codec(DBC).decode(can_id, data)["InverterName"]), 4)


PYLON_12 = parts(0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E)
PYLON_13 = parts(0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F)
VICTRON = (*PYLON_12, *parts(0x35A, 0x35F, 0x372, 0x373, 0x379))
KEEPALIVE_SIM = (SimFrame(KEEPALIVE, "00 00 00 00 00 00 00 00"), SimFrame(IDENTIFICATION, "12 34 56 78 53 49 4D 00"))
"""The simulated inverter: a keep-alive every second and its identification, name SIM."""
SOURCES = (
    "Battery-Emulator PYLON-LV-CAN and SMA-LV-CAN; bms-to-inverter inverter-pylon-can, inverter-deye-can and "
    "inverter-sma-si-can; dfch/BydCanProtocol (a Victron GX's 0x305/0x307)"
)
_COMMON = {
    "family": "pylon_lv",
    "dbc": DBC,
    "mode": Mode.BROADCAST,
    "builders": BUILDERS,
    "alarm_column": "pylontech",
    "expects": INVERTER_IDS,
    "timeout": 30.0,
    "identify": identify,
    "sim": KEEPALIVE_SIM,
    "sources": SOURCES,
}

ROWS: tuple[Profile, ...] = (
    Profile(
        name="pylontech",
        groups=(Group(PYLON_12),),
        wiring=Wiring(
            'GoodWe, Growatt, Deye/Sunsynk, Solis and other inverters with a "Pylon" battery setting',
            menu='battery type "Lithium", brand/protocol "Pylon" (CAN)',
        ),
        notes="Pylon protocol 1.2: the set most LV inverters read.",
        **_COMMON,  # type: ignore[arg-type]
    ),
    Profile(
        name="pylontech-1.3",
        groups=(Group(PYLON_13),),
        wiring=Wiring("inverters that want the newer Pylon set (0x35A instead of 0x359)", menu='"Pylon" (CAN)'),
        notes="Pylon protocol 1.3: 0x35A alarm pairs instead of 0x359, and 0x35F.",
        **_COMMON,  # type: ignore[arg-type]
    ),
    Profile(
        name="victron",
        groups=(Group(VICTRON),),
        wiring=Wiring(
            "Victron GX (Cerbo GX and others)",
            termination="the VE.Can terminator supplied with the GX in the other socket",
            menu='BMS-Can port, or a VE.Can port set to "CAN-bus BMS LV (500 kbit/s)"',
        ),
        notes="The 1.2 set plus 0x35A alarm pairs, 0x35F, module counts, cell extremes and capacity.",
        **_COMMON,  # type: ignore[arg-type]
    ),
    Profile(
        name="sma-lv",
        groups=(Group(VICTRON),),
        period=0.1,
        wiring=Wiring(
            "SMA Sunny Island",
            termination="the RJ45 terminator shipped in ComSyncOut",
            menu='battery type "Lithium-Ion" with external BMS (ComSync in)',
        ),
        notes="The victron set every 0.1 s, as a Sunny Island expects. Its old name `sma` still works.",
        **_COMMON,  # type: ignore[arg-type]
    ),
    Profile(
        name="deye-lv",
        groups=(Group(PYLON_12),),
        options=frozenset({"deye_soc_workaround"}),
        wiring=Wiring(
            "Deye, Sunsynk and Sol-Ark LV hybrids",
            menu='battery mode "Lithium", lithium protocol 00 (Pylon CAN), BMS port',
        ),
        notes=(
            "The 1.2 set; 0x356 voltage in 0.01 V as for Pylon (both sources agree). Deye ignores a zero current "
            "limit: option `deye_soc_workaround` (off by default) reports SOC 100 % while charging is forbidden "
            "and 0 % while discharging is forbidden. Keep DCL modest on models that fault (F58) on a high DCL."
        ),
        **_COMMON,  # type: ignore[arg-type]
    ),
)
