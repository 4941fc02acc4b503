"""sparkplug: what one gateway of 16 modules sends a broker per minute, steady and during a fault.

The real `Gateway` runs with both outputs on a real mosquitto: the Sparkplug B edge node (`[sparkplug]`
defaults: `interval = 1`, `deadband = 1`) and the JSON topics with Home Assistant discovery (`[mqtt]` defaults:
`interval = 5`). Its 16 modules of 16 cells come from the simulator in real time, as in `bms-gateway demo`,
charging at 20 A. A subscriber to `#` in another process counts the messages and bytes (topic + payload, MQTT
framing not counted) the broker delivers, split by protocol, over two windows after the births and settling:

- steady: nothing happens but charging;
- fault: module 5 drops off the bus for half the window and comes back (DDEATH, `module_comm_lost`, a new
  DBIRTH) while module 3 overheats towards 65 degC (temperatures, warnings, derated limits).

Rates are per minute of the window. The baseline column is the JSON topics in the same run. A last row gives the
size of one whole birth sequence (NBIRTH and the 16 DBIRTHs), what every reconnect and rebirth costs.
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import common
from benchmarks.common import Options, Row
from gateway.can.bus import open_bus
from gateway.clock import UNIX
from gateway.master.model import BankSnapshot
from gateway.outputs.sparkplug import EdgeNode
from gateway.service import Gateway
from gateway.sim import Simulator
from gateway.sim.bus import run_on_bus
from gateway.sim.faults import Fault

MODULES = 16
CURRENT = 20.0
DROPPED = 5
HOT = 3
PROTOCOLS = ("sparkplug", "json")


def protocol(topic: str) -> str:
    return "sparkplug" if topic.startswith("spBv1.0/") else "json"


def subscriber(conn: Connection, port: int) -> None:
    """Counts messages and bytes per protocol on `#` between "start" and "stop"; replies {protocol: [n, bytes]}."""
    counts = {p: [0, 0] for p in PROTOCOLS}

    def on_message(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        count = counts[protocol(message.topic)]
        count[0] += 1
        count[1] += len(message.topic.encode()) + len(message.payload)

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("#")
    client.loop_start()
    conn.send("ready")
    while (command := conn.recv()) != "quit":
        if command == "start":
            for count in counts.values():
                count[:] = [0, 0]
        else:
            conn.send({p: list(c) for p, c in counts.items()})
    client.loop_stop()
    client.disconnect()


async def windows(
    port: int, conn: Connection, *, warm: float, seconds: float
) -> tuple[dict[str, dict[str, list[int]]], BankSnapshot]:
    """{window: {protocol: [messages, bytes]}} of the steady and the fault window, and the last snapshot."""
    cfg = common.gateway_config(
        {
            "bank": {"max_modules": MODULES},
            "mqtt": {"enabled": True, "port": port},
            "sparkplug": {"enabled": True},
        }
    )
    fault_at = warm + seconds
    faults = [
        Fault(kind="drop", module=DROPPED, at=fault_at, value=seconds / 2.0),
        Fault(kind="overheat", module=HOT, at=fault_at, value=65.0),
    ]
    sim = Simulator(modules=MODULES, current=CURRENT, faults=faults)
    m = cfg.can.modules[0]
    gateway = Gateway(cfg)
    out: dict[str, dict[str, list[int]]] = {}

    async def simulate() -> None:
        bus = open_bus(m.interface, m.channel, m.rate)
        try:
            await run_on_bus(bus, sim, duration=None)
        finally:
            bus.shutdown()

    async with common.running(gateway):
        simulator = asyncio.create_task(simulate(), name="simulator")
        try:
            await asyncio.sleep(warm)
            for window in ("steady", "fault"):
                conn.send("start")
                await asyncio.sleep(seconds)
                conn.send("stop")
                out[window] = conn.recv()
        finally:
            simulator.cancel()
            await asyncio.gather(simulator, return_exceptions=True)
    return out, gateway.hub.latest


def birth_size(snapshot: BankSnapshot) -> tuple[int, int]:
    """(messages, bytes) of one birth sequence of `snapshot`, as the edge node encodes it."""
    node = EdgeNode(
        group_id="bms", edge_node_id="stack1", version="0.1.0", config_hash="0" * 16, commands=False, deadband=1.0
    )
    births = node.birth(snapshot, UNIX, 1_800_000_000_000, bd_seq=0)
    return len(births), sum(len(m.topic.encode()) + len(m.encode()) for m in births)


def run(opts: Options) -> list[Row]:
    seconds = opts.pick(3.0, 60.0)
    warm = opts.pick(3.0, 20.0)
    with common.mosquitto() as port, common.spawned(subscriber, port) as (conn, _):
        counted, snapshot = asyncio.run(windows(port, conn, warm=warm, seconds=seconds))
    per_minute = 60.0 / seconds
    rows = []
    for window, counts in counted.items():
        (spb_n, spb_b), (json_n, json_b) = counts["sparkplug"], counts["json"]
        common.progress(
            f"sparkplug {window}: {spb_n * per_minute:.0f} msg/min, {spb_b * per_minute / 1000:.1f} kB/min; "
            f"JSON topics {json_n * per_minute:.0f} msg/min, {json_b * per_minute / 1000:.1f} kB/min"
        )
        details = {"window_s": seconds, "modules": MODULES, "counts": counts}
        label = "JSON topics (interval 5 s)"
        rows += [
            Row(
                "sparkplug",
                f"{MODULES} modules, {window}: messages",
                spb_n * per_minute,
                "msg/min",
                json_n * per_minute,
                label,
                details=details,
            ),
            Row(
                "sparkplug",
                f"{MODULES} modules, {window}: bytes (topic+payload)",
                spb_b * per_minute,
                "B/min",
                json_b * per_minute,
                label,
            ),
        ]
    messages, size = birth_size(snapshot)
    rows.append(Row("sparkplug", f"one birth sequence ({messages} messages)", size, "B"))
    return rows
