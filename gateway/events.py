"""The dashboard's events: the `EventSource` protocol it reads and `EventJournal`, the recent ones in memory.

There is one kind of event, `gateway.history.events.Event`: what the service records (every snapshot change, start
and stop, reloads, edge failures, operator actions) goes to the history, to the MQTT events topic and to this
journal alike. At start the journal is seeded with the history's latest events, so the page shows what happened
before a restart too; without a history it holds what happened since start. The journal numbers its events so
that a page can ask for the ones after the last it has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.history.events import LEVELS, Event, EventLevel, event_dict

__all__ = ["LEVELS", "SIZE", "EventJournal", "EventLevel", "EventSource", "Numbered"]

SIZE = 1000
"""Events the journal keeps: a page of events for days of an eventful bank, a few hundred kB of memory."""


@dataclass(frozen=True, slots=True)
class Numbered:
    """An event with the journal's number: increasing, so `events(after=id)` returns only newer ones."""

    id: int
    event: Event

    def about(self, module: int) -> bool:
        return module in self.event.modules

    def as_dict(self) -> dict[str, Any]:
        """The event as `events --json` and the MQTT events topic give it, with its number."""
        return {"id": self.id, **event_dict(self.event)}


class EventSource(Protocol):
    """Where the dashboard reads events from."""

    @property
    def description(self) -> str:
        """Where the events come from, for the page."""
        ...

    @property
    def last_id(self) -> int:
        """The number of the newest event (0 when there is none)."""
        ...

    def events(
        self, *, module: int | None = None, level: EventLevel = "info", after: int = 0, limit: int = 200
    ) -> Sequence[Numbered]:
        """Newest first, at most `limit`: events after number `after`, about `module` (if given), at `level` or
        above."""
        ...


class EventJournal:
    """The last `size` events, in memory: seeded from the history at start, then every event recorded."""

    def __init__(self, size: int = SIZE) -> None:
        self._events: deque[Numbered] = deque(maxlen=size)
        self._last = 0
        self._seeded = False

    @property
    def description(self) -> str:
        since = f"since the gateway started (the last {self._events.maxlen})"
        return f"from the history, then {since}" if self._seeded else since

    @property
    def last_id(self) -> int:
        return self._last

    def seed(self, events: Iterable[Event]) -> None:
        """Events from before this start (oldest first), read from the history; they go before any recorded."""
        older = list(events)
        if not older:
            return
        kept = list(self._events)
        self._events.clear()
        self._last = 0
        for event in [*older, *(n.event for n in kept)]:
            self.record(event)
        self._seeded = True

    def record(self, event: Event) -> None:
        """One event (from the master's loop: an append, nothing else)."""
        self._last += 1
        self._events.append(Numbered(self._last, event))

    def events(
        self, *, module: int | None = None, level: EventLevel = "info", after: int = 0, limit: int = 200
    ) -> list[Numbered]:
        least = LEVELS.index(level)
        out: list[Numbered] = []
        for n in reversed(self._events):
            if n.id <= after or len(out) >= limit:
                break
            if LEVELS.index(n.event.level) >= least and (module is None or n.about(module)):
                out.append(n)
        return out
