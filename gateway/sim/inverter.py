"""A simulated inverter of any profile: it polls, pairs and heartbeats as the profile's row says (`Profile.sim`),
and keeps count of what the gateway answers. `bms-gateway demo --inverter PROFILE` runs one; the end-to-end
tests drive the gateway with it.

Pure where it can be: `SimInverter.due(now)` says which frames are due, `receive(msg, t)` records a frame from
the gateway; `run_inverter` moves them over a bus in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import can

from gateway.outputs.inverter import Profile
from gateway.outputs.inverter.profiles import SimFrame


@dataclass(slots=True)
class _Due:
    frame: SimFrame
    at: float


@dataclass(slots=True)
class Seen:
    """What the simulated inverter has seen of the gateway."""

    sent: int = 0
    """Frames it sent (requests, heartbeats, pairings)."""
    received: int = 0
    """Frames it received from the gateway."""
    first_received: float | None = None
    last_received: float | None = None
    ids: dict[int, int] = field(default_factory=dict)


class SimInverter:
    """The inverter side of `profile`, simulated: its frames from `start` on, on their schedules."""

    def __init__(self, profile: Profile, *, start: float = 0.0, frames: Sequence[SimFrame] | None = None) -> None:
        """`frames` replaces the profile's own (a test polls faster than a real inverter)."""
        self.profile = profile
        self.seen = Seen()
        self._due = [_Due(f, start + f.start) for f in (profile.sim if frames is None else frames)]
        self.silent = False
        """Set to stop talking (the tests' "inverter falls silent")."""

    def due(self, now: float) -> list[can.Message]:
        """The frames due at `now`, each once; a frame with a period is due again a period later."""
        if self.silent:
            return []
        out = []
        for d in sorted(self._due, key=lambda d: d.at):
            if d.at > now:
                continue
            out.append(
                can.Message(
                    arbitration_id=d.frame.can_id,
                    data=bytes.fromhex(d.frame.data),
                    is_extended_id=self.profile.extended,
                )
            )
            d.at = math.inf if d.frame.every is None else max(d.at + d.frame.every, now)
        self.seen.sent += len(out)
        return out

    def next_at(self) -> float:
        return min((d.at for d in self._due), default=math.inf)

    def receive(self, msg: can.Message, t: float) -> None:
        s = self.seen
        s.received += 1
        s.ids[msg.arbitration_id] = s.ids.get(msg.arbitration_id, 0) + 1
        if s.first_received is None:
            s.first_received = t
        s.last_received = t


async def run_inverter(bus: can.BusABC, sim: SimInverter, *, tick: float = 0.01) -> None:
    """Send `sim`'s frames on `bus` in real time and record what comes back, until cancelled."""
    loop = asyncio.get_running_loop()
    reader = can.AsyncBufferedReader()
    notifier = can.Notifier(bus, [reader], timeout=0.05, loop=loop)
    start = loop.time()

    async def listen() -> None:
        while True:
            msg = await reader.get_message()
            sim.receive(msg, loop.time() - start)

    listening = asyncio.create_task(listen())
    try:
        while True:
            now = loop.time() - start
            for msg in sim.due(now):
                with contextlib.suppress(can.CanError):
                    bus.send(msg, timeout=0.0)
            await asyncio.sleep(max(tick, min(sim.next_at() - (loop.time() - start), 0.5)))
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        notifier.stop(timeout=1.0)
