"""The running gateway: one TaskGroup, each edge supervised, the master ticking in the middle.

Edges (module bus, inverter bus, Modbus, MQTT, metrics, the web dashboard) fail and come back on their own: a
failed edge is logged and restarted with capped exponential backoff while the others keep running. While the module
bus is down the master's data goes stale, the bank becomes invalid and the inverter gets the fail-safe set. Only a
bad config or a programming error in the core stops the process.

The history (gateway.history) is opened before the master's first tick, which starts from what it kept (the
master's memory, the lifetime counters); then one task writes it, a batch a second, off the master's path. What
changes is recorded as events: every snapshot change, start and stop, reloads, edge failures and operator
actions; the latest also goes to the MQTT events topic.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import can

from gateway import __version__, backoff
from gateway import config as configuration
from gateway.can.bus import DecodingListener, open_bus
from gateway.can.polls import BusFrame
from gateway.changes import changes
from gateway.clock import LiveClock, WallClock
from gateway.config import Config
from gateway.core import Core
from gateway.errors import ConfigError, GatewayError, unwrap
from gateway.events import SIZE as JOURNAL_SIZE
from gateway.events import EventJournal
from gateway.history import events
from gateway.history.events import Event
from gateway.history.store import Loaded, Reader
from gateway.history.writer import HistoryWriter
from gateway.hub import EventHub, SnapshotHub
from gateway.logs import BurstLog, get
from gateway.master.model import BankSnapshot, Lifecycle
from gateway.metrics import Metrics
from gateway.outputs import inverter
from gateway.outputs.modbus import ModbusServer
from gateway.outputs.modbus_rtu import ModbusRtuServer
from gateway.outputs.mqtt import MqttPublisher
from gateway.outputs.web import WebServer
from gateway.systemd import Notifier

if TYPE_CHECKING:
    from gateway.outputs.sparkplug_publisher import SparkplugPublisher

log = get("gateway.service")

STATUS_PERIOD = 5.0
ANSWER_ON_STOP = 2.0
"""Seconds a stop waits for a request/response inverter's next request, to answer it with the fail-safe set
(inverters poll every second or so); it never sends one anything unasked."""
RATINGS = ("rated_charge_current", "rated_discharge_current")
RECENT_TIMEOUT = 5.0
"""Seconds the start waits for the history's latest events (for the dashboard) before going on without them."""


def status_line(s: BankSnapshot) -> str:
    """One line for systemd's STATUS= and the logs."""
    online = len(s.addresses(Lifecycle.ONLINE))
    lim = s.limits
    text = (
        f"{online}/{len(s.modules)} modules online, CCL {lim.charge_current.value:.1f} A, "
        f"DCL {lim.discharge_current.value:.1f} A, CVL {lim.charge_voltage.value:.2f} V, {len(s.alarms)} alarms"
    )
    return text if s.valid else f"NOT VALID ({s.reason}): {text}"


class Gateway:
    """Everything the daemon runs, built from one config. `run()` until cancelled."""

    def __init__(
        self,
        config: Config,
        *,
        clock: WallClock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or LiveClock()
        self.notifier = notifier or Notifier()
        self.core = Core(config, now=self.clock(), on_urgent=self._urgent)
        self.hub = SnapshotHub(self.core.latest)
        self.events = EventHub()
        history = config.history
        self.history = (
            HistoryWriter(
                history.path,
                retention_days=history.retention_days,
                clock=self.clock,
                on_problem=lambda problem: self.core.history_unavailable(problem, self.clock()),
            )
            if history.enabled and history.path is not None
            else None
        )
        self.modbus = ModbusServer(self.hub, config=config, clock=self.clock) if config.modbus.enabled else None
        self.modbus_rtu = (
            ModbusRtuServer(self.hub, heartbeat=self.core.heartbeat, config=config, clock=self.clock)
            if config.modbus_rtu.enabled
            else None
        )
        self.mqtt = (
            MqttPublisher(self.hub, config=config, clock=self.clock, actions=Operator(self, "mqtt"), events=self.events)
            if config.mqtt.enabled
            else None
        )
        self.sparkplug: SparkplugPublisher | None = None
        if config.sparkplug.enabled:
            # Imported here: protobuf is loaded only by gateways that are Sparkplug edge nodes.
            from gateway.outputs.sparkplug_publisher import SparkplugPublisher  # noqa: PLC0415

            self.sparkplug = SparkplugPublisher(
                self.hub, config=config, clock=self.clock, actions=Operator(self, "sparkplug")
            )
        self.metrics = (
            Metrics(self.hub, ingest=lambda: self.core.store.counters, edges=self.edge_counters, clock=self.clock)
            if config.metrics.enabled
            else None
        )
        self.journal = EventJournal()
        """The latest events, for the dashboard's events page (seeded from the history at start)."""
        self.web = (
            WebServer(
                self.hub,
                config=config,
                events=self.journal,
                actions=Operator(self, "web"),
                environ=os.environ,
                wall=self.clock.anchor,
            )
            if config.web.enabled
            else None
        )
        self.publisher: inverter.InverterPublisher | None = None
        self.restarts: Counter[str] = Counter()
        self.command_errors = 0
        """Frames for the module buses (MasterCommand, polls) that failed to send."""
        self._module_buses: list[can.BusABC | None] = [None] * len(config.can.modules)
        """The open bus of each `can.modules` entry (None while it is down)."""
        self._send_burst = BurstLog(log, "module bus frame not sent")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._ready: dict[str, asyncio.Event] = {}
        self.ready = asyncio.Event()
        self.stop_reason = "stopped"
        """Why the gateway stops (a signal, the demo's duration), for the history's stop event."""
        self._stopped = False

    def record(self, event: Event) -> None:
        """One event: to the history (when it is kept), the dashboard's journal and the outputs that show the
        latest."""
        self.journal.record(event)
        self.events.publish(event)
        if self.history is not None:
            self.history.add(event)

    def stopping(self, reason: str) -> None:
        """Say why the gateway is about to stop, before it is cancelled: the stop event, with the reason, goes to
        the history and (while MQTT still runs) to the events topic."""
        self.stop_reason = reason
        if not self._stopped:
            self._stopped = True
            self.record(events.stopped(self.clock(), reason))

    @property
    def module_edges(self) -> tuple[str, ...]:
        """The edge of each module bus: `module-bus`, or with several `module-bus:<channel>`."""
        buses = self.config.can.modules
        if len(buses) == 1:
            return ("module-bus",)
        return tuple(f"module-bus:{bus.channel}" for bus in buses)

    def edge_counters(self) -> dict[str, dict[str, int]]:
        """Counters of every edge, for the metrics endpoint."""
        out: dict[str, dict[str, int]] = {
            "master": {"step_failures": self.core.failures},
            **{name: {"restarts": self.restarts[name]} for name in self.module_edges},
            "inverter-bus": {"restarts": self.restarts["inverter-bus"]},
        }
        out[self.module_edges[0]]["command_send_errors"] = self.command_errors
        if self.publisher is not None:
            out["inverter-bus"].update(self.publisher.counters)
        if self.modbus is not None:
            out["modbus"] = {
                "requests": self.modbus.requests,
                "errors": self.modbus.errors,
                "restarts": self.restarts["modbus"],
            }
        if self.modbus_rtu is not None:
            out["modbus-rtu"] = {
                "requests": self.modbus_rtu.requests,
                "errors": self.modbus_rtu.errors,
                "ignored": self.modbus_rtu.ignored,
                "restarts": self.restarts["modbus-rtu"],
            }
        if self.mqtt is not None:
            out["mqtt"] = {**self.mqtt.counters, "restarts": self.restarts["mqtt"]}
        if self.web is not None:
            out["web"] = {
                "requests": self.web.requests,
                "actions_refused": self.web.refused,
                "hosts_refused": self.web.hosts_refused,
                "restarts": self.restarts["web"],
            }
        if self.history is not None:
            out["history"] = {
                "batches": self.history.batches,
                "events": self.history.events,
                "dropped": self.history.dropped,
            }
        if self.sparkplug is not None:
            out["sparkplug"] = {**self.sparkplug.counters, "restarts": self.restarts["sparkplug"]}
        return out

    # -- wiring -------------------------------------------------------------------------------------------

    async def run(self, extra: dict[str, Callable[[], Coroutine[Any, Any, None]]] | None = None) -> None:
        """Run every edge until cancelled; `extra` adds named tasks (the demo's simulator)."""
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        edges: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            name: functools.partial(self._module_bus_edge, i) for i, name in enumerate(self.module_edges)
        }
        if cfg.can.inverter.enabled:
            edges["inverter-bus"] = self._inverter_bus_edge
        if self.modbus is not None:
            edges["modbus"] = self._modbus_edge
        if self.modbus_rtu is not None:
            edges["modbus-rtu"] = self._modbus_rtu_edge
        if self.mqtt is not None:
            edges["mqtt"] = self.mqtt.run
        if self.sparkplug is not None:
            edges["sparkplug"] = self.sparkplug.run
        if self.metrics is not None:
            edges["metrics"] = self._metrics_edge
        if self.web is not None:
            edges["web"] = self._web_edge
        self._ready = {name: asyncio.Event() for name in edges if name not in ("mqtt", "sparkplug")}
        await self._start()
        async with asyncio.TaskGroup() as tg:
            if self.history is not None:
                tg.create_task(self.history.run(self.core, self._stop_event), name="history")
            tg.create_task(self._master_loop(), name="master")
            for name, edge in edges.items():
                tg.create_task(self._supervise(name, edge), name=name)
            for name, task in (extra or {}).items():
                tg.create_task(task(), name=name)
            tg.create_task(self._announce_ready(), name="ready")

    async def _start(self) -> None:
        """Open the history and restore what it kept, before the master's first tick; record the start."""
        source = str(self.config.source or "embedded config")
        t = self.clock()
        made: list[Event] = []

        def first(loaded: Loaded) -> list[Event]:
            """The start event, written with the run's first write (the history's thread calls it)."""
            made.append(
                events.started(
                    t, version=__version__, source=source, unclean=loaded.unclean, last_seen=loaded.last_seen
                )
            )
            return made

        history = self.history
        loaded = None if history is None else await history.open(first)
        if history is None or loaded is None:
            self.record(events.started(t, version=__version__, source=source, unclean=False))
            return
        try:
            self.core.restore(loaded.memory, loaded.counters, loaded.daily, self.clock())
        except Exception as err:  # a bug, or values no release wrote: never overwrite them with fresh counts
            history.fail(f"{history.path}: cannot restore what it holds: {err!r}", exc_info=err)
        self.journal.seed(await _recent_events(history.path, made[0]))
        self.journal.record(made[0])
        self.events.publish(made[0])  # already in the history
        if loaded.unclean:
            log.warning(events.UNCLEAN, last_written=loaded.last_seen)
        restored = [i.module for i in loaded.memory.isolations]
        if restored:
            log.warning("isolations restored from the history", modules=restored)

    def _stop_event(self) -> Event | None:
        """The stop event, for the history's last batch, unless `stopping` recorded it already."""
        if self._stopped:
            return None
        self._stopped = True
        return events.stopped(self.clock(), self.stop_reason)

    async def _supervise(self, name: str, edge: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run an edge forever: restart it with capped, jittered exponential backoff when it fails (an edge that
        ran for a while before failing starts the backoff again)."""
        assert self._loop is not None
        retry = backoff.Backoff()
        while True:
            started = self._loop.time()
            try:
                await edge()
                raise RuntimeError("edge returned")  # noqa: TRY301 - an edge returning is a failure too
            except asyncio.CancelledError:
                raise
            except Exception as group:
                err = unwrap(group)
                if isinstance(err, ConfigError):
                    raise err from None
                self.restarts[name] += 1
                if self._loop.time() - started > 4 * backoff.CAP:
                    retry.reset()
                wait = retry.next()
                self.record(events.edge_failed(self.clock(), name, repr(err)))
                expected = isinstance(err, can.CanError | OSError | GatewayError)
                log.error(
                    "edge failed, restarting",
                    edge=name,
                    error=repr(err),
                    retry_in=round(wait, 1),
                    exc_info=not expected,
                )
            await asyncio.sleep(wait)

    async def _announce_ready(self) -> None:
        await asyncio.gather(*(e.wait() for e in self._ready.values()))
        self.ready.set()
        line = status_line(self.hub.latest)
        log.info("gateway ready", status=line)
        self.notifier.ready(line)

    # -- master ---------------------------------------------------------------------------------------------

    def _urgent(self) -> None:
        """Called where a frame arrived (any thread): wake the master now, at most one wake-up in flight."""
        if self._wake_pending or self._loop is None:
            return
        self._wake_pending = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def _master_loop(self) -> None:
        """Tick the core on its schedule and at once when a frame is urgent; feed the watchdog from here, so
        that a master that stops ticking is restarted by systemd."""
        assert self._loop is not None
        loop = self._loop
        watchdog = self.notifier.watchdog_interval()
        next_watchdog = next_status = 0.0
        while True:
            delay = self.core.next_tick - self.clock()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            self._wake_pending = False
            self.step()
            now = loop.time()
            if watchdog is not None and now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + watchdog
            if now >= next_status:
                self.notifier.status(status_line(self.hub.latest))
                self.core.flush_log()
                next_status = now + STATUS_PERIOD

    def step(self) -> BankSnapshot:
        """One tick of the core; publishes the snapshot, sends due MasterCommands and logs what changed since the
        last snapshot (one line per change)."""
        started = time.perf_counter()
        before = self.hub.latest
        tick = self.core.tick(self.clock())
        self.hub.publish(tick.snapshot)
        self._send(tick.frames)
        found = changes(before, tick.snapshot)
        for change in found:
            (log.warning if change.severity == "warning" else log.info)(change.event, **change.fields())
            self.record(events.from_change(change, tick.snapshot.t))
        if self.metrics is not None:
            self.metrics.tick.observe(time.perf_counter() - started)
        return tick.snapshot

    def _send(self, frames: tuple[BusFrame, ...]) -> None:
        """MasterCommands and polls, each on its module bus; none on a bus that is down (its edge reopens it)."""
        for frame in frames:
            bus = self._module_buses[frame.bus]
            if bus is None:
                continue
            msg = can.Message(arbitration_id=frame.can_id, data=frame.data, is_extended_id=frame.extended)
            try:
                bus.send(msg, timeout=0.0)
            except can.CanError as err:
                self.command_errors += 1
                self._send_burst("send_error", error=str(err), bus=self.module_edges[frame.bus])

    def reload(self, new: Config) -> list[str]:
        """Apply what can change live (limits, bank thresholds, MQTT interval); return what needs a restart.

        Refused as a whole (ConfigError) when the file sets none of the keys, or drops keys the running config
        set: that is a file caught half-written, and its defaults (100 A ratings, say) must never go live.
        """
        old = self.config
        dropped = sorted(old.keys - new.keys)
        problem = None
        if not new.keys:
            problem = f"{new.source or 'the file'}: sets no key (empty, or cut short)"
        elif dropped:
            listed = ", ".join(dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
            problem = (
                f"{new.source or 'the file'}: no longer sets {listed} (cut short?); to go back to a default, restart"
            )
        if problem is not None:
            self.record(events.reload_refused(self.clock(), [problem]))
            raise ConfigError([problem])
        sections = ("gateway", "can", "modbus", "modbus_rtu", "metrics", "web", "history", "sparkplug")
        kept = [s for s in sections if getattr(new, s) != getattr(old, s)]
        bank = new.bank
        restart = ("strings", "max_modules", "tick", "cells_in_series", "capacity_ah", *RATINGS)
        if any(getattr(bank, key) != getattr(old.bank, key) for key in restart):
            # The layout of the SunSpec map, the inverter's ratings and the admission of modules depend on these.
            kept.append("bank." + "/".join(key for key in restart if getattr(bank, key) != getattr(old.bank, key)))
            bank = replace(bank, **{key: getattr(old.bank, key) for key in restart})
        mqtt = replace(old.mqtt, interval=new.mqtt.interval)
        if replace(new.mqtt, interval=old.mqtt.interval) != old.mqtt:
            kept.append("mqtt (except interval)")
        merged = replace(old, bank=bank, limits=new.limits, mqtt=mqtt, keys=new.keys)
        self.config = merged
        self.core.reconfigure(merged)
        if self.mqtt is not None:
            self.mqtt.reconfigure(merged)
        if self.web is not None:
            self.web.reconfigure(merged)
        self.record(events.reloaded(self.clock(), configuration.differences(old, new), kept))
        return kept

    async def send_failsafe(self) -> None:
        """On stop, before any edge is cancelled: the fail-safe set three times, so that however slowly the rest
        stops, the inverter has been told to stop (a request/response inverter: its next request, within
        ANSWER_ON_STOP s, is answered with it)."""
        if self.publisher is not None and not self.publisher.stopped:
            await self.publisher.send_failsafe(3, answer_for=ANSWER_ON_STOP)

    # -- edges ---------------------------------------------------------------------------------------------

    async def _module_bus_edge(self, index: int) -> None:
        """Module bus number `index`: while it is down its modules fall silent and go offline by the master's
        timeout (N-1); the other buses run on."""
        m = self.config.can.modules[index]

        def attach(bus: can.BusABC | None) -> None:
            self._module_buses[index] = bus
            if bus is not None:
                self.core.repoll(index)  # the polls due while it was closed were dropped

        await self._run_bus(
            self.module_edges[index],
            interface=m.interface,
            channel=m.channel,
            bitrate=m.rate,
            sink=functools.partial(self.core.feed, bus=index),
            attach=attach,
        )

    async def _inverter_bus_edge(self) -> None:
        inv = self.config.can.inverter

        schedule = self.core.inverter
        assert schedule is not None

        async def publish(bus: can.BusABC) -> None:
            self.publisher = publisher = inverter.InverterPublisher(
                bus, self.hub, schedule=schedule, clock=self.clock, link=self.core.link
            )
            try:
                await publisher.run()
                await asyncio.Event().wait()  # stopped: the fail-safe set went out, wait for the cancel
            except asyncio.CancelledError:
                if not publisher.stopped:
                    await publisher.send_failsafe(3)
                raise

        await self._run_bus(
            "inverter-bus",
            interface=inv.interface,
            channel=inv.channel,
            bitrate=inv.bitrate,
            sink=self.core.hear,
            attach=None,
            work=publish,
        )

    async def _run_bus(
        self,
        name: str,
        *,
        interface: str,
        channel: str,
        bitrate: int,
        sink: Callable[[can.Message, float], None],
        attach: Callable[[can.BusABC | None], None] | None,
        work: Callable[[can.BusABC], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Open a bus, decode what arrives in python-can's receive thread, run `work`, until the bus fails."""
        assert self._loop is not None
        loop = self._loop
        opening = asyncio.ensure_future(asyncio.to_thread(open_bus, interface, channel, bitrate))
        try:
            bus = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Stopped while the bus was still opening in its thread: close it once it is open.
            opening.add_done_callback(_shut_down_once_open)
            raise
        failed = asyncio.Event()

        def fail(_: BaseException) -> None:  # python-can's thread: hand the news to the loop
            loop.call_soon_threadsafe(failed.set)

        listener = DecodingListener(sink, self.clock, on_failure=fail)
        notifier = can.Notifier(bus, [listener], timeout=0.5)
        if attach is not None:
            attach(bus)
        self._ready[name].set()
        log.info("bus open", edge=name, interface=interface, channel=channel)
        try:
            async with asyncio.TaskGroup() as tg:
                if work is not None:
                    tg.create_task(work(bus))
                await failed.wait()
                raise can.CanOperationError(f"{name}: {listener.error}")
        finally:
            if attach is not None:
                attach(None)
            notifier.stop(timeout=1.0)
            bus.shutdown()

    async def _modbus_edge(self) -> None:
        assert self.modbus is not None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.modbus.run())
            await self.modbus.started()
            self._ready["modbus"].set()

    async def _modbus_rtu_edge(self) -> None:
        assert self.modbus_rtu is not None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.modbus_rtu.run())
            await self.modbus_rtu.opened()
            self._ready["modbus-rtu"].set()

    async def _metrics_edge(self) -> None:
        assert self.metrics is not None
        m = self.config.metrics
        await self.metrics.serve(m.host, m.port, started=self._ready["metrics"])

    async def _web_edge(self) -> None:
        assert self.web is not None
        await self.web.run(started=self._ready["web"])


class Operator:
    """The operator actions as one channel (mqtt, modbus, cli) offers them: the master does them, the history
    records who asked and what came of it."""

    def __init__(self, gateway: Gateway, source: str) -> None:
        self._gateway = gateway
        self._source = source

    def readmit(self, address: int) -> bool:
        gateway = self._gateway
        done = gateway.core.master.readmit(address)
        detail = "isolation lifted: it joins the bank once it passes admission" if done else "not isolated"
        gateway.record(
            events.operator(gateway.clock(), "readmit", source=self._source, done=done, detail=detail, module=address)
        )
        return done

    def request_full_charge(self) -> None:
        gateway = self._gateway
        gateway.core.master.request_full_charge()
        detail = "full charge requested until the bank is full"
        gateway.record(events.operator(gateway.clock(), "full_charge", source=self._source, done=True, detail=detail))


async def _recent_events(path: Path, start: Event) -> list[Event]:
    """The history's latest events before this run's `start`, for the dashboard's journal; none, logged, when they
    cannot be read (the history itself goes on; the page then shows what happens from now on)."""

    def read() -> list[Event]:
        with Reader(path) as reader:
            return reader.events(limit=JOURNAL_SIZE + 1)

    try:
        async with asyncio.timeout(RECENT_TIMEOUT):
            found = await asyncio.to_thread(read)
    except Exception as err:
        log.warning("history: the dashboard's events start empty", error=repr(err))
        return []
    return [e for e in found if e != start][-JOURNAL_SIZE:]


def _shut_down_once_open(opening: asyncio.Future[can.BusABC]) -> None:
    """A bus that finished opening after its edge was stopped: close it (one that failed to open is no bus)."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().shutdown()
