"""The module-side DBC codec: frame ID -> (message, address), decode, signal names -> our fields.

Everything is prepared once per DBC: a `Plan` per base ID says which decoded signal lands in which field of a
module's state, which ranges make a frame implausible and which raw values mean "no sensor". From that and the
message's cantools definition, `gateway.can.compiled` generates the plan's `read`: a function that decodes only the
signals the gateway stores, checks each against its range, and returns the values in the order of the targets
they go to. Frames are then read with one dict lookup and one call; nothing is looked up by name per frame. cantools
stays the reference (tests/test_compiled.py). MasterCommand is encoded by a function generated the same way, with
cantools' scaling and rounding (tests/test_compiled_encode.py).
"""

from __future__ import annotations

import enum
import functools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cantools.database.errors
from cantools.database.can import Database, Message, Signal

from gateway.can import compiled, dbc
from gateway.can.addressing import KEYS, Addressing, Scheme
from gateway.config import ModuleBusSection
from gateway.errors import ConfigError
from gateway.master.model import ALARM_BITS, MAX_CELLS, MAX_SENSORS, RULE_INPUTS, MasterCommand

SCALARS: dict[str, tuple[str, str]] = {
    "ModuleVoltage": ("status", "voltage"),
    "ModuleCurrent": ("status", "current"),
    "SOC": ("status", "soc"),
    "SOH": ("status", "soh"),
    "ModuleState": ("status", "module_state"),
    "AliveCounter": ("status", "alive"),
    "ChargeCurrentLimit": ("limits", "charge_current_limit"),
    "DischargeCurrentLimit": ("limits", "discharge_current_limit"),
    "ChargeVoltageLimit": ("limits", "charge_voltage_limit"),
    "DischargeVoltageLimit": ("limits", "discharge_voltage_limit"),
    "ChargePermitted": ("permits", "charge_permitted"),
    "DischargePermitted": ("permits", "discharge_permitted"),
    "CellVoltageMax": ("cells", "cell_voltage_max"),
    "CellVoltageMin": ("cells", "cell_voltage_min"),
    "CellVoltageMaxIndex": ("cells", "cell_voltage_max_index"),
    "CellVoltageMinIndex": ("cells", "cell_voltage_min_index"),
    "BalancingCellCount": ("cells", "balancing_cells"),
    "CellCount": ("cells", "cell_count"),
    "TemperatureMax": ("temperatures", "temperature_max"),
    "TemperatureMin": ("temperatures", "temperature_min"),
    "TemperatureMaxIndex": ("temperatures", "temperature_max_index"),
    "TemperatureMinIndex": ("temperatures", "temperature_min_index"),
    "PowerStageTemperature": ("temperatures", "power_stage_temperature"),
    "FaultCode": ("alarms", "fault_code"),
    "FirmwareMajor": ("info", "firmware_major"),
    "FirmwareMinor": ("info", "firmware_minor"),
    "FirmwarePatch": ("info", "firmware_patch"),
    "CellsInSeries": ("info", "cells_in_series"),
    "TemperatureSensorCount": ("info", "sensor_count"),
    "NominalCapacity": ("info", "nominal_capacity"),
    "CycleCount": ("info", "cycle_count"),
    "RemainingCapacity": ("capacity", "remaining_capacity"),
    "FullChargeCapacity": ("capacity", "full_capacity"),
    "InternalResistance": ("capacity", "internal_resistance"),
}
"""Our signal names (those of the protocol page, and a few that other BMSs send) -> (group, field of the module's
state). A sensor count is `info`, as the cells in series are: it describes the module, and the message that
carries it (Daly's 0x94, every 10 s) must not keep the `temperatures` group fresh when the extremes stop coming."""

_DERIVED = {"cells": "cell_voltages", "temperatures": "cell_temperatures"}
"""Where the store derives a group's extremes from when the DBC has no summary message."""
_INDEXED = re.compile(r"^(?:Cell(\d\d)(Voltage|Balancing)|Temp(\d\d)|(Warn|Prot)(\w+))$")
REQUIRED_GROUPS = ("status", "limits", "cells", "temperatures", "permits")
"""Groups a module must have sent recently to count in the limits (where the DBC carries them at all)."""
_FINITE = sys.float_info.max
"""The widest range a signal may have: an IEEE float signal's inf or NaN is out of range, never a reading."""

NO_VALUE_CHOICES = frozenset({"NoSensor", "NotAvailable", "SNA", "Invalid"})
"""Value-table names that mean "no reading" for a raw value (e.g. raw 255 of a TempNN sensor)."""
FORBIDDEN_CHOICES = frozenset({"Forbidden"})
"""The value-table name of the one raw value that forbids, for a BMS whose permit is a code rather than a flag (a
Pylontech HV tower's 0x4280 says 0xAA to forbid, anything else allows): a permit fed by such a signal is 0 at
that value and 1 at any other."""


class TargetKind(enum.Enum):
    """What a target writes: a scalar field, an element of a per-cell array, or a bit of an alarm word.

    An enum, not strings, so the ingest hot path compares by identity and a misspelt kind cannot exist."""

    FIELD = "field"
    CELL_VOLTAGES = "cell_voltages"
    CELL_BALANCING = "cell_balancing"
    CELL_TEMPERATURES = "cell_temperatures"
    WARNINGS = "warnings"
    PROTECTIONS = "protections"
    ADDRESS = "address"
    """The payload signal that names the module (`signal` addressing): always a message's first target."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one decoded signal goes (a scalar field, an element of a per-cell array, or an alarm bit), the
    range outside which the frame is implausible, and the value that means "no reading"."""

    signal: str
    group: str
    kind: TargetKind
    key: str | int
    low: float = -_FINITE
    high: float = _FINITE
    no_value: float | None = None
    forbidden: float | None = None
    """A permit's forbidding value (see `FORBIDDEN_CHOICES`): the target takes `said(target, value)`."""


Read = Callable[[bytes | bytearray], tuple[tuple[Target, ...], tuple[Any, ...]] | None]
"""A payload -> the targets it carries and their values, in that order; None when a value is implausible."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How to decode one DBC message (at its base ID) into module state."""

    message: Message
    length: int
    extended: bool
    targets: tuple[Target, ...]
    """Every target of the message: those of signals outside any multiplexer branch first, then the others."""
    groups: frozenset[str]
    decode: compiled.Decoder
    """The whole message, as cantools decodes it (without value tables), compiled."""
    read: Read
    """The targets the payload carries (all, or those of the multiplexer branch it selects) and their values, in
    that order; None when a value is outside its signal's range and is not its "no reading" value. Raises what
    cantools raises for a payload it cannot decode (an unknown multiplexer value). Generated from the DBC."""

    def present(self, values: Mapping[str, Any]) -> tuple[Target, ...]:
        """The targets of a decoded frame (`decode`'s result): those whose signal its multiplexer branch holds."""
        return tuple(t for t in self.targets if t.signal in values)

    def implausible(self, data: bytes | bytearray) -> tuple[str, Any] | None:
        """The first signal whose value `read` refuses, with the value; the slow path of a rejected frame."""
        values = self.decode(data)
        for target in self.present(values):
            value = values[target.signal]
            if not plausible(target, value):
                return target.signal, value
        return None


def said(target: Target, value: Any) -> Any:
    """What a plausible decoded value says for its target: itself, or for a permit given as a code, 0 (forbidden) at
    the forbidding value and 1 at any other."""
    return value if target.forbidden is None else int(value != target.forbidden)


def choice(signal: Signal, names: frozenset[str]) -> float | None:
    """The scaled value of the signal's first value-table entry named one of `names`, or None."""
    return next(
        (raw * signal.scale + signal.offset for raw, label in (signal.choices or {}).items() if str(label) in names),
        None,
    )


def plausible(target: Target, value: Any) -> bool:
    """The value is within its signal's range, or is the value that means "no reading"."""
    return bool(target.low <= value <= target.high or value == target.no_value)


def canonical_target(name: str) -> Target | None:
    """Where our signal `name` goes, or None if it is not one of the protocol's module -> master signals."""
    if name in SCALARS:
        group, key = SCALARS[name]
        return Target(name, group, TargetKind.FIELD, key)
    match = _INDEXED.match(name)
    if not match:
        return None
    cell, what, sensor, alarm_kind, alarm_name = match.groups()
    if cell and 1 <= int(cell) <= MAX_CELLS:
        kind = TargetKind.CELL_VOLTAGES if what == "Voltage" else TargetKind.CELL_BALANCING
        return Target(name, "cell_voltages", kind, int(cell) - 1)
    if sensor and 1 <= int(sensor) <= MAX_SENSORS:
        return Target(name, "cell_temperatures", TargetKind.CELL_TEMPERATURES, int(sensor) - 1)
    if alarm_kind and alarm_name in ALARM_BITS:
        kind = TargetKind.WARNINGS if alarm_kind == "Warn" else TargetKind.PROTECTIONS
        return Target(name, "alarms", kind, ALARM_BITS.index(alarm_name))
    return None


class ModuleCodec:
    """Decodes module frames of one DBC on one bus, routed by its addressing; encodes MasterCommand when the DBC
    has it."""

    def __init__(
        self,
        db: Database,
        *,
        addressing: Addressing | None = None,
        signal_map: Mapping[str, str] | None = None,
        provides: frozenset[str] | None = None,
        padded: bool = False,
        invert_current: bool = False,
        where: str = "can.modules",
    ):
        """`provides`: the groups the profile declares (None: whatever the DBC carries); `padded`: frames longer
        than the DBC's are taken, the extra bytes ignored; `invert_current`: the BMS counts discharging as positive;
        `where` names the bus entry in errors."""
        self.padded = padded
        self.invert_current = invert_current
        self.addressing = addressing = addressing or Addressing()
        self.addresses = addressing.addresses
        """The module addresses a frame may carry; frames with others are rejected."""
        self.where = where
        self._plans: dict[int, Plan] = {}
        self.plans: Mapping[int, Plan] = MappingProxyType(self._plans)
        """Base ID (the message's ID at wire address 0) -> its plan."""
        signal_map = dict(signal_map or {})
        problems = [
            f"{where}.signal_map.{theirs}: '{ours}' is not a signal of the module protocol"
            for theirs, ours in signal_map.items()
            if canonical_target(ours) is None
        ]
        known = {s.name for m in db.messages for s in m.signals}
        problems += [
            f"{where}.signal_map.{theirs}: the DBC has no signal of that name"
            for theirs in signal_map
            if theirs not in known
        ]
        if addressing.scheme is Scheme.MASK:
            problems += _collisions(db, addressing.mask, where)
        if problems:
            raise ConfigError(problems)
        self._command = _find(db, "MasterCommand")
        self._encode_command = None if self._command is None else compiled.encoder(self._command, scaling=True)
        by_signal = addressing.signal if addressing.scheme is Scheme.SIGNAL else None
        for message in db.messages:
            if message is self._command:
                continue
            plan = _plan(message, signal_map, by_signal)
            if plan is None:
                raise ConfigError([f"{where}.address_signal: message {message.name} has no signal {by_signal!r}"])
            if plan.groups:
                other = self._plans.setdefault(addressing.base(message.frame_id), plan)
                if other is not plan:
                    raise ConfigError(
                        [
                            f"{where}.{KEYS[addressing.scheme][0]}: {other.message.name} ({other.message.frame_id:#x}) "
                            f"and {message.name} ({message.frame_id:#x}) differ only in the address bits"
                        ]
                    )
        carried = frozenset(g for p in self._plans.values() for g in p.groups)
        if "status" not in carried:
            raise ConfigError([f"{where}.dbc: no message carries ModuleVoltage/SOC (map them with signal_map)"])
        if provides is not None and not provides <= carried:
            missing = ", ".join(sorted(provides - carried))
            raise ConfigError([f"{where}.dbc: the profile provides {missing}, but no message of the DBC carries it"])
        self.provides = carried if provides is None else provides
        """The groups this bus's modules send."""
        self.required_groups = frozenset(g for g in REQUIRED_GROUPS if g in self.provides)
        self.alive_counter = any(t.key == "alive" for p in self._plans.values() for t in p.targets)
        """The DBC carries an AliveCounter: a module proves it is real by advancing it."""
        self.counts_sensors = any(t.key == "sensor_count" for p in self._plans.values() for t in p.targets)
        """The DBC says how many temperature sensors a module has (Daly): its TempNN slots beyond that are empty,
        not sensors, whatever they decode to (a Daly's read -40 degC)."""
        sent = {t.key for p in self._plans.values() for t in p.targets if t.group in self.provides}
        self.absent = _absent(self.provides, sent)
        """The rule inputs these modules never send (see `_absent`); every reading of this bus carries them."""
        self.command_base = None if self._command is None else addressing.base(self._command.frame_id)
        self.routes: Mapping[int, tuple[Plan, int]] = MappingProxyType(self._routes(db))
        """Frame ID -> (plan, module address): one dict lookup per frame. Under `signal` addressing the address
        is the payload's, and the one here is 0."""

    @classmethod
    def from_config(cls, bus: ModuleBusSection) -> ModuleCodec:
        """The codec a `[[can.modules]]` entry describes; a DBC without MasterCommand while `commands` is on is a
        config error found here, not at the first command the master sends."""
        row = bus.row
        own_dbc = bus.dbc is not None
        db = dbc.load(bus.dbc, row.dbc, f"{bus.where}.dbc")
        codec = cls(
            db,
            addressing=bus.address_plan,
            signal_map=bus.signals,
            provides=None if own_dbc else row.provides or None,
            padded=row.padded and not own_dbc,
            invert_current=bus.invert_current,
            where=bus.where,
        )
        if bus.sends_commands and codec.command_base is None:
            raise ConfigError([f"{bus.where}.dbc: the DBC has no MasterCommand message (set commands = false)"])
        if bus.sends_commands and codec.addressing.scheme is Scheme.SIGNAL:
            raise ConfigError([f"{bus.where}.commands: MasterCommand needs the address in the ID, not a signal"])
        return codec

    def _routes(self, db: Database) -> dict[int, tuple[Plan, int]]:
        """Every frame ID a module of this bus may send, with its plan and address; two that meet are refused."""
        addressing = self.addressing
        addresses = range(1) if addressing.scheme is Scheme.SIGNAL else self.addresses
        routes: dict[int, tuple[Plan, int]] = {}
        problems = []
        for base, plan in self._plans.items():
            bits = 29 if plan.extended else 11
            for address in addresses:
                can_id = addressing.frame_id(base, address)
                if can_id >= 1 << bits:
                    problems.append(
                        f"{self.where}.{KEYS[addressing.scheme][0]}: {plan.message.name} of module {address} would be "
                        f"frame {can_id:#x}, beyond a {bits}-bit ID"
                    )
                    break
                other = routes.setdefault(can_id, (plan, address))
                if other != (plan, address):
                    problems.append(
                        f"{self.where}.{KEYS[addressing.scheme][0]}: frame {can_id:#x} could be {plan.message.name} "
                        f"of module {address} or {other[0].message.name} of module {other[1]}"
                    )
                    break
        if problems:
            raise ConfigError(problems)
        return routes

    def route(self, can_id: int) -> tuple[Plan | None, int | None]:
        """The plan a frame ID's message has whatever its address, and the address if it is one this bus
        carries; the slow path, for a frame the route table does not know."""
        if can_id in self.routes:
            return self.routes[can_id]
        return self._plans.get(self.addressing.base(can_id)), None

    def message(self, can_id: int) -> tuple[Message, int | None] | None:
        """The DBC message a frame ID carries on this bus (MasterCommand included), and the module address the ID
        names (None under `signal` addressing, where the payload names it, and for an address this bus does not
        carry); None for an ID of no message. For a reader of logs (`bms-gateway decode`), not the hot path."""
        plan, address = self.route(can_id)
        if plan is not None:
            return plan.message, None if self.addressing.scheme is Scheme.SIGNAL else address
        if self._command is not None and self.addressing.base(can_id) == self.command_base:
            return self._command, self._command_addresses.get(can_id)
        return None

    @functools.cached_property
    def _command_addresses(self) -> Mapping[int, int]:
        """MasterCommand's frame ID -> the module it addresses, worked out once (only `message` asks)."""
        assert self.command_base is not None
        return {self.addressing.frame_id(self.command_base, a): a for a in self.addresses}

    def encode_command(self, command: MasterCommand, counter: int) -> tuple[int, bytes]:
        """The (frame ID, payload) of a MasterCommand."""
        if self._encode_command is None or self.command_base is None:
            raise ConfigError([f"{self.where}.dbc: the DBC has no MasterCommand message (set commands = false)"])
        data = self._encode_command(
            {
                "ConnectPermit": int(command.connect_permit),
                "ChargeAllowed": int(command.charge_allowed),
                "DischargeAllowed": int(command.discharge_allowed),
                "BalancingAllowed": int(command.balancing_allowed),
                "IsolateReason": int(command.isolate_reason),
                "BalanceTargetVoltage": command.balance_target_voltage,
                "FanDuty": command.fan_duty,
                "MasterCounter": counter % 256,
            }
        )
        return self.addressing.frame_id(self.command_base, command.address), data


def _absent(provides: frozenset[str], sent: set[str | int]) -> frozenset[str]:
    """The rule inputs a module never sends, when its own current limits stand in for them.

    A module that reports its limits but no cell data (a Pylontech battery) is bounded by its own limits: the cell
    rules do not apply to it. One that reports no limits keeps every rule: what it does not send derates to zero.
    An extreme the store derives from per-cell values (`_DERIVED`) counts as sent. Permits are a veto, never a
    measurement: a module that never sends them is never waited for them.
    """
    limits = RULE_INPUTS["limits"]
    if not all(key in sent for key in limits):
        return frozenset(limits) | frozenset(key for key in RULE_INPUTS["permits"] if key not in sent)
    derived = {key for group, source in _DERIVED.items() if source in provides for key in RULE_INPUTS[group]}
    return frozenset(key for keys in RULE_INPUTS.values() for key in keys if key not in sent | derived)


DecodeFailure = (cantools.database.errors.DecodeError, ValueError, KeyError, IndexError)
"""What cantools raises for a payload it cannot decode."""


def _collisions(db: Database, mask: int, where: str) -> list[str]:
    """Messages whose frame IDs the mask maps onto one base ID: the codec could tell only one of them."""
    problems = []
    seen: dict[int, Message] = {}
    for message in db.messages:
        base = message.frame_id & ~mask
        other = seen.setdefault(base, message)
        if other is message:
            continue
        frame = message.frame_id + 1
        widest = (1 << ((other.frame_id ^ message.frame_id).bit_length() - 1)) - 1
        problems.append(
            f"{where}.address_mask: {mask:#x} gives {other.name} ({other.frame_id:#x}) and {message.name} "
            f"({message.frame_id:#x}) the same base ID {base:#x}: frame {frame:#x} could be {message.name} of "
            f"module 1 or {other.name} of module {frame & mask}; this DBC needs a mask of at most {widest:#x}"
        )
    return problems


def _find(db: Database, name: str) -> Message | None:
    try:
        return db.get_message_by_name(name)
    except KeyError:
        return None


def _plan(message: Message, signal_map: Mapping[str, str], address_signal: str | None = None) -> Plan | None:
    """The message's plan; None when `address_signal` is given and the message lacks it."""
    always: list[Target] = []
    branched: list[Target] = []
    for signal in message.signals:
        if signal.is_multiplexer:
            continue
        target = canonical_target(signal_map.get(signal.name, signal.name))
        if target is None:
            continue
        permit = target.key in RULE_INPUTS["permits"]
        target = Target(
            signal.name,
            target.group,
            target.kind,
            target.key,
            -_FINITE if signal.minimum is None else float(signal.minimum),
            _FINITE if signal.maximum is None else float(signal.maximum),
            choice(signal, NO_VALUE_CHOICES),
            choice(signal, FORBIDDEN_CHOICES) if permit else None,
        )
        (branched if signal.multiplexer_ids else always).append(target)
    if address_signal is not None and (always or branched):
        found = next((s for s in message.signals if s.name == address_signal and not s.multiplexer_ids), None)
        if found is None:
            return None
        always = [_address_target(found), *(t for t in always if t.signal != address_signal)]
    targets = (*always, *branched)
    decode = compiled.decoder(message)
    return Plan(
        message=message,
        length=message.length,
        extended=message.is_extended_frame,
        targets=targets,
        groups=frozenset(t.group for t in targets if t.kind is not TargetKind.ADDRESS),
        decode=decode,
        read=_compiled_read(message, targets) or _read_with(decode, targets),
    )


def _address_target(signal: Signal) -> Target:
    low = -_FINITE if signal.minimum is None else float(signal.minimum)
    high = _FINITE if signal.maximum is None else float(signal.maximum)
    return Target(signal.name, "", TargetKind.ADDRESS, "address", low, high)


def _compiled_read(message: Message, targets: Sequence[Target]) -> Read | None:
    """`Plan.read` generated from the DBC: per branch, only the targets' signals, each range-checked where its raw
    bits could leave the range."""
    signals = {s.name: s for s in message.signals}

    def leaf(names: Sequence[str], expressions: Mapping[str, str], constant: compiled.Constant) -> list[str]:
        present = tuple(t for t in targets if t.signal in names)
        lines = [f"v{i} = {expressions[t.signal]}" for i, t in enumerate(present)]
        checks = [_check(t, signals[t.signal], f"v{i}") for i, t in enumerate(present)]
        if any(checks):
            lines += [f"if not ({' and '.join(c for c in checks if c)}):", "    return None"]
        values = "".join(  # `said`, inline
            f"v{i}, " if t.forbidden is None else f"0 if v{i} == {t.forbidden!r} else 1, "
            for i, t in enumerate(present)
        )
        return [*lines, f"return {constant(present)}, ({values})"]

    return compiled.generate(message, leaf)


def _check(target: Target, signal: Signal, value: str) -> str:
    """The source that tells whether `value` is plausible for `target` (see `plausible`); empty when every raw
    value of the signal is (a linear conversion maps the raw range's ends to the scaled range's ends)."""
    if not signal.is_float:
        n = signal.length
        ends = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if signal.is_signed else (0, (1 << n) - 1)
        scaled = [signal.conversion.raw_to_scaled(raw, decode_choices=False) for raw in ends]
        if all(isinstance(v, int | float) and target.low <= v <= target.high for v in scaled):
            return ""
    check = f"{target.low!r} <= {value} <= {target.high!r}"
    return check if target.no_value is None else f"({check} or {value} == {target.no_value!r})"


def _read_with(decode: compiled.Decoder, targets: Sequence[Target]) -> Read:
    """`Plan.read` for a message the generator cannot do: the same result, from the whole decoded message."""

    def read(data: bytes | bytearray) -> tuple[tuple[Target, ...], tuple[Any, ...]] | None:
        values = decode(data)
        present = tuple(t for t in targets if t.signal in values)
        out = tuple(values[t.signal] for t in present)
        if all(plausible(t, v) for t, v in zip(present, out, strict=True)):
            return present, tuple(said(t, v) for t, v in zip(present, out, strict=True))
        return None

    return read
