"""modbus: full plain-map reads per second with 1, 4 and 16 concurrent clients, our server vs a bare pymodbus
one of the same size, and what polling does to ingest and the master tick. (Folds in the former
benchmarks/bench_modbus.py.)

Each server runs in its own process on 127.0.0.1 (an ephemeral port); the clients share this process and loop,
so the numbers compare the two servers rather than measure an absolute limit. A full map is PLAIN_SIZE
registers in 125-register reads. The gateway server is the real `Gateway` (Modbus on, MQTT off) with live
ingest: a `PacedSender` in its process offers 4k frames/s of 16-module traffic (a saturated 500 kbit/s bus),
so every tick is a new snapshot and image rebuilds are included. In each window the gateway process reports
its CPU share (minus the sender thread), its Notifier thread's share (ingest proper), `Gateway.step` times
(the master tick as the service runs it: readings, master, publish, MasterCommands) and how far ingest is
behind the sender; the first window has no clients (idle), the baseline of the "while polled" rows.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from benchmarks import common
from benchmarks.common import CpuMeter, Options, Row, Target
from gateway import logs
from gateway.outputs.modbus import MAX_READ, PLAIN_SIZE
from gateway.service import Gateway

RATE = 4000
CLIENTS = (1, 4, 16)


def gateway_server(conn: Connection, warm: float) -> None:
    logs.configure("error")
    asyncio.run(_gateway_server(conn, warm))


async def _gateway_server(conn: Connection, warm: float) -> None:
    channel = common.unique_channel("modbus-modules")
    cfg = common.gateway_config(
        {"can": {"modules": {"channel": channel}}, "modbus": {"enabled": True, "port": 0, "max_clients": 32}}
    )
    gateway = Gateway(cfg)
    ticks: list[float] = []
    step = gateway.step

    def timed_step() -> Any:
        started = time.perf_counter()
        snapshot = step()
        ticks.append(time.perf_counter() - started)
        return snapshot

    gateway.step = timed_step  # type: ignore[method-assign]
    pool = common.frame_pool(modules=16, seconds=30.0)
    async with common.running(gateway):
        assert gateway.modbus is not None
        with common.sending(channel, pool, RATE) as sender:
            await asyncio.sleep(warm)  # the master admits the modules after bank.module_timeout
            conn.send(gateway.modbus.port)
            meter = CpuMeter([sender])
            notifier = common.notifier_threads(channel)
            while (command := await asyncio.to_thread(conn.recv)) != "quit":
                if command == "start":
                    ticks.clear()
                    meter.start(notifier)
                else:
                    ms = [1e3 * t for t in ticks]
                    conn.send(
                        {
                            "cpu": meter.share(),
                            "ingest_cpu": sum(meter.thread_share(t) for t in notifier),
                            "tick_p50": statistics.median(ms),
                            "tick_p99": common.percentile(ms, 99),
                            "tick_max": max(ms),
                            "ticks": len(ms),
                            "behind": sender.sent - gateway.core.store.received,
                        }
                    )


def bare_server(conn: Connection, _warm: float) -> None:
    asyncio.run(_bare_server(conn))


async def _bare_server(conn: Connection) -> None:
    device = SimDevice(1, simdata=[SimData(0, count=PLAIN_SIZE, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    conn.send(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    while (command := await asyncio.to_thread(conn.recv)) != "quit":
        if command == "stop":
            conn.send({})
    await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus 3.16 leaves it unannotated


async def full_maps(port: int, clients: int, seconds: float) -> float:
    """Full plain-map reads per second, summed over `clients` concurrent connections."""
    connections = [
        AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0, reconnect_delay=0) for _ in range(clients)
    ]
    for c in connections:
        if not await c.connect():
            raise RuntimeError(f"cannot connect to 127.0.0.1:{port}")
    deadline = time.monotonic() + seconds

    async def poll(c: AsyncModbusTcpClient) -> int:
        maps = 0
        while time.monotonic() < deadline:
            for address in range(0, PLAIN_SIZE, MAX_READ):
                response = await c.read_holding_registers(address, count=min(MAX_READ, PLAIN_SIZE - address))
                if response.isError():
                    raise RuntimeError(f"read {address}: {response}")
            maps += 1
        return maps

    try:
        start = time.monotonic()
        total = sum(await asyncio.gather(*(poll(c) for c in connections)))
        return total / (time.monotonic() - start)
    finally:
        for c in connections:
            c.close()


def maps_over(port: int, clients: int, seconds: float) -> float:
    """`full_maps` run to completion: the work of one measurement window."""
    return asyncio.run(full_maps(port, clients, seconds))


def idle(seconds: float) -> float:
    """No clients for a while: 0 reads/s."""
    time.sleep(seconds)
    return 0.0


def window(conn: Connection, work: Callable[[], float]) -> tuple[float, dict[str, float]]:
    """`work()` (reads/s) between the server's start and stop of a measurement window, and its report."""
    conn.send("start")
    rate = work()
    conn.send("stop")
    return rate, conn.recv()


def run(opts: Options) -> list[Row]:
    counts = opts.pick(CLIENTS[:2], CLIENTS)
    seconds = opts.pick(0.4, 5.0)
    ours: dict[int, list[float]] = {n: [] for n in counts}
    bare: dict[int, list[float]] = {n: [] for n in counts}
    reports: dict[int | str, dict[str, float]] = {}
    for _ in range(opts.pick(1, 2)):
        with common.spawned(gateway_server, opts.pick(0.5, 4.0)) as (conn, port):
            _, reports["idle"] = window(conn, lambda: idle(seconds))
            for n in counts:
                rate, reports[n] = window(conn, functools.partial(maps_over, port, n, seconds))
                ours[n].append(rate)
                common.progress(f"modbus: gateway, {n} clients: {rate:.1f} maps/s; {reports[n]}")
        with common.spawned(bare_server, 0.0) as (conn, port):
            for n in counts:
                rate, _ = window(conn, functools.partial(maps_over, port, n, seconds))
                bare[n].append(rate)
                common.progress(f"modbus: bare pymodbus, {n} clients: {rate:.1f} maps/s")
    polled, quiet = reports[counts[-1]], reports["idle"]
    details = {"maps_per_s": ours, "bare_maps_per_s": bare, "gateway_reports": reports, "frames_per_s": RATE}
    rows = [
        Row(
            "modbus",
            f"full-map reads/s, {n} client{'s' if n > 1 else ''}",
            statistics.mean(ours[n]),
            "maps/s",
            statistics.mean(bare[n]),
            "bare pymodbus",
            Target(0.7, at_most=False, on_ratio=True),
            details if n == 1 else {},
        )
        for n in counts
    ]
    polling = f"while {counts[-1]} clients poll"
    rows.append(
        Row(
            "modbus",
            f"master tick p99 {polling}",
            polled["tick_p99"],
            "ms",
            quiet["tick_p99"],
            "no clients",
            Target(5.0, at_most=True, unit="ms"),
        )
    )
    rows.append(Row("modbus", f"ingest CPU {polling}", polled["ingest_cpu"], "%", quiet["ingest_cpu"], "no clients"))
    return rows
