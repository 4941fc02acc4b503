"""Logs of both buses, as `candump -L can0 can1` records them: the module simulator's frames on one channel and
a simulated inverter's on another, in time order."""

from __future__ import annotations

from pathlib import Path

import can

from gateway.outputs.inverter import Profile
from gateway.outputs.inverter.profiles import SimFrame
from gateway.sim import Simulator
from gateway.sim.inverter import SimInverter


def two_bus_log(
    path: Path,
    sim: Simulator,
    duration: float,
    *,
    inverter: Profile,
    modules_channel: str = "can0",
    inverter_channel: str = "can1",
    frames: tuple[SimFrame, ...] | None = None,
    start: float = 0.0,
) -> int:
    """Write `duration` s of both buses to `path`; the inverter speaks from `start` s on. Frame count."""
    polling = SimInverter(inverter, start=sim.time + start, frames=frames)
    out: list[can.Message] = []
    for msg in sim.advance(until=sim.time + duration):
        msg.channel = modules_channel
        out.append(msg)
    t = out[0].timestamp
    end = out[-1].timestamp
    while (t := min(polling.next_at(), end + 1)) <= end:
        for msg in polling.due(t):
            msg.timestamp, msg.channel = t, inverter_channel
            out.append(msg)
    out.sort(key=lambda m: m.timestamp)
    with can.Logger(path) as logger:
        for msg in out:
            logger.on_message_received(msg)
    return len(out)
