"""Adapters that move the simulator's frames: into a log file as fast as the CPU allows, or onto a bus in real time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import can

from gateway.logs import BurstLog, get
from gateway.sim.profiled import Translator
from gateway.sim.simulator import Simulator

log = get("gateway.sim")


STEP = 0.01
"""Seconds between the steps in which translated traffic is produced (a profile's fastest frame is 20 ms)."""


def write_log(path: str | Path, sim: Simulator, duration: float, translators: Sequence[Translator] = ()) -> int:
    """Write `duration` s of simulated traffic to `path` (format by suffix: .log, .asc, .blf, ...); frame count.

    With `translators`, the traffic is theirs, each frame on its bus's channel, polled profiles answering the
    gateway's poll schedule."""
    count = 0
    with can.Logger(path) as logger:
        for msg in (
            translated(sim, translators, sim.time + duration) if translators else sim.advance(until=sim.time + duration)
        ):
            logger.on_message_received(msg)
            count += 1
    return count


def translated(sim: Simulator, translators: Sequence[Translator], end: float) -> Iterator[can.Message]:
    """The translators' frames up to simulated time `end`, in STEP steps."""
    steps = math.ceil(round((end - sim.time) / STEP, 6))
    origin = sim.time
    for k in range(1, steps + 1):
        until = min(end, origin + k * STEP)
        for msg in sim.advance(until=until):
            for translator in translators:
                translator.take(msg)
        for translator in translators:
            yield from translator.broadcast(until)
            yield from translator.polled(until)


async def run_translated(
    links: Sequence[tuple[can.BusABC, Translator]],
    sim: Simulator,
    *,
    duration: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send the simulator's modules in their profiles' frames on their buses in real time, answering polls; for
    `duration` s (None: until cancelled). Returns how many frames failed to send."""
    failures = BurstLog(log, "simulated frame not sent", clock=clock)
    failed = 0

    def send(bus: can.BusABC, msg: can.Message) -> None:
        nonlocal failed
        try:
            bus.send(msg)
        except can.CanError as err:
            failed += 1
            failures("send_error", error=str(err))

    async def answer(bus: can.BusABC, translator: Translator, reader: can.AsyncBufferedReader) -> None:
        async for msg in reader:
            for reply in translator.answer(msg):
                send(bus, reply)

    loop = asyncio.get_running_loop()
    readers = [can.AsyncBufferedReader() for _ in links]
    notifiers = [can.Notifier(bus, [r], timeout=0.1, loop=loop) for (bus, _), r in zip(links, readers, strict=True)]
    end = math.inf if duration is None else sim.time + duration
    origin, t0 = sim.time, clock()
    try:
        async with asyncio.TaskGroup() as tasks:
            answering = [
                tasks.create_task(answer(bus, translator, reader), name=f"sim-polls-{translator.channel}")
                for (bus, translator), reader in zip(links, readers, strict=True)
            ]
            while True:
                await asyncio.sleep(STEP)
                until = min(end, origin + clock() - t0)
                for msg in sim.advance(until=until):
                    for _, translator in links:
                        translator.take(msg)
                for bus, translator in links:
                    for msg in translator.broadcast(until):
                        send(bus, msg)
                if until >= end:
                    break
            for task in answering:
                task.cancel()
    finally:
        for notifier in notifiers:
            notifier.stop()
    failures.flush()
    return failed


async def run_on_bus(
    bus: can.BusABC, sim: Simulator, *, duration: float | None, clock: Callable[[], float] = time.monotonic
) -> int:
    """Send the simulator's frames on `bus` in real time and feed it the MasterCommands received there.

    Runs for `duration` s (None: until cancelled) and returns how many frames failed to send; a send error
    is counted and logged in bursts, never fatal. Due times come from the start, so pacing never drifts.
    """
    reader = can.AsyncBufferedReader()
    notifier = can.Notifier(bus, [reader], timeout=0.1, loop=asyncio.get_running_loop())
    try:
        async with asyncio.TaskGroup() as tasks:
            commands = tasks.create_task(_commands(reader, sim), name="sim-commands")
            failed = await _send(bus, sim, math.inf if duration is None else sim.time + duration, clock)
            commands.cancel()
    finally:
        notifier.stop()
    return failed


async def _commands(reader: can.AsyncBufferedReader, sim: Simulator) -> None:
    async for msg in reader:
        if not (msg.is_extended_id or msg.is_error_frame or msg.is_remote_frame):
            sim.handle_command(msg.arbitration_id, msg.data)


async def _send(bus: can.BusABC, sim: Simulator, end: float, clock: Callable[[], float]) -> int:
    """Sleep until the next frame is due, send every frame due by then; until simulated time `end`."""
    failures = BurstLog(log, "simulated frame not sent", clock=clock)
    failed = 0
    origin, t0 = sim.time, clock()
    while True:
        due = min(sim.next_due, end)
        await asyncio.sleep(max(0.0, t0 + (due - origin) - clock()))
        until = min(end, max(due, origin + clock() - t0))
        for msg in sim.advance(until=until):
            try:
                bus.send(msg)
            except can.CanError as err:
                failed += 1
                failures("send_error", error=str(err))
        if until >= end:
            failures.flush()
            return failed
