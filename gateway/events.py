"""Alarm and lifecycle events, for the dashboard's events page and `/api/events`.

`EventSource` is what the dashboard reads. `EventJournal` implements it in memory, since start: the service hands
it the changes it logs after each tick (`gateway.changes`), and it keeps the last `size` of them. A history store
(the SQLite event log) implements the same protocol over its table, and the dashboard then shows events from
before the last start too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.changes import Change
from gateway.master.model import Level

EventLevel = Literal["info", "warning", "protection"]
LEVELS: tuple[EventLevel, ...] = ("info", "warning", "protection")
"""From least to most severe; a filter by level keeps that level and the ones after it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One change between two snapshots, numbered: "module offline" for module 3, "alarm raised" for a code."""

    id: int
    """Increasing: `events(after=id)` returns only newer ones."""
    t: float
    """The snapshot's time (seconds, Unix-like)."""
    event: str
    level: EventLevel
    """protection for an alarm raised at (or rising to) protection, else the journal's severity."""
    module: int | None = None
    """The module a lifecycle event is about."""
    modules: tuple[int, ...] = ()
    """The modules an alarm names."""
    code: str = ""
    lifecycle: str = ""
    reason: str = ""
    was: str = ""
    detail: str = ""

    def about(self, module: int) -> bool:
        return module == self.module or module in self.modules

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "t": round(self.t, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t)) + f".{int(self.t % 1 * 1000):03d}Z",
            "event": self.event,
            "level": self.level,
            "module": self.module,
            "modules": list(self.modules),
            "code": self.code,
            "lifecycle": self.lifecycle,
            "reason": self.reason,
            "was": self.was,
            "detail": self.detail,
        }


class EventSource(Protocol):
    """Where the dashboard reads events from."""

    @property
    def description(self) -> str:
        """Where the events come from, for the page ("since start", "history since ...")."""
        ...

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        ...

    def events(
        self, *, module: int | None = None, level: EventLevel = "info", after: int = 0, limit: int = 200
    ) -> Sequence[Event]:
        """Newest first, at most `limit`: events after id `after`, about `module` (if given), at `level` or
        above."""
        ...


def level_of(change: Change) -> EventLevel:
    if change.level is Level.PROTECTION and change.event != "alarm cleared":
        return "protection"
    return change.severity


class EventJournal:
    """The last `size` events since start, in memory: the `EventSource` until a history store exists."""

    def __init__(self, size: int = 1000) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._last = 0

    @property
    def description(self) -> str:
        return f"since the gateway started (the last {self._events.maxlen})"

    @property
    def last_id(self) -> int:
        return self._last

    def record(self, t: float, changes: Iterable[Change]) -> None:
        """The changes of one tick (from the master's loop: an append per change, nothing else)."""
        for change in changes:
            self._last += 1
            self._events.append(
                Event(
                    id=self._last,
                    t=t,
                    event=change.event,
                    level=level_of(change),
                    module=change.module,
                    modules=change.modules,
                    code=change.code,
                    lifecycle="" if change.lifecycle is None else str(change.lifecycle),
                    reason=change.reason,
                    was=change.was,
                    detail=change.detail,
                )
            )

    def events(
        self, *, module: int | None = None, level: EventLevel = "info", after: int = 0, limit: int = 200
    ) -> list[Event]:
        least = LEVELS.index(level)
        out: list[Event] = []
        for e in reversed(self._events):
            if e.id <= after or len(out) >= limit:
                break
            if LEVELS.index(e.level) >= least and (module is None or e.about(module)):
                out.append(e)
        return out
