"""Replay a recorded log through ingest and the master on the log's own clock, as fast as the CPU allows.

The same objects as live operation decide everything: the store decodes each frame at its timestamp, the master
ticks every `bank.tick` seconds of log time and at once on an urgent frame, and the MasterCommand and inverter
schedules say which frames the gateway would have sent. Installers send logs; this is how we answer them.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import can

from gateway import payload
from gateway.can.codec import ModuleCodec
from gateway.can.commands import CommandSchedule
from gateway.can.ingest import ModuleStore
from gateway.can.logfile import LogFile
from gateway.config import Config
from gateway.errors import LogError
from gateway.master.master import Master
from gateway.master.model import BankSnapshot
from gateway.outputs import pylontech
from gateway.service import urgency


@dataclass(slots=True)
class ReplayResult:
    frames: int = 0
    decoded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    sent: int = 0
    start: float | None = None
    end: float | None = None
    wall: float = 0.0
    last: BankSnapshot | None = None
    damage: LogError | None = None
    """Where the log is damaged: replay stopped there."""

    def summary(self) -> str:
        span = 0.0 if self.start is None or self.end is None else self.end - self.start
        rate = self.frames / self.wall if self.wall > 0 else 0.0
        rejected = ", ".join(f"{k} {v}" for k, v in self.rejected.items() if v) or "none"
        return (
            f"{self.frames} frames over {span:.1f} s of log in {self.wall:.2f} s ({rate:,.0f} frames/s): "
            f"{self.decoded} decoded, rejected: {rejected}; {self.ticks} master ticks; {self.sent} frames sent"
        )


def replay(log: Path, config: Config, *, snapshots: Path | None = None, output: Path | None = None) -> ReplayResult:
    modules = config.can.modules
    codec = ModuleCodec.from_config(modules)
    urgent: list[bool] = [False]
    store = ModuleStore(
        codec,
        urgency=urgency(config.limits),
        on_urgent=lambda: urgent.__setitem__(0, True),
        ignore_ids=pylontech.INVERTER_IDS,
    )
    master = Master(config, required_groups=codec.required_groups)
    link = pylontech.InverterLink()
    commands = CommandSchedule(codec, modules.command_period) if modules.commands else None
    inverter = pylontech.Schedule(config.can.inverter) if config.can.inverter.enabled else None
    result = ReplayResult()
    frames = LogFile(log)
    started = time.perf_counter()
    with ExitStack() as stack:
        lines: IO[str] | None = stack.enter_context(snapshots.open("w")) if snapshots else None
        writer: Any = stack.enter_context(can.Logger(output)) if output else None

        def send(can_id: int, data: bytes, t: float, channel: str) -> None:
            result.sent += 1
            if writer is not None:
                writer(
                    can.Message(
                        timestamp=t,
                        arbitration_id=can_id,
                        data=data,
                        is_extended_id=False,
                        channel=channel,
                        is_rx=False,
                    )
                )

        def step(t: float) -> None:
            tick = master.step(t, store.readings(), link.info)
            result.ticks += 1
            result.last = tick.snapshot
            if lines is not None:
                lines.write(json.dumps(payload.snapshot_dict(tick.snapshot), separators=(",", ":")) + "\n")
            if commands is not None:
                for can_id, data in commands.due(t, tick.commands):
                    send(can_id, data, t, "modules")
            if inverter is not None:
                for can_id, data in inverter.due(t, tick.snapshot):
                    send(can_id, data, t, "inverter")

        period = config.bank.tick
        next_tick: float | None = None
        for msg in frames:
            t = msg.timestamp
            if next_tick is None:
                next_tick = result.start = t
            while next_tick <= t:
                step(next_tick)
                next_tick += period
            result.frames += 1
            result.end = t
            if msg.arbitration_id in pylontech.INVERTER_IDS and not msg.is_extended_id:
                link.on_message(msg, t)
            else:
                store.on_message(msg, t)
            if urgent[0]:
                urgent[0] = False
                step(t)
    result.damage = frames.damage
    result.decoded = store.decoded
    result.rejected = dict(store.rejected)
    result.wall = time.perf_counter() - started
    return result
