"""The simulator in another BMS's words: our protocol's frames in, a module profile's frames out.

The physics simulator speaks our module protocol. A `Translator` keeps each of its modules' latest values by our
signal names and encodes them through the profile's DBC with cantools (signal map reversed, each value clamped into
its DBC range, the ID built by the bus's addressing): broadcast profiles send each message at its DBC cycle time,
polled ones answer the profile's polls with the messages the row names. A multiplexed message goes out as one frame
per multiplexer value whose signals the module has reported any of (a Daly's 0x95 answer: one frame per 3 cells);
a slot it has not reported is sent as raw 0, the bytes a BMS leaves empty (a Daly's sensor slots past its sensor
count then read -40 degC, as on the wire). A muted module says nothing, as a BMS that stopped answering.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass

import can
from cantools.database.can import Message, Signal

from gateway.can import dbc, profiles
from gateway.can.addressing import Addressing, Scheme
from gateway.can.codec import FORBIDDEN_CHOICES, NO_VALUE_CHOICES, DecodeFailure, canonical_target, choice
from gateway.can.polls import PollSchedule
from gateway.can.profiles import ModuleProfile
from gateway.config import ModuleBusSection
from gateway.master.model import MAX_SENSORS

BROADCAST_PERIOD = 1.0
"""Seconds between a broadcast message's frames when its DBC gives no cycle time."""
BEYOND_OURS = {"ChargePermitted": 1.0, "DischargePermitted": 1.0}
"""What a simulated module says where our protocol has no signal: a healthy BMS permits both directions."""
PERMITS = frozenset(BEYOND_OURS)
ALLOWED_CHOICES = frozenset({"Allowed"})
SENSORS = tuple(f"Temp{n:02}" for n in range(1, MAX_SENSORS + 1))
"""Our names of the sensors: our protocol sends no sensor count (an absent sensor is "no reading"), a Daly's 0x94
does, so the translator counts the sensors the module has reported."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A frame a message goes out as: the whole message, or one branch of a multiplexed one."""

    message: Message
    period: float
    names: tuple[tuple[Signal, str], ...]
    """Each signal with our name for it (a branch: those it holds, without the multiplexer)."""
    needs: frozenset[str]
    """Our names the frame carries."""
    selector: tuple[str, int] | None = None
    """A branch's multiplexer signal and its value."""

    def ready(self, known: Set[str]) -> bool:
        """A whole message is sent once the module has reported each value it carries; a branch once it has
        reported any (the last of a Daly's cell frames carries the cells past its count as zeros)."""
        return self.needs <= known if self.selector is None else not self.needs.isdisjoint(known)


@functools.cache
def _ours() -> Mapping[int, tuple[Message, Mapping[str, float]]]:
    """Our protocol's messages by base ID, each with its signals' "no reading" values (a sensor slot's raw 255)."""
    out = {}
    for message in dbc.load(None, "module.dbc", "sim").messages:
        none = {s.name: v for s in message.signals if (v := choice(s, NO_VALUE_CHOICES)) is not None}
        out[message.frame_id] = (message, none)
    return out


def _outgoing(message: Message, ours: Mapping[str, str]) -> tuple[_Outgoing, ...]:
    """The frames a message goes out as: itself, or one per value of its multiplexer; none when it carries nothing
    of ours (or multiplexers within multiplexers, which no profile has)."""
    period = message.cycle_time / 1000.0 if message.cycle_time else BROADCAST_PERIOD
    muxes = [s for s in message.signals if s.is_multiplexer]
    branches: list[tuple[tuple[str, int] | None, list[Signal]]]
    if not muxes:
        branches = [(None, list(message.signals))]
    elif len(muxes) == 1 and muxes[0].multiplexer_ids is None:
        values = sorted({v for s in message.signals for v in s.multiplexer_ids or ()})
        branches = [
            ((muxes[0].name, v), [s for s in message.signals if v in (s.multiplexer_ids or ())]) for v in values
        ]
    else:
        return ()
    out = []
    for selector, signals in branches:
        names = tuple((s, ours.get(s.name, s.name)) for s in signals)
        needs = frozenset(name for _, name in names if canonical_target(name) is not None)
        if needs:
            out.append(_Outgoing(message, period, names, needs, selector))
    return tuple(out)


class Translator:
    """One bus's view of simulated modules `addresses`, in the profile's frames."""

    def __init__(self, bus: ModuleBusSection, *, index: int = 0) -> None:
        self.profile: ModuleProfile = bus.row
        self.addressing: Addressing = bus.address_plan
        self.channel = bus.channel
        self.addresses = frozenset(self.addressing.addresses)
        self.muted: set[int] = set()
        """Modules that send and answer nothing (a BMS that stopped answering)."""
        db = dbc.load(bus.dbc, self.profile.dbc, f"{bus.where}.dbc")
        ours = bus.signals
        self._invert = bus.invert_current
        self._polls = bus.poll_frames
        self._schedule = PollSchedule(index, self._polls, self.addressing)
        self._values: dict[int, dict[str, float]] = {}
        self._out = {m.name: frames for m in db.messages if (frames := _outgoing(m, ours))}
        self._next: dict[tuple[str, tuple[str, int] | None, int], float] = {}
        self._owed: set[tuple[str, int]] = set()
        """(message, module) a poll asked for before the module had reported the values of any of its frames (see
        `broadcast`)."""

    def take(self, msg: can.Message) -> None:
        """A frame of our module protocol from the physics simulator: remember its values by our names."""
        address = msg.arbitration_id & 0x1F
        found = _ours().get(msg.arbitration_id & ~0x1F)
        if address not in self.addresses or found is None:
            return
        message, none = found
        try:
            values = dbc.decode(message, bytes(msg.data))
        except DecodeFailure:
            return
        if none:  # an absent sensor is no value, not 215 degC
            values = {k: v for k, v in values.items() if none.get(k) != v}
        mine = self._values.setdefault(address, dict(BEYOND_OURS))
        mine.update(values)
        if none:
            mine["TemperatureSensorCount"] = sum(name in mine for name in SENSORS)
        if self._invert and "ModuleCurrent" in values:  # a BMS that counts discharging as positive
            mine["ModuleCurrent"] = 0.0 - values["ModuleCurrent"]

    def broadcast(self, until: float) -> Iterator[can.Message]:
        """The frames a broadcasting BMS sends by `until`. A polled one sends the answers it owes: a real BMS knows
        its values when the first poll comes, the simulated one learns them in the physics' first second, and an
        unanswered 0x94 would be asked again only 10 s later."""
        if self._polls:
            for name, address in sorted(self._owed):
                if address in self.muted:
                    self._owed.discard((name, address))
                    continue
                known = self._values.get(address, {}).keys()
                ready = [out for out in self._out[name] if out.ready(known)]
                if ready:
                    self._owed.discard((name, address))
                    yield from (self._frame(out, address, until) for out in ready)
            return
        for frames in self._out.values():
            for out in frames:
                for address in sorted(self._values.keys() - self.muted):
                    key = (out.message.name, out.selector, address)
                    due = self._next.get(key, 0.0)
                    if due > until or not out.ready(self._values[address].keys()):
                        continue
                    self._next[key] = max(due + out.period, until)
                    yield self._frame(out, address, until)

    def answer(self, msg: can.Message) -> list[can.Message]:
        """The answers to a received poll (nothing for another frame, or for a muted module)."""
        out = []
        for poll in self._polls:
            if poll.extended != msg.is_extended_id or bytes(msg.data) != poll.data:
                continue
            for address in sorted(self.addresses - self.muted):
                wire = address - self.addressing.offset
                expected = poll.can_id if poll.address_shift is None else poll.can_id | wire << poll.address_shift
                if msg.arbitration_id != expected:
                    continue
                known = self._values.get(address, {}).keys()
                for name in poll.answers:
                    frames = [answer for answer in self._out[name] if answer.ready(known)]
                    if not frames:
                        self._owed.add((name, address))
                    out += [self._frame(answer, address, msg.timestamp) for answer in frames]
        return out

    def polled(self, until: float) -> Iterator[can.Message]:
        """The answers a polled BMS gives to the gateway's own poll schedule by `until` (for a log file)."""
        for frame in self._schedule.due(until):
            yield from self.answer(
                can.Message(
                    timestamp=until, arbitration_id=frame.can_id, data=frame.data, is_extended_id=frame.extended
                )
            )

    def _frame(self, out: _Outgoing, address: int, t: float) -> can.Message:
        values = self._values[address]
        data = {signal.name: _clamped(signal, _said(signal, ours, values.get(ours))) for signal, ours in out.names}
        if out.selector is not None:
            data[out.selector[0]] = out.selector[1]
        payload = out.message.encode(data, scaling=True, strict=False)
        can_id = self.addressing.frame_id(out.message.frame_id, address)
        return can.Message(
            timestamp=t,
            arbitration_id=can_id,
            is_extended_id=out.message.is_extended_frame,
            data=bytes(payload),
            channel=self.channel,
        )


def _said(signal: Signal, ours: str, value: float | None) -> float | None:
    """Our value as the profile's signal says it: a permit (1 or 0) given as a code is the signal's forbidding value
    for 0 and, for 1, its allowing one (0 where the value table names none)."""
    forbidden = choice(signal, FORBIDDEN_CHOICES) if ours in PERMITS else None
    if forbidden is None or value is None:
        return value
    return forbidden if value == 0 else (choice(signal, ALLOWED_CHOICES) or 0.0)


def _clamped(signal: Signal, value: float | None) -> float:
    """`value` within the signal's range; without one, the signal's "no reading" value, else raw 0 (the bytes a BMS
    leaves empty), within the range."""
    low = -math.inf if signal.minimum is None else float(signal.minimum)
    high = math.inf if signal.maximum is None else float(signal.maximum)
    if value is None:
        none = [raw for raw, label in (signal.choices or {}).items() if str(label) in NO_VALUE_CHOICES]
        if none:
            return float(none[0] * signal.scale + signal.offset)
        value = float(signal.offset)
    return min(max(value, low), high)


def bus_entries(profile: str, modules: int, *, interface: str, channel: str) -> list[dict[str, object]]:
    """`[[can.modules]]` entries for `modules` simulated modules of a profile: one bus per module (`<channel>-<n>`)
    where the profile carries one battery per bus, else one bus with addresses 1..modules."""
    if profile == "module":
        return [{"interface": interface, "channel": channel}]
    if profiles.profile(profile).addressing.scheme is Scheme.FIXED:
        return [
            {"interface": interface, "channel": f"{channel}-{a}", "profile": profile, "address": a}
            for a in range(1, modules + 1)
        ]
    return [{"interface": interface, "channel": channel, "profile": profile, "address_count": modules}]
