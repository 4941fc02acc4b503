"""Sparkplug B edge node on a broker: connection, Last Will, births, report by exception, commands, host STATE.

This adapter moves the pure edge node's (`gateway.outputs.sparkplug.EdgeNode`) messages to one MQTT broker and
brings back what hosts send; the connection itself (credentials, TLS, backoff, logs, counters) is
`gateway.outputs.broker.Link`, as for the JSON topics. It follows Sparkplug 3.0's session rules:

- Every MQTT CONNECT carries the NDEATH as its Will (QoS 1, not retained) with a `bdSeq` one above the previous
  attempt's (0 for the first of the process, 255 wraps to 0), and a clean session. The NBIRTH that follows
  carries the same `bdSeq`, so a host matches a later NDEATH to this session and ignores a stale one. A failed
  attempt counts too: the broker may have taken its CONNECT (and Will) even if we never saw the CONNACK.
- After subscribing to NCMD and DCMD (QoS 1) the node publishes NBIRTH and a DBIRTH per module, then only what
  changed: every `[sparkplug] interval`, and at once when an alarm, a flag, validity or a module's life cycle
  changes (`gateway.outputs.mqtt.urgent_key`). Messages are made from the latest snapshot just before they are
  sent and sent one at a time, in `seq` order: a slow broker gets fewer, larger updates, nothing queues up.
- With `primary_host_id` set, it subscribes to `spBv1.0/STATE/<primary_host_id>` and births only once that host
  says `{"online": true, ...}`. An `online: false` from it (not older than the last STATE seen) makes the node
  publish its NDEATH, disconnect and connect again (a new bdSeq), then wait for the host once more. A STATE
  older than the last one seen is stale (a late retained copy) and ignored.
- NCMD `Node Control/Rebirth` = true: the node stops sending data and publishes the whole birth sequence again,
  same bdSeq. With `[mqtt] commands = true`, NCMD `Node Control/Request Full Charge` = true and DCMD
  `Device Control/Readmit` = true run the same operator actions as the MQTT command topics. Any other write, any
  retained command and an action that does not apply are refused: logged once per burst and counted (`refused`);
  the node is read-only.
- On a clean stop it publishes the NDEATH itself and disconnects (the broker then drops the Will).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt

from gateway import __version__, logs
from gateway.clock import WallClock
from gateway.config import Config
from gateway.errors import DecodeError, GatewayError
from gateway.hub import SnapshotHub
from gateway.master.model import BankSnapshot
from gateway.outputs.broker import Broker, Link, raise_if_cancelled, together
from gateway.outputs.mqtt import Actions, execute, urgent_key
from gateway.outputs.sparkplug import Action, EdgeNode, Outgoing, Rebirth, Refused, config_hash
from gateway.outputs.sparkplug_codec import decode

_log = logs.get(__name__)

SHUTDOWN_TIMEOUT = 2.0
"""How long a cancelled node may spend publishing its NDEATH and disconnecting."""
STATE_LIMIT = 1024
"""Bytes of a STATE payload; a host's is under 60."""


class HostOffline(GatewayError):
    """The primary host application said it is offline: end this session (NDEATH, disconnect) and reconnect."""


def read_state(payload: bytes) -> tuple[bool, int]:
    """(online, timestamp) of a Sparkplug 3.0 host STATE payload; DecodeError unless it is one."""
    if len(payload) > STATE_LIMIT:
        raise DecodeError(f"longer than {STATE_LIMIT} bytes")
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise DecodeError(f"not JSON: {type(err).__name__}") from err
    if not isinstance(value, dict):
        raise DecodeError("not a JSON object")
    online, timestamp = value.get("online"), value.get("timestamp")
    if type(online) is not bool or type(timestamp) is not int or timestamp < 0:
        raise DecodeError('needs "online" (true or false) and "timestamp" (ms since the epoch)')
    return online, timestamp


class SparkplugPublisher:
    """The gateway as a Sparkplug B edge node on one broker; see the module docstring.

    `actions` receive the operator commands, and only with `[mqtt] commands = true`.
    """

    def __init__(self, hub: SnapshotHub, *, config: Config, clock: WallClock, actions: Actions | None) -> None:
        spb = config.sparkplug
        self._hub = hub
        self._config = config
        self._clock = clock
        self._actions = actions if config.mqtt.commands else None
        edge_node_id = spb.edge_node_id or config.gateway.id
        self.node = EdgeNode(
            group_id=spb.group_id,
            edge_node_id=edge_node_id,
            version=__version__,
            config_hash=config_hash(config),
            commands=self._actions is not None,
            deadband=spb.deadband,
        )
        self._link = Link(
            Broker.of(config, "sparkplug"),
            name="sparkplug",
            client_id=spb.client_id or f"bms-gateway-{spb.group_id}-{edge_node_id}",
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            log=_log,
            clock=clock,
        )
        self._interval = spb.interval
        self._primary = spb.primary_host_id
        self._bd_seq = -1
        """The bdSeq of the current (or last) connection; the next CONNECT uses this + 1, modulo 256."""
        self._host_seen: int | None = None
        """The timestamp of the newest STATE of the primary host seen (this process)."""
        self._host_online = asyncio.Event()
        self._rebirth = False
        self._born = False

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def bd_seq(self) -> int:
        """The bdSeq of the current (or last) connection; -1 before the first."""
        return self._bd_seq

    @property
    def counters(self) -> dict[str, int]:
        """See `Link`: published, reconnects, errors, refused."""
        return self._link.counters

    async def run(self) -> None:
        """Be an edge node until cancelled, reconnecting with capped exponential backoff and jitter."""
        await self._link.run(self._session)

    # -- connection ---------------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self._clock.anchor().unix(self._clock()) * 1000.0)

    async def _session(self) -> None:
        """One connection with the next bdSeq, its NDEATH as the Will and the last word; a primary host that goes
        offline ends it (after the NDEATH), and the next one starts soon."""
        self._bd_seq = bd_seq = (self._bd_seq + 1) % 256
        self._born = self._rebirth = False
        self._host_online = asyncio.Event()
        death = self.node.death(bd_seq, self._now_ms())
        will = aiomqtt.Will(death.topic, death.encode(), qos=1, retain=False)
        try:
            await self._link.session(will, self._serve, self._death, clean_session=True, bd_seq=bd_seq)
        except HostOffline:
            _log.warning("sparkplug: the primary host went offline; reconnecting", host_id=self._primary)
            self._link.start_over()

    async def _death(self, client: aiomqtt.Client) -> None:
        death = self.node.death(self._bd_seq, self._now_ms())
        await self._link.publish(client, death.topic, death.encode(), qos=1, retain=False)

    async def _serve(self, client: aiomqtt.Client, baseline: int) -> None:
        topics = self.node.topics
        await client.subscribe(topics.node("NCMD"), qos=1)
        await client.subscribe(topics.device_commands, qos=1)
        if self._primary is not None:
            await client.subscribe(topics.state(self._primary), qos=1)
        else:
            self._host_online.set()
        raise_if_cancelled(baseline)
        tasks = {"sparkplug-publish": self._publish(client), "sparkplug-receive": self._receive(client)}
        try:
            await together(tasks, ends=(aiomqtt.MqttError, HostOffline))
        except HostOffline:
            await self._death(client)
            raise

    async def _send(self, client: aiomqtt.Client, messages: list[Outgoing]) -> None:
        for message in messages:
            await self._link.publish(client, message.topic, message.encode(), qos=0, retain=False)
            raise_if_cancelled()

    # -- publishing ----------------------------------------------------------------------------------------

    async def _publish(self, client: aiomqtt.Client) -> None:
        """Births once the host is online, then changes every `interval` and at once on an urgent change."""
        await self._host_online.wait()
        loop = asyncio.get_running_loop()
        snapshot = self._hub.latest
        await self._send(client, self.node.birth(snapshot, self._clock.anchor(), self._now_ms(), bd_seq=self._bd_seq))
        self._born = True
        while True:
            self._link.report_bursts()
            snapshot = await self._next(snapshot, loop.time() + self._interval)
            wall, now = self._clock.anchor(), self._now_ms()
            if self._rebirth:
                self._rebirth = False
                _log.info("sparkplug: rebirth requested", bd_seq=self._bd_seq)
                await self._send(client, self.node.birth(snapshot, wall, now, bd_seq=self._bd_seq))
            else:
                await self._send(client, self.node.update(snapshot, wall, now))

    async def _next(self, snapshot: BankSnapshot, due: float) -> BankSnapshot:
        """The latest snapshot at `due`, or earlier on a rebirth request or the first snapshot whose `urgent_key`
        differs."""
        key = urgent_key(snapshot)
        try:
            async with asyncio.timeout_at(due):
                while not self._rebirth:
                    snapshot = await self._hub.newer(snapshot.seq)
                    if urgent_key(snapshot) != key:
                        return snapshot
        except TimeoutError:
            pass
        return self._hub.latest

    # -- incoming -----------------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Handle NCMD, DCMD and the primary host's STATE; ends (MqttError) when the link breaks."""
        topics = self.node.topics
        ncmd = topics.node("NCMD")
        state = topics.state(self._primary) if self._primary is not None else None
        async for message in client.messages:
            topic = message.topic.value
            if topic == state:
                self._state(message.payload)
            elif topic == ncmd or message.topic.matches(topics.device_commands):
                self._command(topic, message.payload, retained=message.retain, node=topic == ncmd)

    def _state(self, payload: Any) -> None:
        try:
            online, timestamp = read_state(payload)
        except DecodeError as err:
            self._link.refuse("state", reason=str(err))
            return
        if self._host_seen is not None and timestamp < self._host_seen:
            self._link.refuse("stale_state", online=online, timestamp=timestamp, newest=self._host_seen)
            return
        self._host_seen = timestamp
        if online:
            if not self._host_online.is_set():
                _log.info("sparkplug: the primary host is online", host_id=self._primary)
            self._host_online.set()
        elif self._born or self._host_online.is_set():
            raise HostOffline(self._primary)

    def _command(self, topic: str, payload: Any, *, retained: bool, node: bool) -> None:
        try:
            metrics = decode(payload).metrics
        except DecodeError as err:
            self._link.refuse("command", topic=topic, reason=str(err))
            return
        if retained:
            self._link.refuse("command", topic=topic, reason="retained commands are ignored")
            return
        address = None if node else self.node.topics.address(topic)
        decisions = self.node.node_command(metrics) if node else self.node.device_command(address, metrics)
        for decision in decisions:
            if isinstance(decision, Rebirth):
                self._rebirth = self._born
            elif isinstance(decision, Action) and self._actions is not None:
                addresses = self._config.can.addresses
                ok, detail = execute(self._actions, decision.command, decision.payload, addresses=addresses)
                self._link.acted(decision.command, decision.payload, ok, detail)
            elif isinstance(decision, Refused):
                self._link.refuse("write", topic=topic, metric=decision.metric, reason=decision.reason)
