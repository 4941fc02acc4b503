"""Replay a recorded log through ingest and the master on the log's own clock, as fast as the CPU allows.

The same objects as live operation decide everything: the store decodes each frame at its timestamp, the master
ticks every `bank.tick` seconds of log time and at once on an urgent frame, and the MasterCommand and inverter
schedules say which frames the gateway would have sent. Installers send logs; this is how we answer them.

A log of several buses (`candump -L can0 can1 can2`): each frame goes to the module bus whose `channel` matches the
frame's, frames on the inverter's channel (`can.inverter.channel`) go to the inverter side as received, and its
answers to them (requests, pairings, handshakes) go to `--output` at the frame's time, as the live publisher sends
them at once. Frames on no configured channel, or with none (a single-bus log), go to the first module bus (the
inverter's own IDs among them still reach the inverter side, as on a shared bus). MasterCommands and polls go to
`--output` on their bus's channel.

With a history file, replay writes what the live gateway would have written, on the log's clock: the events of
every snapshot change (and a start and a stop), the lifetime counters and the master's memory, in the same
batches (one per second of log time), so a recorded day yields its event list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import can

from gateway import __version__
from gateway.can.logfile import LogFile
from gateway.can.polls import BusFrame
from gateway.changes import changes
from gateway.config import Config
from gateway.core import Core
from gateway.errors import LogError
from gateway.history import events
from gateway.history.store import Store
from gateway.history.writer import PERIOD, Pending
from gateway.master.model import BankSnapshot
from gateway.outputs.inverter import Frame
from gateway.snapshot_json import SnapshotLines


@dataclass(slots=True)
class ReplayResult:
    frames: int = 0
    decoded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    gaps: int = 0
    """Silences longer than `bank.module_timeout`: the clock jumped over each with one tick."""
    step_failures: int = 0
    inverter_frames: int = 0
    """Frames on the inverter's channel, fed to the inverter side."""
    sent: int = 0
    start: float | None = None
    end: float | None = None
    wall: float = 0.0
    last: BankSnapshot | None = None
    damage: LogError | None = None
    """Where the log is damaged: replay stopped there."""
    events: int = 0
    """Events written to the history."""

    def summary(self) -> str:
        span = 0.0 if self.start is None or self.end is None else self.end - self.start
        rate = self.frames / self.wall if self.wall > 0 else 0.0
        rejected = ", ".join(f"{k} {v}" for k, v in self.rejected.items() if v) or "none"
        text = (
            f"{self.frames} frames over {span:.1f} s of log in {self.wall:.2f} s ({rate:,.0f} frames/s): "
            f"{self.decoded} decoded, rejected: {rejected}; {self.ticks} master ticks; {self.sent} frames sent"
        )
        if self.inverter_frames:
            text += f"; {self.inverter_frames} frames from the inverter heard"
        if self.gaps:
            text += f"; {self.gaps} silences longer than module_timeout jumped over (one tick each)"
        if self.step_failures:
            text += f"; {self.step_failures} master steps FAILED (fail-safe set sent)"
        if self.events:
            text += f"; {self.events} events written to the history"
        return text


Progress = Callable[[int, float | None], None]
"""Told every PROGRESS_EVERY frames: the frames replayed so far, and how much of the log is read (None: unknown)."""
PROGRESS_EVERY = 1 << 14


def replay(
    log: Path,
    config: Config,
    *,
    snapshots: Path | None = None,
    output: Path | None = None,
    progress: Progress | None = None,
    history: Path | None = None,
) -> ReplayResult:
    """Run the core on a log, on the log's clock: a tick every `bank.tick` seconds of log time and at once after an
    urgent frame, exactly as live. A silence longer than `bank.module_timeout` is one jump: one tick at its end.

    `history`: write the history there (created if new; raises HistoryError when it cannot be written)."""
    core: Core | None = None
    result = ReplayResult()
    buses, inverter = config.can.modules, config.can.inverter
    same_bus = any((bus.interface, bus.channel) == (inverter.interface, inverter.channel) for bus in buses)
    inverter_channel = None if same_bus else inverter.channel
    bus_of = {bus.channel: i for i, bus in enumerate(buses)}
    frames = LogFile(log)
    started = time.perf_counter()
    with ExitStack() as stack:
        lines: IO[str] | None = stack.enter_context(snapshots.open("w")) if snapshots else None
        json_lines = SnapshotLines()
        writer: Any = stack.enter_context(can.Logger(output)) if output else None
        recorder = _History(stack.enter_context(_opened(history)), log, config) if history else None

        def send(frames: Iterable[BusFrame | Frame], t: float, channel: str | None = None) -> None:
            for frame in frames:
                can_id, data, extended = frame.can_id, frame.data, frame.extended
                if isinstance(frame, BusFrame):
                    channel = buses[frame.bus].channel
                result.sent += 1
                if writer is not None:
                    writer(
                        can.Message(
                            timestamp=t,
                            arbitration_id=can_id,
                            data=data,
                            is_extended_id=extended,
                            channel=channel,
                            is_rx=False,
                        )
                    )

        def tick(core: Core, t: float) -> None:
            step = core.tick(t)
            result.ticks += 1
            result.last = step.snapshot
            if recorder is not None:
                recorder.tick(core, step.snapshot)
            if lines is not None:
                lines.write(json_lines.line(step.snapshot) + "\n")
            send(step.frames, t)
            if core.inverter is not None:
                send(core.inverter.due(t, step.snapshot, core.link.drain()), t, "inverter")

        for msg in frames:
            t = msg.timestamp
            if core is None:
                core = Core(config, now=t, inverter_on_module_bus=True)
                result.start = t
                if recorder is not None:
                    recorder.start(core, t)
            if t - core.next_tick > config.bank.module_timeout:
                result.gaps += 1
                tick(core, t)
            while core.next_tick <= t:
                tick(core, core.next_tick)
            result.frames += 1
            if progress is not None and not result.frames % PROGRESS_EVERY:
                progress(result.frames, frames.read_fraction())
            result.end = t
            if inverter_channel is not None and msg.channel == inverter_channel:
                result.inverter_frames += 1
                core.hear(msg, t)
            else:
                core.feed(msg, t, bus_of.get(str(msg.channel), 0))
            if core.link.pending:
                send(core.answer(t), t, "inverter")
            if core.urgent:
                tick(core, t)
        if recorder is not None and core is not None and result.end is not None:
            result.events = recorder.stop(core, result.end, "end of log" if frames.damage is None else "damage in log")
    result.damage = frames.damage
    if core is not None:
        result.decoded = core.store.decoded
        result.rejected = dict(core.store.rejected)
        result.step_failures = core.failures
    result.wall = time.perf_counter() - started
    return result


@contextmanager
def progress_bar(log: Path, stream: TextIO) -> Iterator[Progress | None]:
    """A progress bar for a long replay on `stream` (rich: how much of the log is read, frames and frames/s, time
    left), gone when the replay ends; None when `stream` is not a terminal."""
    if not stream.isatty():
        yield None
        return
    from rich.console import Console  # noqa: PLC0415 - only a terminal needs it
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[frames]:,} frames, {task.fields[rate]:,.0f} frames/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        task = bar.add_task(f"replay {log.name}", total=1.0, frames=0, rate=0.0)
        started = time.perf_counter()

        def update(count: int, fraction: float | None) -> None:
            rate = count / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task, total=None if fraction is None else 1.0, completed=fraction or 0.0, frames=count, rate=rate
            )

        yield update


class _History:
    """Replay's history: the live writer's batches, written in line on the log's clock."""

    def __init__(self, store: Store, log: Path, config: Config) -> None:
        self._store = store
        self._log = log
        self._pending = Pending(config.history.retention_days)
        self._before: BankSnapshot | None = None
        self._due = 0.0
        self.events = 0

    def start(self, core: Core, t: float) -> None:
        """Restore what the file holds (a later log of the same bank goes on from an earlier one) and start."""
        loaded = self._store.load()
        core.restore(loaded.memory, loaded.counters, loaded.daily, t)
        self._before, self._due = core.latest, t + PERIOD
        source = f"replay of {self._log.name}"
        start = events.started(
            t, version=__version__, source=source, unclean=loaded.unclean, last_seen=loaded.last_seen
        )
        self._store.begin(t, [start])
        self.events += 1

    def tick(self, core: Core, snapshot: BankSnapshot) -> None:
        assert self._before is not None
        for change in changes(self._before, snapshot):
            self._pending.add(events.from_change(change, snapshot.t))
        self._before = snapshot
        if snapshot.t >= self._due:
            self._write(self._pending.batch(snapshot.t, core))
            self._due = snapshot.t + PERIOD

    def stop(self, core: Core, t: float, reason: str) -> int:
        self._pending.add(events.stopped(t, reason))
        self._write(self._pending.batch(t, core, final=True))
        return self.events

    def _write(self, batch: Any) -> None:
        if batch is not None:
            self._store.write(batch)
            self.events += len(batch.events)


@contextmanager
def _opened(path: Path) -> Iterator[Store]:
    store = Store(path)
    try:
        yield store
    finally:
        store.close()
