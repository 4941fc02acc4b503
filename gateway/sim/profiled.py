"""The simulator in another BMS's words: our protocol's frames in, a module profile's frames out.

The physics simulator speaks our module protocol. A `Translator` keeps each of its modules' latest values by our
signal names and encodes them through the profile's DBC with cantools (signal map reversed, each value clamped into
its DBC range, the ID built by the bus's addressing): broadcast profiles send each message at its DBC cycle time,
polled ones answer the profile's polls with the messages the row names. A muted module says nothing, as a BMS that
stopped answering. Multiplexed messages are not sent (no profile's polls ask for them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import can
from cantools.database.can import Message, Signal

from gateway.can import dbc, profiles
from gateway.can.addressing import Addressing, Scheme
from gateway.can.codec import FORBIDDEN_CHOICES, NO_VALUE_CHOICES, DecodeFailure, canonical_target, choice
from gateway.can.polls import PollSchedule
from gateway.can.profiles import ModuleProfile
from gateway.config import ModuleBusSection

BROADCAST_PERIOD = 1.0
"""Seconds between a broadcast message's frames when its DBC gives no cycle time."""
BEYOND_OURS = {"ChargePermitted": 1.0, "DischargePermitted": 1.0}
"""What a simulated module says where our protocol has no signal: a healthy BMS permits both directions."""
PERMITS = frozenset(BEYOND_OURS)
ALLOWED_CHOICES = frozenset({"Allowed"})


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: Message
    period: float
    names: tuple[tuple[Signal, str], ...]
    """Each signal with our name for it."""
    needs: frozenset[str]
    """Our names the message carries: it is sent once the module has reported each of them."""


@functools.cache
def _ours() -> Mapping[int, Message]:
    return {m.frame_id: m for m in dbc.load(None, "module.dbc", "sim").messages}


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
        self._out: dict[str, _Outgoing] = {}
        for message in db.messages:
            if message.is_multiplexed():
                continue
            names = tuple((s, ours.get(s.name, s.name)) for s in message.signals)
            if not any(canonical_target(name) is not None for _, name in names):
                continue
            period = message.cycle_time / 1000.0 if message.cycle_time else BROADCAST_PERIOD
            needs = frozenset(name for _, name in names if canonical_target(name) is not None)
            self._out[message.name] = _Outgoing(message, period, names, needs)
        self._next: dict[tuple[str, int], float] = {}

    def take(self, msg: can.Message) -> None:
        """A frame of our module protocol from the physics simulator: remember its values by our names."""
        address = msg.arbitration_id & 0x1F
        message = _ours().get(msg.arbitration_id & ~0x1F)
        if address not in self.addresses or message is None:
            return
        try:
            values = dbc.decode(message, bytes(msg.data))
        except DecodeFailure:
            return
        mine = self._values.setdefault(address, dict(BEYOND_OURS))
        mine.update(values)
        if self._invert and "ModuleCurrent" in values:  # a BMS that counts discharging as positive
            mine["ModuleCurrent"] = 0.0 - values["ModuleCurrent"]

    def broadcast(self, until: float) -> Iterator[can.Message]:
        """The frames a broadcasting BMS sends by `until`; none for a polled profile."""
        if self._polls:
            return
        for name, out in self._out.items():
            for address in sorted(self._values.keys() - self.muted):
                due = self._next.get((name, address), 0.0)
                if due > until or not out.needs <= self._values[address].keys():
                    continue
                self._next[name, address] = max(due + out.period, until)
                yield self._frame(out, address, until)

    def answer(self, msg: can.Message) -> list[can.Message]:
        """The answers to a received poll (nothing for another frame, or for a muted module)."""
        out = []
        for poll in self._polls:
            if poll.extended != msg.is_extended_id or bytes(msg.data) != poll.data:
                continue
            for address in sorted(self._values.keys() - self.muted):
                wire = address - self.addressing.offset
                expected = poll.can_id if poll.address_shift is None else poll.can_id | wire << poll.address_shift
                if msg.arbitration_id == expected:
                    known = self._values[address].keys()
                    answers = [self._out[name] for name in poll.answers if self._out[name].needs <= known]
                    out += [self._frame(answer, address, msg.timestamp) for answer in answers]
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
    """`value` within the signal's range; without one, the signal's "no reading" value, else 0 or its minimum."""
    low = -math.inf if signal.minimum is None else float(signal.minimum)
    high = math.inf if signal.maximum is None else float(signal.maximum)
    if value is None:
        none = [raw for raw, label in (signal.choices or {}).items() if str(label) in NO_VALUE_CHOICES]
        if none:
            return float(none[0] * signal.scale + signal.offset)
        value = 0.0
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
