"""Full plain-map reads per second with 1, 4 and 16 concurrent clients: our Modbus server vs a bare pymodbus one.

Each server runs in its own process on 127.0.0.1 (an ephemeral port) and stops by itself; the clients share the
benchmark's process and loop, so the numbers compare the two servers rather than measure an absolute limit.
The gateway side is fed like the live service: a 16-module master ticks at 10 Hz and every tick is a new
snapshot, so image rebuilds are included. A full map is 1092 registers, 9 read requests.

    .venv/bin/python benchmarks/bench_modbus.py            # 3 s per cell
    .venv/bin/python benchmarks/bench_modbus.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway import config, logs
from gateway.clock import LiveClock
from gateway.hub import SnapshotHub
from gateway.master.master import Master
from gateway.master.model import ModuleReading, empty_snapshot
from gateway.outputs.modbus import PLAIN_SIZE, ModbusServer

MODULES = range(1, 17)


def _readings(t: float) -> dict[int, ModuleReading]:
    groups = ("status", "limits", "cells", "temperatures")
    return {
        a: ModuleReading(
            address=a,
            voltage=53.0 + 0.01 * a,
            current=10.0 + a,
            soc=60.0,
            soh=98.0,
            module_state=2,
            alive=int(t * 10) % 16,
            charge_current_limit=100.0,
            discharge_current_limit=100.0,
            charge_voltage_limit=56.0,
            discharge_voltage_limit=46.0,
            cell_voltage_max=3.32,
            cell_voltage_min=3.30,
            cell_voltage_max_index=2,
            cell_voltage_min_index=5,
            cell_count=16,
            temperature_max=25.0,
            temperature_min=22.0,
            cell_voltages=(3.31,) * 16,
            seen=dict.fromkeys(groups, t),
        )
        for a in MODULES
    }


async def _gateway(port: Connection, lifetime: float) -> None:
    logs.configure("warning")
    cfg = config.parse({"modbus": {"port": 0, "max_clients": 32}})
    clock = LiveClock()
    master = Master(cfg)
    hub = SnapshotHub(empty_snapshot(clock()))
    server = ModbusServer(hub, config=cfg, clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.run(), name="modbus")
        await server.started()
        port.send(server.port)
        stop = time.monotonic() + lifetime
        while time.monotonic() < stop:
            now = clock()
            hub.publish(master.step(now, _readings(now)).snapshot)
            await asyncio.sleep(0.1)
        task.cancel()


async def _bare(port: Connection, lifetime: float) -> None:
    device = SimDevice(1, simdata=[SimData(0, count=PLAIN_SIZE, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port.send(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    await asyncio.sleep(lifetime)
    await server.shutdown()


def _serve(kind: str, port: Connection, lifetime: float) -> None:
    asyncio.run((_gateway if kind == "gateway" else _bare)(port, lifetime))


async def _full_maps(port: int, clients: int, seconds: float) -> float:
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
            for address in range(0, PLAIN_SIZE, 125):
                response = await c.read_holding_registers(address, count=min(125, PLAIN_SIZE - address))
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


def _measure(kind: str, counts: tuple[int, ...], seconds: float) -> list[float]:
    parent, child = multiprocessing.Pipe()
    lifetime = len(counts) * (seconds + 2.0) + 5.0
    process = multiprocessing.Process(target=_serve, args=(kind, child, lifetime), daemon=True)
    process.start()
    try:
        if not parent.poll(10):
            raise RuntimeError(f"the {kind} server did not start")
        port = parent.recv()
        return [asyncio.run(_full_maps(port, n, seconds)) for n in counts]
    finally:
        process.terminate()
        process.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 and 4 clients, 0.3 s each)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    args = parser.parse_args()
    counts = (1, 4) if args.quick else (1, 4, 16)
    seconds = 0.3 if args.quick else args.seconds
    gateway = _measure("gateway", counts, seconds)
    bare = _measure("bare", counts, seconds)
    print(f"full plain-map reads/s ({PLAIN_SIZE} registers, 9 requests each), {seconds:g} s per cell")
    print(f"{'clients':>7} | {'gateway':>9} | {'bare pymodbus':>13} | {'ratio':>5}")
    print(f"{'-' * 7}-+-{'-' * 9}-+-{'-' * 13}-+-{'-' * 5}")
    for n, ours, theirs in zip(counts, gateway, bare, strict=True):
        print(f"{n:>7} | {ours:>9.1f} | {theirs:>13.1f} | {ours / theirs:>5.2f}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
