"""mqtt: 31 modules of 48 cells published every second to a real mosquitto: CPU share, messages/s, bytes/s.

The benchmark starts mosquitto on a free loopback port. The real `Gateway` (MQTT on with `interval = 1`,
Home Assistant discovery on, Modbus off, `max_modules = 31`, `cells_in_series = 48`) takes a 31-module stack's
traffic at its natural rate (about 1.1k frames/s) from a `PacedSender`. A subscriber to `#` in another
process counts the messages and bytes (topic + payload) the broker delivers in the window. CPU share is that of
this process minus the sender thread; it is measured twice, with MQTT on and off, and the difference is what
publishing costs. Baseline: a bare aiomqtt client publishing the same messages (the gateway's last state set:
bank, per module its values and cells, alarms) once a second, in this process, with nothing else running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection

import aiomqtt
import can
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import common
from benchmarks.common import CpuMeter, Options, Row
from gateway.outputs.discovery import Topics
from gateway.outputs.mqtt import alarms_payload, state_messages
from gateway.service import Gateway

MODULES = 31
CELLS = 48


def subscriber(conn: Connection, port: int) -> None:
    """Counts messages and bytes on `#` between "start" and "stop"; replies (messages, bytes)."""
    counts = [0, 0]

    def on_message(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        counts[0] += 1
        counts[1] += len(message.topic) + len(message.payload)

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("#")
    client.loop_start()
    conn.send("ready")
    while (command := conn.recv()) != "quit":
        if command == "start":
            counts[:] = [0, 0]
        else:
            conn.send(tuple(counts))
    client.loop_stop()
    client.disconnect()


async def gateway_window(
    port: int, pool: Sequence[can.Message], conn: Connection, *, mqtt: bool, warm: float, seconds: float
) -> tuple[float, tuple[int, int], dict[str, bytes]]:
    """CPU share, (messages, bytes) delivered, and the last state set, of a gateway run with MQTT on or off."""
    channel = common.unique_channel("mqtt-modules")
    cfg = common.gateway_config(
        {
            "can": {"modules": {"channel": channel}},
            "bank": {"max_modules": MODULES, "cells_in_series": CELLS},
            "mqtt": {"enabled": mqtt, "port": port, "interval": 1.0},
        }
    )
    gateway = Gateway(cfg)
    async with common.running(gateway):
        with common.sending(channel, pool, len(pool) / 20.0) as sender:
            await asyncio.sleep(warm)
            meter = CpuMeter([sender])
            conn.send("start")
            meter.start()
            await asyncio.sleep(seconds)
            share = meter.share()
            conn.send("stop")
            delivered = conn.recv()
            snapshot, wall = gateway.hub.latest, gateway.clock.anchor()
    messages = state_messages(snapshot, Topics.of(cfg), wall)
    messages[Topics.of(cfg).alarms] = alarms_payload(snapshot, wall)
    return share, delivered, messages


async def bare_publish(port: int, messages: Mapping[str, bytes], seconds: float) -> float:
    """CPU share of publishing `messages` once a second with a bare aiomqtt client."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        meter = CpuMeter()
        meter.start()
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            for topic, payload in messages.items():
                await client.publish(topic, payload)
            n += 1
            await asyncio.sleep(max(0.0, started + n - time.monotonic()))
        return meter.share()


def run(opts: Options) -> list[Row]:
    seconds = opts.pick(2.2, 30.0)  # quick: still two publishing intervals in the window
    warm = opts.pick(0.5, 5.0)
    pool = common.frame_pool(modules=MODULES, cells=CELLS, sensors=12, seconds=20.0)
    with common.mosquitto() as port, common.spawned(subscriber, port) as (conn, _):
        on, (messages, size), state = asyncio.run(
            gateway_window(port, pool, conn, mqtt=True, warm=warm, seconds=seconds)
        )
        off, _, _ = asyncio.run(gateway_window(port, pool, conn, mqtt=False, warm=warm, seconds=seconds))
        bare = asyncio.run(bare_publish(port, state, seconds))
    common.progress(f"mqtt: gateway {on:.1f} % with MQTT, {off:.1f} % without; bare publish {bare:.1f} %")
    details = {
        "cpu_with_mqtt": on,
        "cpu_without_mqtt": off,
        "cpu_difference": on - off,
        "state_messages_per_interval": len(state),
        "window_s": seconds,
        "frames_per_s": len(pool) / 20.0,
    }
    return [
        # A cost is not negative: in a short or noisy run the two windows can differ by more than it (raw in details).
        Row(
            "mqtt",
            "CPU of publishing (on - off)",
            max(0.0, on - off),
            "%",
            bare,
            "bare aiomqtt, same msgs",
            details=details,
        ),
        Row("mqtt", "messages delivered", messages / seconds, "msg/s"),
        Row("mqtt", "bytes delivered (topic+payload)", size / seconds, "B/s"),
    ]
