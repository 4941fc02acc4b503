"""The one place outputs get the master's view from: the latest snapshot, and a way to wait for a newer one; the
same for the gateway's events."""

from __future__ import annotations

import asyncio

from gateway.history.events import Event
from gateway.master.model import BankSnapshot


class SnapshotHub:
    """Holds the latest `BankSnapshot`; outputs read or await it.

    Only the master's loop publishes; outputs never block it: publishing replaces a reference and wakes the
    waiters, and a slow output simply skips the snapshots it had no time for.
    """

    def __init__(self, initial: BankSnapshot) -> None:
        self._latest = initial
        self._changed = asyncio.Event()

    @property
    def latest(self) -> BankSnapshot:
        return self._latest

    def publish(self, snapshot: BankSnapshot) -> None:
        self._latest = snapshot
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def newer(self, seq: int) -> BankSnapshot:
        """The first snapshot with a sequence number above `seq` (returns at once if there is one)."""
        while self._latest.seq <= seq:
            await self._changed.wait()
        return self._latest


class EventHub:
    """The latest event of the gateway (what the journal and the history record), for outputs that show it: the
    MQTT events topic. Like `SnapshotHub`, publishing never waits and a slow reader skips what it missed."""

    def __init__(self) -> None:
        self._latest: Event | None = None
        self._count = 0
        self._changed = asyncio.Event()

    @property
    def latest(self) -> Event | None:
        return self._latest

    @property
    def count(self) -> int:
        """Events published so far."""
        return self._count

    def publish(self, event: Event) -> None:
        self._latest = event
        self._count += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def newer(self, count: int) -> int:
        """Wait until more than `count` events have been published; the count then (the latest is `latest`)."""
        while self._count <= count:
            await self._changed.wait()
        return self._count
