"""The pure core that both the live service and replay drive: frames in, snapshots and frames out.

`Core` owns the wiring between the module codec and store, the master, the inverter link and both send
schedules (MasterCommand to the modules, the inverter set), and the rules of when the master ticks: every
`bank.tick` seconds, and at once after a frame that may call for protection. It has no I/O, no asyncio and no
clock: the service adds buses, tasks, signals and outputs, replay adds a log reader and writers, and so replay
has every behaviour of the live gateway by construction.

The core also keeps the lifetime counters (gateway.history.counters, pure): each snapshot's readings are
integrated into them and the lifetime energy is attached to the snapshot, so live and replay count alike. The
service or replay restores the counters and the master's memory before the first tick and stores them; the core
does no I/O. While the history cannot be written, the core adds the `history_unavailable` warning to every
snapshot.

The master is safety logic and must never stop. A step that raises (a bug) is counted and logged with its
traceback once per burst; while steps fail, the snapshot is the last one turned into the fail-safe set with an
`internal_error` protection, so the inverter stops and every output says why, and the modules are told not to
charge or discharge. The next step that succeeds ends it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import can

from gateway.can.codec import ModuleCodec
from gateway.can.commands import CommandSchedule
from gateway.can.ingest import ModuleStore, ModuleStores, Urgency
from gateway.can.polls import BusFrame, PollSchedule
from gateway.config import Config, LimitsSection
from gateway.history.counters import Counters, Daily, Lifetime
from gateway.logs import BurstLog, get
from gateway.master.master import Master
from gateway.master.model import (
    Alarm,
    AlarmCode,
    BankSnapshot,
    InverterInfo,
    Level,
    MasterCommand,
    Memory,
    empty_snapshot,
)
from gateway.outputs import byd
from gateway.outputs import inverter as inverter_side
from gateway.values import frozen

log = get("gateway.core")

_CORE_ALARMS = frozenset({AlarmCode.INTERNAL_ERROR, AlarmCode.HISTORY_UNAVAILABLE})
"""Alarms the core adds to the master's: a fail-safe snapshot made from the last one drops them and adds its own."""
SLACK = 1e-3
"""A tick this close to its due time counts as due: ticks that add up 0.1 s steps land a hair early."""


def urgency(limits: LimitsSection) -> Urgency:
    """Where values start to matter for protection: the first knee of each derating table."""
    return Urgency(
        cell_high=_first_below_full(limits.charge_cell_voltage, rising=True),
        cell_low=_first_below_full(limits.discharge_cell_voltage, rising=False),
        temperature_high=min(
            _first_below_full(limits.charge_temperature, rising=True),
            _first_below_full(limits.discharge_temperature, rising=True),
        ),
        temperature_low=max(
            _first_below_full(limits.charge_temperature, rising=False),
            _first_below_full(limits.discharge_temperature, rising=False),
        ),
    )


def _first_below_full(table: tuple[tuple[float, float], ...], *, rising: bool) -> float:
    """The x where the table leaves 100 % going up (rising) or down."""
    full = [x for x, p in table if p >= 100.0]
    if not full:
        return table[0][0] if rising else table[-1][0]
    return max(full) if rising else min(full)


@frozen
class Tick:
    """What one tick produced: the snapshot, and the frames due on the module buses (MasterCommand, polls)."""

    snapshot: BankSnapshot
    frames: tuple[BusFrame, ...]


class Core:
    """Everything between the buses, for one config. Feed it frames, tick it, send what it returns.

    `feed` may be called from another thread than `tick` (python-can's receive thread): the store only ever
    publishes whole values. `on_urgent` is called (in the feeding thread) when a frame calls for a tick now.
    """

    def __init__(
        self,
        config: Config,
        *,
        now: float,
        on_urgent: Callable[[], None] | None = None,
        inverter_on_module_bus: bool | None = None,
    ) -> None:
        """`inverter_on_module_bus`: the inverter's frames arrive through `feed` (one shared bus, or a log that
        holds both); by default, when the config puts both on the same interface and channel."""
        self.config = config
        buses, inverter = config.can.modules, config.can.inverter
        self._inverter_bus = _inverter_bus(config, inverter_on_module_bus)
        """The module bus the inverter's frames arrive on too (its index), or None."""
        profile = inverter_side.profile(inverter.protocol)
        self._inverter_ids = profile.expects if self._inverter_bus is not None else frozenset()
        self._inverter_extended = profile.extended
        self._on_urgent = on_urgent
        codecs = [ModuleCodec.from_config(bus) for bus in buses]
        self.stores = tuple(
            ModuleStore(
                codec,
                urgency=urgency(config.limits),
                on_urgent=self._mark_urgent,
                ignore_ids=self._inverter_ids if i == self._inverter_bus else frozenset(),
            )
            for i, codec in enumerate(codecs)
        )
        """One store per module bus, in the order of `can.modules`."""
        self.store = ModuleStores(self.stores)
        timeout = profile.timeout if inverter.inverter_timeout is None else inverter.inverter_timeout
        required = frozenset(g for codec in codecs for g in codec.required_groups)
        self.master = Master(config, required_groups=required, inverter_timeout=timeout)
        self.link = inverter_side.InverterLink(profile)
        """The inverter's frames: its last word for the master, its requests for the schedule."""
        self.heartbeat = byd.Heartbeat(config.modbus_rtu.heartbeat_timeout) if config.modbus_rtu.enabled else None
        """The GEN24's heartbeat (register 401 of the BYD map), written by the Modbus RTU edge."""
        self.inverter = inverter_side.Schedule(inverter, bank=config.bank) if inverter.enabled else None
        """When the inverter gets what; the live publisher and replay both ask it, with what the link heard."""
        self._commands = [
            (i, frozenset(codec.addresses), CommandSchedule(codec, bus.command_period))
            for i, (bus, codec) in enumerate(zip(buses, codecs, strict=True))
            if bus.sends_commands
        ]
        """Per bus that takes MasterCommand: its index, the addresses it carries, its schedule."""
        self._polls = [
            PollSchedule(i, bus.poll_frames, codec.addressing)
            for i, (bus, codec) in enumerate(zip(buses, codecs, strict=True))
            if bus.poll_frames
        ]
        self.latest = empty_snapshot(now, discharge_voltage=self.master.fallback_dvl())
        self.next_tick = now
        self.urgent = False
        """A frame called for protection since the last tick."""
        self.failures = 0
        """Master steps that raised, since start."""
        self._failing_since: float | None = None
        self._last_commands: tuple[MasterCommand, ...] = ()
        self._burst = BurstLog(log, "master step failed", level="error")
        self.lifetime = Lifetime()
        """Lifetime counters of the bank and each module (restored from the history, stored by its writer)."""
        self._counting = BurstLog(log, "lifetime counting failed", level="error")
        self._history_alarm: Alarm | None = None

    # -- frames in ----------------------------------------------------------------------------------------------

    def feed(self, msg: can.Message, t: float, bus: int = 0) -> None:
        """A frame from module bus number `bus` (where the inverter shares it, its frames go to the link)."""
        if (
            bus == self._inverter_bus
            and msg.arbitration_id in self._inverter_ids
            and msg.is_extended_id == self._inverter_extended
        ):
            self.link.on_message(msg, t)
        else:
            self.stores[bus].on_message(msg, t)

    def hear(self, msg: can.Message, t: float) -> None:
        """A frame from the inverter bus."""
        self.link.on_message(msg, t)

    def answer(self, now: float) -> list[inverter_side.Frame]:
        """What the inverter side sends now for the frames heard since the last call (replay calls it after each
        inverter frame; live, the publisher does the same on its own loop)."""
        heard = self.link.drain()
        if self.inverter is None:
            return []
        return self.inverter.due(now, self.latest, heard)

    def _mark_urgent(self) -> None:
        self.urgent = True
        if self._on_urgent is not None:
            self._on_urgent()

    # -- ticks --------------------------------------------------------------------------------------------------

    def tick(self, now: float) -> Tick:
        """One master step on the latest readings at `now`; never raises.

        A regular tick (now at or past `next_tick`) schedules the next one; an urgent one in between does not.
        """
        if now >= self.next_tick - SLACK:
            self.next_tick += self.config.bank.tick
            if self.next_tick <= now:
                self.next_tick = now + self.config.bank.tick
        self.urgent = False
        try:
            step = self.master.step(now, self.store.readings(), self.inverter_info())
            due = self._due(now, step.commands)
        except Exception as err:  # the safety net: a bug in a rule must not stop protection
            snapshot, commands = self._failed(now, err)
            try:
                due = self._due(now, commands)
            except Exception:  # already counted and logged: the inverter's fail-safe set is what counts
                due = ()
            fresh = False
        else:
            fresh = True
            snapshot = step.snapshot
            if snapshot.seq <= self.latest.seq:
                snapshot = replace(snapshot, seq=self.latest.seq + 1)
            if self._failing_since is not None:
                log.warning("master steps succeed again", failed=self.failures)
                self._failing_since = None
            self._last_commands = step.commands
        snapshot = self._lifetime(snapshot, fresh)
        self.latest = snapshot
        return Tick(snapshot, due)

    def repoll(self, bus: int) -> None:
        """Module bus `bus` has (re)opened: its polls go out at the next tick, not a period later."""
        for polls in self._polls:
            if polls.bus == bus:
                polls.restart()

    def _due(self, now: float, commands: tuple[MasterCommand, ...]) -> tuple[BusFrame, ...]:
        """The frames due on the module buses: each bus's MasterCommands (only for the modules it carries), then
        its polls."""
        frames = [
            BusFrame(bus, can_id, data)
            for bus, addresses, schedule in self._commands
            for can_id, data in schedule.due(now, [c for c in commands if c.address in addresses])
        ]
        frames += (frame for polls in self._polls for frame in polls.due(now))
        return tuple(frames)

    def inverter_info(self) -> InverterInfo | None:
        """What the master hears of the inverter: the CAN link's or the GEN24 heartbeat's; with both, the one that
        runs out first, each by its own timeout (a silent inverter raises `inverter_comm_lost` on either link)."""
        gen24 = None if self.heartbeat is None else self.heartbeat.info
        heard = [info for info in (self.link.info, gen24) if info is not None]
        return min(heard, key=self._deadline, default=None)

    def _deadline(self, info: InverterInfo) -> float:
        timeout = self.master.inverter_timeout if info.timeout is None else info.timeout
        return info.last_seen + timeout if timeout > 0 else math.inf

    def _failed(self, now: float, err: Exception) -> tuple[BankSnapshot, tuple[MasterCommand, ...]]:
        """The fail-safe snapshot and commands for a step that raised."""
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = now
        self._burst(type(err).__name__, error=str(err), exc_info=err)
        detail = f"master step failed: {type(err).__name__}: {err}"
        alarm = Alarm(
            code=AlarmCode.INTERNAL_ERROR, level=Level.PROTECTION, modules=(), since=self._failing_since, detail=detail
        )
        last = self.latest
        snapshot = replace(
            last.failsafe(f"internal error: {type(err).__name__}"),
            seq=last.seq + 1,
            t=now,
            alarms=(*(a for a in last.alarms if a.code not in _CORE_ALARMS), alarm),
        )
        commands = tuple(replace(c, charge_allowed=False, discharge_allowed=False) for c in self._last_commands)
        return snapshot, commands

    def _lifetime(self, snapshot: BankSnapshot, fresh: bool) -> BankSnapshot:
        """Count the snapshot's readings into the lifetime counters; attach the lifetime energy and the history's
        alarm. Never raises: counting is not protection, and a bug in it must not stop the tick."""
        try:
            self.lifetime.update(snapshot, self.config.bank, fresh=fresh)
            energy = self.lifetime.energy()
        except Exception as err:
            self._counting(type(err).__name__, error=str(err), exc_info=err)
            energy = None
        if self._history_alarm is None:
            return replace(snapshot, energy=energy)
        return replace(snapshot, energy=energy, alarms=(*snapshot.alarms, self._history_alarm))

    # -- history --------------------------------------------------------------------------------------------

    def restore(self, memory: Memory, counters: Mapping[int, Counters], daily: Mapping[int, Daily], now: float) -> None:
        """Take back what the history kept (before the first tick): the master's memory and the lifetime counters."""
        self.master.restore(memory, now)
        self.lifetime.restore(counters, daily)

    def memory(self, now: float) -> Memory:
        """The master's memory now, for the history (call it between ticks)."""
        return self.master.memory(now)

    def history_unavailable(self, problem: str, now: float) -> None:
        """From the next tick on, every snapshot carries the `history_unavailable` warning with `problem`."""
        self._history_alarm = Alarm(
            code=AlarmCode.HISTORY_UNAVAILABLE, level=Level.WARNING, modules=(), since=now, detail=problem
        )

    def flush_log(self) -> None:
        """Report bursts of rejected frames and failed steps that have gone quiet (call it now and then)."""
        self.store.flush_log()
        self._burst.flush()
        self._counting.flush()

    # -- reload -------------------------------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config to the master, the urgency thresholds and the inverter's ratings."""
        self.config = config
        self.master.config = config
        self.store.set_urgency(urgency(config.limits))
        if self.inverter is not None:
            self.inverter.bank = config.bank


def _inverter_bus(config: Config, shared: bool | None) -> int | None:
    """The module bus that carries the inverter's frames too: the one on the inverter's interface and channel (by
    default only if there is one and the inverter is enabled); with `shared`, that one or else the first."""
    inverter = config.can.inverter
    same = [
        i
        for i, bus in enumerate(config.can.modules)
        if (bus.interface, bus.channel) == (inverter.interface, inverter.channel)
    ]
    if shared is None:
        return same[0] if same and inverter.enabled else None
    return (same or [0])[0] if shared else None
