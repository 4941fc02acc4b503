"""The one place outputs get the master's view from: the latest snapshot, and a way to wait for a newer one."""

from __future__ import annotations

import asyncio

from gateway.master.model import BankSnapshot, MasterCommand


class SnapshotHub:
    """Holds the latest `BankSnapshot` (and the module commands of that tick); outputs read or await it.

    Only the master's loop publishes; outputs never block it: publishing replaces a reference and wakes the
    waiters, and a slow output simply skips the snapshots it had no time for.
    """

    def __init__(self, initial: BankSnapshot) -> None:
        self._latest = initial
        self._commands: tuple[MasterCommand, ...] = ()
        self._changed = asyncio.Event()

    @property
    def latest(self) -> BankSnapshot:
        return self._latest

    @property
    def commands(self) -> tuple[MasterCommand, ...]:
        return self._commands

    def publish(self, snapshot: BankSnapshot, commands: tuple[MasterCommand, ...] = ()) -> None:
        self._latest = snapshot
        self._commands = commands
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def newer(self, seq: int) -> BankSnapshot:
        """The first snapshot with a sequence number above `seq` (returns at once if there is one)."""
        while self._latest.seq <= seq:
            await self._changed.wait()
        return self._latest
