"""The broker connection both publishers share (`gateway.outputs.broker`), against a real mosquitto.

What the two used to do differently and now do alike: refused credentials are an error naming the section's keys
(Sparkplug called them "unreachable"), a refused operator command is logged once per burst (Sparkplug logged each
one) and counted as refused (MQTT counted nothing it refused), and an unreadable password file names the byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway import config
from gateway.errors import ConfigError
from gateway.hub import SnapshotHub
from gateway.master.master import Master
from gateway.outputs.broker import Broker as Endpoint
from gateway.outputs.mqtt import MqttPublisher
from gateway.outputs.sparkplug_publisher import SparkplugPublisher

from helpers import sparkplug as host
from helpers.buses import until
from helpers.clocks import FixedClock
from helpers.mosquitto import Broker, subscriber

NODE = "spBv1.0/bms/{}/t1"


@dataclass
class FakeActions:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def readmit(self, address: int) -> bool:
        self.calls.append(("readmit", address))
        return False  # no module is isolated

    def request_full_charge(self) -> None:
        self.calls.append(("full_charge",))


def make_config(broker: Broker, *, sparkplug: bool = False, **mqtt: Any) -> config.Config:
    return config.parse(
        {
            "gateway": {"id": "t1"},
            "bank": {"strings": [[1], [2]]},
            "mqtt": {"host": broker.host, "port": broker.port, **mqtt},
            "sparkplug": {"enabled": sparkplug},
        }
    )


def hub(cfg: config.Config) -> SnapshotHub:
    return SnapshotHub(Master(cfg).step(0.0, {}).snapshot)


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher | SparkplugPublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_sparkplug_logs_refused_credentials_once_as_an_error_naming_the_keys(
    mosquitto_auth: Broker, tmp_path: Path
) -> None:
    password = tmp_path / "mqtt-password"
    password.write_text("wrong\n")
    cfg = make_config(mosquitto_auth, sparkplug=True, username="gateway", password_file=str(password))
    node = SparkplugPublisher(hub(cfg), config=cfg, clock=FixedClock(10.0), actions=None)
    with structlog.testing.capture_logs() as logged:
        async with running(node):
            await until(lambda: node.counters["errors"] >= 3, within=10.0, what="three failed attempts")
            assert not node.connected
    refused = [e for e in logged if "refused the credentials" in e["event"]]
    assert [(e["event"], e["log_level"], e["username"]) for e in refused] == [
        ("sparkplug broker refused the credentials; check [mqtt] username and password_file", "error", "gateway")
    ]
    assert not [e for e in logged if "unreachable" in e["event"]]


async def test_sparkplug_refuses_a_failed_command_once_per_burst_and_counts_it(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto, sparkplug=True, commands=True)
    actions = FakeActions()
    node = SparkplugPublisher(hub(cfg), config=cfg, clock=FixedClock(10.0), actions=actions)
    readmit = host.write("Device Control/Readmit", host.DataType.BOOLEAN, True, device=True)
    with structlog.testing.capture_logs() as logged:
        async with subscriber(mosquitto, "spBv1.0/#") as (client, seen), running(node):
            await seen.on(NODE.format("NBIRTH"))
            for _ in range(5):
                await client.publish("spBv1.0/bms/DCMD/t1/module_1", readmit, qos=1)
            await client.publish(
                NODE.format("NCMD"), host.write("Node Control/Request Full Charge", host.DataType.BOOLEAN, True)
            )
            await until(lambda: len(actions.calls) == 6, within=5.0, what="six commands run")
            await until(lambda: node.counters["refused"] == 5, within=5.0, what="five refused")
    assert actions.calls == [("readmit", 1)] * 5 + [("full_charge",)]
    rejected = [e for e in logged if e["event"] == "sparkplug: incoming message rejected"]
    assert [(e["kind"], e["command"], e["payload"]) for e in rejected] == [("command", "readmit", "1")]
    assert "not isolated" in rejected[0]["reason"]
    done = [e for e in logged if e["event"] == "sparkplug command"]
    assert [(e["command"], e["ok"], e["log_level"]) for e in done] == [("full_charge", True, "info")]


async def test_mqtt_counts_what_it_refuses(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto, commands=True)
    publisher = MqttPublisher(hub(cfg), config=cfg, clock=FixedClock(10.0), actions=FakeActions())
    results = "bms/t1/command/result"
    with structlog.testing.capture_logs() as logged:
        async with subscriber(mosquitto, results, "bms/t1/status") as (client, seen), running(publisher):
            await seen.wait(lambda m: m.payload == b"online")
            for payload in (b"x", b"3", b"\xff"):
                mark = seen.mark()
                await client.publish("bms/t1/command/readmit", payload, qos=1)
                await seen.on(results, after=mark)
            await client.publish("homeassistant/status", b"maybe", qos=1)
            await until(lambda: publisher.counters["refused"] == 4, within=5.0, what="four refused")
    assert publisher.counters["errors"] == 0
    rejected = [e for e in logged if e["event"] == "mqtt: incoming message rejected"]
    assert [e["kind"] for e in rejected] == ["command", "birth"]  # one line per burst of a kind


def test_a_password_file_that_is_not_text_names_the_section_and_the_byte(tmp_path: Path) -> None:
    password = tmp_path / "spb.pass"
    password.write_bytes(b"ok\xff")
    cfg = config.parse({"sparkplug": {"host": "scada.local", "username": "u", "password_file": str(password)}})
    with pytest.raises(ConfigError) as err:
        Endpoint.of(cfg, "sparkplug").password()
    assert err.value.problems == [f"sparkplug.password_file: {password} is not UTF-8 text (byte 2: invalid start byte)"]
