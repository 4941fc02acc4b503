"""latency: from a protective module frame entering the module bus to 0x351 with CCL = 0 leaving the inverter
bus, live on virtual buses, under 4k frames/s of background traffic.

The real `Gateway` runs with a benchmark config: its own virtual channels, Modbus and MQTT off, `[limits]
slew_rate = 10000` (CCL recovers at once) and `[bank] cutoff_first_count` out of reach (module 1 is always
the one at the cutoff and would be isolated after 3 events); in quick mode `[bank] module_timeout = 1` so the
bank starts sooner.

Background: 16 simulated modules cycled at 4k frames/s by a `PacedSender`, without module 1's CellSummary: a
driver thread sends those itself on a real `VirtualBus`, alternating protective (CellVoltageMax 3.60 V, in the
0 % zone of the charge derating) and normal (3.32 V). The recovery goes out at once too (charge enable
flips back on), and the fast path sends at most 10 sets a second: so each protective event waits until the
inverter has seen CCL > 0, then 150 ms after that and after the previous protective event, plus 0..50 ms of
jitter. Latency = the 0x351's send timestamp on the inverter bus (VirtualBus stamps time.time() on send) minus
time.time() just before the event was sent. `--events N` counts both kinds: N/2 latency samples. An event
with no CCL = 0 within 1 s counts as a miss, with 1 s as its latency.

Baseline: the same driver and traffic against the raw libraries: a `can.Listener` decodes every frame in the
Notifier thread and, on a CellSummary of module 1 crossing 3.55 V, wakes an asyncio task by
`call_soon_threadsafe` that encodes 0x351 with cantools and sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import can

from benchmarks import common
from benchmarks.common import Options, Row, Target
from gateway.can import dbc
from gateway.can.bus import open_bus
from gateway.service import Gateway

RATE = 4000
MODULE = 1
SPACING = 0.15
TIMEOUT = 1.0
PROTECTIVE, NORMAL = 3.60, 3.32
LIMITS = 0x351
CELL_SUMMARY = 0x440
Side = Callable[[str, str], contextlib.AbstractAsyncContextManager[None]]
"""Opens the system under test on (module channel, inverter channel)."""


def cell_summary(voltage_max: float) -> can.Message:
    message = common.module_db().get_message_by_name("CellSummary")
    values = {
        "CellVoltageMax": voltage_max,
        "CellVoltageMin": 3.30,
        "CellVoltageMaxIndex": 1,
        "CellVoltageMinIndex": 2,
        "BalancingCellCount": 0,
        "CellCount": 16,
    }
    return can.Message(arbitration_id=CELL_SUMMARY + MODULE, data=message.encode(values), is_extended_id=False)


class Inverter(threading.Thread):
    """The inverter's side: every 0x351 seen, as (send timestamp, CCL)."""

    def __init__(self, channel: str) -> None:
        super().__init__(name="bench inverter", daemon=True)
        self._bus = open_bus("virtual", channel, 500_000)
        self._limits = common.pylontech_db().get_message_by_frame_id(LIMITS)
        self._seen: list[tuple[float, float]] = []
        self._changed = threading.Condition()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            msg = self._bus.recv(0.05)
            if msg is not None and msg.arbitration_id == LIMITS:
                ccl = dbc.decode(self._limits, bytes(msg.data))["ChargeCurrentLimit"]
                with self._changed:
                    self._seen.append((msg.timestamp, ccl))
                    self._changed.notify_all()

    def first(self, after: float, match: Callable[[float], bool], timeout: float) -> float | None:
        """Timestamp of the first 0x351 sent at or after `after` whose CCL `match`es, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            checked = 0
            while True:
                for ts, ccl in self._seen[checked:]:
                    if ts >= after and match(ccl):
                        return ts
                checked = len(self._seen)
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    return None

    def close(self) -> None:
        self._stop_event.set()
        self.join(1.0)
        self._bus.shutdown()


@dataclass(slots=True)
class Driver:
    """Sends module 1's CellSummary: normal until the bank runs, then alternating protective/normal events."""

    inverter: Inverter
    events: int

    def run(self, bus: can.BusABC) -> tuple[list[float], int]:
        """Latencies (s) of the protective events, and how many got no CCL = 0 within TIMEOUT."""
        rng = random.Random(1)
        protective, normal = cell_summary(PROTECTIVE), cell_summary(NORMAL)
        started = time.time()
        while self.inverter.first(started, lambda ccl: ccl > 0, 0.2) is None:
            if time.time() - started > 15.0:
                raise RuntimeError("the inverter never got CCL > 0: the bank did not start")
            bus.send(normal)
        latencies: list[float] = []
        misses = 0
        last = sent_normal = -math.inf
        for _ in range(self.events // 2):
            recovered = self.inverter.first(sent_normal, lambda ccl: ccl > 0, 3.0) or time.time()
            time.sleep(max(0.0, max(last, recovered) + SPACING - time.time()) + rng.uniform(0.0, 0.05))
            last = time.time()
            bus.send(protective)
            at = self.inverter.first(last, lambda ccl: ccl == 0.0, TIMEOUT)
            misses += at is None
            latencies.append(TIMEOUT if at is None else at - last)
            time.sleep(max(0.0, last + SPACING - time.time()))
            sent_normal = time.time()
            bus.send(normal)
            while bus.recv(0) is not None:  # MasterCommands for the modules
                pass
        return latencies, misses


def gateway_side(module_timeout: float) -> Side:
    """The real gateway under the benchmark config (module_timeout: how long the bank takes to start)."""

    @contextlib.asynccontextmanager
    async def side(modules: str, inverter: str) -> AsyncIterator[None]:
        cfg = common.gateway_config(
            {
                "can": {"modules": {"channel": modules}, "inverter": {"channel": inverter}},
                "bank": {"cutoff_first_count": 1_000_000, "module_timeout": module_timeout},
                "limits": {"slew_rate": 10_000.0},
            }
        )
        async with common.running(Gateway(cfg)):
            yield

    return side


class BareListener(can.Listener):
    """Decodes every frame; on module 1's CellSummary crossing 3.55 V, hands the new CCL to the loop."""

    def __init__(self, on_ccl: Callable[[float], object]) -> None:
        self._by_base = common.messages_by_base(common.module_db())
        self._on_ccl = on_ccl
        self._ccl = -1.0

    def on_message_received(self, msg: can.Message) -> None:
        message = self._by_base.get(msg.arbitration_id & ~common.ADDRESS_MASK)
        if message is None:
            return
        values = message.decode(bytes(msg.data), decode_choices=False)
        if msg.arbitration_id == CELL_SUMMARY + MODULE:
            ccl = 0.0 if cast("Mapping[str, float]", values)["CellVoltageMax"] >= 3.55 else 100.0
            if ccl != self._ccl:
                self._ccl = ccl
                self._on_ccl(ccl)

    def stop(self) -> None:
        """Nothing to release."""


@contextlib.asynccontextmanager
async def bare_side(modules: str, inverter: str) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    limits = common.pylontech_db().get_message_by_frame_id(LIMITS)
    bus_in, bus_out = open_bus("virtual", modules, 500_000), open_bus("virtual", inverter, 500_000)
    pending: asyncio.Queue[float] = asyncio.Queue()
    notifier = can.Notifier(bus_in, [BareListener(lambda ccl: loop.call_soon_threadsafe(pending.put_nowait, ccl))])

    async def publish() -> None:
        while True:
            ccl = await pending.get()
            values = {
                "ChargeVoltageLimit": 55.2,
                "ChargeCurrentLimit": ccl,
                "DischargeCurrentLimit": 100.0,
                "DischargeVoltageLimit": 48.0,
            }
            bus_out.send(can.Message(arbitration_id=LIMITS, data=limits.encode(values), is_extended_id=False))

    task = asyncio.create_task(publish())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notifier.stop()
        bus_in.shutdown()
        bus_out.shutdown()


async def measure(side: Side, events: int, pool: Sequence[can.Message]) -> tuple[list[float], int]:
    modules, inverter_channel = common.unique_channel("latency-modules"), common.unique_channel("latency-inverter")
    inverter = Inverter(inverter_channel)
    inverter.start()
    try:
        async with side(modules, inverter_channel):
            bus = open_bus("virtual", modules, 500_000)
            try:
                with common.sending(modules, pool, RATE, exclude=[bus]):
                    return await asyncio.to_thread(Driver(inverter, events).run, bus)
            finally:
                bus.shutdown()
    finally:
        inverter.close()


def run(opts: Options) -> list[Row]:
    pool = [f for f in common.frame_pool(modules=16, seconds=30.0) if f.arbitration_id != CELL_SUMMARY + MODULE]
    ours, missed = asyncio.run(measure(gateway_side(opts.pick(1.0, 3.0)), opts.events, pool))
    common.progress(f"latency: gateway p50 {1e3 * statistics.median(ours):.2f} ms, {missed} missed")
    bare, bare_missed = asyncio.run(measure(bare_side, max(2, opts.events // 2), pool))
    common.progress(f"latency: bare p50 {1e3 * statistics.median(bare):.2f} ms, {bare_missed} missed")
    details = {
        "events": opts.events,
        "samples": len(ours),
        "missed": missed,
        "bare_samples": len(bare),
        "bare_missed": bare_missed,
        "background_frames_per_s": RATE,
    }
    label = "listener+asyncio+cantools"
    rows = []
    for name, q, target in (("p50", 50, None), ("p99", 99, 20.0), ("max", 100, 50.0)):
        rows.append(
            Row(
                "latency",
                f"protective {name} ({len(ours)} samples)",
                1e3 * common.percentile(ours, q),
                "ms",
                1e3 * common.percentile(bare, q),
                label,
                None if target is None else Target(target, at_most=True, unit="ms"),
                details if name == "p50" else {},
            )
        )
    return rows
