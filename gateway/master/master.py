"""The master BMS: one pure step from module readings and "now" to a bank snapshot and module commands.

No I/O, no clock, no asyncio: the core calls `step` on its tick (and at once on an urgent frame), live and in
replay; tests call it with explicit numbers. `step` reads like the README's "How the master decides", one call per
rule; each rule lives in a module of its own and keeps only what it needs between ticks: who is admitted or
isolated (admission), the measured current shares (limits.Shares), the last limits and the bounds of strings
that left (limits.Limiter), the full-charge request (flags), the alarms' hysteresis and hold (alarms). A rule
redoes its work for a module only when that module's inputs changed (memo.py); `Master(incremental=False)` redoes
everything: the reference `tests/test_master_incremental.py` compares the two with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.config import Config
from gateway.master import aggregate, thermal
from gateway.master.admission import DEFAULT_REQUIRED, Admission, Membership
from gateway.master.alarms import AlarmTracker, Condition, module_conditions, quiet
from gateway.master.commands import commands
from gateway.master.conditions import bank_conditions, mismatch, mismatch_conditions
from gateway.master.flags import Requests
from gateway.master.inputs import TickInput
from gateway.master.limits import Limiter, Shares
from gateway.master.memo import ByReading, Memo
from gateway.master.model import (
    BankSnapshot,
    Electrical,
    Extreme,
    InverterInfo,
    Lifecycle,
    Limits,
    MasterCommand,
    Memory,
    ModuleReading,
    ModuleView,
)
from gateway.values import frozen

OFFLINE = Lifecycle.OFFLINE


@frozen
class Tick:
    snapshot: BankSnapshot
    commands: tuple[MasterCommand, ...]


@frozen
class _Electrical:
    """The bank's electrical view this tick: per admitted string, the whole, and the extremes."""

    strings: tuple[Electrical, ...]
    """Per admitted string, in order."""
    by_string: Mapping[tuple[int, ...], Electrical]
    """Per string of the bank that is admitted or whose modules all report voltage and current."""
    total: Electrical | None
    extremes: tuple[Extreme | None, Extreme | None, Extreme | None, Extreme | None]
    """(max cell voltage, min cell voltage, max temperature, min temperature)."""


@dataclass(slots=True)
class Master:
    """The master's state machine. `config` may be replaced between steps (live reload); of it the master reads
    only `bank` and `limits`: the inverter's silence timeout comes as `inverter_timeout`."""

    config: Config
    required_groups: frozenset[str] = DEFAULT_REQUIRED
    """Message groups a module must keep sending to count (the ones its DBC carries)."""
    inverter_timeout: float = 30.0
    """Seconds without a frame from the inverter (after one was seen) before `inverter_comm_lost`; 0 disables."""
    incremental: bool = True
    """Redo a rule's per-module work only when its inputs changed (see "Performance" in the README); False forgets
    every cache at each step: the full recompute the equivalence test holds the incremental master to."""
    _admission: Admission = field(init=False)
    _limiter: Limiter = field(init=False)
    _shares: Shares = field(default_factory=Shares)
    _requests: Requests = field(default_factory=Requests)
    _alarms: AlarmTracker = field(default_factory=AlarmTracker)
    _aggregates: aggregate.Aggregates = field(default_factory=aggregate.Aggregates)
    _quiet: ByReading[bool] = field(default_factory=ByReading)
    _views: Memo[ModuleView] = field(default_factory=Memo)
    _commands: Memo[MasterCommand] = field(default_factory=Memo)
    _places: Memo[tuple[dict[int, int], dict[int, int]]] = field(default_factory=Memo)
    _seq: int = 0
    _start: float | None = None
    _last_t: float | None = None

    def __post_init__(self) -> None:
        self._admission = Admission(self.required_groups)
        self._limiter = Limiter()

    def readmit(self, address: int) -> bool:
        """Operator action: lift an isolation now; the module still has to pass admission. True if it was isolated."""
        return self._admission.readmit(address)

    def request_full_charge(self) -> None:
        """Operator action: ask the inverter for a full charge (balancing) until the bank is full."""
        self._requests.ask_full_charge()

    def memory(self, now: float) -> Memory:
        """What must survive a restart (the history stores it): the last full charge, the isolations with their
        reasons and the hold-off served, the learned current shares."""
        return Memory(
            last_full_charge=self._requests.export(),
            isolations=self._admission.export(now),
            shares=self._shares.export(),
        )

    def restore(self, memory: Memory, now: float) -> None:
        """Take back `memory` from before a restart, before the first step: the full-charge interval runs on, an
        isolated module stays isolated for the rest of its hold-off, strings start from their learned shares."""
        self._requests.restore(memory.last_full_charge, now)
        self._admission.restore(memory.isolations, now)
        self._shares.restore(memory.shares)

    def step(self, now: float, readings: Mapping[int, ModuleReading], inverter: InverterInfo | None = None) -> Tick:
        tick = self._begin(now, readings, inverter)
        membership = self._admission.update(tick)
        health = membership.health
        fresh = [
            r for a in membership.addresses if (r := readings.get(a)) is not None and health[a].lifecycle is not OFFLINE
        ]
        electrical = _electrical(tick, membership, fresh, self._aggregates)
        reason = membership.reason(tick)
        per_module = {a: self._limiter.module(tick, readings[a]) for a in membership.online}
        shares = self._shares.update(tick, membership.admitted, electrical.strings)
        if reason:
            limits = self._limiter.stopped(reason, electrical.total, self.fallback_dvl(membership.strings))
        else:
            assert electrical.total is not None  # a valid bank has admitted strings
            limits = self._limiter.bank(
                tick,
                admitted=membership.admitted,
                per_module=per_module,
                shares=shares,
                strings=electrical.strings,
                total=electrical.total,
            )
            self._admission.track_cutoffs(tick, membership, per_module)
        flags = self._requests.update(tick, not reason, limits, electrical.total, electrical.extremes[1])
        temperatures = {r.address: r.temperature_max for r in fresh if r.temperature_max is not None}
        layers = thermal.by_position(temperatures, self._positions(tick, membership)[0])
        notes = mismatch(tick, fresh, membership)
        conditions = [
            *self._module_conditions(tick, fresh, membership),
            *bank_conditions(tick, membership, self.inverter_timeout),
            *thermal.conditions(temperatures, layers, tick.limits.heat_accumulation),
            *mismatch_conditions(notes),
        ]
        alarms = self._alarms.update(conditions, now, tick.limits.alarm_hold)
        vmax, vmin, tmax, tmin = electrical.extremes
        total = electrical.total
        snapshot = BankSnapshot(
            seq=self._seq,
            t=now,
            valid=not reason,
            reason=reason,
            voltage=total.voltage if total else None,
            current=total.current if total else None,
            soc=total.soc if total else None,
            soh=total.soh if total else None,
            remaining_ah=total.remaining_ah if total else None,
            full_ah=total.full_ah if total else None,
            cell_voltage_max=vmax,
            cell_voltage_min=vmin,
            temperature_max=tmax,
            temperature_min=tmin,
            limits=limits,
            flags=flags,
            fan_duty=thermal.fan_duty(tick.limits.fan_duty, tmax.value if tmax else None),
            alarms=alarms,
            modules=self._module_views(tick, membership, per_module, shares if not reason else (), notes),
            strings=membership.strings,
            string_values=electrical.by_string,
            temperature_gradient=thermal.gradient(temperatures, layers),
            inverter=inverter,
        )
        return Tick(snapshot, commands(snapshot, per_module, tick.limits, memo=self._commands))

    def fallback_dvl(self, strings: Sequence[tuple[int, ...]] | None = None) -> float:
        """DVL when no module says better: cells x DVL per cell, for the longest string (the configured ones by
        default); what the inverter gets before any module is known."""
        strings = self.config.bank.strings if strings is None else strings
        cells = self.config.bank.cells_in_series * max((len(s) for s in strings), default=1)
        return cells * self.config.limits.discharge_voltage_per_cell

    def _begin(self, now: float, readings: Mapping[int, ModuleReading], inverter: InverterInfo | None) -> TickInput:
        cfg = self.config
        if not self.incremental:
            self._limiter.forget()
            self._shares.forget()
            self._admission.forget()
            self._aggregates.forget()
            self._quiet.forget()
            self._views.forget()
            self._commands.forget()
            self._places.forget()
        if self._start is None:
            self._start = now
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        self._last_t = now
        self._seq += 1
        starting = now - self._start < cfg.bank.module_timeout
        return TickInput(now, dt, readings, inverter, cfg.bank, cfg.limits, starting)

    def _module_conditions(
        self, tick: TickInput, fresh: Sequence[ModuleReading], membership: Membership
    ) -> list[Condition]:
        """Each module's alarm conditions; a quiet module is skipped unless it had one last tick (hysteresis)."""
        flagged, previous = self._alarms.flagged, self._alarms.previous
        out: list[Condition] = []
        for r in fresh:
            if membership.health[r.address].lifecycle is Lifecycle.REJECTED:
                continue
            if r.address in flagged or not self._quiet_module(tick, r):
                out.extend(module_conditions(r, tick.bank, tick.limits, previous))
        return out

    def _quiet_module(self, tick: TickInput, r: ModuleReading) -> bool:
        """`alarms.quiet`, redone only for a new reading or config."""
        cached = self._quiet.get(r, tick.bank, tick.limits)
        return (
            self._quiet.put(r, tick.bank, tick.limits, quiet(r, tick.bank, tick.limits)) if cached is None else cached
        )

    def _positions(self, tick: TickInput, membership: Membership) -> tuple[dict[int, int], dict[int, int]]:
        """(stack position, string index) of every address, redone only when the layout or the config changed."""
        inputs = (membership.addresses, membership.strings, tick.bank)
        cached = self._places.get(None, inputs)
        if cached is None:
            positions = {a: tick.bank.positions.get(a, a) for a in membership.addresses}
            string_of = {a: i for i, s in enumerate(membership.strings) for a in s}
            cached = self._places.put(None, inputs, (positions, string_of))
        return cached

    def _module_views(
        self,
        tick: TickInput,
        membership: Membership,
        per_module: Mapping[int, Limits],
        shares: Sequence[float],
        notes: Mapping[int, list[str]],
    ) -> Mapping[int, ModuleView]:
        """Every module's view; one is redone only when its inputs changed."""
        readings, health, memo = tick.readings, membership.health, self._views
        share_of = {a: share for string, share in zip(membership.admitted, shares, strict=False) for a in string}
        positions, string_of = self._positions(tick, membership)
        views = {}
        for a in membership.addresses:
            r, h = readings.get(a), health[a]
            limits = per_module.get(a) or (self._limiter.module(tick, r) if r is not None else None)
            position, string, share = positions[a], string_of.get(a), share_of.get(a)
            mismatch = tuple(notes[a]) if a in notes else ()
            inputs = (r, h, position, string, limits, share, mismatch)
            view = memo.get(a, inputs)
            if view is None:
                view = ModuleView(
                    reading=r or ModuleReading(address=a),
                    lifecycle=h.lifecycle,
                    reason=h.reason,
                    position=position,
                    string=string,
                    limits=limits,
                    share=share,
                    isolate_reason=h.isolate_reason,
                    mismatch=mismatch,
                )
                memo.put(a, inputs, view)
            views[a] = view
        return MappingProxyType(views)


def _electrical(
    tick: TickInput, membership: Membership, fresh: Sequence[ModuleReading], aggregates: aggregate.Aggregates
) -> _Electrical:
    """Aggregates over the admitted strings; while there are none, over the fresh modules that belong to the bank
    (to show something while invalid), never a rejected address: it may be garbage or another bank's module. Every
    string whose modules all report voltage and current gets its own values too (SunSpec shows each string)."""
    readings, ah = tick.readings, tick.bank.capacity_ah
    by_string = {s: aggregates.series(s, [readings[a] for a in s], ah) for s in membership.admitted}
    for string in membership.strings:
        if string not in by_string and all(_measured(readings.get(a)) for a in string):
            by_string[string] = aggregates.series(string, [readings[a] for a in string], ah)
    strings = tuple(by_string[s] for s in membership.admitted)
    shown = [readings[a] for a in sorted(membership.online)] or [
        r for r in fresh if membership.health[r.address].lifecycle is not Lifecycle.REJECTED
    ]
    total = aggregates.parallel(strings) if strings else None
    if total is None and shown:
        total = aggregate.parallel([aggregate.series([r], ah) for r in shown])
    return _Electrical(strings, MappingProxyType(by_string), total, aggregates.extremes(shown))


def _measured(r: ModuleReading | None) -> bool:
    return r is not None and r.voltage is not None and r.current is not None
