"""Values that cross the master's boundary: module readings in, bank snapshots and commands out.

All frozen: the ingest side freezes a module's latest values into a `ModuleReading` for each tick, the master
returns an immutable `BankSnapshot` that every output reads without copying or locking.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import field, replace
from types import MappingProxyType

from gateway.values import frozen

MAX_CELLS = 48
MAX_SENSORS = 28
ALARM_BITS = (
    "CellOverVoltage",
    "CellUnderVoltage",
    "ModuleOverVoltage",
    "ModuleUnderVoltage",
    "ChargeOverTemperature",
    "DischargeOverTemperature",
    "ChargeUnderTemperature",
    "DischargeUnderTemperature",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "CellImbalance",
    "InternalCommunication",
    "ContactorFault",
    "SensorFault",
    "ShortCircuit",
    "Other",
)
"""The module protocol's alarm bit order: bit n of the warnings, bit 16 + n of the protections."""


RULE_INPUTS = {
    "limits": ("charge_current_limit", "discharge_current_limit"),
    "cells": ("cell_voltage_max", "cell_voltage_min"),
    "temperatures": ("temperature_max", "temperature_min"),
    "permits": ("charge_permitted", "discharge_permitted"),
}
"""The fields of the master's limit rules, by the group that carries them: a profile that never sends a group
leaves them `ModuleReading.absent`."""
NO_PERMITS = frozenset(RULE_INPUTS["permits"])
"""What our own module protocol never sends: the charge/discharge permits of other BMSs."""


class ModuleState(enum.IntEnum):
    """What a module reports about itself (ModuleStatus.ModuleState)."""

    INIT = 0
    STANDBY = 1
    CHARGING = 2
    DISCHARGING = 3
    BALANCING = 4
    FAULT = 5
    ISOLATED = 6


class IsolateReason(enum.IntEnum):
    """MasterCommand.IsolateReason."""

    NONE = 0
    COMMUNICATION_LOST = 1
    MISMATCH = 2
    FAULT = 3
    STACK_LIMIT = 4
    MANUAL = 5
    """In the protocol's value table (module-can.md); the master has no manual isolation yet, so never sends it."""
    NOT_ADMITTED = 6


class Lifecycle(enum.StrEnum):
    """Where a module stands with the master."""

    ONLINE = "online"
    PENDING = "pending"
    ISOLATED = "isolated"
    OFFLINE = "offline"
    REJECTED = "rejected"


class Level(enum.StrEnum):
    WARNING = "warning"
    PROTECTION = "protection"


class AlarmCode(enum.StrEnum):
    """Every alarm code. A StrEnum, so payloads, logs and comparisons with plain strings stay as they were.

    The order is a wire contract: the Modbus `alarms`/`protections` bit order (SunSpec EvtVnd1/EvtVnd2), checked
    by tests/test_alarm_table.py. Add new codes at the end. What each protocol sends for a code is one table,
    `gateway.outputs.alarm_table`.
    """

    CELL_OVER_VOLTAGE = "cell_over_voltage"
    CELL_UNDER_VOLTAGE = "cell_under_voltage"
    PACK_OVER_VOLTAGE = "pack_over_voltage"
    PACK_UNDER_VOLTAGE = "pack_under_voltage"
    CHARGE_OVER_TEMPERATURE = "charge_over_temperature"
    DISCHARGE_OVER_TEMPERATURE = "discharge_over_temperature"
    CHARGE_UNDER_TEMPERATURE = "charge_under_temperature"
    DISCHARGE_UNDER_TEMPERATURE = "discharge_under_temperature"
    CHARGE_OVER_CURRENT = "charge_over_current"
    DISCHARGE_OVER_CURRENT = "discharge_over_current"
    CELL_IMBALANCE = "cell_imbalance"
    MODULE_MISMATCH = "module_mismatch"
    MODULE_COMM_LOST = "module_comm_lost"
    INVERTER_COMM_LOST = "inverter_comm_lost"
    HEAT_ACCUMULATION = "heat_accumulation"
    STACK_LIMIT = "stack_limit"
    SENSOR_MISMATCH = "sensor_mismatch"
    MODULE_FAULT = "module_fault"
    INTERNAL_ERROR = "internal_error"
    """Raised by the core (not the master) while master steps fail: the inverter gets the fail-safe set."""
    HISTORY_UNAVAILABLE = "history_unavailable"
    """Raised by the core (not the master) while the history database cannot be written: protection goes on."""


@frozen(kw_only=True)
class ModuleReading:
    """The latest decoded values of one module, with when each group of values last arrived.

    None means "not received (yet)" or "no sensor"; the master treats unknown as the safe case.
    """

    address: int
    voltage: float | None = None
    current: float | None = None
    soc: float | None = None
    soh: float | None = None
    module_state: int | None = None
    alive: int | None = None
    alive_repeats: int = 0
    """How many ModuleStatus frames in a row repeated the AliveCounter."""
    charge_current_limit: float | None = None
    discharge_current_limit: float | None = None
    charge_voltage_limit: float | None = None
    discharge_voltage_limit: float | None = None
    charge_permitted: int | None = None
    """0: the module's own BMS forbids charging (a Pylontech battery's 0x35C ChargeEnable flag); the master's charge
    limit for it is then 0 whatever its reported current limit says. None: the module does not say."""
    discharge_permitted: int | None = None
    """0: the module's own BMS forbids discharging; its discharge limit is then 0."""
    cell_voltage_max: float | None = None
    cell_voltage_min: float | None = None
    cell_voltage_max_index: int | None = None
    cell_voltage_min_index: int | None = None
    balancing_cells: int | None = None
    cell_count: int | None = None
    temperature_max: float | None = None
    temperature_min: float | None = None
    temperature_max_index: int | None = None
    temperature_min_index: int | None = None
    sensor_count: int | None = None
    """How many temperature sensors the module says it has (Daly 0x94): `cell_temperatures` holds only those."""
    power_stage_temperature: float | None = None
    warnings: int = 0
    """The module's own warning bits (bit n = ALARM_BITS[n]); what the master finds amiss is `ModuleView.mismatch`."""
    protections: int = 0
    """The module's own protection bits, in the same order."""
    fault_code: int = 0
    firmware: tuple[int, int, int] | None = None
    cells_in_series: int | None = None
    nominal_capacity: float | None = None
    cycle_count: int | None = None
    remaining_capacity: float | None = None
    full_capacity: float | None = None
    internal_resistance: float | None = None
    cell_voltages: tuple[float | None, ...] = ()
    cell_balancing: tuple[bool, ...] = ()
    cell_temperatures: tuple[float | None, ...] = ()
    seen: Mapping[str, float] = field(default_factory=dict)
    """Group name (status, limits, cells, temperatures, alarms, info, capacity, ...) -> last arrival time."""
    first_seen: float = 0.0
    absent: frozenset[str] = NO_PERMITS
    """Fields the module's profile never sends (e.g. cell_voltage_max for a Pylontech battery, which reports its
    own limits instead): the rules that read them do not apply. For our protocol only the permits, which it does
    not carry: whatever else it does not send derates to zero."""


@frozen
class Extreme:
    """A bank-wide extreme value and where it is: module address and cell or sensor number (from 1)."""

    value: float
    module: int
    index: int


@frozen
class Electrical:
    """Voltage, current and capacity of a string or of the bank (`gateway.master.aggregate` computes them)."""

    voltage: float
    current: float
    remaining_ah: float
    full_ah: float
    soc: float
    soh: float
    capacity_ah: float
    """What sets the part of a parallel bank's current this takes: its smallest module's full capacity (never 0,
    unlike `full_ah`, which is what a string can still move and is 0 for one module empty and another full)."""


@frozen
class Limit:
    value: float
    bound_by: str
    """The rule that set this value, e.g. "cell_voltage module 3", so a user can see why."""


@frozen
class Limits:
    """Current and voltage limits, each with the rule that set it: a module's after its rating and every derating
    table, a string's, or the bank's as the inverter gets them."""

    charge_current: Limit
    discharge_current: Limit
    charge_voltage: Limit
    discharge_voltage: Limit


@frozen
class Flags:
    charge_enable: bool = False
    discharge_enable: bool = False
    force_charge: bool = False
    full_charge: bool = False


@frozen
class Alarm:
    code: AlarmCode
    level: Level
    modules: tuple[int, ...]
    since: float
    detail: str = ""
    value: float | None = None
    """The measured value behind the alarm (degC, V, A, ...), where it has one: that of the first module at the
    alarm's level; the history records it with the event."""


@frozen
class Energy:
    """Lifetime energy through a module or the bank, Wh: what the history has counted, restored at start."""

    charged_wh: float
    discharged_wh: float


@frozen
class EnergyTotals:
    """The lifetime energy of the bank and of each module, as the core attaches it to a snapshot."""

    bank: Energy
    modules: Mapping[int, Energy]


@frozen
class Isolation:
    """An isolation as the master remembers it across a restart: its reason and how much of the hold-off it has
    served (the rest is served after the restart, whatever the clock did meanwhile)."""

    module: int
    reason: str
    isolate_reason: IsolateReason
    held: float
    """Seconds since the isolation began (or its trouble was last seen), when it was saved."""


@frozen
class Memory:
    """What the master keeps across a restart: the last full charge, the isolations, the learned current shares.

    `Master.memory` exports it, `Master.restore` takes it back before the first step; the service and replay store
    it (gateway.history), the master does no I/O.
    """

    last_full_charge: float | None = None
    isolations: tuple[Isolation, ...] = ()
    shares: tuple[tuple[tuple[int, ...], float], ...] = ()
    """(string, learned share of the bank current) per string."""


@frozen
class ModuleView:
    """One module as the master sees it: its reading, its life-cycle state and its part in the bank."""

    reading: ModuleReading
    lifecycle: Lifecycle
    reason: str
    position: int
    string: int | None
    limits: Limits | None
    share: float | None
    """The module's measured or assumed share of its string's part of the bank current."""
    isolate_reason: IsolateReason
    mismatch: tuple[str, ...] = ()
    """Why the module does not match the bank (firmware, SOH, capacity, cycles, cell count), one note each."""


@frozen
class InverterInfo:
    """What a link to the inverter last heard: CAN keep-alive and identification, or the GEN24's Modbus heartbeat."""

    name: str
    last_seen: float
    keepalive_seen: float | None = None
    timeout: float | None = None
    """The silence this link allows before `inverter_comm_lost` (0: never), when it differs from the master's
    `inverter_timeout`: each link knows how often its inverter speaks, so the master reads no link's settings."""


@frozen
class MasterCommand:
    """What MasterCommand tells one module (address 0 = all)."""

    address: int
    connect_permit: bool
    charge_allowed: bool
    discharge_allowed: bool
    balancing_allowed: bool
    isolate_reason: IsolateReason
    balance_target_voltage: float
    fan_duty: int


@frozen
class BankSnapshot:
    """The master's whole view of the bank after one tick. Outputs read it; nobody changes it."""

    seq: int
    t: float
    valid: bool
    """False when the master cannot vouch for the bank: limits are then zero and flags cleared."""
    reason: str
    voltage: float | None
    current: float | None
    soc: float | None
    soh: float | None
    remaining_ah: float | None
    full_ah: float | None
    cell_voltage_max: Extreme | None
    cell_voltage_min: Extreme | None
    temperature_max: Extreme | None
    temperature_min: Extreme | None
    limits: Limits
    flags: Flags
    fan_duty: int
    alarms: tuple[Alarm, ...]
    modules: Mapping[int, ModuleView]
    strings: tuple[tuple[int, ...], ...] = ()
    string_values: Mapping[tuple[int, ...], Electrical] = field(default_factory=lambda: MappingProxyType({}))
    """Voltage, current, capacity, SOC and SOH of each string that is admitted or whose modules all report voltage
    and current (outputs that show strings read them here)."""
    temperature_gradient: float | None = None
    """Top-minus-bottom mean temperature per stack position, degC (None with fewer than 2 positions)."""
    inverter: InverterInfo | None = None
    energy: EnergyTotals | None = None
    """Lifetime energy, attached by the core from the history's counters (not computed by the master)."""

    @property
    def power(self) -> float | None:
        if self.voltage is None or self.current is None:
            return None
        return self.voltage * self.current

    def addresses(self, lifecycle: Lifecycle) -> tuple[int, ...]:
        return tuple(a for a, m in sorted(self.modules.items()) if m.lifecycle is lifecycle)

    def worst_level(self) -> Level | None:
        levels = {a.level for a in self.alarms}
        if Level.PROTECTION in levels:
            return Level.PROTECTION
        return Level.WARNING if levels else None

    def failsafe(self, reason: str) -> BankSnapshot:
        """This snapshot as the inverter must see it when the gateway cannot vouch for the bank.

        Both current limits 0, every flag cleared, and CVL held at the bank's voltage: the present one, else the
        one an invalid snapshot already holds (the master's last known bank voltage), else DVL. Never 0 V, which
        an inverter could read as "charge to 0 V".
        """
        dvl = self.limits.discharge_voltage.value
        if self.voltage is not None and math.isfinite(self.voltage) and self.voltage > 0.0:
            cvl = self.voltage
        elif not self.valid and self.limits.charge_voltage.value > 0.0:
            cvl = self.limits.charge_voltage.value
        else:
            cvl = dvl
        limits = Limits(Limit(0.0, reason), Limit(0.0, reason), Limit(cvl, reason), Limit(dvl, reason))
        return replace(self, valid=False, reason=reason, limits=limits, flags=Flags())


def empty_snapshot(t: float, reason: str = "starting", *, discharge_voltage: float = 0.0) -> BankSnapshot:
    """The snapshot before the first tick: nothing known, nothing allowed; CVL and DVL at `discharge_voltage`
    (the bank's DVL from its config), so that even this snapshot never asks an inverter to charge to 0 V."""
    zero, voltage = Limit(0.0, reason), Limit(discharge_voltage, reason)
    return BankSnapshot(
        seq=0,
        t=t,
        valid=False,
        reason=reason,
        voltage=None,
        current=None,
        soc=None,
        soh=None,
        remaining_ah=None,
        full_ah=None,
        cell_voltage_max=None,
        cell_voltage_min=None,
        temperature_max=None,
        temperature_min=None,
        limits=Limits(zero, zero, voltage, voltage),
        flags=Flags(),
        fan_duty=0,
        alarms=(),
        modules=MappingProxyType({}),
    )
