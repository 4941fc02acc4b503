"""The virtual CAN buses of the end-to-end and service tests: a gateway config on virtual channels, taps that record
what crosses a bus, the gateway, the module simulator and a simulated inverter running in tasks, and the Pylontech
frames decoded.

Time: the inverter period is 0.5 s (PERIOD, the default is 1 s) and `bank.module_timeout` 1.5 s (MODULE_TIMEOUT), so
that start-up and the silence check take seconds; the slew rate is raised so that the limits settle at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import can
import cantools
from cantools.database.can import Database

from gateway import config
from gateway.can import dbc
from gateway.can.bus import open_bus
from gateway.master.model import Lifecycle
from gateway.service import Gateway
from gateway.sim import Simulator
from gateway.sim.bus import run_on_bus
from gateway.sim.inverter import SimInverter, run_inverter

ROOT = Path(__file__).parents[2]
"""The repository."""
PYLONTECH: Database = cantools.database.load_file(ROOT / "dbc" / "inverters" / "pylontech.dbc", strict=True)  # type: ignore[assignment]
PROFILE = (0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E)
"""What the `pylontech` profile sends, in this order."""
PERIOD = 0.5
MODULE_TIMEOUT = 1.5


def make_config(channel: str, **sections: dict[str, Any]) -> config.Config:
    """A gateway on virtual channels `<channel>-modules` and `<channel>-inverter`; Modbus, MQTT and the web off.

    `sections` are merged over that, one level deep (e.g. `bank={"module_timeout": 2.0}`).
    """
    raw: dict[str, Any] = {
        "gateway": {"id": "e2e"},
        "can": {
            "modules": {"interface": "virtual", "channel": f"{channel}-modules"},
            "inverter": {"interface": "virtual", "channel": f"{channel}-inverter", "period": PERIOD},
        },
        "bank": {"module_timeout": MODULE_TIMEOUT},
        "limits": {"slew_rate": 1000.0},
        "modbus": {"enabled": False},
        "mqtt": {"enabled": False},
        "web": {"enabled": False},
    }
    for name, values in sections.items():
        if name == "can":
            for bus, keys in values.items():
                raw["can"][bus].update(keys)
        else:
            raw.setdefault(name, {}).update(values)
    return config.parse(raw)


class Tap(can.Listener):
    """A bus instance of its own on a virtual channel: records every frame it receives, with its timestamp."""

    def __init__(self, channel: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._lock = threading.Lock()
        self.frames: list[can.Message] = []
        self.bus = open_bus("virtual", channel, 500_000)
        self._notifier = can.Notifier(self.bus, [self], timeout=0.05)

    def on_message_received(self, msg: can.Message) -> None:
        with self._lock:
            self.frames.append(msg)
        self._loop.call_soon_threadsafe(self._arrived.set)

    def mark(self) -> int:
        """A position: `wait(..., after=mark)` then only looks at frames received from now on."""
        with self._lock:
            return len(self.frames)

    def since(self, after: int = 0) -> list[can.Message]:
        with self._lock:
            return self.frames[after:]

    async def wait(
        self, match: Callable[[can.Message], bool], *, after: int = 0, within: float = 5.0
    ) -> tuple[int, can.Message]:
        """(position, frame) of the first frame from position `after` that `match` accepts, within `within` s."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self._arrived.clear()
                    frames = self.since(after)
                    for i, msg in enumerate(frames):
                        if match(msg):
                            return after + i, msg
                    after += len(frames)
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no such frame within {within} s") from None

    def close(self) -> None:
        self._notifier.stop(timeout=1.0)
        self.bus.shutdown()


@contextlib.asynccontextmanager
async def tapped(channel: str) -> AsyncIterator[Tap]:
    tap = Tap(channel)
    try:
        yield tap
    finally:
        tap.close()


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[asyncio.Task[None]]:
    """The gateway running in a task; cancelled (and awaited: buses closed, fail-safe sent) on exit."""
    task = asyncio.create_task(gateway.run(), name="gateway")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def simulating(channel: str, sim: Simulator) -> AsyncIterator[asyncio.Task[int]]:
    """`sim` sending on its own bus instance of `channel` in real time; cancel the task to silence it."""
    bus = open_bus("virtual", channel, 500_000)
    task = asyncio.create_task(run_on_bus(bus, sim, duration=None), name="simulator")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bus.shutdown()


async def until(condition: Callable[[], bool], *, within: float, what: str = "condition") -> None:
    """Wait until `condition()` holds, checking every 20 ms, at most `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - gateway state has no event to wait on
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not reached within {within} s") from None


def decode(msg: can.Message) -> Mapping[str, float]:
    return dbc.decode(PYLONTECH.get_message_by_frame_id(msg.arbitration_id), bytes(msg.data))


def sets(frames: Sequence[can.Message]) -> list[dict[int, can.Message]]:
    """The complete frame sets in `frames`: runs of the profile's IDs in order, starting at 0x351."""
    out = []
    ids = [f.arbitration_id for f in frames]
    for i, can_id in enumerate(ids):
        if can_id == PROFILE[0] and tuple(ids[i : i + len(PROFILE)]) == PROFILE:
            out.append({f.arbitration_id: f for f in frames[i : i + len(PROFILE)]})
    return out


def is_id(*ids: int) -> Callable[[can.Message], bool]:
    return lambda m: m.arbitration_id in ids


def is_failsafe_limits(msg: can.Message) -> bool:
    if msg.arbitration_id != 0x351:
        return False
    values = decode(msg)
    return values["ChargeCurrentLimit"] == 0 and values["DischargeCurrentLimit"] == 0


def online(gateway: Gateway) -> tuple[int, ...]:
    return gateway.hub.latest.addresses(Lifecycle.ONLINE)


@contextlib.asynccontextmanager
async def inverting(channel: str, sim: SimInverter) -> AsyncIterator[asyncio.Task[None]]:
    """A simulated inverter talking on its own bus instance of `channel` in real time; set `sim.silent` to make it
    fall silent, cancel the task to stop it."""
    bus = open_bus("virtual", channel, 500_000)
    task = asyncio.create_task(run_inverter(bus, sim), name="inverter")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bus.shutdown()
