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


# -- Modbus plain map ---------------------------------------------------------------------------------------------

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


# -- SunSpec ------------------------------------------------------------------------------------------------------


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


# -- inverter CAN: the Pylontech family (dbc/pylontech.dbc) --------------------------------------------------------


class PylonBits(NamedTuple):
    """Where a code shows in the Pylontech family's frames; the alarm's level picks the half of each frame."""

    bit: str | None
    """0x359 bit: signals Protection<bit> and Warning<bit>. None: 0x359 has no such bit (the pair still goes out)."""
    pair: str
    """0x35A pair: signals Alarm<pair> and Warning<pair>."""


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


COLUMNS: Mapping[str, Mapping[A, object]] = MappingProxyType(
    {
        "modbus": MODBUS_BIT,
        "sunspec 802": SUNSPEC_EVT1,
        "sunspec 803/804": SUNSPEC_STRING_EVT1,
        "pylontech": PYLONTECH,
    }
)
"""Every column, by protocol: tests check each names every code."""
