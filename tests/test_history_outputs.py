"""The history's faces: lifetime energy on MQTT (bank and module payloads, for HA's Energy dashboard) and in the
Modbus plain map (appended, so every older address stays), the retained events topic with the latest event, and an
operator command over MQTT recorded as an event. The live ones run the real gateway against a real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.core import Core
from gateway.outputs.fields import BANK_FIELDS, MODULE_FIELDS
from gateway.outputs.modbus import BANK_REGISTERS, MODULE_REGISTERS, module_base, plain_image
from gateway.service import Gateway
from gateway.sim import Simulator

from helpers.buses import make_config, online, running, simulating, until
from helpers.factories import configured, reading
from helpers.history import events, named
from helpers.mosquitto import Broker, subscriber


def loads(message: aiomqtt.Message) -> Any:
    return json.loads(message.payload)


async def test_energy_and_events_on_mqtt_and_an_operator_command_recorded(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    db = tmp_path / "history.sqlite"
    cfg = make_config(
        channel,
        gateway={"id": "h1"},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": mosquitto.port, "interval": 0.5, "commands": True},
        history={"path": str(db)},
    )
    gateway = Gateway(cfg)
    root = "bms/h1"
    async with (
        subscriber(mosquitto, f"{root}/#") as (client, seen),
        running(gateway),
        simulating(cfg.can.modules[0].channel, Simulator(modules=2, current=40.0)),
    ):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
        bank = loads(
            await seen.wait(
                lambda m: m.topic.value == f"{root}/bank" and (loads(m)["energy"] or {}).get("charged_kwh", 0) > 0,
                within=15.0,
            )
        )
        assert bank["energy"]["discharged_kwh"] == 0.0
        module = loads(await seen.wait(lambda m: m.topic.value == f"{root}/module/1" and loads(m)["energy"]))
        assert module["energy"]["charged_kwh"] >= 0.0

        latest = loads(await seen.on(f"{root}/events"))
        assert set(latest) == {"t", "time", "event", "level", "code", "modules", "detail", "value"}
        mark = seen.mark()
        await client.publish(f"{root}/command/readmit", b"2", qos=1)
        command = await seen.wait(
            lambda m: m.topic.value == f"{root}/events" and loads(m)["event"] == "operator readmit", after=mark
        )
        assert (loads(command)["code"], loads(command)["detail"], loads(command)["modules"]) == (
            "mqtt",
            "not isolated",
            [2],
        )
        mark = seen.mark()
        gateway.stopping("the test is over")  # as `_serve` does on SIGTERM, before it cancels the gateway
        await seen.wait(lambda m: m.topic.value == f"{root}/events" and loads(m)["event"] == "gateway stop", after=mark)
    async with subscriber(mosquitto, f"{root}/events") as (_, late):  # a late subscriber gets the last event
        retained = await late.on(f"{root}/events")
        assert retained.retain
        assert loads(retained)["event"] == "gateway stop"
    recorded = named(events(db), "operator readmit")
    assert [(e["code"], e["level"], e["modules"]) for e in recorded] == [("mqtt", "warning", [2])]


def core_snapshot() -> Any:
    """A snapshot from the core of two modules charging at 36 A and 50 V for 10 s: 5 Wh each."""
    cfg = configured(bank={"strings": [[1], [2]]})
    core = Core(cfg, now=0.0)
    snapshot = None
    for n in range(101):
        t = n * 0.1
        values = {a: reading(a, t, current=36.0, voltage=50.0) for a in (1, 2)}
        core.store.readings = values.copy  # type: ignore[method-assign]  # readings as given
        snapshot = core.tick(t).snapshot
    return snapshot


def u32(registers: tuple[int, ...], address: int) -> int:
    return registers[address] << 16 | registers[address + 1]


def test_the_plain_map_carries_lifetime_energy_at_the_end_of_each_block() -> None:
    """Appended after the last value each block had (fan duty, cycle count): every older address stays."""
    bank = {r.field.key: r for r in BANK_REGISTERS}
    assert BANK_REGISTERS[-2:] == (bank["charged_energy"], bank["discharged_energy"])
    assert (bank["fan_duty"].address, bank["charged_energy"].address, bank["discharged_energy"].address) == (37, 38, 40)
    module = {r.field.key: r for r in MODULE_REGISTERS}
    assert (module["cycle_count"].address, module["charged_energy"].address) == (23, 24)
    assert (
        [f.key for f in BANK_FIELDS[-2:]]
        == [f.key for f in MODULE_FIELDS[-2:]]
        == [
            "charged_energy",
            "discharged_energy",
        ]
    )

    snapshot = core_snapshot()
    registers = plain_image(snapshot, snapshot.t)
    assert u32(registers, 38) == 10  # Wh: 2 modules x 36 A x 50 V x 10 s
    assert u32(registers, 40) == 0
    assert u32(registers, module_base(1) + 24) == 5


def test_energy_reads_not_available_without_it() -> None:
    """A snapshot the core has not counted (the master alone) carries no energy: the registers say so."""
    snapshot = core_snapshot()
    registers = plain_image(snapshot.__class__(**{**_fields(snapshot), "energy": None}), snapshot.t)
    assert u32(registers, 38) == 0xFFFFFFFF


def _fields(snapshot: Any) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in snapshot.__dataclass_fields__}


@pytest.mark.parametrize("key", ["charged_energy", "discharged_energy"])
def test_energy_fields_are_meters_in_kwh(key: str) -> None:
    field = next(f for f in BANK_FIELDS if f.key == key)
    assert (field.unit, field.device_class, field.state_class, field.register, field.scale) == (
        "kWh",
        "energy",
        "total_increasing",
        "u32",
        0.001,
    )
