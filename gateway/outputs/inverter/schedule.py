"""When the inverter gets what: the profile's groups every period, protective changes at once, answers to what it
asks, and the steps of its handshake. Pure: it is handed "now", the snapshot and the inverter's frames heard
since the last call, and returns the frames to send; the live publisher and replay drive it the same way, so
replay reproduces every send and every answer.

- Cyclic groups go out every period (the master's tick nearest it: sets ride on the ticks, live as in replay),
  and at once (at most 10 a second) when a change protects the battery: a current limit falls to 0 or by more
  than max(1 A, 2 % of the bank's rating) below what the inverter last got, a voltage limit tightens by more than
  1 % or crosses the bank voltage, a protection bit is raised, a request flag changes, the set turns fail-safe.
- A master that stops ticking gets the fail-safe set (zero limits, disabled, alarm); so does every answer.
- An inverter frame that a rule of the profile matches is answered at once (the first part now, the next ones
  `spacing` apart, on the following ticks), and the session moves to the rule's next state once they are out.
  Groups go out only in the session states the profile lists (a handshake), never in a request/response one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import NamedTuple

from gateway.config import BankSection, InverterBusSection
from gateway.master.model import BankSnapshot, Flags, Level, Lifecycle
from gateway.outputs.inverter import table
from gateway.outputs.inverter.encode import Frame, active, frames, shown
from gateway.outputs.inverter.profiles import Group, Mode, Part
from gateway.values import frozen

STALE_AFTER = 2.0
"""A snapshot older than this (s) means the master stopped ticking: the inverter gets the fail-safe set."""
FAST_INTERVAL = 0.1
"""Protective changes go out at once, but at most one extra set per this many seconds (10/s)."""
CURRENT_FALL_A = 1.0
CURRENT_FALL_PERCENT = 2.0
"""CCL or DCL goes out at once when it falls to 0 or by more than max(CURRENT_FALL_A, this percent of the bank's
rating) below what the inverter last got. Smaller falls (current shares drift every tick) wait for the period."""
VOLTAGE_FALL_PERCENT = 1.0
"""CVL falling (DVL rising) by more than this percent of what the inverter last got goes out at once."""
_SLACK = 1e-3
"""A fast send this close to the end of the rate limit counts as allowed: ticks that add up 0.1 s land a hair early."""


class Heard(NamedTuple):
    """An inverter frame, as received at `t`."""

    t: float
    can_id: int
    data: bytes


@frozen
class State:
    """What the live view shows of the inverter side."""

    protocol: str
    mode: str
    session: str
    paired: bool | None
    requests: int
    last_request: float | None
    answers: int
    last_answer: float | None
    reason: str | None


# -- the fast path's view of a snapshot -------------------------------------------------------------------------

_CURRENT_MAX, _VOLTAGE_MAX = 32767, 65535
"""The fast path compares limits in 0.1 A / 0.1 V, the resolution every inverter protocol here carries."""


def _tenths(value: float | None, rounding: str, high: int) -> int:
    """A limit in 0.1 units as the frames carry it: rounded as they round it, clamped; unknown is the safe end."""
    if value is None or not math.isfinite(value):
        return 0 if rounding == ROUND_FLOOR else high
    raw = int((Decimal(repr(float(value))) * 10).to_integral_value(rounding=rounding))
    return min(max(raw, 0), high)


@frozen
class _Watch:
    """What decides whether a set must go out before its period, in 0.1 A and 0.1 V."""

    valid: bool
    charge_voltage: int
    charge_current: int
    discharge_current: int
    discharge_voltage: int
    voltage: int | None
    """The bank voltage, to tell when CVL or DVL crosses it."""
    charge_step: int
    discharge_step: int
    """The largest fall of CCL / DCL that may wait for the period."""
    protections: frozenset[str]
    requests: Flags

    def protects(self, sent: _Watch) -> bool:
        """True when the inverter must learn this now: the fail-safe set, a material fall of a limit, a new
        protection, a changed request flag."""
        return (
            (sent.valid and not self.valid)
            or _current_falls(self.charge_current, sent.charge_current, self.charge_step)
            or _current_falls(self.discharge_current, sent.discharge_current, self.discharge_step)
            or _tightens(self.charge_voltage, sent.charge_voltage, self.voltage, sent.voltage)
            or _tightens(
                -self.discharge_voltage, -sent.discharge_voltage, _negated(self.voltage), _negated(sent.voltage)
            )
            or not self.protections <= sent.protections
            or self.requests != sent.requests
        )


def _current_falls(now: int, sent: int, step: int) -> bool:
    return now < sent and (now <= 0 or sent - now > step)


def _tightens(now: int, sent: int, voltage: int | None, sent_voltage: int | None) -> bool:
    """A voltage limit fell by more than VOLTAGE_FALL_PERCENT of what was sent, or from above the bank voltage (when
    sent) to it or below: charging must stop now. DVL is passed negated (with the voltages), so that one rule
    serves both: its rise is a fall here."""
    if now >= sent:
        return False
    if 100 * (sent - now) > VOLTAGE_FALL_PERCENT * abs(sent):
        return True
    return voltage is not None and sent_voltage is not None and now <= voltage and sent > sent_voltage


def _negated(value: int | None) -> int | None:
    return None if value is None else -value


def _strings_online(snapshot: BankSnapshot) -> int:
    """Parallel strings whose modules are all online: what the bank's rating counts."""
    modules = snapshot.modules
    return sum(
        1 for s in snapshot.strings if s and all(a in modules and modules[a].lifecycle is Lifecycle.ONLINE for a in s)
    )


def watch(snapshot: BankSnapshot, bank: BankSection, protections: frozenset[str]) -> _Watch:
    lim = snapshot.limits
    strings = _strings_online(snapshot)
    charge = max(CURRENT_FALL_A, CURRENT_FALL_PERCENT / 100.0 * bank.rated_charge_current * strings)
    discharge = max(CURRENT_FALL_A, CURRENT_FALL_PERCENT / 100.0 * bank.rated_discharge_current * strings)
    voltage = snapshot.voltage
    return _Watch(
        valid=snapshot.valid,
        charge_voltage=_tenths(lim.charge_voltage.value, ROUND_FLOOR, _VOLTAGE_MAX),
        charge_current=_tenths(lim.charge_current.value, ROUND_FLOOR, _CURRENT_MAX),
        discharge_current=_tenths(lim.discharge_current.value, ROUND_FLOOR, _CURRENT_MAX),
        discharge_voltage=_tenths(lim.discharge_voltage.value, ROUND_CEILING, _VOLTAGE_MAX),
        voltage=None if voltage is None or not math.isfinite(voltage) else _tenths(voltage, ROUND_HALF_UP, 1 << 31),
        charge_step=_tenths(charge, ROUND_FLOOR, _CURRENT_MAX),
        discharge_step=_tenths(discharge, ROUND_FLOOR, _CURRENT_MAX),
        protections=protections,
        requests=snapshot.flags,
    )


# -- the schedule -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cycle:
    """One group's clock: the next time it is due (None: not started)."""

    group: Group
    period: float
    next: float | None = None
    """A period after the last time it went out."""
    last: bytes | None = None
    """For a group sent on change: what went out last."""


@dataclass(slots=True)
class _Queued:
    at: float
    part: Part
    request: bytes
    then: str | None = None
    rule: str = ""


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    last_request: float | None = None
    answers: int = 0
    last_answer: float | None = None
    last_heard: float | None = None
    heard: int = 0
    stop_answers: int = 0
    """Answers sent after `stopping` was set."""
    queue: list[_Queued] = field(default_factory=list)


class Schedule:
    """When the inverter gets what. Pure: the live publisher and replay both call `due(now, snapshot, heard)` and
    transmit what it returns, then call again by `wake()` at the latest (or at once when the inverter speaks).

    Changes are judged against the last set *sent*, so a fall that comes during the rate limit still goes out as
    soon as the limit allows, and small falls that add up go out once their sum is material. `bank` gives the
    rated currents (the bank's rating is the rated current of one string times the parallel strings online in the
    snapshot) and the cells in series the frames report.
    """

    def __init__(self, config: InverterBusSection, *, bank: BankSection) -> None:
        self.profile = table.profile(config.protocol)
        self.options = table.options(config, self.profile)
        self.bank = bank
        """The rated currents the fast path's thresholds come from (replaced on a reload)."""
        self.period = self.profile.period or config.period
        self._cycles = [_Cycle(g, period) for g in self.profile.groups for period in (g.period or self.period,)]
        self.session = self.profile.initial
        self.fast_sends = 0
        self.reason: str | None = None
        """Why the last frames sent were fail-safe ones; None while the inverter gets the master's limits."""
        self.stopping = False
        """The gateway is stopping: everything sent from now on is the fail-safe set."""
        self._c = _Counters()
        self._last_fast = -math.inf
        self._sent: _Watch | None = None
        self._wake = -math.inf

    # -- the inverter speaks --------------------------------------------------------------------------------------

    def hear(self, heard: Heard) -> None:
        """One frame from the inverter: match it against the profile's rules (first match wins) and queue the
        answer. Frames the profile does not expect are ignored."""
        profile = self.profile
        if heard.can_id not in profile.expects:
            return
        c = self._c
        self._reset_if_silent(heard.t)
        c.last_heard = heard.t
        c.heard += 1
        for rule in profile.rules:
            if rule.when is not None and self.session not in rule.when:
                continue
            if not rule.trigger.matches(heard.can_id, heard.data, self.options):
                continue
            c.requests += 1
            c.last_request = heard.t
            if rule.spacing:  # a sequence asked for again starts over, as the real battery does
                c.queue = [q for q in c.queue if q.rule != rule.name]
            last = len(rule.parts) - 1
            for n, part in enumerate(rule.parts):
                then = rule.then if n == last else None
                c.queue.append(_Queued(heard.t + n * rule.spacing, part, heard.data, then, rule.name))
            if not rule.parts and rule.then is not None:
                self.session = rule.then
            return

    def _reset_if_silent(self, now: float) -> None:
        c, after = self._c, self.profile.reset_after
        if after is not None and c.last_heard is not None and now - c.last_heard > after:
            if self.session != self.profile.initial:
                self.session = self.profile.initial
            c.queue.clear()
            c.last_heard = None

    # -- what to send ---------------------------------------------------------------------------------------------

    def due(self, now: float, snapshot: BankSnapshot, heard: Iterable[Heard] = ()) -> list[Frame]:
        """The frames to send now: answers to what was heard, queued handshake frames that are due, groups whose
        period is up, and the fast path's frames when a protective change waits."""
        for h in heard:
            self.hear(h)
        self._reset_if_silent(now)
        stale_at = snapshot.t + STALE_AFTER
        stale = now >= stale_at
        if stale:
            snapshot = snapshot.failsafe("master stale")
        elif self.stopping:
            snapshot = snapshot.failsafe("gateway stopping")
        snap = shown(snapshot)
        out = self._answers(now, snap)
        cyclic, fast_at = self._cyclic(now, snap, stale)
        out += cyclic
        if out:
            self.reason = None if snap.valid else snap.reason
        if stale:
            wakes = [c.next for c in self._cycles if c.next is not None]
            wakes += [q.at for q in self._c.queue[:1]]
            wakes += [] if fast_at is None else [fast_at]
            self._wake = min(wakes, default=math.inf)
        else:
            self._wake = stale_at
        return out

    def answer(self, now: float, snapshot: BankSnapshot, heard: Iterable[Heard] = ()) -> list[Frame]:
        """Only the answers due now (no group): what a stopping gateway still sends, with the fail-safe set."""
        for h in heard:
            self.hear(h)
        snap = shown(snapshot.failsafe("gateway stopping") if self.stopping else snapshot)
        out = self._answers(now, snap)
        if out:
            self.reason = None if snap.valid else snap.reason
        return out

    def _encode(self, snap: BankSnapshot, parts: list[Part], request: bytes = b"") -> list[Frame]:
        return frames(
            snap,
            self.profile,
            self.options,
            parts,
            cells_in_series=self.bank.cells_in_series,
            session=self.session,
            request=request,
        )

    def _answers(self, now: float, snap: BankSnapshot) -> list[Frame]:
        c = self._c
        out: list[Frame] = []
        while c.queue and c.queue[0].at <= now + _SLACK:
            q = c.queue.pop(0)
            out += self._encode(snap, [q.part], q.request)
            if q.then is not None:
                self.session = q.then
        if out:
            c.answers += 1
            c.last_answer = now
            if self.stopping:
                c.stop_answers += 1
        return out

    def _cyclic(self, now: float, snap: BankSnapshot, stale: bool) -> tuple[list[Frame], float | None]:
        """The groups' frames due now, and when a protective change that the rate limit holds back may go."""
        profile = self.profile
        if not self._cycles:
            return [], None
        if profile.cyclic_in is not None and self.session not in profile.cyclic_in:
            for cycle in self._cycles:
                cycle.next, cycle.last = None, None  # they start afresh when the session allows
            self._sent = None
            return [], None
        w = watch(snap, self.bank, active(snap, profile, Level.PROTECTION))
        urgent = self._sent is not None and w.protects(self._sent)
        # Groups ride on the master's ticks (the snapshot's tick time), so live sends what replay sends: a group goes
        # out with the first tick at most half a tick short of its period since it last went out. Each period
        # counts from the last send, not from a grid: a late tick then never costs a whole period. Once the
        # snapshot is stale there are no ticks, and the period counts on this clock.
        at = now if stale else snap.t
        parts: list[Part] = []
        changed: list[_Cycle] = []
        for cycle in self._cycles:
            if cycle.group.on_change:
                changed.append(cycle)
                continue
            if cycle.next is None or at >= cycle.next - min(cycle.period, self.bank.tick) / 2:
                cycle.next = at + cycle.period
                parts += cycle.group.parts
        sent_ids = {frame_id for frame_id, _ in parts}
        fast_at: float | None = None
        if urgent and not profile.urgent_ids <= sent_ids:
            if now >= self._last_fast + FAST_INTERVAL - _SLACK:
                self._last_fast = now
                self.fast_sends += 1
                parts += [p for cycle in self._cycles for p in cycle.group.parts if p[0] in profile.urgent_ids]
                parts = list(dict.fromkeys(parts))
            else:
                fast_at = self._last_fast + FAST_INTERVAL
        out = self._encode(snap, parts) if parts else []
        if parts and {frame_id for frame_id, _ in parts} & profile.urgent_ids:
            self._sent = w
        for cycle in changed:  # sent when what they carry changes (and once at the start)
            encoded = self._encode(snap, list(cycle.group.parts))
            data = b"".join(f.data for f in encoded)
            if data != cycle.last:
                cycle.last = data
                out += encoded
        return out, fast_at

    def wake(self) -> float:
        """When `due` wants to be asked again if no newer snapshot (nor inverter frame) comes first (clock time).

        While the master ticks, every new snapshot asks, so sets and queued frames go out with the ticks (live
        exactly as in replay), and this is only when the snapshot would turn stale; once it is stale, the next
        period, fast send or queued frame.
        """
        return self._wake

    def failsafe(self, snapshot: BankSnapshot) -> list[Frame]:
        """The fail-safe version of every group the inverter is getting now (none before its handshake, none in
        a request/response profile), for the stop."""
        profile = self.profile
        if profile.cyclic_in is not None and self.session not in profile.cyclic_in:
            return []
        parts = [p for cycle in self._cycles for p in cycle.group.parts]
        return self._encode(shown(snapshot.failsafe("gateway stopping")), parts) if parts else []

    @property
    def heard(self) -> int:
        """Frames from the inverter the schedule has taken in (expected ones only)."""
        return self._c.heard

    @property
    def stop_answers(self) -> int:
        return self._c.stop_answers

    @property
    def state(self) -> State:
        profile, c = self.profile, self._c
        return State(
            protocol=profile.name,
            mode=profile.mode.value,
            session=self.session,
            paired=None if profile.paired is None else self.session in profile.paired,
            requests=c.requests,
            last_request=c.last_request,
            answers=c.answers,
            last_answer=c.last_answer,
            reason=self.reason,
        )

    @property
    def answers_only(self) -> bool:
        return self.profile.mode is Mode.REQUEST
