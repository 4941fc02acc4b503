"""The module profiles: what a kind of BMS speaks, as one row of data each.

A row names its DBC under `dbc/`, the signal map from its signal names to ours, its bitrate and addressing, the
request frames it must be polled with, whether it takes our MasterCommand, and the groups of values it provides.
A bus entry (`[[can.modules]]`) selects a row with `profile = "..."`; its own keys override the row's. A new
profile is a DBC and a row here: the codec, the store, the poll schedule and the simulator read only the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.can.addressing import Addressing, Scheme


@dataclass(frozen=True, slots=True)
class Poll:
    """A request frame the gateway sends on the bus every `period` s; a BMS that answers only when asked."""

    can_id: int
    data: bytes = bytes(8)
    period: float = 1.0
    extended: bool = False
    address_shift: int | None = None
    """Sent once per module address of the bus, with its address on the wire at this bit of the ID (Daly: 8);
    None: once, to every BMS on the bus."""
    answers: tuple[str, ...] = ()
    """The DBC messages a BMS sends in reply (the simulator answers with these)."""


@dataclass(frozen=True, slots=True)
class ModuleProfile:
    name: str
    dbc: str
    """Under the shipped `dbc/` directory."""
    bitrate: int
    addressing: Addressing
    signal_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    polls: tuple[Poll, ...] = ()
    commands: bool = False
    """The BMS takes our MasterCommand (only our own protocol does)."""
    padded: bool = False
    """Frames may be longer than the DBC's, the extra bytes ignored (clones of a BMS that pad every frame to 8)."""
    provides: frozenset[str] = frozenset()
    """The groups of values the BMS sends (see `gateway.can.codec.SCALARS`); the master applies no rule whose
    inputs a profile never provides, and takes the module's own limits as authoritative instead."""
    summary: str = ""
    verified: str = ""
    """What the DBC was checked against: a capture, or a second public source."""


OURS = ModuleProfile(
    name="module",
    dbc="module.dbc",
    bitrate=500_000,
    addressing=Addressing(),
    commands=True,
    provides=frozenset(
        {
            "status",
            "limits",
            "cells",
            "temperatures",
            "cell_voltages",
            "cell_temperatures",
            "alarms",
            "info",
            "capacity",
        }
    ),
    summary="our module protocol (module-can.md): 0x400..0x500 + address, MasterCommand 0x380 + address",
    verified="the published protocol page, bit for bit (tests/test_dbc.py)",
)

PYLON_LV = ModuleProfile(
    name="pylon-lv-battery",
    dbc="modules/pylon_lv_battery.dbc",
    bitrate=500_000,
    addressing=Addressing(scheme=Scheme.FIXED),
    signal_map=MappingProxyType(
        {
            "BatteryTemperature": "TemperatureMax",
            "ChargeEnable": "ChargePermitted",
            "DischargeEnable": "DischargePermitted",
        }
    ),
    provides=frozenset({"status", "limits", "temperatures", "alarms", "permits"}),
    padded=True,
    summary="a Pylontech-protocol LV battery as one module: 0x351 limits, 0x355 SOC/SOH, 0x356 V/I/T, 0x359 "
    "alarms, 0x35C charge/discharge enable (0 forbids: the master's limit is 0), broadcast every 1 s; one battery "
    "per bus",
    verified="a published capture of a 10-module Pylontech stack, and two readers (OpenDTU-OnBattery, bms-to-inverter)",
)

PYLON_HV = ModuleProfile(
    name="pylon-hv-battery",
    dbc="modules/pylon_hv_battery.dbc",
    bitrate=500_000,
    addressing=Addressing(scheme=Scheme.FIELD, shift=0, width=4, offset=1),
    signal_map=MappingProxyType({"ChargeForbidden": "ChargePermitted", "DischargeForbidden": "DischargePermitted"}),
    polls=(
        Poll(
            0x4200,
            bytes(8),
            1.0,
            extended=True,
            answers=("EnsembleStatus", "Limits", "CellVoltages", "CellTemperatures", "Status", "Forbidden"),
        ),
        Poll(0x4200, bytes([2, 0, 0, 0, 0, 0, 0, 0]), 10.0, extended=True, answers=("Versions", "Composition")),
    ),
    provides=frozenset({"status", "limits", "cells", "temperatures", "alarms", "info", "permits"}),
    summary="a Pylontech HV tower: polled with 0x4200, answers 0x4210..0x4290 and 0x7310..0x7340 (29-bit); "
    "the ID's low nibble + 1 is the module address (a lone tower answers 0x4210: module 1); 0x4280 0xAA forbids "
    "charging or discharging (the master's limit is 0)",
    verified="two readers (Battery-Emulator, bms-to-inverter); no capture: frames built from the layout",
)

JK_BMS = ModuleProfile(
    name="jk-bms-can",
    dbc="modules/jk_bms_can.dbc",
    bitrate=250_000,
    addressing=Addressing(scheme=Scheme.STRIDE, stride=1, offset=1, count=12),
    provides=frozenset({"status", "cells", "temperatures", "cell_voltages", "cell_temperatures", "capacity", "info"}),
    summary="a JK-BMS with CAN: broadcast 0x2F4/0x4F4/0x5F4 (+ 29-bit V2 frames), ID = base + DIP address; DIP "
    "0..11 is module 1..12; no limits of its own (the master's rating and derating rules bound it)",
    verified="JK's protocol PDF and its worked examples, and three readers (dbus-serialbattery, OpenDTU-OnBattery, "
    "bms-to-inverter); the current sign is disputed (the PDF against the readers)",
)

DALY = ModuleProfile(
    name="daly-can",
    dbc="modules/daly_can.dbc",
    bitrate=250_000,
    addressing=Addressing(scheme=Scheme.FIELD, shift=0, width=8),
    polls=tuple(
        Poll(0x18000040 | data_id << 16, bytes(8), period, extended=True, address_shift=8, answers=(answer,))
        for data_id, period, answer in (
            (0x90, 1.0, "PackStatus"),
            (0x91, 1.0, "CellVoltageExtremes"),
            (0x92, 1.0, "TemperatureExtremes"),
            (0x93, 1.0, "MosStatus"),
            (0x94, 10.0, "StatusInfo"),
            (0x95, 1.0, "CellVoltages"),
            (0x96, 5.0, "Temperatures"),
            (0x98, 1.0, "FailureStatus"),
            (0x50, 60.0, "RatedCapacity"),
        )
    ),
    provides=frozenset(
        {"status", "cells", "temperatures", "cell_voltages", "cell_temperatures", "alarms", "capacity", "info"}
    ),
    summary="a Daly BMS: polled per module (request 0x18 <id> <BMS> 40, answer 0x18 <id> 40 <BMS>, 29-bit, "
    "big-endian), the answer ID's low byte is the module address; 0x95/0x96 answer with one frame per 3 cells or 7 "
    "sensors, only the first CellCount/TemperatureSensorCount (0x94) real; no limits of its own",
    verified="two readers for every layout (dbus-serialbattery, bms-to-inverter; Daly2MQTT for the failure bits); "
    "no capture; the current sign and the bitrate (250k on the BMS port, 500k via the WNT board) are disputed",
)

PROFILES: Mapping[str, ModuleProfile] = MappingProxyType({p.name: p for p in (OURS, PYLON_LV, PYLON_HV, JK_BMS, DALY)})
"""Every module profile by name; `gateway.config.ModuleProfileName` lists the same names (a test keeps them equal)."""


def profile(name: str) -> ModuleProfile:
    return PROFILES[name]
