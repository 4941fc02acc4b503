"""memory: resident set size after N minutes with 31 modules of 48 cells (10 minutes; 4 s in quick mode).

A fresh interpreter (multiprocessing "spawn") runs the real `Gateway` as deployed (Modbus on port 0, MQTT to a
mosquitto the benchmark starts, inverter bus on, the web dashboard on port 0 with no page open) and, in the same
process and loop, the simulator sending the stack's traffic in real time on the virtual bus
(`gateway.sim.bus.run_on_bus`, as `bms-gateway demo` does: python-can's virtual bus is in-process only, so the
simulator's own memory is included). VmRSS and VmHWM are read from /proc/self/status; the growth rate over the
second half of the run shows a leak.

Baseline, run alongside for a tenth of the time (the floor comes from the imports and the decode path, not from
time): a bare `python -c` that imports the same libraries (python-can, cantools, pymodbus, aiomqtt, structlog,
aiohttp), decodes every frame in a Notifier listener and plays the same stack's traffic (a cached log of it) in
real time on the same kind of bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from benchmarks import common
from benchmarks.common import Options, Row, Target
from gateway import logs
from gateway.can.bus import open_bus
from gateway.can.dbc import shipped
from gateway.service import Gateway
from gateway.sim import Simulator
from gateway.sim.bus import run_on_bus

MODULES = 31
CELLS = 48
SENSORS = 12

BARE = """\
import json, sys, time, can, cantools, pymodbus.server, aiomqtt, structlog, aiohttp.web
log, dbc, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
by_base = {m.frame_id & ~0x1F: m for m in cantools.database.load_file(dbc, strict=True).messages}
latest = {}
class Decode(can.Listener):
    def on_message_received(self, msg):
        m = by_base.get(msg.arbitration_id & ~0x1F)
        if m is not None:
            latest[msg.arbitration_id] = m.decode(bytes(msg.data), decode_choices=False)
rx, tx = can.Bus(interface="virtual", channel="m"), can.Bus(interface="virtual", channel="m")
notifier = can.Notifier(rx, [Decode()])
start = time.monotonic()
while time.monotonic() - start < seconds:
    lap, t0 = time.monotonic(), None
    for f in can.LogReader(log):
        t0 = f.timestamp if t0 is None else t0
        time.sleep(max(0.0, lap + f.timestamp - t0 - time.monotonic()))
        tx.send(f)
        if time.monotonic() - start > seconds:
            break
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}))
notifier.stop()
"""


def child(conn: Connection, seconds: float, port: int) -> None:
    logs.configure("error")
    conn.send(asyncio.run(_child(seconds, port)))


async def _child(seconds: float, port: int) -> dict[str, Any]:
    channel = common.unique_channel("memory-modules")
    sim = Simulator(modules=MODULES, cells=CELLS, sensors=SENSORS, current=20.0 * MODULES, seed=1)
    cfg = common.gateway_config(
        {
            "can": {"modules": {"channel": channel}},
            "bank": {"max_modules": MODULES, "cells_in_series": CELLS},
            "modbus": {"enabled": True, "port": 0},
            "mqtt": {"enabled": True, "port": port},
            "web": {"enabled": True, "port": 0},
        }
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(common.running(Gateway(cfg)))
        sim_bus = open_bus("virtual", channel, 500_000)
        stack.callback(sim_bus.shutdown)
        feeding = asyncio.create_task(run_on_bus(sim_bus, sim, duration=None))
        samples = []
        started = time.monotonic()
        for n in range(1, 11):
            await asyncio.sleep(max(0.0, started + n * seconds / 10 - time.monotonic()))
            samples.append((round(time.monotonic() - started, 1), common.vm_kb("VmRSS") / 1024))
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        return {"rss": samples[-1][1], "peak": common.vm_kb("VmHWM") / 1024, "samples": samples}


def run(opts: Options) -> list[Row]:
    seconds = opts.pick(4.0, 600.0)
    log = common.cached_log(modules=MODULES, cells=CELLS, sensors=SENSORS, seconds=20.0, current=20.0 * MODULES)
    bare_argv = [sys.executable, "-c", BARE, str(log), str(shipped("module.dbc")), str(max(5.0, seconds / 10))]
    context = multiprocessing.get_context("spawn")
    with common.mosquitto() as port:
        parent, end = context.Pipe()
        process = context.Process(target=child, args=(end, seconds, port), daemon=True)
        process.start()
        try:
            bare = json.loads(subprocess.run(bare_argv, capture_output=True, check=True, text=True).stdout)
            if not parent.poll(seconds + 60.0):
                raise RuntimeError("the gateway's memory run did not report")
            gw = parent.recv()
        finally:
            process.join(10.0)
            if process.is_alive():
                process.terminate()
    half = gw["samples"][len(gw["samples"]) // 2 - 1]
    growth = (gw["rss"] - half[1]) / ((gw["samples"][-1][0] - half[0]) / 60.0)
    common.progress(f"memory: gateway {gw}; bare {bare}")
    details = {"peak_mb": gw["peak"], "growth_mb_per_min": growth, "samples": gw["samples"], "bare": bare}
    return [
        Row(
            "memory",
            f"RSS after {f'{seconds / 60:g} min' if seconds >= 60 else f'{seconds:g} s'}, {MODULES} x {CELLS} cells",
            gw["rss"],
            "MB",
            bare["VmRSS"],
            "libraries + decode listener",
            Target(80.0, at_most=True, unit="MB"),
            details,
        )
    ]
