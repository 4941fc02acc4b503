"""The running service: `_serve` in a task as `bms-gateway run` runs it, a stand-in for systemd's NOTIFY_SOCKET (the
`notify` fixture), config files, signals to this process, the metrics endpoint scraped and `status` polled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from gateway import config, status
from gateway.can.bus import open_bus
from gateway.cli import _serve
from gateway.sim import Simulator
from gateway.sim.bus import run_on_bus


class NotifySocket:
    """What systemd listens on: a unix datagram socket, read all the time (an unread socket fills up and the
    gateway's non-blocking sends are dropped). `messages` are the datagrams as {KEY: value} dicts, in order."""

    def __init__(self, directory: Path) -> None:
        path = directory / "notify"
        if len(str(path)) > 100:  # sun_path holds 108 bytes
            path = Path(tempfile.mkdtemp(prefix="notify")) / "notify"
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setblocking(False)
        self.messages: list[dict[str, str]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="notify-socket")

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.socket, 4096)
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
            self._arrived.set()

    def mark(self) -> int:
        return len(self.messages)

    async def wait(self, key: str, *, after: int = 0, within: float = 5.0) -> tuple[int, dict[str, str]]:
        """(position, message) of the first message from position `after` that carries `key`."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self._arrived.clear()
                    for i, message in enumerate(self.messages[after:], start=after):
                        if key in message:
                            return i, message
                    after = len(self.messages)
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {key}= message within {within} s: {self.messages[-5:]}") from None

    def count(self, key: str, *, after: int = 0) -> int:
        return sum(key in m for m in self.messages[after:])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.socket.close()


@pytest.fixture
async def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[NotifySocket]:
    """NOTIFY_SOCKET and a 0.2 s WatchdogSec (pings every 0.1 s) for this process, as systemd sets them."""
    sock = NotifySocket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    await sock.close()


def simulator_task(channel: str, sim: Simulator) -> Callable[[], Awaitable[None]]:
    """A named task for `_serve(extra=...)`: `sim` on its own bus instance of `channel`, as the demo runs it."""

    async def simulate() -> None:
        bus = open_bus("virtual", channel, 500_000)
        try:
            await run_on_bus(bus, sim, duration=None)
        finally:
            bus.shutdown()

    return simulate


def write_config(path: Path, channel: str, **sections: dict[str, Any]) -> Path:
    """A config file like `make_config` (virtual channels from `channel`), with `sections` merged over it."""
    raw: dict[str, Any] = {
        "gateway": {"id": "svc", "log_level": "info"},
        "can": {
            "modules": {"interface": "virtual", "channel": f"{channel}-modules"},
            "inverter": {"interface": "virtual", "channel": f"{channel}-inverter", "period": 0.5},
        },
        "bank": {"module_timeout": 1.5},
        "limits": {"slew_rate": 1000.0},
        "modbus": {"enabled": False},
        "mqtt": {"enabled": False},
        "web": {"enabled": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(raw))
    return path


def send_signal(sig: signal.Signals) -> None:
    """`sig` to this process, once `_serve` handles it (a default disposition would end the test run)."""
    assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN, None), f"{sig.name} is not handled"
    os.kill(os.getpid(), sig)


@contextlib.asynccontextmanager
async def serving(cfg: config.Config, **kwargs: Any) -> AsyncIterator[asyncio.Task[int]]:
    """`_serve` in a task, as `bms-gateway run` runs it; cancelled on exit if a test did not stop it."""
    task = asyncio.create_task(_serve(cfg, **kwargs), name="serve")
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics endpoint over HTTP, parsed by prometheus_client: (sample name, sorted labels) -> value."""
    text = status.fetch(url)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def status_becomes(url: str, code: int, *, within: float = 8.0) -> list[str]:
    """Poll `status.run(url)` (in a thread: the endpoint is served by this loop) until it returns `code`."""
    result: tuple[int, list[str]] = (-1, [])
    try:
        async with asyncio.timeout(within):
            while (result := await asyncio.to_thread(status.run, url))[0] != code:  # noqa: ASYNC110 - polls HTTP
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"status never returned {code}; last {result}") from None
    return result[1]


def without_master_command(dbc: Path) -> str:
    """The text of `dbc` with the MasterCommand message (ID 896) and everything about it taken out."""
    lines = dbc.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("BO_ 896 ")))
    end = lines.index("", start)
    return "\n".join(line for line in lines[:start] + lines[end:] if " 896 " not in line) + "\n"
