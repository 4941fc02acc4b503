"""Who is in the bank: the topology, each module's health, admission of new and returning strings, isolation.

A module is offline (silent, stale, frozen), rejected (not this bank's), isolated (in trouble, or beyond the stack
limit) or a candidate. A candidate string joins a parallel bank only when its SOC and voltage match the bank's
(the installers' rule: match SOC before parallel connection); until then it is pending, with the reason shown.
A module that is time after time the only one to reach the cell-voltage cutoff is isolated: it is the weak one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gateway.config import BankSection
from gateway.master import aggregate
from gateway.master.inputs import TickInput
from gateway.master.memo import Memo
from gateway.master.model import (
    ALARM_BITS,
    RULE_INPUTS,
    Electrical,
    IsolateReason,
    Isolation,
    Lifecycle,
    Limit,
    Limits,
    ModuleReading,
    ModuleState,
)
from gateway.values import frozen

GROUP_NAMES = {
    "status": "ModuleStatus",
    "limits": "ModuleLimits",
    "cells": "CellSummary",
    "temperatures": "Temperatures",
    "permits": "charge/discharge permits",
}
DEFAULT_REQUIRED = frozenset({"status", "limits", "cells", "temperatures"})
"""What a module of our protocol must keep sending (`permits` only where a profile provides them)."""


@frozen
class Health:
    lifecycle: Lifecycle
    reason: str
    isolate_reason: IsolateReason


STARTING = "starting: waiting for every module to report"
"""The bank's reason in the first `module_timeout` seconds: nothing is admitted before every module reported."""
CANDIDATE = Health(Lifecycle.PENDING, "", IsolateReason.NOT_ADMITTED)
"""Healthy, not (yet) admitted: what admission decides on."""
ONLINE = Health(Lifecycle.ONLINE, "", IsolateReason.NONE)


@frozen
class Membership:
    """Where every module stands after admission, this tick."""

    strings: tuple[tuple[int, ...], ...]
    """The bank's strings (configured, or in auto mode every module seen, up to `max_modules`)."""
    addresses: tuple[int, ...]
    """Every address known this tick, sorted: the strings' members, the modules seen, the ones over the limit."""
    health: Mapping[int, Health]
    admitted: tuple[tuple[int, ...], ...]
    """The strings in the bank."""
    broken: tuple[tuple[int, ...], ...]
    """Series strings, once seen, with a silent module: they may carry current that nobody watches."""
    online: frozenset[int]

    def reason(self, tick: TickInput) -> str:
        """Why the master cannot vouch for the bank; "" when it can."""
        if tick.starting:
            return STARTING
        if self.broken:
            string = self.broken[0]
            health = self.health
            missing = ", ".join(f"module {a} {health[a].lifecycle}" for a in string if health[a] is not CANDIDATE)
            return f"series string {'-'.join(map(str, string))} broken: {missing}"
        if not self.admitted:
            return "no module online"
        if len(self.online) < tick.bank.min_online:
            return f"{len(self.online)} modules online, min_online is {tick.bank.min_online}"
        return ""


@dataclass(slots=True)
class _Memory:
    """What the master remembers about one module between ticks."""

    admitted: bool = False
    isolated: str | None = None
    isolate_reason: IsolateReason = IsolateReason.NONE
    isolated_at: float = 0.0
    cutoff_firsts: int = 0


_Layout = tuple[tuple[tuple[int, ...], ...], frozenset[int], frozenset[int], tuple[int, ...]]
"""The bank's strings, their members, the modules over the stack limit, and every address known."""
_Healthy = tuple[ModuleReading, BankSection, float]
"""A module found a candidate: on which reading and config, and its oldest required group's arrival time."""


@dataclass(slots=True)
class Admission:
    """The admission and isolation rules, with what they remember per module."""

    required_groups: frozenset[str]
    _memory: dict[int, _Memory] = field(default_factory=dict)
    _cutoff_last: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
    _healthy: dict[int, _Healthy] = field(default_factory=dict)
    """The modules last found candidates (see `_health`)."""
    _layouts: Memo[_Layout] = field(default_factory=Memo)
    _stamps: dict[frozenset[str], tuple[str, ...]] = field(default_factory=dict)
    """By a reading's `absent`: ModuleStatus, then the other required groups its profile sends, in the order they
    are checked (see `_stamps_of`)."""

    def _stamps_of(self, r: ModuleReading) -> tuple[str, ...]:
        """The groups a module must keep sending: the required ones but those its profile never sends."""
        stamps = self._stamps.get(r.absent)
        if stamps is None:
            wanted = self.required_groups - {"status"} - _never_sent(r)
            stamps = self._stamps[r.absent] = ("status", *sorted(wanted))
        return stamps

    def forget(self) -> None:
        """Drop the remembered layout and health checks (full-recompute mode)."""
        self._healthy.clear()
        self._layouts.forget()

    def readmit(self, address: int) -> bool:
        """Operator action: lift an isolation now; the module still has to pass admission. True if it was isolated."""
        memory = self._memory.get(address)
        if memory is None or memory.isolated is None:
            return False
        memory.isolated, memory.isolate_reason, memory.cutoff_firsts = None, IsolateReason.NONE, 0
        return True

    def export(self, now: float) -> tuple[Isolation, ...]:
        """The isolations in force, each with its reason and the hold-off it has served by `now`."""
        return tuple(
            Isolation(module=a, reason=m.isolated, isolate_reason=m.isolate_reason, held=max(0.0, now - m.isolated_at))
            for a, m in sorted(self._memory.items())
            if m.isolated is not None
        )

    def restore(self, isolations: tuple[Isolation, ...], now: float) -> None:
        """Take back isolations from before a restart: each module stays isolated for the rest of its hold-off
        (counted from `now`, so time the gateway was down does not count) and then has to pass admission."""
        for isolation in isolations:
            memory = self._memory.setdefault(isolation.module, _Memory())
            memory.isolated, memory.isolate_reason = isolation.reason, isolation.isolate_reason
            memory.isolated_at, memory.admitted = now - max(0.0, isolation.held), False

    def update(self, tick: TickInput) -> Membership:
        strings, members, overflow, addresses = self._layout(tick)
        health = {a: self._health(tick, a, members, overflow) for a in addresses}
        admitted: list[tuple[int, ...]] = []
        candidates: list[tuple[int, ...]] = []
        broken: list[tuple[int, ...]] = []
        memory = self._memory
        for string in strings:
            if len(string) == 1 and health[string[0]] is CANDIDATE:  # the usual case, the test below without loops
                (admitted if memory[string[0]].admitted else candidates).append(string)
                continue
            states = [health[a] for a in string]
            if all(h is CANDIDATE for h in states):
                (admitted if all(memory[a].admitted for a in string) else candidates).append(string)
                continue
            for a in string:
                memory.setdefault(a, _Memory()).admitted = False
            # A series string with a silent module (once seen) may still be connected and carry current that nobody
            # watches: the bank cannot run. One whose modules were isolated or rejected has been told to open its
            # contactors: it is out, and the bank runs on without it, as without a parallel string that left.
            silent = [a for a, h in zip(string, states, strict=True) if h.lifecycle is Lifecycle.OFFLINE]
            if len(string) > 1 and silent and any(a in tick.readings for a in string):
                broken.append(string)
        if not tick.starting:
            admitted += self._admit(tick, candidates, admitted, health)
        online = frozenset(a for s in admitted for a in s)
        for a in online:
            health[a] = ONLINE
        return Membership(
            strings=strings,
            addresses=addresses,
            health=MappingProxyType(health),
            admitted=tuple(admitted),
            broken=tuple(broken),
            online=online,
        )

    def _layout(self, tick: TickInput) -> _Layout:
        """`_topology` with the members and every address known, redone only when the config, the addresses or
        when they were first seen changed."""
        readings = tick.readings
        inputs = (tick.bank, *readings, *[r.first_seen for r in readings.values()])
        cached = self._layouts.get(None, inputs)
        if cached is None:
            strings, overflow = _topology(readings, tick.bank)
            members = frozenset(a for s in strings for a in s)
            addresses = tuple(sorted(members | set(readings) | overflow))
            cached = self._layouts.put(None, inputs, (tuple(strings), members, frozenset(overflow), addresses))
        return cached

    def _health(self, tick: TickInput, a: int, members: frozenset[int], overflow: frozenset[int]) -> Health:
        """A module's state before admission: offline, rejected, isolated, or a candidate (healthy).

        A candidate stays one without a new check while its reading and the config are the same objects, it is not
        isolated, and its oldest required group is not yet older than `module_timeout` (the check's own test)."""
        bank, now = tick.bank, tick.now
        r = tick.readings.get(a)
        memory = self._memory.get(a)
        if memory is None:
            memory = self._memory[a] = _Memory()
        if (a in overflow or a not in members) and (out := _placement(a, members, overflow, bank)) is not None:
            return out
        healthy = self._healthy.get(a)
        if (
            healthy is not None
            and healthy[0] is r
            and healthy[1] is bank
            and memory.isolated is None
            and not now - healthy[2] > bank.module_timeout
        ):
            return CANDIDATE
        health = self._check(tick, a, memory)
        if health is CANDIDATE and r is not None:
            # A NaN time passes every age test: min() skips one, except ModuleStatus's (then: check every tick).
            oldest = min(map(r.seen.__getitem__, self._stamps_of(r)))
            if not math.isnan(oldest):
                self._healthy[a] = (r, bank, oldest)
        return health

    def _check(self, tick: TickInput, a: int, memory: _Memory) -> Health:
        """`_health` without the placement and the memory of the last check."""
        bank, now = tick.bank, tick.now
        r = tick.readings.get(a)
        if r is None or "status" not in r.seen:
            return Health(Lifecycle.OFFLINE, "never seen", IsolateReason.COMMUNICATION_LOST)
        age = now - r.seen["status"]
        if age > bank.module_timeout:
            return Health(Lifecycle.OFFLINE, f"no ModuleStatus for {age:.1f} s", IsolateReason.COMMUNICATION_LOST)
        if r.alive_repeats >= bank.frozen_counter_frames - 1:
            return Health(Lifecycle.OFFLINE, f"AliveCounter frozen at {r.alive}", IsolateReason.COMMUNICATION_LOST)
        for group in self._stamps_of(r)[1:]:
            seen = r.seen.get(group)
            if seen is None:
                return Health(Lifecycle.PENDING, f"waiting for {GROUP_NAMES[group]}", IsolateReason.NOT_ADMITTED)
            if now - seen > bank.module_timeout:
                message = f"no {GROUP_NAMES[group]} for {now - seen:.1f} s"
                return Health(Lifecycle.OFFLINE, message, IsolateReason.COMMUNICATION_LOST)
        cells = r.cells_in_series or r.cell_count
        if cells is not None and cells != bank.cells_in_series:
            return Health(
                Lifecycle.REJECTED, f"{cells} cells, the bank has {bank.cells_in_series}", IsolateReason.MISMATCH
            )
        trouble = _trouble(r)
        if trouble is not None:
            # The hold-off counts from the last moment the trouble was seen.
            memory.isolated, memory.isolate_reason, memory.isolated_at = trouble, IsolateReason.FAULT, now
            memory.admitted = False
        if memory.isolated is not None:
            left = memory.isolated_at + bank.isolation_holdoff - now
            if left > 0:
                wait = "" if trouble else f" (re-admission in {left:.0f} s)"
                return Health(Lifecycle.ISOLATED, memory.isolated + wait, memory.isolate_reason)
            memory.isolated, memory.isolate_reason = None, IsolateReason.NONE
        return CANDIDATE

    def _admit(
        self,
        tick: TickInput,
        candidates: list[tuple[int, ...]],
        admitted: list[tuple[int, ...]],
        health: dict[int, Health],
    ) -> list[tuple[int, ...]]:
        """Admit candidate strings that match the bank (SOC and voltage windows); the rest stay pending."""
        if not candidates:
            return []
        readings, bank = tick.readings, tick.bank
        ah = bank.capacity_ah
        electrical = {s: aggregate.series([readings[a] for a in s], ah) for s in candidates}
        bank_now = reference([aggregate.series([readings[a] for a in s], ah) for s in admitted], electrical, bank)
        assert bank_now is not None  # there are candidates
        joined = []
        for string in candidates:
            missing = gaps(electrical[string], bank_now, bank)
            if not missing:
                joined.append(string)
                for a in string:
                    self._memory[a].admitted = True
            else:
                for a in string:
                    health[a] = Health(Lifecycle.PENDING, str(missing[0]), IsolateReason.NOT_ADMITTED)
        return joined

    def track_cutoffs(self, tick: TickInput, membership: Membership, per_module: Mapping[int, Limits]) -> None:
        """Isolate a module that is, time after time, the only one to hit the cell-voltage cutoff first."""
        online = membership.online
        at_cutoff = (
            frozenset(a for a in online if _at_cutoff(per_module[a].charge_current)),
            frozenset(a for a in online if _at_cutoff(per_module[a].discharge_current)),
        )
        for now_set, before in zip(at_cutoff, self._cutoff_last, strict=True):
            if now_set and not before:
                first = next(iter(now_set)) if len(now_set) == 1 else None
                for a in online:
                    memory = self._memory[a]
                    memory.cutoff_firsts = memory.cutoff_firsts + 1 if a == first else 0
                if first is not None and len(membership.admitted) > 1:
                    memory = self._memory[first]
                    if memory.cutoff_firsts >= tick.bank.cutoff_first_count:
                        memory.isolated = (
                            f"first to reach the cell-voltage cutoff {memory.cutoff_firsts} times in a row"
                        )
                        memory.isolate_reason, memory.isolated_at, memory.admitted = (
                            IsolateReason.FAULT,
                            tick.now,
                            False,
                        )
        self._cutoff_last = at_cutoff


def _topology(readings: Mapping[int, ModuleReading], bank: BankSection) -> tuple[list[tuple[int, ...]], set[int]]:
    """The configured strings, or (auto) each module seen as its own parallel string up to max_modules."""
    if bank.strings:
        return [tuple(s) for s in bank.strings], set()
    seen = sorted(readings, key=lambda a: (readings[a].first_seen, a))
    kept = sorted(seen[: bank.max_modules])
    return [(a,) for a in kept], set(seen[bank.max_modules :])


def _placement(a: int, members: Set[int], overflow: Set[int], bank: BankSection) -> Health | None:
    """Why the topology leaves module `a` out of every string (stack limit, not configured), or None."""
    if a in overflow:
        return Health(Lifecycle.ISOLATED, f"stack limit: max_modules is {bank.max_modules}", IsolateReason.STACK_LIMIT)
    if a not in members:
        return Health(Lifecycle.REJECTED, "not in bank.strings", IsolateReason.NOT_ADMITTED)
    return None


def placement(address: int, readings: Mapping[int, ModuleReading], bank: BankSection) -> Health | None:
    """Whether the topology has a place for module `address`: None when it has one (a configured string, or room
    under `max_modules`), else the health the master gives it (isolated at the stack limit, or rejected as not in
    `bank.strings`). A module not seen yet counts as the last one plugged in. The expansion assistant asks this
    about a module before it is connected; the master asks it about every module each tick."""
    if address not in readings:
        readings = {**readings, address: ModuleReading(address=address, first_seen=math.inf)}
    strings, overflow = _topology(readings, bank)
    return _placement(address, {a for s in strings for a in s}, overflow, bank)


@frozen
class Gap:
    """An admission window a string is outside of: its SOC (%) or its voltage (V) against the bank's."""

    quantity: Literal["soc", "voltage"]
    value: float
    """The string's SOC or voltage."""
    bank: float
    window: float

    @property
    def low(self) -> float:
        """The lowest value that joins."""
        return self.bank - self.window

    @property
    def high(self) -> float:
        """The highest value that joins."""
        return self.bank + self.window

    def __str__(self) -> str:
        if self.quantity == "soc":
            return f"SOC {self.value:.1f} % vs bank {self.bank:.1f} % (window {self.window:g} %)"
        return f"voltage {self.value:.2f} V vs bank {self.bank:.2f} V (window {self.window:g} V)"


def gaps(string: Electrical, bank: Electrical, cfg: BankSection) -> tuple[Gap, ...]:
    """Every admission window `string` is outside of, SOC first; () when it may join a bank at `bank` now.

    The rule installers live by: a string joins a parallel bank only with its SOC within `admission_soc_window`
    and its voltage within `admission_voltage_window` of the bank's."""
    out = []
    if abs(string.soc - bank.soc) > cfg.admission_soc_window:
        out.append(Gap("soc", string.soc, bank.soc, cfg.admission_soc_window))
    if abs(string.voltage - bank.voltage) > cfg.admission_voltage_window:
        out.append(Gap("voltage", string.voltage, bank.voltage, cfg.admission_voltage_window))
    return tuple(out)


def reference(
    admitted: Sequence[Electrical], candidates: Mapping[tuple[int, ...], Electrical], cfg: BankSection
) -> Electrical | None:
    """What a candidate string must match: the admitted strings together; while the bank forms (none admitted),
    the candidate that matches the most others (the lowest address on a tie). None with neither."""
    if admitted:
        return aggregate.parallel(admitted)
    if not candidates:
        return None

    def matches(s: tuple[int, ...]) -> int:
        return sum(not gaps(other, candidates[s], cfg) for other in candidates.values())

    return candidates[max(candidates, key=lambda s: (matches(s), -s[0]))]


def _at_cutoff(limit: Limit) -> bool:
    return limit.value == 0.0 and limit.bound_by.startswith("cell_voltage")


def _never_sent(r: ModuleReading) -> set[str]:
    """The required groups whose every field the module's profile never sends: not waited for, not timed out."""
    return {g for g, keys in RULE_INPUTS.items() if all(k in r.absent for k in keys)}


def _trouble(r: ModuleReading) -> str | None:
    """Why a module must be isolated now (fault state, fault code or a protection bit), or None."""
    if r.module_state == ModuleState.FAULT:
        return f"module in fault (code {r.fault_code})"
    if r.fault_code:
        return f"fault code {r.fault_code}"
    if r.protections:
        names = [ALARM_BITS[i] for i in range(16) if r.protections >> i & 1]
        return "protection: " + ", ".join(names)
    return None
