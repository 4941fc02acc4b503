"""web: what open dashboards cost the master. The master tick p99 with 20 dashboards open against none (the
issue's bound: at most 1 ms more), the tick's lateness, the gateway's CPU, and the live updates each dashboard gets.

The gateway runs in its own process (multiprocessing "spawn"), as in the Modbus benchmark: the real `Gateway` with
the web dashboard on 127.0.0.1 (an ephemeral port), Modbus and MQTT off, and live ingest: a `PacedSender` in its
process offers 4k frames/s of 16-module traffic (a saturated 500 kbit/s bus), so every tick is a new snapshot and
every dashboard gets a new message each tick. `Gateway.step` is timed as the service runs it (readings, master,
publish, MasterCommands, the journal) and so is its lateness (how long after its due time a regular tick starts:
what a busy event loop costs the master besides the step itself).

A dashboard is one open page, as a browser holds it: its Server-Sent Events stream with the views that page follows,
read as fast as it comes, plus what the page fetches (the events page its list once, the expansion assistant a
join check and the waiting list each second). The 20 dashboards are the five pages four times each, in this
(benchmark) process on the same machine. Windows alternate, none open and 20 open, so that drift on a shared
machine falls on both; the p99 is over every tick of each condition.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from benchmarks import common
from benchmarks.common import CpuMeter, Options, Row, Target
from gateway import logs
from gateway.service import Gateway

RATE = 4000
DASHBOARDS = 20
PAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("overview", "bank", ()),
    ("modules", "bank,modules", ()),
    ("cells", "bank,cells", ()),
    ("events", "bank,events", ("/api/events?limit=500",)),
    ("expansion", "bank", ("/api/join-check/17", "/api/join-check")),
)
"""Page, the views its stream follows, what it fetches (events: once; expansion: every second)."""


def gateway_server(conn: Connection, warm: float) -> None:
    logs.configure("error")
    asyncio.run(_gateway_server(conn, warm))


async def _gateway_server(conn: Connection, warm: float) -> None:
    channel = common.unique_channel("web-modules")
    cfg = common.gateway_config(
        {"can": {"modules": {"channel": channel}}, "web": {"enabled": True, "host": "127.0.0.1", "port": 0}}
    )
    gateway = Gateway(cfg)
    ticks: list[float] = []
    late: list[float] = []
    step, core, clock = gateway.step, gateway.core, gateway.clock

    def timed_step() -> Any:
        due, now = core.next_tick, clock()
        started = time.perf_counter()
        snapshot = step()
        ticks.append(time.perf_counter() - started)
        if now >= due:  # a regular tick (an urgent one comes early, on a frame)
            late.append(now - due)
        return snapshot

    gateway.step = timed_step  # type: ignore[method-assign]
    pool = common.frame_pool(modules=16, seconds=30.0)
    async with common.running(gateway):
        assert gateway.web is not None
        assert gateway.web.port is not None
        with common.sending(channel, pool, RATE) as sender:
            await asyncio.sleep(warm)  # the master admits the modules after bank.module_timeout
            conn.send(gateway.web.port)
            meter = CpuMeter([sender])
            started = 0.0
            while (command := await asyncio.to_thread(conn.recv)) != "quit":
                if command == "start":
                    ticks.clear()
                    late.clear()
                    meter.start()
                    started = time.perf_counter()
                else:
                    conn.send(
                        {
                            "ticks_ms": [1e3 * t for t in ticks],
                            "late_ms": [1e3 * t for t in late],
                            "ticks_per_s": len(ticks) / (time.perf_counter() - started),
                            "cpu": meter.share(),
                            "streams": len(gateway.web.streams),
                            "skipped": sum(s.skipped for s in gateway.web.streams),
                            "behind": sender.sent - gateway.core.store.received,
                        }
                    )


class Dashboard:
    """One open page: its stream read as it comes, and its fetches."""

    def __init__(self, session: aiohttp.ClientSession, base: str, views: str, fetches: tuple[str, ...]) -> None:
        self.session, self.base, self.views, self.fetches = session, base, views, fetches
        self.messages = 0
        self.bytes = 0
        self.first = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._stream())
            if self.fetches:
                tg.create_task(self._fetch())

    async def _stream(self) -> None:
        async with self.session.get(f"{self.base}/api/stream?views={self.views}") as response:
            response.raise_for_status()
            async for line in response.content:
                self.bytes += len(line)
                if line.startswith(b"event: bank"):
                    self.messages += 1
                    self.first.set()

    async def _fetch(self) -> None:
        once = self.fetches[0].startswith("/api/events")
        while True:
            for path in self.fetches:
                async with self.session.get(self.base + path) as response:
                    self.bytes += len(await response.read())
            if once:
                return
            await asyncio.sleep(1.0)


async def window(conn: Connection, port: int, count: int, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """`count` dashboards open for `seconds` between the server's start and stop: (server report, client side)."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        boards = [Dashboard(session, base, *PAGES[i % len(PAGES)][1:]) for i in range(count)]
        tasks = [asyncio.create_task(b.run()) for b in boards]
        try:
            await asyncio.wait_for(asyncio.gather(*(b.first.wait() for b in boards)), 10.0)
            counted = [b.messages for b in boards]
            received = sum(b.bytes for b in boards)
            conn.send("start")
            began = time.perf_counter()
            await asyncio.sleep(seconds)
            conn.send("stop")
            elapsed = time.perf_counter() - began
            rates = [(b.messages - n) / elapsed for b, n in zip(boards, counted, strict=True)]
            client = {
                "updates_per_s_min": min(rates, default=0.0),
                "updates_per_s_mean": statistics.mean(rates) if rates else 0.0,
                "bytes_per_s": (sum(b.bytes for b in boards) - received) / elapsed,
            }
            report = await asyncio.to_thread(conn.recv)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return report, client


def idle(conn: Connection, seconds: float) -> dict[str, Any]:
    conn.send("start")
    time.sleep(seconds)
    conn.send("stop")
    report: dict[str, Any] = conn.recv()
    return report


def run(opts: Options) -> list[Row]:
    seconds = opts.pick(1.0, 15.0)
    rounds = opts.pick(1, 4)
    quiet: dict[str, list[float]] = {"ticks_ms": [], "late_ms": [], "cpu": []}
    busy: dict[str, list[float]] = {"ticks_ms": [], "late_ms": [], "cpu": [], "rate_min": [], "rate_mean": []}
    sample: dict[str, Any] = {}
    ticks_per_s = []
    with common.spawned(gateway_server, opts.pick(2.0, 4.0)) as (conn, port):
        for n in range(rounds):
            report = idle(conn, seconds)
            quiet["ticks_ms"] += report["ticks_ms"]
            quiet["late_ms"] += report["late_ms"]
            quiet["cpu"].append(report["cpu"])
            ticks_per_s.append(report["ticks_per_s"])
            report, client = asyncio.run(window(conn, port, DASHBOARDS, seconds))
            busy["ticks_ms"] += report["ticks_ms"]
            busy["late_ms"] += report["late_ms"]
            busy["cpu"].append(report["cpu"])
            busy["rate_min"].append(client["updates_per_s_min"])
            busy["rate_mean"].append(client["updates_per_s_mean"])
            sample = {**{k: v for k, v in report.items() if not k.endswith("_ms")}, **client}
            common.progress(
                f"web: round {n + 1}: tick p99 {common.percentile(quiet['ticks_ms'], 99):.3f} ms quiet, "
                f"{common.percentile(busy['ticks_ms'], 99):.3f} ms with {DASHBOARDS} dashboards; {sample}"
            )
    p99 = {name: common.percentile(d["ticks_ms"], 99) for name, d in (("quiet", quiet), ("busy", busy))}
    late = {name: common.percentile(d["late_ms"], 99) for name, d in (("quiet", quiet), ("busy", busy))}
    details = {
        "dashboards": DASHBOARDS,
        "pages": [p[0] for p in PAGES],
        "frames_per_s": RATE,
        "ticks": {"quiet": len(quiet["ticks_ms"]), "busy": len(busy["ticks_ms"])},
        "tick_p50_ms": {
            "quiet": statistics.median(quiet["ticks_ms"]),
            "busy": statistics.median(busy["ticks_ms"]),
        },
        "tick_max_ms": {"quiet": max(quiet["ticks_ms"]), "busy": max(busy["ticks_ms"])},
        "last_window": sample,
    }
    open_ = f"{DASHBOARDS} dashboards open"
    return [
        Row(
            "web",
            f"master tick p99, {open_}",
            p99["busy"],
            "ms",
            p99["quiet"],
            "none open",
            Target(1.0, at_most=True, unit="ms", on_difference=True),
            details,
        ),
        Row("web", f"master tick lateness p99, {open_}", late["busy"], "ms", late["quiet"] or None, "none open"),
        Row(
            "web",
            f"gateway CPU, {open_}",
            statistics.mean(busy["cpu"]),
            "%",
            statistics.mean(quiet["cpu"]),
            "none open",
        ),
        Row(
            "web",
            "live updates per dashboard (the slowest)",
            statistics.mean(busy["rate_min"]),
            "/s",
            statistics.mean(ticks_per_s),
            "master ticks",
        ),
    ]
