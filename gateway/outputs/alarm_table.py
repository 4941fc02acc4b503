"""Every alarm code mapped once onto every protocol's alarm bits: one column per protocol, keyed by `AlarmCode`.

Columns (a mapping per protocol), not rows (a dataclass per code with one field per protocol), because protocols
are added far more often than codes, and one at a time: a column is written, reviewed and checked as a whole
against its protocol's DBC or model, it has its own value type (a bit number, a bit and a pair name, ...), and a
new protocol touches no line of the others. Adding one: a value type for its alarm bits if none fits, a mapping
that names every code, an entry in `COLUMNS`, and a check of its names against its DBC in
tests/test_alarm_table.py (which already fails for any column in `COLUMNS` that leaves a code out).

A code that a protocol deliberately does not carry maps to a `NotSent` with the reason, never to nothing. Outputs
only read their column: they keep no code list and no mapping of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from gateway.master.model import AlarmCode as A
from gateway.master.model import Level


@dataclass(frozen=True, slots=True)
class NotSent:
    """A code that a protocol deliberately does not carry, and why."""

    reason: str


INSTALLATION = NotSent(
    "about the installation (an aged or extra module, a hot middle module the master already derates for, the"
    " inverter's own silence), not a limit the battery crossed; inverters beep or log on any bit, so it shows"
    " on MQTT and Modbus only"
)

GATEWAY_STORAGE = NotSent(
    "about the gateway's own disk (its history database), not the battery: protection goes on without it, and an"
    " inverter that stops or beeps on it would be told of a fault it can do nothing about; MQTT and Modbus show it"
)


# -- Modbus plain map --------------------------------------------------------------------------------------------------

MODBUS_BIT: Mapping[A, int] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: 0,
        A.CELL_UNDER_VOLTAGE: 1,
        A.PACK_OVER_VOLTAGE: 2,
        A.PACK_UNDER_VOLTAGE: 3,
        A.CHARGE_OVER_TEMPERATURE: 4,
        A.DISCHARGE_OVER_TEMPERATURE: 5,
        A.CHARGE_UNDER_TEMPERATURE: 6,
        A.DISCHARGE_UNDER_TEMPERATURE: 7,
        A.CHARGE_OVER_CURRENT: 8,
        A.DISCHARGE_OVER_CURRENT: 9,
        A.CELL_IMBALANCE: 10,
        A.MODULE_MISMATCH: 11,
        A.MODULE_COMM_LOST: 12,
        A.INVERTER_COMM_LOST: 13,
        A.HEAT_ACCUMULATION: 14,
        A.STACK_LIMIT: 15,
        A.SENSOR_MISMATCH: 16,
        A.MODULE_FAULT: 17,
        A.INTERNAL_ERROR: 18,
        A.HISTORY_UNAVAILABLE: 19,
    }
)
"""Bit of the plain map's `alarms`/`protections` registers (and SunSpec EvtVnd1/EvtVnd2). Every code has one: the
bit is the code's position in `AlarmCode`. Written out because it is a published register map: moving a member
of the enum must fail a test, not move a bit that pollers decode."""


# -- SunSpec -----------------------------------------------------------------------------------------------------------


class Evt1(enum.IntEnum):
    """The bits of SunSpec model 802's Evt1 (pysunspec2's symbols; a test compares them). 803 StrEvt1 and 804 Evt1
    are the same bits, except that they reserve 24."""

    COMMUNICATION_ERROR = 0
    OVER_TEMP_ALARM = 1
    OVER_TEMP_WARNING = 2
    UNDER_TEMP_ALARM = 3
    UNDER_TEMP_WARNING = 4
    OVER_CHARGE_CURRENT_ALARM = 5
    OVER_CHARGE_CURRENT_WARNING = 6
    OVER_DISCHARGE_CURRENT_ALARM = 7
    OVER_DISCHARGE_CURRENT_WARNING = 8
    OVER_VOLT_ALARM = 9
    OVER_VOLT_WARNING = 10
    UNDER_VOLT_ALARM = 11
    UNDER_VOLT_WARNING = 12
    UNDER_SOC_MIN_ALARM = 13
    UNDER_SOC_MIN_WARNING = 14
    OVER_SOC_MAX_ALARM = 15
    OVER_SOC_MAX_WARNING = 16
    VOLTAGE_IMBALANCE_WARNING = 17
    TEMPERATURE_IMBALANCE_ALARM = 18
    TEMPERATURE_IMBALANCE_WARNING = 19
    CONTACTOR_ERROR = 20
    FAN_ERROR = 21
    GROUND_FAULT = 22
    OPEN_DOOR_ERROR = 23
    CURRENT_IMBALANCE_WARNING = 24
    OTHER_ALARM = 25
    OTHER_WARNING = 26
    CONFIGURATION_ALARM = 28
    CONFIGURATION_WARNING = 29


class Evt(NamedTuple):
    """The Evt1 bit a code sets at each level (SunSpec calls the protection level "alarm")."""

    protection: Evt1
    warning: Evt1

    def at(self, level: Level) -> Evt1:
        return self.protection if level is Level.PROTECTION else self.warning


SUNSPEC_EVT1: Mapping[A, Evt] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: Evt(Evt1.OVER_VOLT_ALARM, Evt1.OVER_VOLT_WARNING),
        A.CELL_UNDER_VOLTAGE: Evt(Evt1.UNDER_VOLT_ALARM, Evt1.UNDER_VOLT_WARNING),
        A.PACK_OVER_VOLTAGE: Evt(Evt1.OVER_VOLT_ALARM, Evt1.OVER_VOLT_WARNING),
        A.PACK_UNDER_VOLTAGE: Evt(Evt1.UNDER_VOLT_ALARM, Evt1.UNDER_VOLT_WARNING),
        A.CHARGE_OVER_TEMPERATURE: Evt(Evt1.OVER_TEMP_ALARM, Evt1.OVER_TEMP_WARNING),
        A.DISCHARGE_OVER_TEMPERATURE: Evt(Evt1.OVER_TEMP_ALARM, Evt1.OVER_TEMP_WARNING),
        A.CHARGE_UNDER_TEMPERATURE: Evt(Evt1.UNDER_TEMP_ALARM, Evt1.UNDER_TEMP_WARNING),
        A.DISCHARGE_UNDER_TEMPERATURE: Evt(Evt1.UNDER_TEMP_ALARM, Evt1.UNDER_TEMP_WARNING),
        A.CHARGE_OVER_CURRENT: Evt(Evt1.OVER_CHARGE_CURRENT_ALARM, Evt1.OVER_CHARGE_CURRENT_WARNING),
        A.DISCHARGE_OVER_CURRENT: Evt(Evt1.OVER_DISCHARGE_CURRENT_ALARM, Evt1.OVER_DISCHARGE_CURRENT_WARNING),
        A.CELL_IMBALANCE: Evt(Evt1.OTHER_ALARM, Evt1.VOLTAGE_IMBALANCE_WARNING),
        A.MODULE_MISMATCH: Evt(Evt1.CONFIGURATION_ALARM, Evt1.CONFIGURATION_WARNING),
        A.MODULE_COMM_LOST: Evt(Evt1.COMMUNICATION_ERROR, Evt1.COMMUNICATION_ERROR),
        A.INVERTER_COMM_LOST: Evt(Evt1.COMMUNICATION_ERROR, Evt1.COMMUNICATION_ERROR),
        A.HEAT_ACCUMULATION: Evt(Evt1.TEMPERATURE_IMBALANCE_ALARM, Evt1.TEMPERATURE_IMBALANCE_WARNING),
        A.STACK_LIMIT: Evt(Evt1.CONFIGURATION_ALARM, Evt1.CONFIGURATION_WARNING),
        A.SENSOR_MISMATCH: Evt(Evt1.OTHER_ALARM, Evt1.CURRENT_IMBALANCE_WARNING),
        A.MODULE_FAULT: Evt(Evt1.OTHER_ALARM, Evt1.OTHER_WARNING),
        A.INTERNAL_ERROR: Evt(Evt1.OTHER_ALARM, Evt1.OTHER_WARNING),
        A.HISTORY_UNAVAILABLE: Evt(Evt1.OTHER_ALARM, Evt1.OTHER_WARNING),
    }
)
"""Model 802 (the bank) Evt1. Every code has a bit: SunSpec clients see the whole bank."""


def _string_bit(bit: Evt1) -> Evt1:
    return Evt1.OTHER_WARNING if bit is Evt1.CURRENT_IMBALANCE_WARNING else bit


SUNSPEC_STRING_EVT1: Mapping[A, Evt] = MappingProxyType(
    {code: Evt(_string_bit(evt.protection), _string_bit(evt.warning)) for code, evt in SUNSPEC_EVT1.items()}
)
"""Models 803 (StrEvt1) and 804 (Evt1), per string: model 802's bits, but 803/804 reserve bit 24 (802's current
imbalance warning), so what sets it there sets the other-warning bit here."""


# -- inverter CAN: the Pylontech family (dbc/inverters/pylontech.dbc) --------------------------------------------------


class PylonBits(NamedTuple):
    """Where a code shows in the Pylontech family's frames; the alarm's level picks the half of each frame."""

    bit: str | None
    """0x359 bit: signals Protection<bit> and Warning<bit>. None: 0x359 has no such bit (the pair still goes out)."""
    pair: str
    """0x35A pair: signals Alarm<pair> and Warning<pair>."""

    def signals(self, level: Level) -> tuple[str, ...]:
        """The DBC signals this code sets at `level`."""
        protection = level is Level.PROTECTION
        bit = () if self.bit is None else (("Protection" if protection else "Warning") + self.bit,)
        return (*bit, ("Alarm" if protection else "Warning") + self.pair)


class Bits(NamedTuple):
    """The DBC signal a code sets at each level in an inverter protocol whose alarm bits are plain signals (1 =
    active); None where the protocol has no bit for that level."""

    protection: str | None
    warning: str | None

    def signals(self, level: Level) -> tuple[str, ...]:
        name = self.protection if level is Level.PROTECTION else self.warning
        return () if name is None else (name,)


def both(name: str) -> Bits:
    """The same signal at either level (protocols with one bit per condition)."""
    return Bits(name, name)


Mapped = PylonBits | Bits | NotSent
"""What an inverter column maps a code to."""


PYLONTECH: Mapping[A, PylonBits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: PylonBits("OverVoltage", "HighVoltage"),
        A.PACK_OVER_VOLTAGE: PylonBits("OverVoltage", "HighVoltage"),
        A.CELL_UNDER_VOLTAGE: PylonBits("UnderVoltage", "LowVoltage"),
        A.PACK_UNDER_VOLTAGE: PylonBits("UnderVoltage", "LowVoltage"),
        A.CHARGE_OVER_TEMPERATURE: PylonBits("OverTemperature", "HighTemperatureCharge"),
        A.DISCHARGE_OVER_TEMPERATURE: PylonBits("OverTemperature", "HighTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: PylonBits("UnderTemperature", "LowTemperatureCharge"),
        A.DISCHARGE_UNDER_TEMPERATURE: PylonBits("UnderTemperature", "LowTemperature"),
        A.CHARGE_OVER_CURRENT: PylonBits("ChargeOverCurrent", "HighChargeCurrent"),
        A.DISCHARGE_OVER_CURRENT: PylonBits("DischargeOverCurrent", "HighDischargeCurrent"),
        A.CELL_IMBALANCE: PylonBits(None, "CellImbalance"),
        A.MODULE_FAULT: PylonBits("InternalError", "BmsInternal"),
        A.MODULE_COMM_LOST: PylonBits("InternalError", "BmsInternal"),
        A.SENSOR_MISMATCH: PylonBits("InternalError", "BmsInternal"),
        A.INTERNAL_ERROR: PylonBits("InternalError", "BmsInternal"),
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
    }
)
"""Profiles pylontech, pylontech-1.3, victron and sma. The internal-error bit is for what is wrong inside the BMS:
a module's fault, a module lost, current sensors that disagree. The order is that of docs/inverter.md's table."""


# -- inverter CAN: Pylon HV (dbc/inverters/pylon_hv.dbc) ---------------------------------------------------------------


def _hv(name: str) -> Bits:
    """0x4250's protection bit Protect<name> and alarm (warning) bit Alarm<name>."""
    return Bits(f"Protect{name}", f"Alarm{name}")


FAULT_AS_WARNING = NotSent(
    "a warning, and the protocol's only bits for it are fault bits; it shows on MQTT and Modbus, and at"
    " protection level the limits already stop the inverter"
)

PYLON_HV: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: _hv("CellHighVoltage"),
        A.CELL_UNDER_VOLTAGE: _hv("CellLowVoltage"),
        A.PACK_OVER_VOLTAGE: _hv("PackHighVoltage"),
        A.PACK_UNDER_VOLTAGE: _hv("PackLowVoltage"),
        A.CHARGE_OVER_TEMPERATURE: _hv("ChargeHighTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: _hv("ChargeLowTemperature"),
        A.DISCHARGE_OVER_TEMPERATURE: _hv("DischargeHighTemperature"),
        A.DISCHARGE_UNDER_TEMPERATURE: _hv("DischargeLowTemperature"),
        A.CHARGE_OVER_CURRENT: _hv("ChargeOverCurrent"),
        A.DISCHARGE_OVER_CURRENT: _hv("DischargeOverCurrent"),
        A.CELL_IMBALANCE: NotSent("0x4250 has no bit for a cell spread; the master derates for it"),
        A.MODULE_FAULT: Bits("ErrorOther", None),
        A.MODULE_COMM_LOST: Bits("ErrorInternalComm", None),
        A.SENSOR_MISMATCH: FAULT_AS_WARNING,
        A.INTERNAL_ERROR: Bits("ErrorOther", None),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
    }
)
"""Profile pylon-hv: 0x4250's alarm bits at warning level, protection bits at protection level; a module's fault,
a module lost when the bank cannot run without it and the internal error set an error bit."""


# -- inverter CAN: GoodWe LV (dbc/inverters/goodwe_lv.dbc) -------------------------------------------------------------


def _gw(name: str) -> Bits:
    """0x455's alarm bit Alarm<name> and warning bit Warning<name>."""
    return Bits(f"Alarm{name}", f"Warning{name}")


GOODWE_LV: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: _gw("ChargeOverVoltage"),
        A.PACK_OVER_VOLTAGE: _gw("ChargeOverVoltage"),
        A.CELL_UNDER_VOLTAGE: _gw("DischargeUnderVoltage"),
        A.PACK_UNDER_VOLTAGE: _gw("DischargeUnderVoltage"),
        A.CHARGE_OVER_TEMPERATURE: _gw("OverTemperature"),
        A.DISCHARGE_OVER_TEMPERATURE: _gw("OverTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: _gw("UnderTemperature"),
        A.DISCHARGE_UNDER_TEMPERATURE: _gw("UnderTemperature"),
        A.CHARGE_OVER_CURRENT: _gw("ChargeOverCurrent"),
        A.DISCHARGE_OVER_CURRENT: _gw("DischargeOverCurrent"),
        A.CELL_IMBALANCE: Bits(None, "WarningCellImbalance"),
        A.MODULE_FAULT: Bits("AlarmOther", None),
        A.MODULE_COMM_LOST: _gw("InternalComm"),
        A.SENSOR_MISMATCH: FAULT_AS_WARNING,
        A.INTERNAL_ERROR: Bits("AlarmOther", None),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
    }
)
"""Profile goodwe-lv: 0x455, alarms in bytes 0-1, warnings in bytes 2-3."""


# -- inverter CAN: Growatt LV (dbc/inverters/growatt_lv.dbc) -----------------------------------------------------------


def _gl(name: str) -> Bits:
    """0x312's protection bit Protect<name> and alarm (warning) bit Alarm<name>."""
    return Bits(f"Protect{name}", f"Alarm{name}")


GROWATT_LV: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: _gl("CellOverVoltage"),
        A.CELL_UNDER_VOLTAGE: _gl("CellUnderVoltage"),
        A.PACK_OVER_VOLTAGE: _gl("PackOverVoltage"),
        A.PACK_UNDER_VOLTAGE: _gl("PackUnderVoltage"),
        A.CHARGE_OVER_TEMPERATURE: _gl("ChargeOverTemperature"),
        A.DISCHARGE_OVER_TEMPERATURE: _gl("DischargeOverTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: _gl("ChargeUnderTemperature"),
        A.DISCHARGE_UNDER_TEMPERATURE: _gl("DischargeUnderTemperature"),
        A.CHARGE_OVER_CURRENT: _gl("ChargeOverCurrent"),
        A.DISCHARGE_OVER_CURRENT: _gl("DischargeOverCurrent"),
        A.CELL_IMBALANCE: _gl("CellImbalance"),
        A.MODULE_FAULT: Bits("ProtectSystemError", None),
        A.MODULE_COMM_LOST: Bits("ProtectSystemError", "AlarmInternalComm"),
        A.SENSOR_MISMATCH: FAULT_AS_WARNING,
        A.INTERNAL_ERROR: Bits("ProtectSystemError", None),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
    }
)
"""Profile growatt-lv: 0x312, protections in bytes 0-1, alarms in bytes 2-3."""


# -- inverter CAN: frames whose alarm bits no public source decodes ----------------------------------------------------

UNDECODED = NotSent(
    "no public source decodes this protocol's alarm bits; the inverter stops on the limits (0 A) and the enable"
    " flags the master sets, and the alarm shows on MQTT and Modbus"
)


def undecoded() -> Mapping[A, NotSent]:
    """A column for a protocol whose alarm bits are not known: every code NotSent, with the reason."""
    return MappingProxyType(dict.fromkeys(A, UNDECODED))


BYD_HVS = undecoded()
"""Profile byd-hvs: 0x190 is sent as a healthy battery sends it."""
SOFAR = undecoded()
"""Profile sofar: 0x35A is sent as 0."""
SOLAX = undecoded()
"""Profile solax: the polled frames carry no alarm bits the sources know."""
SUNGROW = undecoded()
"""Profile sungrow: the SBR frames the public implementation sends carry no alarm bits."""


# -- inverter CAN: FoxESS (dbc/inverters/foxess.dbc) -------------------------------------------------------------------

FOXESS: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        **dict.fromkeys(A, UNDECODED),
        A.MODULE_FAULT: Bits("ErrorFlag", None),
        A.INTERNAL_ERROR: Bits("ErrorFlag", None),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
    }
)
"""Profile foxess: no public source decodes 0x1879 byte 0; a fault or the internal error sets its bit 0
(and 0x1877 byte 0 = 0x02 while the bank is not valid), everything else is UNDECODED."""


# -- inverter CAN: Growatt HV (dbc/inverters/growatt_hv.dbc) -----------------------------------------------------------

GROWATT_HV: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: _gl("CellOverVoltage"),
        A.CELL_UNDER_VOLTAGE: _gl("CellUnderVoltage"),
        A.PACK_OVER_VOLTAGE: _gl("PackOverVoltage"),
        A.PACK_UNDER_VOLTAGE: _gl("PackUnderVoltage"),
        A.CHARGE_OVER_TEMPERATURE: _gl("ChargeOverTemperature"),
        A.DISCHARGE_OVER_TEMPERATURE: _gl("DischargeOverTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: _gl("ChargeUnderTemperature"),
        A.DISCHARGE_UNDER_TEMPERATURE: _gl("DischargeUnderTemperature"),
        A.CHARGE_OVER_CURRENT: _gl("ChargeOverCurrent"),
        A.DISCHARGE_OVER_CURRENT: _gl("DischargeOverCurrent"),
        A.CELL_IMBALANCE: _gl("CellImbalance"),
        A.MODULE_FAULT: Bits("ProtectOtherFailure", None),
        A.MODULE_COMM_LOST: Bits("ProtectOtherFailure", "AlarmInternalComm"),
        A.SENSOR_MISMATCH: FAULT_AS_WARNING,
        A.INTERNAL_ERROR: Bits("ProtectOtherFailure", None),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
    }
)
"""Profile growatt-hv: 0x3120, protections in the first u32, alarms in the second (bms-to-inverter's layout)."""


# -- inverter CAN: the BYD dialect of SMA's battery CAN (dbc/inverters/sma_byd.dbc) ------------------------------------


def _sma(name: str, warning: str | None = "") -> Bits:
    """0x158's fault pair Fault<name> and warning pair Warning<name> (or Warning<warning>; None: none)."""
    return Bits(f"Fault{name}", None if warning is None else f"Warning{warning or name}")


SMA_BYD: Mapping[A, Bits | NotSent] = MappingProxyType(
    {
        A.CELL_OVER_VOLTAGE: _sma("CellOverVoltage"),
        A.PACK_OVER_VOLTAGE: _sma("CellOverVoltage"),
        A.CELL_UNDER_VOLTAGE: _sma("CellUnderVoltage"),
        A.PACK_UNDER_VOLTAGE: _sma("CellUnderVoltage"),
        A.CHARGE_OVER_TEMPERATURE: _sma("HighTemperature"),
        A.DISCHARGE_OVER_TEMPERATURE: _sma("HighTemperature"),
        A.CHARGE_UNDER_TEMPERATURE: _sma("LowTemperature"),
        A.DISCHARGE_UNDER_TEMPERATURE: _sma("LowTemperature"),
        A.CHARGE_OVER_CURRENT: _sma("Overload", None),
        A.DISCHARGE_OVER_CURRENT: _sma("Overload", None),
        A.CELL_IMBALANCE: _sma("Imbalance"),
        A.MODULE_FAULT: _sma("HardwareFault"),
        A.MODULE_COMM_LOST: _sma("SystemDefect"),
        A.SENSOR_MISMATCH: Bits(None, "WarningSelfDiagnosis"),
        A.INTERNAL_ERROR: _sma("SystemDefect"),
        A.HISTORY_UNAVAILABLE: GATEWAY_STORAGE,
        A.MODULE_MISMATCH: INSTALLATION,
        A.STACK_LIMIT: INSTALLATION,
        A.HEAT_ACCUMULATION: INSTALLATION,
        A.INVERTER_COMM_LOST: INSTALLATION,
    }
)
"""Profiles sma-hv and sma-sbs: 0x158, faults in bytes 0-3 and warnings in bytes 4-7, two bits each (01 active)."""


COLUMNS: Mapping[str, Mapping[A, object]] = MappingProxyType(
    {
        "modbus": MODBUS_BIT,
        "sunspec 802": SUNSPEC_EVT1,
        "sunspec 803/804": SUNSPEC_STRING_EVT1,
        "pylontech": PYLONTECH,
        "pylon-hv": PYLON_HV,
        "goodwe-lv": GOODWE_LV,
        "growatt-lv": GROWATT_LV,
        "byd-hvs": BYD_HVS,
        "sma-byd": SMA_BYD,
        "sofar": SOFAR,
        "solax": SOLAX,
        "foxess": FOXESS,
        "growatt-hv": GROWATT_HV,
        "sungrow": SUNGROW,
    }
)
"""Every column, by protocol: tests check each names every code."""
