"""The one place outputs get the master's view from: the latest snapshot, and a way to wait for a newer one."""

from __future__ import annotations

import asyncio

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
