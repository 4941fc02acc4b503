"""Clocks for tests: one that reads what the test says, anchored to a wall-clock time, and ISO times read back.

`FixedClock` stands in for `gateway.clock.LiveClock` where a test needs exact published times: it reads `t`
(set by the test) and its anchor says reading 0 was Unix time `wall`.
"""

from __future__ import annotations

from datetime import datetime

from gateway.clock import Anchor

WALL = 1_764_050_000.0
"""2025-11-25T05:53:20Z: the wall-clock time of reading 0 in the tests that pin published times."""


class FixedClock:
    """Reads `t` until a test changes it; reading 0 is Unix time `wall`."""

    def __init__(self, t: float = 0.0, *, wall: float = WALL) -> None:
        self.t = t
        self.wall = wall

    def __call__(self) -> float:
        return self.t

    def anchor(self) -> Anchor:
        return Anchor(clock=0.0, wall=self.wall)


def unix(iso: str) -> float:
    """An ISO 8601 time from a payload as Unix seconds (it must carry its UTC offset)."""
    moment = datetime.fromisoformat(iso)
    assert moment.utcoffset() is not None, iso
    return moment.timestamp()
