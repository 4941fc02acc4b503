"""MQTT output: the bank, its modules and alarms as JSON topics, Home Assistant discovery and operator commands.

The publisher only reads `SnapshotHub` snapshots, so a slow or absent broker never touches the master or the CAN
side. Outgoing messages wait in an outbox that keeps one message per topic (a newer value replaces an unsent
one), so nothing piles up while the broker is slow; on every (re)connect the status, discovery and the whole
current state are published again, so nothing needs queueing while disconnected.

Everything read from the broker is hostile input: anyone who may publish there can leave a retained message
behind. The module record, HA's birth message and the commands are validated; what does not pass is ignored
(logged once per burst) and the session goes on, so a poisoned retained message cannot make the publisher
crash and reconnect in a loop.

Which modules have HA entities is kept in a small retained record (`<base>/<id>/modules`, a JSON list). The
publisher subscribes to it on connect and merges the previous run's record into what it announces, so after a
restart it still knows what it announced and clears the entities of modules that left the config. It writes the
record only once the previous one has been read: until then it publishes an empty, non-retained probe on that
topic, which replaces nothing on the broker and comes back after the retained record (a broker keeps the order
of one topic's messages), so its return means the previous record, if there is one, is in. After that the record
is rewritten whenever what is announced changes, a merge included. With `[bank] strings` configured the
announced modules are exactly the configured ones; in auto mode every module seen is announced and never removed
automatically (a module switched off during a restart would otherwise lose its HA history and customisations).
A module's entities are announced once per connection and again when its ModuleInfo (model, firmware) changes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt

from gateway import logs
from gateway.clock import Anchor, WallClock
from gateway.config import Config
from gateway.errors import DecodeError
from gateway.history.events import event_dict
from gateway.hub import EventHub, SnapshotHub
from gateway.master.model import BankSnapshot
from gateway.outputs import discovery
from gateway.outputs.broker import Broker, Link, raise_if_cancelled, together
from gateway.outputs.discovery import OFFLINE, ONLINE, Topics
from gateway.payload import alarm_dict, bank_dict, cells_dict, module_dict, module_energy

_log = logs.get(__name__)

SHUTDOWN_TIMEOUT = 2.0
"""How long a cancelled publisher may spend saying "offline" and disconnecting."""
RECORD_LIMIT = 4096
"""Bytes of a module record read back; ours is under 100 (31 addresses), a longer one is not ours."""
COMMAND_LIMIT = 64
"""Bytes of a command payload (a module address, or `1`); a longer one is rejected unread."""


class Actions(Protocol):
    """The operator actions the master owns (`gateway.master.master.Master` implements them)."""

    def readmit(self, address: int) -> bool: ...

    def request_full_charge(self) -> None: ...


def urgent_key(s: BankSnapshot) -> Hashable:
    """What must be published at once when it changes: alarms, flags, validity and the modules' life cycle.

    Alarm details (measured values) are left out: they change every tick and go out with the regular state.
    """
    return (
        s.valid,
        s.flags,
        tuple((a.code, a.level, a.modules) for a in s.alarms),
        tuple((address, view.lifecycle) for address, view in sorted(s.modules.items())),
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def state_messages(s: BankSnapshot, topics: Topics, wall: Anchor) -> dict[str, bytes]:
    """Topic -> payload of the regular state: the bank, and per module its values and its cells."""
    out = {topics.bank: _json(bank_dict(s, wall=wall))}
    for address, view in sorted(s.modules.items()):
        out[topics.module(address)] = _json(module_dict(view, s.t, module_energy(s, address)))
        out[topics.cells(address)] = _json(cells_dict(view))
    return out


def alarms_payload(s: BankSnapshot, wall: Anchor) -> bytes:
    return _json([alarm_dict(a, wall=wall) for a in s.alarms])


def read_record(payload: bytes, addresses: range) -> frozenset[int]:
    """The module addresses of a record read back from the broker (an empty payload: no record).

    Raises DecodeError unless it is a record we could have written: a short JSON list of valid module addresses.
    """
    if not payload:
        return frozenset()
    if len(payload) > RECORD_LIMIT:
        raise DecodeError(f"longer than {RECORD_LIMIT} bytes")
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as err:  # ValueError: not UTF-8 or not JSON; RecursionError: nested
        raise DecodeError(f"not JSON: {type(err).__name__}") from err
    if not isinstance(value, list) or not all(type(a) is int and a in addresses for a in value):
        raise DecodeError(f"not a list of module addresses {addresses[0]}..{addresses[-1]}")
    return frozenset(value)


def command_text(payload: bytes) -> str:
    """The text of a command payload; DecodeError when it is too long or not UTF-8."""
    if len(payload) > COMMAND_LIMIT:
        raise DecodeError(f"payload longer than {COMMAND_LIMIT} bytes")
    try:
        return payload.decode()
    except UnicodeDecodeError as err:
        raise DecodeError("payload is not UTF-8 text") from err


def preview(payload: bytes | str, limit: int = 40) -> str:
    """A payload or name as it may appear in a log line or a result: text, at most `limit` characters."""
    text = payload if isinstance(payload, str) else payload[: limit * 4].decode(errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


def execute(actions: Actions, name: str, payload: str, *, addresses: range) -> tuple[bool, str]:
    """Validate and run one operator command; returns (accepted and done, what happened).

    `addresses` are the valid module addresses (`CanSection.addresses`).
    """
    if name == "readmit":
        if not re.fullmatch(r"[0-9]{1,3}", payload.strip()) or int(payload) not in addresses:
            return False, f"readmit needs a module address {addresses[0]}..{addresses[-1]}, got {payload!r}"
        address = int(payload)
        if actions.readmit(address):
            return True, f"module {address} re-admitted: it joins the bank once it passes admission"
        return False, f"module {address} is not isolated"
    if name == "full_charge":
        actions.request_full_charge()
        return True, "full charge requested"
    return False, f"unknown command {name!r} (known: readmit, full_charge)"


@dataclass(frozen=True, slots=True)
class Outgoing:
    payload: bytes
    retain: bool


class Outbox:
    """Messages waiting for the broker, one per topic: a newer value replaces an unsent one (latest wins)."""

    def __init__(self) -> None:
        self._pending: dict[str, Outgoing] = {}
        self._ready = asyncio.Event()

    def put(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._pending[topic] = Outgoing(payload, retain)
        self._ready.set()

    async def take(self) -> tuple[str, Outgoing]:
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        topic = next(iter(self._pending))
        return topic, self._pending.pop(topic)


class MqttPublisher:
    """Publishes the hub's snapshots to one MQTT broker, with HA discovery; see the module docstring.

    `actions` receive the operator commands, and only with `[mqtt] commands = true`; the latest of `events` goes to
    the retained events topic.
    """

    def __init__(
        self,
        hub: SnapshotHub,
        *,
        config: Config,
        clock: WallClock,
        actions: Actions | None,
        events: EventHub | None = None,
    ) -> None:
        mqtt = config.mqtt
        self._hub = hub
        self._events = events
        self._config = config
        self._clock = clock
        self._actions = actions if mqtt.commands else None
        self._topics = Topics.of(config)
        self._link = Link(
            Broker.of(config, "mqtt"),
            name="mqtt",
            client_id=mqtt.client_id or f"bms-gateway-{config.gateway.id}",
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            log=_log,
            clock=clock,
        )
        self._interval = mqtt.interval
        self._configured = frozenset(a for string in config.bank.strings for a in string)
        self._announced: frozenset[int] = frozenset()
        """The modules that have HA entities, as far as this process knows (its own and the record's)."""
        self._identities: dict[int, discovery.ModuleIdentity] = {}
        """Each module's latest known ModuleInfo (kept when the module leaves the snapshot)."""
        self._sent: dict[int, discovery.ModuleIdentity | None] = {}
        """This connection: the modules whose configs went out, with the identity they carried."""
        self._record_read = False
        """This connection: the previous record (or its absence) has been read, so ours may be written."""
        self._written: frozenset[int] | None = None
        """This connection: the record last written."""

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def published(self) -> int:
        return self._link.published

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def errors(self) -> int:
        return self._link.errors

    @property
    def counters(self) -> dict[str, int]:
        """See `Link`: published, reconnects, errors, refused."""
        return self._link.counters

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config's `interval` (from the next cycle); every other [mqtt] key needs a restart."""
        self._interval = config.mqtt.interval

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with capped exponential backoff and jitter."""
        await self._link.run(self._session)

    # -- connection ---------------------------------------------------------------------------------------

    async def _session(self) -> None:
        """One connection, with "offline" as its Will and its last word."""
        will = aiomqtt.Will(self._topics.status, OFFLINE, qos=self._config.mqtt.qos, retain=True)
        await self._link.session(will, self._serve, self._offline)

    async def _offline(self, client: aiomqtt.Client) -> None:
        await self._link.publish(client, self._topics.status, OFFLINE, qos=self._config.mqtt.qos, retain=True)

    async def _serve(self, client: aiomqtt.Client, baseline: int) -> None:
        mqtt = self._config.mqtt
        self._sent, self._record_read, self._written = {}, False, None
        if mqtt.discovery:
            await client.subscribe(self._topics.modules, qos=mqtt.qos)
            await client.subscribe(discovery.birth_topic(self._config), qos=mqtt.qos)
        if self._actions is not None:
            await client.subscribe(self._topics.commands, qos=mqtt.qos)
        raise_if_cancelled(baseline)
        outbox = Outbox()
        tasks = {
            "mqtt-send": self._send(client, outbox),
            "mqtt-receive": self._receive(client, outbox),
            "mqtt-state": self._produce(outbox),
        }
        if self._events is not None:
            tasks["mqtt-events"] = self._publish_events(self._events, outbox)
        await together(tasks, ends=(aiomqtt.MqttError,))

    async def _send(self, client: aiomqtt.Client, outbox: Outbox) -> None:
        qos = self._config.mqtt.qos
        while True:
            topic, message = await outbox.take()
            await self._link.publish(client, topic, message.payload, qos=qos, retain=message.retain)
            raise_if_cancelled()

    # -- state --------------------------------------------------------------------------------------------

    async def _produce(self, outbox: Outbox) -> None:
        """Status and discovery first, then the state every `interval` and at once on an urgent change."""
        loop = asyncio.get_running_loop()
        snapshot = self._hub.latest
        outbox.put(self._topics.status, ONLINE, retain=True)
        self._reconcile(outbox, snapshot, everything=True)
        alarms = None
        while True:
            self._link.report_bursts()
            self._reconcile(outbox, snapshot)
            wall = self._clock.anchor()
            for topic, payload in state_messages(snapshot, self._topics, wall).items():
                outbox.put(topic, payload)
            if (payload := alarms_payload(snapshot, wall)) != alarms:
                outbox.put(self._topics.alarms, payload, retain=True)
                alarms = payload
            snapshot = await self._next(snapshot, loop.time() + self._interval)

    async def _publish_events(self, events: EventHub, outbox: Outbox) -> None:
        """The latest event, retained, on every (re)connect and whenever there is a newer one (a burst of events
        ends as its last: the outbox keeps one message per topic)."""
        count = events.count
        while True:
            if (event := events.latest) is not None:
                outbox.put(self._topics.events, _json(event_dict(event)), retain=True)
            count = await events.newer(count)

    async def _next(self, snapshot: BankSnapshot, due: float) -> BankSnapshot:
        """The latest snapshot at `due`, or earlier the first one whose `urgent_key` differs."""
        key = urgent_key(snapshot)
        try:
            async with asyncio.timeout_at(due):
                while True:
                    snapshot = await self._hub.newer(snapshot.seq)
                    if urgent_key(snapshot) != key:
                        return snapshot
        except TimeoutError:
            return self._hub.latest

    # -- discovery ----------------------------------------------------------------------------------------

    def _reconcile(
        self, outbox: Outbox, snapshot: BankSnapshot, *, everything: bool = False, record: bool = False
    ) -> None:
        """Announce the modules not yet announced on this connection or whose ModuleInfo changed, clear removed
        ones and keep the record; `everything` re-sends all configs, `record` rewrites the record."""
        if not self._config.mqtt.discovery:
            return
        for address, view in snapshot.modules.items():
            if (identity := discovery.ModuleIdentity.of(view.reading)) is not None:
                self._identities[address] = identity
        wanted = self._configured or (self._announced | set(snapshot.modules))
        if everything:
            self._sent.clear()
            self._put_configs(outbox, discovery.bank_configs(self._config), discovery.withdrawn(self._config))
        for address in sorted(wanted):
            identity = self._identities.get(address)
            if address not in self._sent or self._sent[address] != identity:
                configs = discovery.module_configs(self._config, address, identity)
                self._put_configs(outbox, configs, discovery.withdrawn(self._config, address))
                self._sent[address] = identity
        for address in sorted(self._announced - wanted):
            _log.info("mqtt: removing the Home Assistant entities of a module no longer configured", module=address)
            for topic in discovery.module_topics(self._config, address):
                outbox.put(topic, b"", retain=True)
            self._sent.pop(address, None)
        self._announced = frozenset(wanted)
        self._write_record(outbox, rewrite=record)

    @staticmethod
    def _put_configs(outbox: Outbox, configs: dict[str, dict[str, Any]], withdrawn: list[str]) -> None:
        """Discovery configs, and an empty config (HA: remove) for each entity this config no longer offers."""
        for topic, payload in configs.items():
            outbox.put(topic, _json(payload), retain=True)
        for topic in withdrawn:
            outbox.put(topic, b"", retain=True)

    def _write_record(self, outbox: Outbox, *, rewrite: bool) -> None:
        """Write the record if it changed, once the previous one has been read; until then send the probe."""
        if not self._record_read:
            outbox.put(self._topics.modules, b"")  # not retained: see the module docstring
        elif rewrite or self._announced != self._written:
            outbox.put(self._topics.modules, _json(sorted(self._announced)), retain=True)
            self._written = self._announced

    def _record(self, outbox: Outbox, payload: bytes) -> None:
        """A message on the record topic: the previous run's record (retained), our probe or our own record back,
        or someone else's. Merge its modules into what is announced, which rewrites the record if that changed
        it; put ours back in place of one we could not have written."""
        self._record_read = True
        try:
            addresses = read_record(payload, self._config.can.addresses)
        except DecodeError as err:
            self._link.refuse("module_record", topic=self._topics.modules, payload=preview(payload), reason=str(err))
            self._reconcile(outbox, self._hub.latest, record=True)
            return
        self._announced |= addresses
        # An empty payload once ours is written: our late probe, or someone clearing the record. Write it again.
        self._reconcile(outbox, self._hub.latest, record=not payload and self._written is not None)

    # -- incoming -----------------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client, outbox: Outbox) -> None:
        """Handle HA's birth message, the module record and commands; ends (MqttError) when the link breaks."""
        birth = discovery.birth_topic(self._config)
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            if topic == birth:
                if payload == ONLINE:
                    _log.info("mqtt: Home Assistant is online; republishing discovery")
                    self._reconcile(outbox, self._hub.latest, everything=True)
                elif payload != OFFLINE:
                    self._link.refuse(
                        "birth", topic=topic, payload=preview(payload), reason="neither online nor offline"
                    )
            elif topic == self._topics.modules:
                self._record(outbox, payload)
            elif topic.startswith(self._topics.command_prefix):
                self._command(outbox, topic.removeprefix(self._topics.command_prefix), payload, message.retain)

    def _command(self, outbox: Outbox, name: str, payload: bytes, retained: bool) -> None:
        """Run one command and publish its result; an empty payload clears a retained message and is no command."""
        if name == "result" or not payload or self._actions is None:
            return
        name = preview(name)
        try:
            text = command_text(payload)
        except DecodeError as err:
            ok, detail, text = False, str(err), preview(payload)
        else:
            if retained:
                ok, detail = False, "retained commands are ignored: publish commands without the retain flag"
            else:
                ok, detail = execute(self._actions, name, text, addresses=self._config.can.addresses)
        self._link.acted(name, text, ok, detail)
        t = self._clock.anchor().iso(self._clock())
        result = {"command": name, "payload": text, "ok": ok, "detail": detail, "t": t}
        outbox.put(self._topics.command_result, _json(result))
