"""When to send MasterCommand frames: every period, and at once for a module whose command changed.

Pure: the live sender and replay both ask `due(now, commands)` and transmit what it returns, so a replayed log
shows exactly the frames the gateway would have sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.can.codec import ModuleCodec
from gateway.master.model import MasterCommand


class CommandSchedule:
    def __init__(self, codec: ModuleCodec, period: float) -> None:
        self._codec = codec
        self._period = period
        self._next: float | None = None
        self._last: dict[int, MasterCommand] = {}
        self._counter = 0

    def due(self, now: float, commands: Iterable[MasterCommand]) -> list[tuple[int, bytes]]:
        """The (frame ID, payload) pairs to send now: all of them when the period is up, else the changed ones."""
        commands = list(commands)
        periodic = self._next is None or now >= self._next
        send = [c for c in commands if periodic or self._last.get(c.address) != c]
        if not send:
            return []
        if periodic:
            following = now if self._next is None else self._next + self._period
            self._next = following if following > now else now + self._period
        self._counter = (self._counter + 1) % 256
        self._last.update((c.address, c) for c in send)
        return [self._codec.encode_command(c, self._counter) for c in send]
