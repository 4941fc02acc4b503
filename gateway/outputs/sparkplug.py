"""Sparkplug B edge node, the pure part: metric definitions, births, report by exception, deaths and commands.

The gateway is one edge node (`spBv1.0/<group_id>/.../<edge_node_id>`); the bank is the node and each module a
device (`module_<address>`). Metrics come from the one description table (`gateway.outputs.fields`) and the one
alarm enum (`AlarmCode`), with values read from the same JSON dicts MQTT publishes (`gateway.payload`), so a
field added to the table appears here too. A few metrics are Sparkplug's own or structural: `bdSeq`,
`Node Control/Rebirth`, the operator actions (with `[mqtt] commands = true`), the gateway's version and config
hash, each alarm's level and modules, and each module's life-cycle state.

- **Types.** A field whose resolution (`scale`) is a whole unit travels as its register's integer type, any
  other number as Float, a flag as Boolean, text as String. Aliases are fixed: node metrics 1..N in table order,
  module *a*'s metrics 1000 x *a* + 1.., unique across the node as the specification requires. Births carry
  name, alias, datatype, value and an `engUnit` property; data messages alias and value only.
- **Report by exception.** NDATA/DDATA carry only metrics that changed since the last birth or data message: a
  number by at least `deadband` x its field's resolution (`[sparkplug] deadband`), anything else on any change.
- **Devices.** A module is a device while the master knows it and it is not offline: DBIRTH when it appears
  (after the NBIRTH), DDEATH when it goes offline or leaves the snapshot.
- **Sequence.** `seq` is 0 in the NBIRTH and counts every later message of the session modulo 256; NDEATH has
  none. `bdSeq` belongs to the MQTT connection (`death` / `birth` take it from the adapter).

`EdgeNode` holds one session's memory (what each host was last told) and turns snapshots into `Outgoing`
messages; `gateway.outputs.sparkplug_publisher` moves them to a broker.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import tomli_w

from gateway.clock import Anchor
from gateway.config import Config, to_toml_dict
from gateway.master.model import AlarmCode, BankSnapshot, Level, Lifecycle
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, MODULE_TEXT, Field, RegisterType
from gateway.outputs.sparkplug_codec import DataType, Metric, Payload, Value, encode
from gateway.payload import bank_dict, lookup, module_dict

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
FULL_CHARGE = "Node Control/Request Full Charge"
READMIT = "Device Control/Readmit"
VERSION = "Gateway/version"
CONFIG_HASH = "Gateway/config_hash"
STATE = "state"
"""A module's life cycle with the master (`online`, `pending`, `isolated`, `rejected`)."""
DEVICE_ALIAS = 1000
"""Module a's metrics have aliases DEVICE_ALIAS x a + 1, ...; the node's stay below DEVICE_ALIAS."""
LEVELS: Mapping[Level | None, int] = {None: 0, Level.WARNING: 1, Level.PROTECTION: 2}
"""An alarm metric's value: 0 not active, 1 warning, 2 protection."""

_INTEGER: Mapping[RegisterType, DataType] = {
    "u16": DataType.UINT16,
    "s16": DataType.INT16,
    "u32": DataType.UINT32,
    "s32": DataType.INT32,
}


def config_hash(config: Config) -> str:
    """16 hex digits of the SHA-256 of the effective config as `check-config` prints it: equal for equal settings,
    whatever the file's layout or comments."""
    return hashlib.sha256(tomli_w.dumps(to_toml_dict(config)).encode()).hexdigest()[:16]


def device_id(address: int) -> str:
    return f"module_{address}"


_DEVICE = re.compile(r"module_([0-9]{1,3})")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one edge node."""

    group_id: str
    edge_node_id: str

    @property
    def _node(self) -> str:
        return f"{NAMESPACE}/{self.group_id}"

    def node(self, verb: Literal["NBIRTH", "NDEATH", "NDATA", "NCMD"]) -> str:
        return f"{self._node}/{verb}/{self.edge_node_id}"

    def device(self, verb: Literal["DBIRTH", "DDEATH", "DDATA", "DCMD"], address: int) -> str:
        return f"{self._node}/{verb}/{self.edge_node_id}/{device_id(address)}"

    @property
    def device_commands(self) -> str:
        """The filter for every device's DCMD."""
        return f"{self._node}/DCMD/{self.edge_node_id}/+"

    @staticmethod
    def state(host_id: str) -> str:
        """A Sparkplug 3.0 host application's STATE topic."""
        return f"{NAMESPACE}/STATE/{host_id}"

    def address(self, topic: str) -> int | None:
        """The module address of a device topic of this node, or None."""
        device = topic.rpartition("/")[2]
        match = _DEVICE.fullmatch(device)
        return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Definition:
    """What a birth says about one metric."""

    name: str
    alias: int
    datatype: DataType
    unit: str | None = None
    deadband: float = 0.0
    """A number is reported when it moved by at least this much (0: on any change)."""

    def metric(self, value: Value) -> Metric:
        """The metric as a birth carries it."""
        properties = (("engUnit", self.unit),) if self.unit else ()
        return Metric(self.name, self.alias, self.datatype, value, properties)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the broker: Sparkplug's are QoS 0, not retained (the will is the adapter's)."""

    topic: str
    payload: Payload
    birth: bool = False
    """Births (and NDEATH) carry datatypes; data messages do not."""

    def encode(self) -> bytes:
        return encode(self.payload, with_datatypes=self.birth)


@dataclass(frozen=True, slots=True)
class Rebirth:
    """Publish the whole birth sequence again (NCMD `Node Control/Rebirth` = true)."""


@dataclass(frozen=True, slots=True)
class Action:
    """An operator command to run, as `gateway.outputs.mqtt.execute` knows it."""

    command: str
    payload: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A write the gateway does not take, and why."""

    metric: str
    reason: str


Decision = Rebirth | Action | Refused


def _datatype(field: Field) -> DataType:
    return _INTEGER[field.register] if field.scale >= 1.0 else DataType.FLOAT


def _number(field: Field, deadband: float) -> Definition:
    return Definition("", 0, _datatype(field), field.unit, field.scale * deadband)


def _convert(datatype: DataType, value: Any) -> Value:
    """A value from the JSON dicts as the metric's datatype takes it (None stays None: sent as null)."""
    if value is None:
        return None
    if datatype is DataType.BOOLEAN:
        return bool(value)
    if datatype in (DataType.STRING, DataType.TEXT):
        return str(value)
    if datatype is DataType.FLOAT or datatype is DataType.DOUBLE:
        return float(value)
    number: int = round(value)
    return number


def _numbered(definitions: Iterable[Definition], base: int) -> tuple[Definition, ...]:
    return tuple(
        Definition(d.name, base + n, d.datatype, d.unit, d.deadband) for n, d in enumerate(definitions, start=1)
    )


def _named(name: str, template: Definition) -> Definition:
    return Definition(name, 0, template.datatype, template.unit, template.deadband)


def node_definitions(*, commands: bool, deadband: float) -> tuple[Definition, ...]:
    """Every node metric but `bdSeq`, in NBIRTH order, with its alias."""
    out = [Definition(REBIRTH, 0, DataType.BOOLEAN)]
    if commands:
        out.append(Definition(FULL_CHARGE, 0, DataType.BOOLEAN))
    out += [Definition(VERSION, 0, DataType.STRING), Definition(CONFIG_HASH, 0, DataType.STRING)]
    out += [_named(f"Bank/{f.key}", _number(f, deadband)) for f in BANK_FIELDS]
    out += [Definition(f"Bank/{f.key}", 0, DataType.BOOLEAN) for f in BANK_FLAGS]
    for code in AlarmCode:
        out += [
            Definition(f"Alarms/{code}", 0, DataType.UINT8),
            Definition(f"Alarms/{code}/modules", 0, DataType.STRING),
        ]
    return _numbered(out, 0)


def device_definitions(address: int, *, commands: bool, deadband: float) -> tuple[Definition, ...]:
    """Every metric of module `address`, in DBIRTH order, with its alias."""
    out = [_named(f.key, _number(f, deadband)) for f in MODULE_FIELDS]
    out += [Definition(f.key, 0, DataType.STRING) for f in MODULE_TEXT]
    out.append(Definition(STATE, 0, DataType.STRING))
    if commands:
        out.append(Definition(READMIT, 0, DataType.BOOLEAN))
    return _numbered(out, DEVICE_ALIAS * address)


def node_values(s: BankSnapshot, wall: Anchor, *, version: str, config_hash: str) -> dict[str, Value]:
    """Every node metric's current value (but `bdSeq`), by name."""
    bank = bank_dict(s, wall=wall)
    values: dict[str, Value] = {REBIRTH: False, FULL_CHARGE: False, VERSION: version, CONFIG_HASH: config_hash}
    for f in BANK_FIELDS:
        values[f"Bank/{f.key}"] = _convert(_datatype(f), lookup(bank, f.path))
    for f in BANK_FLAGS:
        values[f"Bank/{f.key}"] = _convert(DataType.BOOLEAN, lookup(bank, f.path))
    active = {a.code: a for a in s.alarms}
    for code in AlarmCode:
        alarm = active.get(code)
        values[f"Alarms/{code}"] = LEVELS[alarm.level if alarm else None]
        values[f"Alarms/{code}/modules"] = ",".join(map(str, alarm.modules)) if alarm else ""
    return values


def device_values(s: BankSnapshot, address: int) -> dict[str, Value]:
    """Module `address`'s current values (it must be in `s.modules`), by metric name."""
    view = s.modules[address]
    module = module_dict(view, s.t)
    values: dict[str, Value] = {f.key: _convert(_datatype(f), lookup(module, f.path)) for f in MODULE_FIELDS}
    values.update({f.key: _convert(DataType.STRING, lookup(module, f.path)) for f in MODULE_TEXT})
    values[STATE] = str(view.lifecycle)
    values[READMIT] = False
    return values


def changed(definition: Definition, old: Value, new: Value) -> bool:
    """Whether `new` is to be reported to a host that was last told `old` (report by exception)."""
    if old is None or new is None or isinstance(new, bool | str) or isinstance(old, bool | str):
        return old != new
    if definition.deadband > 0.0:
        return abs(new - old) >= definition.deadband * (1.0 - 1e-9)
    return old != new


def devices(s: BankSnapshot) -> list[int]:
    """The modules that are devices now: known to the master and not offline."""
    return sorted(a for a, view in s.modules.items() if view.lifecycle is not Lifecycle.OFFLINE)


class EdgeNode:
    """One edge node's session state: the sequence number and what the hosts were told of each metric.

    Pure: snapshots and times in, `Outgoing` messages out. `birth` starts a session (and a rebirth); `update`
    reports what changed since; `death` is the NDEATH, for the will and a clean stop.
    """

    def __init__(
        self, *, group_id: str, edge_node_id: str, version: str, config_hash: str, commands: bool, deadband: float
    ) -> None:
        self.topics = Topics(group_id, edge_node_id)
        self._version = version
        self._config_hash = config_hash
        self._commands = commands
        self._deadband = deadband
        self.node = node_definitions(commands=commands, deadband=deadband)
        self._by_alias = {d.alias: d for d in self.node}
        self._by_name = {d.name: d for d in self.node}
        self._device_defs: dict[int, tuple[Definition, ...]] = {}
        self._seq = 0
        self._told: dict[str, Value] = {}
        """What the hosts were last told of each node metric, this session."""
        self._told_devices: dict[int, dict[str, Value]] = {}
        """Per device that has been born this session: what the hosts were last told of each metric."""

    def device(self, address: int) -> tuple[Definition, ...]:
        if address not in self._device_defs:
            self._device_defs[address] = device_definitions(address, commands=self._commands, deadband=self._deadband)
        return self._device_defs[address]

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def death(self, bd_seq: int, now_ms: int) -> Outgoing:
        """The NDEATH: the bdSeq of the connection, no seq."""
        metric = Metric(BD_SEQ, None, DataType.INT64, bd_seq)
        return Outgoing(self.topics.node("NDEATH"), Payload(now_ms, (metric,)), birth=True)

    def birth(self, s: BankSnapshot, wall: Anchor, now_ms: int, *, bd_seq: int) -> list[Outgoing]:
        """NBIRTH (seq 0, every node metric, the connection's bdSeq) and a DBIRTH per device; forgets what was
        told before (a new session, or a rebirth)."""
        self._seq = 0
        self._told = node_values(s, wall, version=self._version, config_hash=self._config_hash)
        metrics = (Metric(BD_SEQ, None, DataType.INT64, bd_seq), *(d.metric(self._told[d.name]) for d in self.node))
        out = [Outgoing(self.topics.node("NBIRTH"), Payload(now_ms, metrics, seq=0), birth=True)]
        self._told_devices = {}
        out += [self._device_birth(s, address, now_ms) for address in devices(s)]
        return out

    def _device_birth(self, s: BankSnapshot, address: int, now_ms: int) -> Outgoing:
        told = self._told_devices[address] = device_values(s, address)
        metrics = tuple(d.metric(told[d.name]) for d in self.device(address))
        return Outgoing(self.topics.device("DBIRTH", address), Payload(now_ms, metrics, self._next_seq()), birth=True)

    def update(self, s: BankSnapshot, wall: Anchor, now_ms: int) -> list[Outgoing]:
        """What changed since the hosts were last told: DDEATHs, NDATA, DBIRTHs of new devices, DDATAs."""
        out: list[Outgoing] = []
        live = devices(s)
        for address in sorted(self._told_devices.keys() - set(live)):
            del self._told_devices[address]
            out.append(Outgoing(self.topics.device("DDEATH", address), Payload(now_ms, seq=self._next_seq())))
        values = node_values(s, wall, version=self._version, config_hash=self._config_hash)
        metrics = self._changes(self.node, self._told, values)
        if metrics:
            out.append(Outgoing(self.topics.node("NDATA"), Payload(now_ms, metrics, self._next_seq())))
        for address in live:
            told = self._told_devices.get(address)
            if told is None:
                out.append(self._device_birth(s, address, now_ms))
            elif metrics := self._changes(self.device(address), told, device_values(s, address)):
                out.append(Outgoing(self.topics.device("DDATA", address), Payload(now_ms, metrics, self._next_seq())))
        return out

    @staticmethod
    def _changes(
        definitions: tuple[Definition, ...], told: dict[str, Value], values: Mapping[str, Value]
    ) -> tuple[Metric, ...]:
        """The metrics to report (alias and value), remembering what is reported."""
        out = []
        for d in definitions:
            new = values[d.name]
            if changed(d, told[d.name], new):
                told[d.name] = new
                out.append(Metric(None, d.alias, d.datatype, new))
        return tuple(out)

    # -- commands -------------------------------------------------------------------------------------------

    def node_command(self, metrics: Iterable[Metric]) -> list[Decision]:
        """What to do about an NCMD: a rebirth, an operator action, or a refusal per metric written."""
        out: list[Decision] = []
        for m in metrics:
            definition = self._by_name.get(m.name or "") or self._by_alias.get(m.alias or -1)
            name = definition.name if definition else m.name or f"alias {m.alias}"
            if definition is not None and definition.name == REBIRTH and m.value is True:
                out.append(Rebirth())
            elif definition is not None and definition.name == FULL_CHARGE and m.value is True:
                out.append(Action("full_charge", "1"))
            elif definition is None:
                out.append(Refused(name, "no such node metric"))
            elif definition.name in (REBIRTH, FULL_CHARGE):
                out.append(Refused(name, "write true to act"))
            else:
                out.append(Refused(name, "read-only"))
        return out

    def device_command(self, address: int | None, metrics: Iterable[Metric]) -> list[Decision]:
        """What to do about a DCMD to module `address` (None: not a device of ours)."""
        out: list[Decision] = []
        definitions = self.device(address) if address is not None else ()
        by_name = {d.name: d for d in definitions}
        by_alias = {d.alias: d for d in definitions}
        for m in metrics:
            definition = by_name.get(m.name or "") or by_alias.get(m.alias or -1)
            name = definition.name if definition else m.name or f"alias {m.alias}"
            if address is None or definition is None:
                out.append(Refused(name, "no such device metric"))
            elif definition.name == READMIT and m.value is True:
                out.append(Action("readmit", str(address)))
            elif definition.name == READMIT:
                out.append(Refused(name, "write true to act"))
            else:
                out.append(Refused(name, "read-only"))
        return out
