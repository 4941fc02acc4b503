"""Time for the live gateway: monotonic (never jumps with NTP), anchored to the wall clock at start.

Timeouts compare these values, so a wall-clock step can never make stale data look fresh; yet the numbers
read like Unix time in snapshots and logs. Replay passes the log's own timestamps instead.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float: ...


class LiveClock:
    """Unix-like seconds that advance with time.monotonic()."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() + self._offset
