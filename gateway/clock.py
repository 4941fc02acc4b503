"""Time for the live gateway: monotonic (never jumps with NTP), anchored to the wall clock at start.

Timeouts compare these values, so a wall-clock step can never make stale data look fresh; yet the numbers
read like Unix time in logs. Replay passes the log's own timestamps instead.

Inside the gateway (master, alarms, snapshots) time is only ever this clock. Whatever a person or Home Assistant
reads is converted at the edge, by an `Anchor`: one instant read on both clocks, so that any reading converts
to wall-clock time with a pure function. `LiveClock.anchor()` re-takes it when the wall clock is stepped (a
Raspberry Pi without a real-time clock boots with an old date and NTP steps it later), so a published time is
the wall-clock time of the event as the system knows it now, while the master's own times never jump.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STEP = 1.0
"""Seconds the wall clock may differ from a LiveClock's anchor before it is re-taken (an NTP step, not a slew)."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """The gateway clock read `clock` when the wall clock read `wall` (Unix seconds): converts readings to wall
    time. The default, `UNIX`, is the identity, for readings that are Unix time already."""

    clock: float = 0.0
    wall: float = 0.0

    def unix(self, t: float) -> float:
        """Reading `t` as Unix seconds."""
        return self.wall + (t - self.clock)

    def iso(self, t: float) -> str | None:
        """Reading `t` as ISO 8601 UTC to the millisecond, e.g. "2025-11-25T05:53:34.250Z"; None when it is not a
        date (not finite, or beyond year 9999: a damaged log's timestamp)."""
        try:
            moment = _EPOCH + timedelta(milliseconds=round(self.unix(t) * 1000.0))
        except (OverflowError, ValueError):
            return None
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


UNIX = Anchor()
"""Readings that are Unix time: replay's log timestamps (candump and ASC logs carry Unix time), and a LiveClock's
until the wall clock is stepped."""


class Clock(Protocol):
    def __call__(self) -> float: ...


class WallClock(Clock, Protocol):
    """A clock whose readings can be shown as wall-clock time."""

    def anchor(self) -> Anchor: ...


class LiveClock:
    """Unix-like seconds that advance with time.monotonic().

    `monotonic` and `wall` are the time sources (time.monotonic, time.time); tests pass their own.
    """

    __slots__ = ("_anchor", "_monotonic", "_offset", "_wall")

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._offset = wall() - monotonic()
        self._anchor = UNIX
        """Readings start out as Unix time, by the offset's construction."""

    def __call__(self) -> float:
        return self._monotonic() + self._offset

    def anchor(self) -> Anchor:
        """How readings convert to wall time now: unchanged until the wall clock departs from it by more than
        `STEP` seconds (so a published time does not flicker by a millisecond between two publications)."""
        now, wall = self(), self._wall()
        if abs(self._anchor.unix(now) - wall) > STEP:
            self._anchor = Anchor(clock=now, wall=wall)
        return self._anchor
