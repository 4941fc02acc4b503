"""ingest: the live module-bus path on python-can's virtual bus at a saturated 500 kbit/s (4k frames/s) and
1 Mbit/s (8k frames/s) bus, and the highest rate it sustains.

Traffic: 30 s of a simulated 16-module stack (16 cells each, every frame type at its protocol period), sent
cyclically faster than real time by a `PacedSender` thread. Receivers, each on its own channel, same frames:
- gateway: the real `Gateway` (module and inverter bus, master ticking at 10 Hz, no Modbus/MQTT): python-can's
  Notifier thread -> `DecodingListener` -> `ModuleStore.feed`; the master on the event loop.
- plain: Notifier -> `can.AsyncBufferedReader` -> an asyncio task that decodes with cantools and updates a dict
  (every frame handed into asyncio).
- listener: Notifier -> a `can.Listener` that decodes and updates a dict in the Notifier thread.
- receive: Notifier -> a `can.Listener` that only counts: what python-can's receive path costs by itself, the
  floor under the gateway's CPU per frame (not ramped).
- bare decode: cantools decode of the same prefetched payloads, no bus (share = rate x time per frame); and the
  gateway's own compiled decode of them (`Plan.decode`), for the details.

CPU share: (process CPU time - the sender thread's CPU time) / wall time, over a window after a warm-up. Both
clocks are Linux's (process: CLOCK_PROCESS_CPUTIME_ID; sender: its pthread CPU clock), so the Notifier thread,
the event loop and the GC are charged to the receiver and the sender is not. Rounds alternate the receivers and
the median is reported, so a noisy neighbour hits all of them alike.

Max sustainable rate: from 8k frames/s up by 15 % per step, each step held for a few seconds; a step passes
when the sender delivered its rate, the receiver is at most 50 ms of traffic behind at the end and, after a
drain, has received every frame sent. A failed step is tried once more; the last passing step is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import can
from cantools.database.can import Message

from benchmarks import common
from benchmarks.common import CpuMeter, Options, PacedSender, Row, Target
from gateway.can.addressing import Addressing
from gateway.can.bus import open_bus
from gateway.can.codec import ModuleCodec
from gateway.service import Gateway

RATES = (4000, 8000)
RAMP_START = 8000
MAX_RATE = 250_000
Received = Callable[[], int]


@contextlib.asynccontextmanager
async def gateway_receiver(channel: str) -> AsyncIterator[Received]:
    gateway = Gateway(common.gateway_config({"can": {"modules": {"channel": channel}}}))
    async with common.running(gateway):
        yield lambda: gateway.core.store.received


@contextlib.asynccontextmanager
async def plain_receiver(channel: str) -> AsyncIterator[Received]:
    """Every frame into asyncio (python-can's AsyncBufferedReader), decoded there."""
    by_base = common.messages_by_base(common.module_db())
    bus = open_bus("virtual", channel, 500_000)
    reader = can.AsyncBufferedReader()
    notifier = can.Notifier(bus, [reader], timeout=0.5, loop=asyncio.get_running_loop())
    latest: dict[int, object] = {}
    count = 0

    async def consume() -> None:
        nonlocal count
        async for msg in reader:
            message = by_base.get(msg.arbitration_id & ~common.ADDRESS_MASK)
            if message is not None:
                latest[msg.arbitration_id] = message.decode(bytes(msg.data), decode_choices=False)
            count += 1

    task = asyncio.create_task(consume())
    try:
        yield lambda: count
    finally:
        notifier.stop()
        bus.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class DecodeListener(can.Listener):
    """Decodes every frame and keeps the latest values per frame ID, in the thread that received it."""

    def __init__(self, by_base: Mapping[int, Message]) -> None:
        self._by_base = by_base
        self.latest: dict[int, object] = {}
        self.count = 0

    def on_message_received(self, msg: can.Message) -> None:
        message = self._by_base.get(msg.arbitration_id & ~common.ADDRESS_MASK)
        if message is not None:
            self.latest[msg.arbitration_id] = message.decode(bytes(msg.data), decode_choices=False)
        self.count += 1

    def stop(self) -> None:
        """Nothing to release."""


@contextlib.asynccontextmanager
async def listener_receiver(channel: str) -> AsyncIterator[Received]:
    listener = DecodeListener(common.messages_by_base(common.module_db()))
    bus = open_bus("virtual", channel, 500_000)
    notifier = can.Notifier(bus, [listener], timeout=0.5)
    try:
        yield lambda: listener.count
    finally:
        notifier.stop()
        bus.shutdown()


class CountingListener(can.Listener):
    """Counts frames and does nothing else: python-can's receive path alone."""

    def __init__(self) -> None:
        self.count = 0

    def on_message_received(self, msg: can.Message) -> None:
        self.count += 1

    def stop(self) -> None:
        """Nothing to release."""


@contextlib.asynccontextmanager
async def receive_receiver(channel: str) -> AsyncIterator[Received]:
    listener = CountingListener()
    bus = open_bus("virtual", channel, 500_000)
    notifier = can.Notifier(bus, [listener], timeout=0.5)
    try:
        yield lambda: listener.count
    finally:
        notifier.stop()
        bus.shutdown()


RECEIVERS = {
    "gateway": gateway_receiver,
    "plain": plain_receiver,
    "listener": listener_receiver,
    "receive": receive_receiver,
}
RAMPED = ("gateway", "plain", "listener")


async def cpu_share(sender: PacedSender, rate: float, warm: float, seconds: float) -> tuple[float, dict[str, float]]:
    """CPU share of the receiving side at `rate`, and the share of its Notifier thread and event loop thread."""
    sender.set_rate(rate)
    await asyncio.sleep(warm)
    meter = CpuMeter([sender])
    watched = common.notifier_threads(sender.channel)
    main = threading.main_thread()
    meter.start([*watched, main])
    await asyncio.sleep(seconds)
    share = meter.share()
    split = {"notifier": sum(meter.thread_share(t) for t in watched), "loop": meter.thread_share(main)}
    sender.set_rate(0)
    return share, split


async def drain(sender: PacedSender, received: Received, within: float) -> bool:
    """Pause the sender and wait until the receiver has taken every frame sent (False: some never arrived)."""
    sender.set_rate(0)
    deadline = time.monotonic() + within
    while received() < sender.sent:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def step(sender: PacedSender, received: Received, rate: float, seconds: float) -> str | None:
    """Hold `rate` for `seconds`; None when the receiver kept up, else what went wrong."""
    if not await drain(sender, received, 5.0):
        return f"{sender.sent - received()} frames never arrived"
    s0, started = sender.sent, time.perf_counter()
    sender.set_rate(rate)
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    sent, behind = sender.sent - s0, sender.sent - received()
    sender.set_rate(0)
    if sent < 0.97 * rate * elapsed:
        return f"the sender offered only {sent / elapsed:,.0f}/s of {rate:,.0f}/s"
    if behind > max(200.0, 0.05 * rate):
        return f"{behind} frames behind after {elapsed:.1f} s at {rate:,.0f}/s"
    return None


async def ramp(sender: PacedSender, received: Received, seconds: float, factor: float) -> tuple[float, str]:
    """The highest rate held without falling behind or losing frames, and why the next step failed (twice: a
    failed step is tried once more, so one hiccup of a shared machine does not end the ramp)."""
    best, rate = 0.0, float(RAMP_START)
    while rate <= MAX_RATE:
        why = await step(sender, received, rate, seconds)
        if why is not None:
            why = await step(sender, received, rate, seconds)
        if why is not None:
            return best, why
        best, rate = rate, round(rate * factor, -2)
    return best, f"reached the ramp's end ({MAX_RATE:,}/s)"


@dataclass(slots=True)
class Measured:
    """One receiver's results: CPU shares per rate (one per round), the thread split, the ramp's outcome."""

    cpu: dict[int, list[float]] = field(default_factory=lambda: {r: [] for r in RATES})
    split: dict[int, dict[str, float]] = field(default_factory=dict)
    max_rate: float = 0.0
    why: str = ""

    def median(self, rate: int) -> float:
        return statistics.median(self.cpu[rate])


async def measure(opts: Options, pool: Sequence[can.Message]) -> dict[str, Measured]:
    rounds = opts.pick(1, 3)
    seconds = opts.pick(0.2, 5.0)
    out = {name: Measured() for name in RECEIVERS}
    for n in range(rounds):
        for name, receiver in RECEIVERS.items():
            m = out[name]
            channel = common.unique_channel(f"ingest-{name}")
            async with receiver(channel) as received:
                with common.sending(channel, pool) as sender:
                    if not opts.quick:
                        sender.set_rate(RATES[0])
                        await asyncio.sleep(4.0)  # the master admits the modules after bank.module_timeout
                    for rate in RATES:
                        share, m.split[rate] = await cpu_share(sender, rate, opts.pick(0.1, 1.0), seconds)
                        m.cpu[rate].append(share)
                        common.progress(f"ingest: {name} at {rate}/s: {share:.1f} % of a core {m.split[rate]}")
                    if n == rounds - 1 and name in RAMPED:
                        m.max_rate, m.why = await ramp(sender, received, opts.pick(0.2, 3.0), opts.pick(2.0, 1.15))
                        common.progress(f"ingest: {name} sustains {m.max_rate:,.0f}/s; next step: {m.why}")
                    await drain(sender, received, 5.0)
    return out


def compiled_decode_us(pool: Sequence[can.Message]) -> float:
    """The gateway's compiled decode (`Plan.decode`) of the same payloads: best of three passes, us per frame."""
    codec = ModuleCodec(common.module_db(), addressing=Addressing(mask=common.ADDRESS_MASK))
    prefetched = [
        (plan.decode, bytes(f.data)) for f in pool if (plan := codec.plans.get(f.arbitration_id & ~common.ADDRESS_MASK))
    ]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for decode, data in prefetched:
            decode(data)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(prefetched)


def run(opts: Options) -> list[Row]:
    pool = common.frame_pool(modules=16, seconds=30.0)
    bare_us = common.decode_cost_us(common.prefetch(pool, common.module_db()))
    compiled_us = compiled_decode_us(pool)
    common.progress(f"ingest: bare cantools decode {bare_us:.2f} us/frame, compiled {compiled_us:.2f} us/frame")
    data = asyncio.run(measure(opts, pool))
    gw, plain, listener, receive = data["gateway"], data["plain"], data["listener"], data["receive"]
    details = {
        "bare_decode_us_per_frame": bare_us,
        "compiled_decode_us_per_frame": compiled_us,
        "bare_decode_share": {r: r * bare_us / 1e4 for r in RATES},
        "listener_share": {r: listener.median(r) for r in RATES},
        "receive_share": {r: receive.median(r) for r in RATES},
        "listener_max_rate": listener.max_rate,
        "gateway_thread_split": gw.split,
        "gateway_rounds": gw.cpu,
        "plain_rounds": plain.cpu,
        "why_stopped": {name: m.why for name, m in data.items() if name in RAMPED},
    }
    label = "plain notifier+asyncio"
    rows = [
        Row("ingest", f"CPU at {r // 1000}k frames/s", gw.median(r), "%", plain.median(r), label, details=details)
        for r in RATES
    ]
    rows[1].target = Target(10.0, at_most=True, unit="%", ratio=0.6)
    per_frame = gw.median(8000) / 8000 * 1e4
    per_frame_target = Target(1.5, at_most=True, on_ratio=True)
    rows.append(
        Row("ingest", "CPU per frame at 8k/s", per_frame, "us", bare_us, "bare cantools decode", per_frame_target)
    )
    received = receive.median(8000) / 8000 * 1e4
    rows.append(Row("ingest", "python-can receive alone, per frame", received, "us", bare_us, "bare cantools decode"))
    rows.append(
        Row(
            "ingest",
            "max sustainable rate",
            gw.max_rate,
            "frames/s",
            plain.max_rate,
            label,
            Target(40_000, at_most=False, unit="frames/s"),
        )
    )
    return rows
