"""When to send a bus's request frames, for BMSs that answer only when asked (Daly, a Pylontech HV tower).

Pure, like the MasterCommand schedule: the core asks `due(now)` on every tick, live and in replay, and the frames
go out on the bus (or into replay's output log). A polled BMS that stops answering is then offline exactly like a
silent broadcaster: its groups go stale and the master's timeout takes it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from gateway.can.addressing import Addressing
from gateway.can.profiles import Poll

SLACK = 1e-3
"""A tick this close to a poll's due time counts as due: ticks that add up 0.1 s steps land a hair early."""


class BusFrame(NamedTuple):
    """A frame for a module bus (its index in `can.modules`)."""

    bus: int
    can_id: int
    data: bytes
    extended: bool = False


class PollSchedule:
    """Each poll every `period` s from the first tick; an addressed one once per module address of the bus."""

    def __init__(self, bus: int, polls: Sequence[Poll], addressing: Addressing) -> None:
        self.bus = bus
        self._frames = [(poll, _frames(bus, poll, addressing)) for poll in polls]
        self._next: list[float | None] = [None] * len(self._frames)

    def restart(self) -> None:
        """Every poll due at the next `due`, the schedule going on from there: for a bus that has just (re)opened,
        where the polls due while it was closed went nowhere (a Daly's 0x94, every 10 s, would otherwise leave its
        cell and sensor counts unknown that long)."""
        self._next = [None] * len(self._frames)

    def due(self, now: float) -> list[BusFrame]:
        """The request frames to send now: each poll whose period is up, its next one a period after this one's
        due time (so a late tick does not make the schedule drift)."""
        out: list[BusFrame] = []
        for i, (poll, frames) in enumerate(self._frames):
            following = self._next[i]
            if following is not None and now < following - SLACK:
                continue
            following = now if following is None else following
            following += poll.period
            self._next[i] = following if following > now else now + poll.period
            out.extend(frames)
        return out


def _frames(bus: int, poll: Poll, addressing: Addressing) -> list[BusFrame]:
    """The poll's frames: one, or one per module address of the bus (its wire address at `address_shift`)."""
    if poll.address_shift is None:
        return [BusFrame(bus, poll.can_id, poll.data, poll.extended)]
    ids = (poll.can_id | (a - addressing.offset) << poll.address_shift for a in addressing.addresses)
    return [BusFrame(bus, can_id, poll.data, poll.extended) for can_id in ids]
