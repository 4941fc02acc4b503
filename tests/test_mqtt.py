"""MqttPublisher against a real mosquitto, with snapshots from the real master, read back by aiomqtt subscribers.

No sleeps and no timing asserts: every test waits for the message it expects, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog

from gateway import backoff, config
from gateway.clock import LiveClock
from gateway.errors import ConfigError, DecodeError
from gateway.hub import SnapshotHub
from gateway.master.master import Master
from gateway.master.model import BankSnapshot, ModuleReading, empty_snapshot
from gateway.outputs import discovery, generated
from gateway.outputs.mqtt import (
    SHUTDOWN_TIMEOUT,
    MqttPublisher,
    Outbox,
    execute,
    read_record,
    urgent_key,
)

from helpers.clocks import FixedClock, unix
from helpers.factories import reading
from helpers.home_assistant import fleet_problems
from helpers.mosquitto import USERS, Broker, Recorder, retained, subscriber

ROOT = "bms/t1"
ENTITIES = len(discovery.bank_configs(config.parse({}))) + 2 * len(discovery.module_configs(config.parse({}), 1))
"""Discovery configs of the bank and two modules, commands off (no buttons)."""
DOCS = Path(__file__).parents[1] / "docs" / "mqtt.md"


def make_config(port: int, strings: tuple[tuple[int, ...], ...] = ((1,), (2,)), **mqtt: Any) -> config.Config:
    return config.parse(
        {
            "gateway": {"id": "t1"},
            "bank": {"strings": [list(s) for s in strings]},
            "mqtt": {"host": "127.0.0.1", "port": port, **mqtt},
        }
    )


Readings = Callable[[float], Mapping[int, ModuleReading]]


class Stack:
    """The real master stepped on explicit time, each tick published into a hub, as the service does."""

    def __init__(self, cfg: config.Config, readings: Readings | None = None) -> None:
        self.master = Master(cfg)
        self.hub = SnapshotHub(empty_snapshot(0.0))
        self.t = 0.0
        self.addresses = tuple(a for s in cfg.bank.strings for a in s)
        self.advance(cfg.bank.module_timeout + 1.0, readings)

    def advance(self, seconds: float, readings: Readings | None = None) -> BankSnapshot:
        """Step past `seconds` of healthy readings (or `readings(t)`); returns the latest snapshot."""
        for _ in range(round(seconds / 0.1)):
            self.t = round(self.t + 0.1, 3)
            values = readings(self.t) if readings else {a: reading(a, self.t) for a in self.addresses}
            tick = self.master.step(self.t, values)
            self.hub.publish(tick.snapshot)
        return self.hub.latest


@dataclass
class FakeActions:
    isolated: set[int]
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def readmit(self, address: int) -> bool:
        self.calls.append(("readmit", address))
        return address in self.isolated

    def request_full_charge(self) -> None:
        self.calls.append(("full_charge",))


def publisher(
    stack: Stack, cfg: config.Config, actions: FakeActions | None = None, clock: FixedClock | None = None
) -> MqttPublisher:
    return MqttPublisher(stack.hub, config=cfg, clock=clock or LiveClock(), actions=actions)


@contextlib.asynccontextmanager
async def running(pub: MqttPublisher) -> AsyncIterator[MqttPublisher]:
    """Run the publisher as a task; cancel it on exit (which must end it within the shutdown deadline)."""
    task = asyncio.create_task(pub.run(), name="publisher")
    try:
        yield pub
    finally:
        task.cancel()
        async with asyncio.timeout(SHUTDOWN_TIMEOUT + 1.0):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a publisher counter (they have no event to wait on)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def loads(message: aiomqtt.Message) -> Any:
    return json.loads(message.payload)


def configs(seen: Recorder) -> dict[str, Any]:
    """The discovery configs received last per topic, without the empty ones (an entity removed, or a button
    cleared while commands are off)."""
    return {topic: json.loads(p) for topic, p in seen.latest("homeassistant/").items() if p}


# -- pure parts -------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(backoff.CAP, backoff.FIRST * 2**attempt)
        assert ceiling / 2 <= backoff.delay(attempt, rng) <= ceiling
    assert len({backoff.delay(3, rng) for _ in range(10)}) > 1
    reference = random.Random(2)
    expected = [min(backoff.CAP, backoff.FIRST * 2**n) * reference.uniform(0.5, 1.0) for n in range(3)]
    counter = backoff.Backoff(random.Random(2))
    assert [counter.next() for _ in range(3)] == expected
    counter.reset()
    assert counter.next() <= backoff.FIRST  # after a success the next failure waits the shortest again


async def test_outbox_keeps_the_latest_value_per_topic() -> None:
    outbox = Outbox()
    for n in range(1000):
        outbox.put("a", str(n).encode())
        outbox.put("b", b"x", retain=True)
    first, second = await outbox.take(), await outbox.take()
    assert (first[0], first[1].payload) == ("a", b"999")
    assert (second[0], second[1].retain) == ("b", True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await outbox.take()


def test_urgent_key_changes_with_alarms_and_life_cycle_not_with_values() -> None:
    stack = Stack(make_config(1883))
    before = stack.hub.latest
    after = stack.advance(0.5, lambda t: {a: reading(a, t, current=3.0, soc=61.0) for a in (1, 2)})
    assert after.current != before.current
    assert urgent_key(after) == urgent_key(before)
    dropped = stack.advance(4.0, lambda t: {1: reading(1, t), 2: reading(2, 4.0, alive=0)})
    assert dropped.modules[2].lifecycle == "offline"
    assert urgent_key(dropped) != urgent_key(before)


@pytest.mark.parametrize(
    ("name", "payload", "ok", "detail"),
    [
        ("readmit", "3", True, "module 3 re-admitted"),
        ("readmit", " 3\n", True, "module 3 re-admitted"),
        ("readmit", "7", False, "module 7 is not isolated"),
        ("readmit", "3_0", False, "needs a module address"),
        ("readmit", "٣", False, "needs a module address"),
        ("readmit", "0", False, "needs a module address"),
        ("readmit", "32", False, "needs a module address"),
        ("full_charge", "1", True, "full charge requested"),
        ("reboot", "now", False, "unknown command 'reboot'"),
    ],
)
def test_commands_are_validated(name: str, payload: str, ok: bool, detail: str) -> None:
    result = execute(FakeActions({3}), name, payload, addresses=range(1, 32))
    assert result[0] is ok
    assert detail in result[1]


def test_readmit_takes_the_addresses_of_the_address_mask() -> None:
    addresses = config.parse({"can": {"modules": {"address_mask": 0x0F}}}).can.modules[0].addresses
    assert execute(FakeActions({15}), "readmit", "15", addresses=addresses)[0]
    assert execute(FakeActions({16}), "readmit", "16", addresses=addresses) == (
        False,
        "readmit needs a module address 1..15, got '16'",
    )


def test_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_config(1883, username="gateway", password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"mqtt.password_file: cannot read .*nope"):
        publisher(Stack(cfg), cfg)


# -- against the broker -----------------------------------------------------------------------------------


MODULE_1_CELLS = (3.320,) * 3 + (3.310,) + (3.320,) * 4 + (3.340,) + (3.320,) * 7
MODULE_2_CELLS = (3.315,) * 6 + (3.300,) + (3.315,) * 4 + (3.330,) + (3.315,) * 4


def charging(t: float) -> dict[int, ModuleReading]:
    """Two one-module strings charging with 20 A, every value different between the two, so that neither module's
    value can pass for the other's or for the bank's. Otherwise the factory's healthy module (100 Ah, 100 A limits,
    CVL 56.0 V, DVL 46.0 V, 100 cycles, firmware 1.4.2; remaining capacity = 100 Ah x SOC)."""
    return {
        1: reading(
            1,
            t,
            voltage=53.2,
            current=12.0,
            soc=62.0,
            module_state=2,
            cell_voltages=MODULE_1_CELLS,
            cell_voltage_max=3.340,
            cell_voltage_max_index=9,
            cell_voltage_min=3.310,
            cell_voltage_min_index=4,
            cell_balancing=(False,) * 8 + (True,) + (False,) * 7,
            balancing_cells=1,
            temperature_max=27.0,
            temperature_max_index=1,
            temperature_min=23.0,
            temperature_min_index=4,
            cell_temperatures=(27.0, 25.5, 24.0, 23.0),
            power_stage_temperature=31.5,
        ),
        2: reading(
            2,
            t,
            voltage=53.0,
            current=8.0,
            soc=58.0,
            soh=96.0,
            module_state=2,
            cycle_count=180,
            cell_voltages=MODULE_2_CELLS,
            cell_voltage_max=3.330,
            cell_voltage_max_index=12,
            cell_voltage_min=3.300,
            cell_voltage_min_index=7,
            cell_balancing=(False,) * 16,
            balancing_cells=0,
            temperature_max=25.0,
            temperature_max_index=1,
            temperature_min=10.0,
            temperature_min_index=3,
            cell_temperatures=(25.0, None, 10.0, 18.5),
            internal_resistance=1.8,
        ),
    }


# What `charging` must publish after 14 s, worked out by hand from the readings and the default config (16 cells in
# series, 100 A ratings, the default derating tables). Not from gateway.payload: a test that compares the payload
# with what that code computes agrees with any mistake in it.
#
# Module limits: the rating of 100 A (the reported 100 A is not lower), times the lowest derating factor.
#   Module 1: nothing derates, 100 A "rating module 1" both ways: its cells (3.310..3.340 V) are below the charge
#   table's first point (3.40 V) and above the discharge table's last (3.10 V), 23..27 degC is within the full
#   ranges (charge 15..40 degC, discharge -10..50 degC), SOC 62 % is below 95 % (charge) and above 10 % (discharge).
#   Module 2: its coldest sensor, 10 degC, on the charge temperature table (5 degC, 20 %)..(15 degC, 100 %):
#   20 + (10 - 5) / (15 - 5) x 80 = 60 % -> charge 60 A "temperature module 2"; discharge 100 A "rating module 2".
#   Voltages: CVL 16 x 3.45 = 55.2 V, DVL 16 x 3.00 = 48.0 V; the reported 56.0 V and 46.0 V are not tighter, and
#   no cell is over 3.45 V to pull the CVL down.
# Shares: 20 A is over the measuring threshold of 5 % x 100 A x 2 strings = 10 A, so measured: 12 / 20 = 0.6 and
#   8 / 20 = 0.4, the latter raised to its capacity share 100 / 200 Ah = 0.5.
# Bank current limits: min(sum of the strings' limits, each string's limit / its share):
#   charge    min(100 + 60 = 160, 100 / 0.6 = 166.7, 60 / 0.5 = 120) = 120 A, bound by module 2's temperature;
#   discharge min(100 + 100 = 200, 100 / 0.6 = 166.667, 100 / 0.5 = 200) = 166.667 A: module 1's string, not derated,
#   binds by its share -> "current_share module 1".
# Time: the limits rise from 0 A once the 3 s start-up (module_timeout) is over, at the slew of 10 %/s x 100 A x
#   2 strings = 20 A/s: 120 A is reached at 9 s, 166.667 A at 11.3 s, both before 14 s.
BANK_AT_14S = {
    "seq": 140,  # one tick per 0.1 s for 14 s
    "t": "2025-11-25T05:53:34.000Z",  # 14 s on a clock whose reading 0 was 2025-11-25T05:53:20Z (WALL)
    "valid": True,
    "reason": "",
    "voltage": 53.1,  # median of the parallel strings: (53.2 + 53.0) / 2
    "current": 20.0,  # 12 + 8
    "power": 1062.0,  # 53.1 V x 20 A
    "soc": 60.0,  # capacity-weighted: (100 x 62 + 100 x 58) / 200
    "soh": 97.0,  # (100 x 98 + 100 x 96) / 200
    "remaining_ah": 120.0,  # 62 + 58
    "full_ah": 200.0,  # 100 + 100
    "cell_voltage_max": {"value": 3.34, "module": 1, "cell": 9},
    "cell_voltage_min": {"value": 3.3, "module": 2, "cell": 7},
    "cell_voltage_delta": 0.04,  # 3.340 - 3.300
    "temperature_max": {"value": 27.0, "module": 1, "cell": 1},
    "temperature_min": {"value": 10.0, "module": 2, "cell": 3},
    "temperature_gradient": -2.0,  # top (position 2, 25 degC) minus bottom (position 1, 27 degC)
    "limits": {
        "charge_current": {"value": 120.0, "bound_by": "temperature module 2"},
        "discharge_current": {"value": 166.667, "bound_by": "current_share module 1"},  # 100 / 0.6
        "charge_voltage": {"value": 55.2, "bound_by": "charge_voltage_per_cell"},
        "discharge_voltage": {"value": 48.0, "bound_by": "discharge_voltage_per_cell"},
    },
    "flags": {
        "charge_enable": True,  # 120 A > 0
        "discharge_enable": True,  # 166.667 A > 0
        "force_charge": False,  # SOC 60 % is not under 5 %, the lowest cell 3.30 V not under 2.90 V
        "full_charge": False,  # the 30-day interval counts from the start, 14 s ago
    },
    "fan_duty": 0,  # (30 degC, 0 %)..(45 degC, 100 %) at the hottest 27 degC
    "energy": None,  # the core attaches the lifetime energy; this stack runs the master alone
    "modules_online": [1, 2],
    "modules_pending": [],
    "modules_isolated": [],
    "modules_offline": [],
    "modules_rejected": [],
    "strings": [[1], [2]],
    "alarms": [],
    "inverter": None,
}
REPORTED = {"charge_current": 100.0, "discharge_current": 100.0, "charge_voltage": 56.0, "discharge_voltage": 46.0}
MODULES_AT_14S = {
    1: {
        "address": 1,
        "position": 1,  # no positions configured: the address
        "string": 0,
        "state": "online",
        "reason": "",
        "isolate_reason": "none",
        "age": 0.0,  # its status arrived at this tick
        "voltage": 53.2,
        "current": 12.0,
        "power": 638.4,  # 53.2 V x 12 A
        "soc": 62.0,
        "soh": 98.0,
        "module_state": "charging",  # 2
        "cell_voltage_max": 3.34,
        "cell_voltage_min": 3.31,
        "cell_voltage_max_index": 9,
        "cell_voltage_min_index": 4,
        "cell_voltage_delta": 0.03,  # 3.340 - 3.310
        "balancing_cells": 1,
        "temperature_max": 27.0,
        "temperature_min": 23.0,
        "power_stage_temperature": 31.5,
        "remaining_ah": 62.0,  # 100 Ah x 62 %
        "full_ah": 100.0,
        "internal_resistance": None,
        "cycle_count": 100,
        "firmware": "1.4.2",
        "reported_limits": REPORTED,
        "limits": {
            "charge_current": {"value": 100.0, "bound_by": "rating module 1"},
            "discharge_current": {"value": 100.0, "bound_by": "rating module 1"},
            "charge_voltage": {"value": 55.2, "bound_by": "charge_voltage_per_cell"},
            "discharge_voltage": {"value": 48.0, "bound_by": "discharge_voltage_per_cell"},
        },
        "share": 0.6,  # 12 / 20, measured
        "warnings": [],
        "protections": [],
        "fault_code": 0,
        "mismatch": [],
        "energy": None,
    },
    2: {
        "address": 2,
        "position": 2,
        "string": 1,
        "state": "online",
        "reason": "",
        "isolate_reason": "none",
        "age": 0.0,
        "voltage": 53.0,
        "current": 8.0,
        "power": 424.0,  # 53.0 V x 8 A
        "soc": 58.0,
        "soh": 96.0,
        "module_state": "charging",
        "cell_voltage_max": 3.33,
        "cell_voltage_min": 3.3,
        "cell_voltage_max_index": 12,
        "cell_voltage_min_index": 7,
        "cell_voltage_delta": 0.03,  # 3.330 - 3.300
        "balancing_cells": 0,
        "temperature_max": 25.0,
        "temperature_min": 10.0,
        "power_stage_temperature": None,
        "remaining_ah": 58.0,  # 100 Ah x 58 %
        "full_ah": 100.0,
        "internal_resistance": 1.8,
        "cycle_count": 180,
        "firmware": "1.4.2",
        "reported_limits": REPORTED,
        "limits": {
            "charge_current": {"value": 60.0, "bound_by": "temperature module 2"},  # 100 A x 60 % at 10 degC
            "discharge_current": {"value": 100.0, "bound_by": "rating module 2"},
            "charge_voltage": {"value": 55.2, "bound_by": "charge_voltage_per_cell"},
            "discharge_voltage": {"value": 48.0, "bound_by": "discharge_voltage_per_cell"},
        },
        "share": 0.5,  # measured 8 / 20 = 0.4, raised to its capacity share 100 / 200
        "warnings": [],
        "protections": [],
        "fault_code": 0,
        "mismatch": [],
        "energy": None,
    },
}
CELLS_AT_14S = {
    1: {
        "address": 1,
        "voltages": [3.32] * 3 + [3.31] + [3.32] * 4 + [3.34] + [3.32] * 7,  # lowest cell 4, highest cell 9
        "balancing": [False] * 8 + [True] + [False] * 7,  # cell 9, its highest
        "temperatures": [27.0, 25.5, 24.0, 23.0],
    },
    2: {
        "address": 2,
        "voltages": [3.315] * 6 + [3.3] + [3.315] * 4 + [3.33] + [3.315] * 4,  # lowest cell 7, highest cell 12
        "balancing": [False] * 16,
        "temperatures": [25.0, None, 10.0, 18.5],  # sensor 2 absent: null
    },
}


async def test_status_and_state_payloads(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    stack = Stack(cfg)  # 4 s of the factory's healthy readings: both modules admitted
    snapshot = stack.advance(10.0, charging)
    assert snapshot.valid
    clock = FixedClock(stack.t)
    async with running(publisher(stack, cfg, clock=clock)) as pub, subscriber(mosquitto, f"{ROOT}/#") as (_, seen):
        bank = await seen.wait(lambda m: m.topic.value == f"{ROOT}/bank" and loads(m)["seq"] == snapshot.seq)
        assert loads(bank) == BANK_AT_14S
        for address in (1, 2):
            assert loads(await seen.on(f"{ROOT}/module/{address}")) == MODULES_AT_14S[address]
            assert loads(await seen.on(f"{ROOT}/cells/{address}")) == CELLS_AT_14S[address]
        assert loads(await seen.on(f"{ROOT}/alarms")) == []
        assert pub.connected
        assert pub.published > 0
        async with subscriber(mosquitto, f"{ROOT}/status", f"{ROOT}/alarms") as (_, late):
            status = await late.on(f"{ROOT}/status")
            assert (status.payload, status.retain) == (b"online", True)
            assert (await late.on(f"{ROOT}/alarms")).retain


async def test_discovery_on_the_broker_satisfies_home_assistant(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    async with (
        running(publisher(Stack(cfg), cfg)),
        subscriber(mosquitto, "homeassistant/#", f"{ROOT}/modules") as (
            _,
            seen,
        ),
    ):
        await seen.wait(lambda _: len(configs(seen)) == ENTITIES)
        received = configs(seen)
        assert fleet_problems(received) == []
        assert {c["availability_topic"] for c in received.values()} == {f"{ROOT}/status"}
        devices = {json.dumps(c["device"], sort_keys=True) for c in received.values()}
        assert len(devices) == 3  # the bank and two modules
        # The first message on the record topic is the empty probe; the record follows once the probe is back.
        record = await seen.wait(lambda m: m.topic.value == f"{ROOT}/modules" and m.payload != b"")
        assert loads(record) == [1, 2]
        probe = next(m for m in seen.messages if m.topic.value == f"{ROOT}/modules")
        assert (probe.payload, seen.messages.index(probe) < seen.messages.index(record)) == (b"", True)


KILLED = """
import asyncio, sys
from gateway import config
from gateway.clock import LiveClock
from gateway.hub import SnapshotHub
from gateway.master.model import empty_snapshot
from gateway.outputs.mqtt import MqttPublisher

cfg = config.parse({"gateway": {"id": "killed"}, "mqtt": {"host": "127.0.0.1", "port": int(sys.argv[1])}})
hub = SnapshotHub(empty_snapshot(0.0))
asyncio.run(MqttPublisher(hub, config=cfg, clock=LiveClock(), actions=None).run())
"""


async def test_last_will_marks_a_killed_gateway_offline(mosquitto: Broker) -> None:
    async with subscriber(mosquitto, "bms/killed/status") as (_, seen):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            KILLED,
            str(mosquitto.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await seen.wait(lambda m: m.payload == b"online", within=10.0)
            mark = seen.mark()
        finally:
            process.kill()
            await process.wait()
        await seen.wait(lambda m: m.payload == b"offline", after=mark)
    async with subscriber(mosquitto, "bms/killed/status") as (_, late):
        status = await late.on("bms/killed/status")
        assert (status.payload, status.retain) == (b"offline", True)


async def test_cancel_publishes_offline_and_disconnects(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    async with subscriber(mosquitto, f"{ROOT}/status") as (_, seen):
        async with running(publisher(Stack(cfg), cfg)) as pub:
            await seen.wait(lambda m: m.payload == b"online")
        assert not pub.connected
        await seen.wait(lambda m: m.payload == b"offline")


async def test_everything_is_republished_after_the_broker_restarts(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    async with running(publisher(Stack(cfg), cfg)) as pub:
        async with subscriber(mosquitto, f"{ROOT}/status") as (_, seen):
            await seen.wait(lambda m: m.payload == b"online")
        mosquitto.restart()  # retained messages are gone with it
        await until(lambda: pub.reconnects == 1 and pub.connected, within=10.0)
        async with subscriber(mosquitto, f"{ROOT}/#", "homeassistant/#") as (_, seen):
            await seen.wait(lambda m: m.topic.value == f"{ROOT}/bank")
            await seen.wait(lambda _: len(configs(seen)) == ENTITIES)
            assert seen.latest(f"{ROOT}/status") == {f"{ROOT}/status": b"online"}
            assert loads(await seen.on(f"{ROOT}/alarms")) == []
        assert pub.errors >= 1


async def test_alarm_and_life_cycle_changes_are_published_at_once(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port, interval=600.0)  # only a change can explain a second publish
    stack = Stack(cfg)
    async with running(publisher(stack, cfg)), subscriber(mosquitto, f"{ROOT}/#") as (_, seen):
        assert loads(await seen.on(f"{ROOT}/alarms")) == []
        await seen.on(f"{ROOT}/module/2")
        mark = seen.mark()
        last = stack.t
        snapshot = stack.advance(4.0, lambda t: {1: reading(1, t), 2: reading(2, last, alive=0)})
        assert snapshot.modules[2].lifecycle == "offline"
        alarms = loads(await seen.on(f"{ROOT}/alarms", after=mark))
        assert [a["code"] for a in alarms] == ["module_comm_lost"]
        # `since` is wall-clock ISO 8601 UTC: the publisher's LiveClock has not been stepped, so the master's
        # reading (the stack's explicit time here) is read as Unix time.
        (raised,) = snapshot.alarms
        assert alarms[0]["since"].endswith("Z")
        assert unix(alarms[0]["since"]) == pytest.approx(raised.since, abs=0.0005)
        assert last < unix(alarms[0]["since"]) <= snapshot.t
        assert loads(await seen.on(f"{ROOT}/module/2", after=mark))["state"] == "offline"
        assert loads(await seen.on(f"{ROOT}/bank", after=mark))["modules_offline"] == [2]


async def test_reconfigure_sets_the_interval(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port, interval=600.0)
    pub = publisher(Stack(cfg), cfg)
    pub.reconfigure(make_config(mosquitto.port, interval=0.1))  # a reload, taken from the next cycle on
    async with running(pub), subscriber(mosquitto, f"{ROOT}/bank") as (_, seen):
        await seen.wait(lambda _: len(seen.messages) >= 3)


async def test_home_assistant_birth_republishes_discovery(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    async with running(publisher(Stack(cfg), cfg)), subscriber(mosquitto, "homeassistant/#") as (client, seen):
        await seen.wait(lambda _: len(configs(seen)) == ENTITIES)
        mark = seen.mark()
        await client.publish("homeassistant/status", b"online")

        def republished() -> int:
            return len({m.topic.value for m in seen.messages[mark:] if m.topic.value.endswith("/config") and m.payload})

        await seen.wait(lambda _: republished() == ENTITIES)


async def test_entities_of_a_removed_module_are_cleared_after_a_restart(mosquitto: Broker) -> None:
    three = make_config(mosquitto.port, strings=((1,), (2,), (3,)))
    module3 = set(discovery.module_configs(three, 3))
    async with running(publisher(Stack(three), three)), subscriber(mosquitto, f"{ROOT}/modules") as (_, seen):
        await seen.wait(lambda m: m.payload == b"[1,2,3]")
    two = make_config(mosquitto.port)
    watched = ("homeassistant/+/bms_t1_module_3/+/config", "homeassistant/+/bms_t1_module_2/+/config")
    async with subscriber(mosquitto, *watched, f"{ROOT}/modules") as (_, seen):
        await seen.wait(lambda _: module3 <= seen.latest().keys())  # the first run's retained configs
        async with running(publisher(Stack(two), two)):
            await seen.wait(lambda _: all(seen.latest().get(t) == b"" for t in module3))
            await seen.wait(lambda m: m.topic.value == f"{ROOT}/modules" and loads(m) == [1, 2])
        assert all(payload for topic, payload in seen.latest("homeassistant/+/bms_t1_module_2").items())
        assert any(t.startswith("homeassistant/sensor/bms_t1_module_2/") for t in seen.latest())


def four(t: float) -> dict[int, ModuleReading]:
    return {a: reading(a, t) for a in (1, 2, 3, 4)}


async def test_a_module_left_out_of_strings_loses_its_entities_after_restarts_in_auto_mode(mosquitto: Broker) -> None:
    """Issue 17. In auto topology the first discovery pass wrote the record, still `[]`, before any module was seen
    and over the previous run's; the previous record then arrived and was merged, but never written back. So the
    record flipped between [1,2,3,4] and [] at every restart, and a module later left out of `strings` kept its
    entities. Here: three runs in auto mode (each a restart: the master has seen no module when MQTT connects),
    then a run with `strings` without module 4."""
    auto = make_config(mosquitto.port, strings=())
    record = f"{ROOT}/modules"
    for run in range(3):
        stack = Stack(auto)
        assert not stack.hub.latest.modules  # nothing heard yet on the CAN side
        async with subscriber(mosquitto, record, f"{ROOT}/bank") as (_, seen), running(publisher(stack, auto)):
            if run > 0:  # the previous record is read back, merged, and written again before any module is seen
                try:
                    await seen.wait(lambda m: not m.retain and m.payload == b"[1,2,3,4]")
                except TimeoutError:
                    raise AssertionError(f"run {run + 1}: the previous record was not written back") from None
                assert b"[]" not in [m.payload for m in seen.messages if m.topic.value == record]
            mark = seen.mark()
            stack.advance(1.0, four)
            await seen.wait(lambda m: m.topic.value == f"{ROOT}/bank" and loads(m)["modules_online"], after=mark)
            if run == 0:
                await seen.wait(lambda m: m.topic.value == record and m.payload == b"[1,2,3,4]")
        assert await retained(mosquitto, record) == {record: b"[1,2,3,4]"}, f"after run {run + 1}"

    three = make_config(mosquitto.port, strings=((1,), (2,), (3,)))
    module4 = "homeassistant/+/bms_t1_module_4/+/config"
    entities4 = set(discovery.module_configs(auto, 4))
    assert entities4 <= (await retained(mosquitto, module4)).keys()  # module 4's entities, before
    async with subscriber(mosquitto, module4, record) as (_, seen), running(publisher(Stack(three), three)):
        await seen.wait(lambda m: not m.retain and m.payload == b"[1,2,3]")
        await seen.wait(lambda _: all(seen.latest().get(t) == b"" for t in entities4))
    assert await retained(mosquitto, module4, record) == {record: b"[1,2,3]"}  # module 4's configs are gone


async def test_module_info_completes_the_module_device(mosquitto: Broker) -> None:
    """A module appears before its ModuleInfo (sent every 10 s): its device first has the placeholder model and no
    software version; when the frame arrives its configs are published once more, with both."""
    cfg = make_config(mosquitto.port, interval=0.1)

    def anonymous(t: float) -> dict[int, ModuleReading]:
        return {a: reading(a, t, firmware=None, cells_in_series=None, nominal_capacity=None) for a in (1, 2)}

    stack = Stack(cfg, anonymous)
    voltage = "homeassistant/sensor/bms_t1_module_1/voltage/config"
    async with subscriber(mosquitto, voltage, f"{ROOT}/bank") as (_, seen), running(publisher(stack, cfg)):
        first = loads(await seen.on(voltage))["device"]
        assert (first["model"], first["manufacturer"], "sw_version" in first) == ("Battery module", "Unknown", False)
        stack.advance(0.5, lambda t: {a: reading(a, t, firmware=(2, 1, 0)) for a in (1, 2)})
        mark = seen.mark()
        second = loads(await seen.on(voltage, after=mark))["device"]
        assert (second["model"], second["sw_version"]) == ("Battery module 16S 100 Ah", "2.1.0")
        for _ in range(3):  # more publication cycles: the same identity is not announced again
            mark = seen.mark()
            await seen.on(f"{ROOT}/bank", after=mark)
        assert [m.topic.value for m in seen.messages].count(voltage) == 2


def docs_rows() -> list[str]:
    """The rows of the entity table in docs/mqtt.md."""
    text = DOCS.read_text(encoding="utf-8")
    part = text.split(generated.begin(discovery.DOCS_COMMAND))[1].split(generated.END)[0]
    return [line for line in part.splitlines() if line.startswith("| `")]


async def test_buttons_send_the_commands_and_the_docs_list_what_is_published(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port, commands=True)
    actions = FakeActions({1})
    async with (
        running(publisher(Stack(cfg), cfg, actions)),
        subscriber(mosquitto, "homeassistant/#", f"{ROOT}/command/result") as (client, seen),
    ):
        await seen.wait(lambda _: len(configs(seen)) == ENTITIES + 3)  # a button on the bank and on each module
        received = configs(seen)
        assert fleet_problems(received) == []
        shown = {t: p for t, p in received.items() if "bms_t1_module_2" not in t}  # the docs show module 1
        assert sorted(discovery.entity_rows(shown)) == sorted(docs_rows())
        buttons = {t.split("/")[-3]: p for t, p in received.items() if t.startswith("homeassistant/button/")}
        assert set(buttons) == {"bms_t1", "bms_t1_module_1", "bms_t1_module_2"}
        for node, ok in (("bms_t1", True), ("bms_t1_module_1", True), ("bms_t1_module_2", False)):
            button = buttons[node]  # pressed, as Home Assistant does it
            mark = seen.mark()
            await client.publish(button["command_topic"], button["payload_press"], qos=button["qos"], retain=False)
            result = loads(await seen.on(f"{ROOT}/command/result", after=mark))
            assert (result["payload"], result["ok"]) == (button["payload_press"], ok)
    assert actions.calls == [("full_charge",), ("readmit", 1), ("readmit", 2)]  # module 2 was not isolated


async def test_switching_commands_off_removes_the_buttons(mosquitto: Broker) -> None:
    on, off = make_config(mosquitto.port, commands=True), make_config(mosquitto.port)
    buttons = "homeassistant/button/#"
    async with subscriber(mosquitto, buttons) as (_, seen), running(publisher(Stack(on), on)):
        await seen.wait(lambda _: len(seen.latest()) == 3)
    assert len(await retained(mosquitto, buttons)) == 3
    async with subscriber(mosquitto, buttons) as (_, seen), running(publisher(Stack(off), off)):
        await seen.wait(lambda _: len(seen.latest()) == 3 and not any(seen.latest().values()))
    assert await retained(mosquitto, buttons) == {}


async def test_commands_are_executed_or_rejected(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port, commands=True)
    actions = FakeActions({3})
    results = f"{ROOT}/command/result"
    clock = FixedClock(100.25)
    async with subscriber(mosquitto, results) as (client, seen):
        # A retained command left on the broker must not run again on every (re)connect.
        await client.publish(f"{ROOT}/command/readmit", b"3", qos=1, retain=True)
        async with running(publisher(Stack(cfg), cfg, actions, clock)):
            stale = loads(await seen.on(results))
            assert (stale["command"], stale["ok"]) == ("readmit", False)
            assert stale["t"] == "2025-11-25T05:55:00.250Z"  # WALL + 100.25 s: wall-clock time, for people
            assert "retained" in stale["detail"]
            await client.publish(f"{ROOT}/command/readmit", b"", qos=1, retain=True)  # clears it; no command
            sent = [
                ("readmit", b"3", True),
                ("readmit", b"x", False),
                ("reboot", b"now", False),
                ("full_charge", b"1", True),
            ]
            for name, payload, ok in sent:
                mark = seen.mark()
                await client.publish(f"{ROOT}/command/{name}", payload, qos=1)
                result = loads(await seen.on(results, after=mark))
                assert (result["command"], result["payload"], result["ok"]) == (name, payload.decode(), ok)
                assert not seen.messages[-1].retain
    assert actions.calls == [("readmit", 3), ("full_charge",)]


POISONED_RECORDS = [
    b"[1e999]",  # int(inf) raised OverflowError: the edge crashed and restarted in a loop
    b"[" * 2000 + b"]" * 2000,  # json.loads raises RecursionError
    b"[" * 100_000 + b"]" * 100_000,
    b"[1," * 100_000 + b"2]",
    b"[1.5]",
    b"[NaN]",
    b"[true]",
    b"[-1]",
    b"[0]",
    b"[32]",
    b'["1"]',
    b'{"1": 2}',
    b"null",
    b"7",
    b"\xff\xfe[\x001\x00]",
    b"not json",
]
POISONED_BIRTHS = [b"\xff\xfe", b"online" * 10_000, b"ONLINE ", b"{}"]
POISONED_COMMANDS = [
    ("readmit", b"1e999"),
    ("readmit", b"inf"),
    ("readmit", b"-1"),
    ("readmit", b"3" * 30),
    ("readmit", b"3" + b" " * 100_000),
    ("readmit", b"\xff\xfe3"),
    ("full_charge", b"\xc3\x28"),
    ("full_charge", b"1" * 100_000),
    ("x" * 10_000, b"1"),
]


async def test_poisoned_messages_on_the_broker_are_ignored_and_the_session_goes_on(mosquitto: Broker) -> None:
    """Every payload read from the broker is hostile input: none may crash the publisher or make it reconnect."""
    cfg = make_config(mosquitto.port, commands=True, interval=0.1)
    actions = FakeActions({3})
    record = f"{ROOT}/modules"
    pub = MqttPublisher(Stack(cfg).hub, config=cfg, clock=FixedClock(1000.0), actions=actions)  # one burst: one log
    with structlog.testing.capture_logs() as logged:
        async with subscriber(mosquitto, f"{ROOT}/#") as (client, seen):
            await client.publish(record, b"[1e999]", qos=1, retain=True)  # found at connect
            await seen.wait(lambda m: m.payload == b"[1e999]")
            async with running(pub):
                await seen.wait(lambda m: m.topic.value == record and m.payload == b"[1,2]")
                for payload in POISONED_RECORDS:
                    mark = seen.mark()
                    await client.publish(record, payload, qos=1, retain=True)
                    await seen.wait(lambda m: m.topic.value == record and m.payload == b"[1,2]", after=mark)
                for payload in POISONED_BIRTHS:
                    await client.publish("homeassistant/status", payload, qos=1)
                for name, payload in POISONED_COMMANDS:
                    mark = seen.mark()
                    await client.publish(f"{ROOT}/command/{name}", payload, qos=1)
                    result = loads(await seen.on(f"{ROOT}/command/result", after=mark))
                    assert result["ok"] is False
                    assert len(result["command"]) <= 43 and len(result["payload"]) <= 64
                mark = seen.mark()
                bank = loads(await seen.on(f"{ROOT}/bank", after=mark))
                assert bank["valid"]
                assert (pub.connected, pub.reconnects, pub.errors) == (True, 0, 0)
        async with subscriber(mosquitto, record) as (_, late):
            assert (await late.on(record)).payload == b"[1,2]"
    assert actions.calls == []
    rejected = [e for e in logged if e["event"] == "mqtt: incoming message rejected"]
    assert sorted(e["kind"] for e in rejected) == ["birth", "command", "module_record"]


def test_a_record_must_be_a_short_json_list_of_module_addresses() -> None:
    addresses = range(1, 32)
    assert read_record(b"[1,2,31]", addresses) == {1, 2, 31}
    assert read_record(b"", addresses) == frozenset()  # a cleared record
    for payload in POISONED_RECORDS:
        with pytest.raises(DecodeError):
            read_record(payload, addresses)


async def test_commands_are_off_by_default(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    actions = FakeActions({3})
    async with (
        running(publisher(Stack(cfg), cfg, actions)),
        subscriber(mosquitto, "homeassistant/#", f"{ROOT}/command/#") as (client, seen),
    ):
        await seen.wait(lambda _: len(configs(seen)) == ENTITIES)
        mark = seen.mark()
        await client.publish(f"{ROOT}/command/readmit", b"3", qos=1)
        # HA's birth message, sent after the command, is answered only after the command would have been.
        await client.publish("homeassistant/status", b"online", qos=1)
        await seen.wait(lambda m: m.topic.value.endswith("/config") and not m.retain, after=mark)
        assert f"{ROOT}/command/result" not in seen.latest()
    assert actions.calls == []


async def test_password_file_credentials(mosquitto_auth: Broker, tmp_path: Path) -> None:
    password = tmp_path / "mqtt-password"
    password.write_text(USERS["gateway"] + "\n")
    cfg = make_config(mosquitto_auth.port, username="gateway", password_file=str(password))
    async with (
        running(publisher(Stack(cfg), cfg)),
        subscriber(mosquitto_auth, f"{ROOT}/status", username="viewer", password=USERS["viewer"]) as (_, seen),
    ):
        await seen.wait(lambda m: m.payload == b"online")


async def test_refused_credentials_are_logged_once_per_series(mosquitto_auth: Broker, tmp_path: Path) -> None:
    password = tmp_path / "mqtt-password"
    password.write_text("wrong\n")
    cfg = make_config(mosquitto_auth.port, username="gateway", password_file=str(password))
    with structlog.testing.capture_logs() as logged:
        async with running(publisher(Stack(cfg), cfg)) as pub:
            await until(lambda: pub.errors >= 3)
            assert not pub.connected
    refused = [e for e in logged if "refused the credentials" in e["event"]]
    assert len(refused) == 1
    assert refused[0]["log_level"] == "error"
    assert refused[0]["username"] == "gateway"


async def test_tls_verifies_the_broker_unless_insecure(mosquitto_tls: Broker) -> None:
    """The certificate is for 127.0.0.1: "localhost" fails the hostname check unless `insecure` is set."""
    tls = {"enabled": True, "ca_file": str(mosquitto_tls.ca_file)}
    ok = make_config(mosquitto_tls.port, tls=tls)
    async with subscriber(mosquitto_tls, f"{ROOT}/status") as (_, seen), running(publisher(Stack(ok), ok)):
        await seen.wait(lambda m: m.payload == b"online")
    wrong_name = make_config(mosquitto_tls.port, tls=tls, host="localhost")
    async with running(publisher(Stack(wrong_name), wrong_name)) as pub:
        await until(lambda: pub.errors >= 2)
        assert pub.reconnects == 0
        assert not pub.connected
    insecure = make_config(mosquitto_tls.port, tls={**tls, "insecure": True}, host="localhost")
    async with running(publisher(Stack(insecure), insecure)) as pub:
        await until(lambda: pub.connected)


def test_missing_tls_files_are_config_errors(tmp_path: Path) -> None:
    cfg = make_config(1883, tls={"enabled": True, "ca_file": str(tmp_path / "ca.crt")})
    with pytest.raises(ConfigError, match=r"mqtt.tls.ca_file: no such file"):
        publisher(Stack(cfg), cfg)


async def test_runs_without_a_broker(mosquitto: Broker) -> None:
    cfg = make_config(mosquitto.port)
    mosquitto.stop()
    stack = Stack(cfg)
    with structlog.testing.capture_logs() as logged:
        async with running(publisher(stack, cfg)) as pub:
            await until(lambda: pub.errors >= 2)
            stack.advance(1.0)  # the master goes on; nothing waits for the broker
            assert not pub.connected
            assert pub.published == 0
    assert len([e for e in logged if "unreachable" in e["event"]]) == 1
