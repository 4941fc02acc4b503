"""The Sparkplug B edge node, checked by an independent decoder: pysparkplug plays the host application.

Our encoder never decodes its own bytes here: what the gateway publishes to a real mosquitto is decoded by
pysparkplug's payload classes (and, for metric properties, by pysparkplug's own generated protobuf module), and
what the host sends (NCMD, DCMD) is encoded by pysparkplug. The gateway runs as `bms-gateway run` runs it
(`_serve`) with simulated modules on python-can's virtual bus; the SIGKILL test runs it in a process of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import aiomqtt
import pytest

from gateway import __version__, config
from gateway.errors import ConfigError, DecodeError
from gateway.master.model import AlarmCode
from gateway.outputs import sparkplug_b_pb2
from gateway.outputs.broker import Broker as Endpoint
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, MODULE_TEXT
from gateway.outputs.sparkplug import (
    Action,
    EdgeNode,
    Outgoing,
    Rebirth,
    Refused,
    config_hash,
    node_definitions,
)
from gateway.outputs.sparkplug_codec import DataType, Metric, Payload, decode, encode
from gateway.outputs.sparkplug_publisher import read_state
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault

from helpers import gateway_process
from helpers import sparkplug as host
from helpers.factories import bank, master, reading, run
from helpers.mosquitto import Broker, subscriber
from helpers.service import send_signal, serving, simulator_task, write_config

NODE = "spBv1.0/bms/{}/svc"
NBIRTH, NDATA, NDEATH, NCMD = (NODE.format(v) for v in ("NBIRTH", "NDATA", "NDEATH", "NCMD"))


def device_topic(verb: str, address: int) -> str:
    return f"spBv1.0/bms/{verb}/svc/module_{address}"


def gateway_config(tmp_path: Path, channel: str, broker: Broker, **sparkplug: Any) -> config.Config:
    """The test gateway (id `svc`) with MQTT's HA topics off and the edge node on, on `broker`."""
    mqtt = {"enabled": False, "host": broker.host, "port": broker.port}
    mqtt.update(sparkplug.pop("mqtt", {}))
    path = write_config(
        tmp_path / "gateway.toml", channel, mqtt=mqtt, sparkplug={"enabled": True, "interval": 0.2, **sparkplug}
    )
    return config.load(path)


def simulated(cfg: config.Config, modules: int = 3, **kwargs: Any) -> dict[str, Any]:
    return {"simulator": simulator_task(cfg.can.modules[0].channel, Simulator(modules=modules, current=5.0, **kwargs))}


def after(received: list[host.Received], kind: str, device: str | None = None) -> list[host.Received]:
    return [r for r in received if r.kind == kind and r.device_id == device]


def seq_in_order(received: list[host.Received]) -> None:
    """From the first NBIRTH on, every message but NDEATH (and the host's own commands) counts seq up by one,
    modulo 256, and each NBIRTH starts again at 0."""
    expected = None
    for r in received:
        if r.kind in ("NDEATH", "NCMD", "DCMD"):
            continue
        if r.kind == "NBIRTH":
            assert r.seq == 0
            expected = 1
            continue
        if expected is None:
            continue
        assert r.seq == expected, f"{r.kind} {r.device_id}: seq {r.seq}, expected {expected}"
        expected = (expected + 1) % 256


# -- the schema and the codec ------------------------------------------------------------------------------------


def _shape(descriptor: Any) -> Any:
    fields = {
        f.name: (
            f.number,
            f.type,
            f.is_repeated,
            f.containing_oneof.name if f.containing_oneof else None,
            f.message_type.name if f.message_type else None,
        )
        for f in descriptor.fields
    }
    return fields, {n.name: _shape(n) for n in descriptor.nested_types}, sorted(descriptor.extension_ranges)


def test_our_schema_is_the_one_pysparkplug_ships() -> None:
    """Every message, field number, type, oneof and extension range, and the DataType enum: the wire format is
    the same (only the protobuf package differs, which is not on the wire)."""
    from pysparkplug._protobuf import sparkplug_b_pb2 as theirs  # noqa: PLC0415 - skipped with pysparkplug

    assert _shape(sparkplug_b_pb2.Payload.DESCRIPTOR) == _shape(theirs.DESCRIPTOR.message_types_by_name["Payload"])
    ours = {v.name: v.number for v in sparkplug_b_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert ours == {v.name: v.number for v in theirs.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert {t.name: t.value for t in DataType} == {name.upper(): number for name, number in ours.items() if number < 15}


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.INT8, -5),
        (DataType.INT16, -32768),
        (DataType.INT32, -2_000_000_000),
        (DataType.INT64, -(2**62)),
        (DataType.UINT8, 255),
        (DataType.UINT16, 65535),
        (DataType.UINT32, 4_000_000_000),
        (DataType.UINT64, 2**63),
        (DataType.FLOAT, 3.25),
        (DataType.DOUBLE, 52.123456789),
        (DataType.BOOLEAN, True),
        (DataType.STRING, "1.4.2"),
        (DataType.FLOAT, None),
    ],
)
def test_pysparkplug_reads_each_type_we_write(datatype: DataType, value: Any) -> None:
    payload = Payload(1_700_000_000_000, (Metric("m", 7, datatype, value),), seq=0)
    birth = host.NBirth.decode(encode(payload, with_datatypes=True))
    (metric,) = birth.metrics
    assert (metric.name, metric.alias, int(metric.datatype), metric.value) == ("m", 7, int(datatype), value)
    assert metric.is_null is (value is None)
    assert birth.timestamp == 1_700_000_000_000


def test_we_read_what_pysparkplug_writes() -> None:
    payload = decode(host.write("Node Control/Rebirth", host.DataType.BOOLEAN, True))
    assert [(m.name, m.datatype, m.value) for m in payload.metrics] == [
        ("Node Control/Rebirth", DataType.BOOLEAN, True)
    ]
    (metric,) = decode(host.write("Bank/current", host.DataType.INT16, -12)).metrics
    assert metric.value == -12


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x12\x05abc", b"\x0a\x80"])
def test_garbage_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


# -- the pure edge node -----------------------------------------------------------------------------------------


def node(*, commands: bool = False, deadband: float = 1.0) -> EdgeNode:
    return EdgeNode(
        group_id="bms", edge_node_id="svc", version="1.2.3", config_hash="abc", commands=commands, deadband=deadband
    )


def wire(messages: list[Outgoing]) -> list[host.Received]:
    """`messages` as a host decodes them (pysparkplug, aliases resolved through the births)."""
    return host.decode(
        aiomqtt.Message(m.topic, m.encode(), qos=0, retain=False, mid=0, properties=None) for m in messages
    )


def snapshots(**values: Any) -> Iterator[Any]:
    """Snapshots of a two-module bank whose module 1 takes `values` from the second snapshot on."""
    m = master()
    yield run(m, 0.0, 3.0, bank(1, 2)).snapshot
    yield run(m, 3.1, 3.1, lambda t: {1: reading(1, t, **values), 2: reading(2, t)}).snapshot


def test_data_carries_only_what_moved_past_its_deadband() -> None:
    edge, wall = node(), _unix()
    first, _ = snapshots()
    births = edge.birth(first, wall, 1000, bd_seq=0)
    assert edge.update(first, wall, 1100) == []
    _, small = snapshots(voltage=53.004)  # under the 10 mV resolution of a module's voltage
    assert [m for m in edge.update(small, wall, 1200) if "module_1" in m.topic] == []
    _, large = snapshots(voltage=53.02, current=1.0)
    sent = edge.update(large, wall, 1300)
    decoded = wire(births + sent)
    ddata = after(decoded, "DDATA", "module_1")
    assert len(ddata) == 1
    assert ddata[0].values == {"voltage": pytest.approx(53.02), "current": pytest.approx(1.0)}


def test_seq_counts_every_message_and_wraps_after_255() -> None:
    edge, wall = node(), _unix()
    low, high = snapshots(voltage=53.5)
    messages = edge.birth(low, wall, 0, bd_seq=0)
    for n in range(150):
        messages += edge.update(high if n % 2 == 0 else low, wall, n)
    decoded = wire(messages)
    assert len(decoded) > 300
    seq_in_order(decoded)


def test_every_field_alarm_and_node_control_is_a_metric_with_a_unique_alias() -> None:
    edge = node(commands=True)
    names = {d.name for d in edge.node}
    assert {f"Bank/{f.key}" for f in (*BANK_FIELDS, *BANK_FLAGS)} <= names
    assert {f"Alarms/{code}" for code in AlarmCode} <= names
    assert {"Node Control/Rebirth", "Node Control/Request Full Charge", "Gateway/version"} <= names
    device = edge.device(3)
    assert {f.key for f in (*MODULE_FIELDS, *MODULE_TEXT)} | {"state", "Device Control/Readmit"} == {
        d.name for d in device
    }
    aliases = [d.alias for d in (*edge.node, *device, *edge.device(31))]
    assert len(aliases) == len(set(aliases))
    assert "Node Control/Request Full Charge" not in {d.name for d in node_definitions(commands=False, deadband=1)}


def test_commands_rebirth_and_operator_actions_the_rest_refused() -> None:
    read_only, operator = node(), node(commands=True)
    rebirth = decode(host.rebirth_request()).metrics
    assert read_only.node_command(rebirth) == [Rebirth()]
    full = decode(host.write("Node Control/Request Full Charge", host.DataType.BOOLEAN, True)).metrics
    assert operator.node_command(full) == [Action("full_charge", "1")]
    assert read_only.node_command(full) == [Refused("Node Control/Request Full Charge", "no such node metric")]
    voltage = decode(host.write("Bank/voltage", host.DataType.FLOAT, 1.0)).metrics
    assert operator.node_command(voltage) == [Refused("Bank/voltage", "read-only")]
    readmit = decode(host.write("Device Control/Readmit", host.DataType.BOOLEAN, True, device=True)).metrics
    assert operator.device_command(4, readmit) == [Action("readmit", "4")]
    assert read_only.device_command(4, readmit) == [Refused("Device Control/Readmit", "no such device metric")]
    assert operator.device_command(None, readmit) == [Refused("Device Control/Readmit", "no such device metric")]
    soc = decode(host.write("soc", host.DataType.FLOAT, 100.0, device=True)).metrics
    assert operator.device_command(4, soc) == [Refused("soc", "read-only")]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"online": true, "timestamp": 1700000000000}', (True, 1700000000000)),
        (b'{"online": false, "timestamp": 5}', (False, 5)),
    ],
)
def test_state_payloads(payload: bytes, expected: tuple[bool, int]) -> None:
    assert read_state(payload) == expected


@pytest.mark.parametrize(
    "payload", [b"ONLINE", b"[]", b'{"online": 1, "timestamp": 5}', b'{"online": true}', b"{" * 100_000, b"\xff"]
)
def test_bad_state_payloads_are_rejected(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        read_state(payload)


# -- configuration ---------------------------------------------------------------------------------------------


def test_broker_is_mqtt_s_unless_a_host_of_its_own() -> None:
    cfg = config.parse({"mqtt": {"host": "broker.site", "port": 8883, "username": "u"}, "sparkplug": {}})
    shared = Endpoint.of(cfg, "sparkplug")
    assert (shared.section, shared.host, shared.port, shared.username) == ("mqtt", "broker.site", 8883, "u")
    own = config.parse({"mqtt": {"host": "ha.local"}, "sparkplug": {"host": "scada.local", "port": 1884}})
    separate = Endpoint.of(own, "sparkplug")
    assert (separate.section, separate.host, separate.port, separate.username) == (
        "sparkplug",
        "scada.local",
        1884,
        None,
    )
    assert Endpoint.of(own, "mqtt").host == "ha.local"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"group_id": "a/b"}, "sparkplug.group_id: must be non-empty"),
        ({"edge_node_id": ""}, "sparkplug.edge_node_id: must be non-empty"),
        ({"primary_host_id": "scada#"}, "sparkplug.primary_host_id: must be non-empty"),
        ({"username": "u"}, "sparkplug.host: username, password_file and [sparkplug.tls]"),
        ({"host": "h", "password_file": "/p"}, "sparkplug.password_file: needs sparkplug.username"),
    ],
)
def test_config_problems(section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse({"sparkplug": section})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_config_hash_follows_the_settings_not_the_layout() -> None:
    a = config.parse({"bank": {"max_modules": 8}})
    b = config.parse({"bank": {"max_modules": 8, "tick": 0.1}})
    assert config_hash(a) == config_hash(b) != config_hash(config.parse({"bank": {"max_modules": 9}}))


def _unix() -> Any:
    from gateway.clock import UNIX  # noqa: PLC0415

    return UNIX


# -- on a real broker --------------------------------------------------------------------------------------------


async def test_births_carry_every_metric_with_alias_type_and_unit(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    async with subscriber(mosquitto, "spBv1.0/#") as (_, seen), serving(cfg, reload_from=None, extra=simulated(cfg)):
        for address in (1, 2, 3):
            await seen.on(device_topic("DBIRTH", address), within=10.0)
    received = host.decode(seen.messages)
    nbirth, *rest = received
    assert nbirth.kind == "NBIRTH" and nbirth.seq == 0
    values = nbirth.values
    assert values["bdSeq"] == 0 and values["Node Control/Rebirth"] is False
    assert values["Gateway/version"] == __version__ and values["Gateway/config_hash"] == config_hash(cfg)
    for f in BANK_FIELDS:
        assert f"Bank/{f.key}" in values, f.key
    for f in BANK_FLAGS:
        assert isinstance(values[f"Bank/{f.key}"], bool), f.key
    for code in AlarmCode:
        assert values[f"Alarms/{code}"] == 0 and values[f"Alarms/{code}/modules"] == ""
    metrics = nbirth.metrics
    assert metrics["bdSeq"].datatype == host.DataType.INT64
    assert metrics["Bank/voltage"].datatype == host.DataType.FLOAT
    assert metrics["Bank/power"].datatype == host.DataType.INT32
    assert metrics["Bank/valid"].datatype == host.DataType.BOOLEAN
    units = nbirth.properties()
    assert units["Bank/voltage"] == {"engUnit": "V"} and units["Bank/temperature_max"] == {"engUnit": "°C"}
    assert units["Bank/cell_voltage_max_module"] == {}
    dbirths = after(rest, "DBIRTH", "module_1"), after(rest, "DBIRTH", "module_2"), after(rest, "DBIRTH", "module_3")
    for (dbirth,) in dbirths:
        names = dbirth.values.keys()
        assert {f.key for f in (*MODULE_FIELDS, *MODULE_TEXT)} | {"state"} == names
        assert dbirth.properties()["soc"] == {"engUnit": "%"}
    aliases = [m.alias for r in (nbirth, *(d for (d,) in dbirths)) for m in r.payload.metrics if m.alias is not None]
    assert len(aliases) == len(set(aliases))
    assert all(r.qos == 0 and not r.retain for r in received)
    seq_in_order(received)


async def test_data_carries_changed_values_only_in_seq_order(channel: str, tmp_path: Path, mosquitto: Broker) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    async with subscriber(mosquitto, "spBv1.0/#") as (_, seen), serving(cfg, reload_from=None, extra=simulated(cfg)):
        await seen.on(NBIRTH, within=10.0)

        def settled(m: Any) -> bool:  # six data messages so far (the bank and modules settling after the start)
            return sum("DATA/" in m.topic.value for m in seen.messages) >= 6

        await seen.wait(settled, within=20.0)
    received = host.decode(seen.messages)
    seq_in_order(received)
    told: dict[tuple[str | None, str], Any] = {}
    deadbands = {f"Bank/{f.key}": f.scale for f in BANK_FIELDS} | {f.key: f.scale for f in MODULE_FIELDS}
    data = 0
    for r in received:
        for name, value in r.values.items():
            key = (r.device_id, name)
            if r.kind in ("NDATA", "DDATA"):
                data += 1
                old = told[key]
                assert value != old, f"{key} reported unchanged"
                if name in deadbands and old is not None and value is not None and not isinstance(value, bool):
                    assert abs(value - old) >= deadbands[name] * 0.999, f"{key}: {old} -> {value}"
            told[key] = value
    assert data > 0


async def test_rebirth_on_ncmd_repeats_every_birth_with_the_same_bd_seq(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    async with (
        subscriber(mosquitto, "spBv1.0/#") as (client, seen),
        serving(cfg, reload_from=None, extra=simulated(cfg, modules=2)),
    ):
        await seen.on(device_topic("DBIRTH", 2), within=10.0)
        await seen.on(device_topic("DDATA", 1), within=10.0)
        mark = seen.mark()
        await client.publish(NCMD, host.rebirth_request())
        await seen.on(NBIRTH, after=mark, within=10.0)
        await seen.on(device_topic("DBIRTH", 2), after=mark, within=10.0)
        await seen.on(device_topic("DDATA", 1), after=seen.mark(), within=10.0)
    received = host.decode(seen.messages)
    births = after(received, "NBIRTH")
    assert len(births) == 2
    assert births[0].values["bdSeq"] == births[1].values["bdSeq"] == 0
    second = received.index(births[1])
    assert [r.device_id for r in received[second + 1 : second + 3]] == ["module_1", "module_2"]
    assert {r.kind for r in received[second + 1 : second + 3]} == {"DBIRTH"}
    seq_in_order(received)


async def test_ddeath_when_a_module_drops(channel: str, tmp_path: Path, mosquitto: Broker) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    extra = simulated(cfg, modules=3, faults=[parse_fault("drop:2@4")])
    async with subscriber(mosquitto, "spBv1.0/#") as (_, seen), serving(cfg, reload_from=None, extra=extra):
        await seen.on(device_topic("DBIRTH", 2), within=10.0)
        await seen.on(device_topic("DDEATH", 2), within=20.0)
        mark = seen.mark()
        await seen.on(device_topic("DDATA", 1), after=mark, within=10.0)
    received = host.decode(seen.messages)
    (death,) = after(received, "DDEATH", "module_2")
    later = received[received.index(death) + 1 :]
    assert not after(later, "DDATA", "module_2")
    assert after(received, "DDEATH", "module_1") == after(received, "DDEATH", "module_3") == []
    assert isinstance(death.payload, host.DDeath)
    seq_in_order(received)


async def test_writes_are_refused_unless_an_operator_action_with_commands_on(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto, mqtt={"commands": True})
    async with (
        subscriber(mosquitto, "spBv1.0/#") as (client, seen),
        serving(cfg, reload_from=None, extra=simulated(cfg, modules=2)),
    ):
        await seen.on(device_topic("DBIRTH", 2), within=10.0)
        await client.publish(NCMD, host.write("Bank/charge_current_limit", host.DataType.FLOAT, 500.0))
        await client.publish(device_topic("DCMD", 1), host.write("soc", host.DataType.FLOAT, 0.0, device=True))
        await client.publish(NCMD, host.write("Node Control/Request Full Charge", host.DataType.BOOLEAN, True))

        def full_charge(m: Any) -> bool:
            data = [r for r in host.decode(seen.messages) if r.kind == "NDATA"]
            return any(r.values.get("Bank/full_charge") is True for r in data)

        await seen.wait(full_charge, within=10.0)
    received = host.decode(seen.messages)
    limits = [
        r.values["Bank/charge_current_limit"]
        for r in after(received, "NDATA")
        if "Bank/charge_current_limit" in r.values
    ]
    assert 500.0 not in limits
    assert received[0].values["Node Control/Request Full Charge"] is False


async def test_read_only_node_refuses_operator_actions(channel: str, tmp_path: Path, mosquitto: Broker) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    task_extra = simulated(cfg, modules=1)
    async with (
        subscriber(mosquitto, "spBv1.0/#") as (client, seen),
        serving(cfg, reload_from=None, extra=task_extra),
    ):
        await seen.on(device_topic("DBIRTH", 1), within=10.0)
        await client.publish(NCMD, host.write("Node Control/Request Full Charge", host.DataType.BOOLEAN, True))
        await client.publish(NCMD, host.rebirth_request())  # handled after the write: the write was read and refused
        await seen.on(NBIRTH, after=seen.mark(), within=10.0)
    received = host.decode(seen.messages)
    assert "Node Control/Request Full Charge" not in received[0].values
    assert all(r.values.get("Bank/full_charge") is not True for r in after(received, "NDATA"))


async def test_births_wait_for_the_primary_host_and_a_new_session_follows_its_death(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto, primary_host_id="scada")
    state_topic = "spBv1.0/STATE/scada"
    async with (
        subscriber(mosquitto, "spBv1.0/#") as (client, seen),
        serving(cfg, reload_from=None, extra=simulated(cfg, modules=1)),
    ):
        # An offline host: no birth. The births follow the online STATE (mosquitto delivers in the order it
        # took the messages in, and the gateway publishes its NBIRTH only once it had the STATE).
        await client.publish(state_topic, host.state(online=False, timestamp=1000), qos=1, retain=True)
        online = seen.mark()
        await client.publish(state_topic, host.state(online=True, timestamp=2000), qos=1, retain=True)
        await seen.on(device_topic("DBIRTH", 1), within=10.0)
        # A stale offline STATE (older than the last one) is ignored: data goes on in the same session.
        await client.publish(state_topic, host.state(online=False, timestamp=1500), qos=1)
        await seen.on(device_topic("DDATA", 1), after=seen.mark(), within=10.0)
        # The host goes offline: NDEATH, a new connection (bdSeq + 1), and no birth until it is back.
        offline = seen.mark()
        await client.publish(state_topic, host.state(online=False, timestamp=3000), qos=1, retain=True)
        await seen.on(NDEATH, after=offline, within=10.0)
        # The reconnected node has read the retained offline STATE: after this rebirth request (refused
        # before a birth) the next NBIRTH can only come from the online STATE below.
        await client.publish(NCMD, host.rebirth_request())
        back = seen.mark()
        await client.publish(state_topic, host.state(online=True, timestamp=4000), qos=1, retain=True)
        await seen.on(NBIRTH, after=offline, within=10.0)
    topics = [m.topic.value for m in seen.messages]
    assert topics.index(NBIRTH) > online
    assert topics.index(NBIRTH, offline) > back
    received = host.decode(seen.messages)
    first, second = after(received, "NBIRTH")
    (death,) = after(received, "NDEATH")
    assert first.values["bdSeq"] == 0 == death.payload.bd_seq_metric.value
    assert second.values["bdSeq"] > 0


async def test_a_clean_stop_publishes_the_ndeath(channel: str, tmp_path: Path, mosquitto: Broker) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    async with (
        subscriber(mosquitto, "spBv1.0/#") as (_, seen),
        serving(cfg, reload_from=None, extra=simulated(cfg, modules=1)) as task,
    ):
        await seen.on(device_topic("DBIRTH", 1), within=10.0)
        send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(task, timeout=10.0) == 0
        await seen.on(NDEATH, within=10.0)
    received = host.decode(seen.messages)
    (death,) = after(received, "NDEATH")
    assert death.payload.bd_seq_metric.name == "bdSeq"
    assert death.payload.bd_seq_metric.value == after(received, "NBIRTH")[0].values["bdSeq"]


async def test_sigkill_leaves_the_ndeath_will_with_the_birth_s_bd_seq(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    assert cfg.source is not None
    script = Path(gateway_process.__file__)
    async with subscriber(mosquitto, "spBv1.0/#") as (_, seen):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(cfg.source), "2", stdout=DEVNULL, stderr=DEVNULL
        )
        try:
            await seen.on(device_topic("DBIRTH", 2), within=20.0)
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10.0)
            await seen.on(NDEATH, within=10.0)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    received = host.decode(seen.messages)
    (birth,) = after(received, "NBIRTH")
    (death,) = after(received, "NDEATH")
    assert process.returncode == -signal.SIGKILL
    assert death.payload.bd_seq_metric.value == birth.values["bdSeq"] == 0
    assert death.payload.bd_seq_metric.datatype == host.DataType.INT64
    ndeath = [m for m in seen.messages if m.topic.value == NDEATH]
    assert ndeath[0].qos == 1 and not ndeath[0].retain


async def test_reconnects_with_the_next_bd_seq_after_the_broker_restarts(
    channel: str, tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = gateway_config(tmp_path, channel, mosquitto)
    async with serving(cfg, reload_from=None, extra=simulated(cfg, modules=1)):
        async with subscriber(mosquitto, "spBv1.0/#") as (_, seen):
            await seen.on(device_topic("DBIRTH", 1), within=10.0)
        mosquitto.restart()
        async with subscriber(mosquitto, "spBv1.0/#") as (client, again):
            # The NBIRTH of the new connection, or (if it reconnected before we subscribed) a rebirth's.
            await client.publish(NCMD, host.rebirth_request())
            await again.on(NBIRTH, within=20.0)
    (first,) = after(host.decode(seen.messages), "NBIRTH")
    second = after(host.decode(again.messages), "NBIRTH")[0]
    # One more per CONNECT attempt: 1, unless an attempt failed while mosquitto was restarting.
    assert second.values["bdSeq"] > first.values["bdSeq"] == 0


async def test_a_broker_of_its_own_over_tls(
    channel: str, tmp_path: Path, mosquitto: Broker, mosquitto_tls: Broker
) -> None:
    """[mqtt] points at one broker, [sparkplug] at another, over TLS with the broker's certificate verified."""
    tls = {"enabled": True, "ca_file": str(mosquitto_tls.ca_file)}
    cfg = gateway_config(tmp_path, channel, mosquitto, host=mosquitto_tls.host, port=mosquitto_tls.port, tls=tls)
    async with (
        subscriber(mosquitto_tls, "spBv1.0/#") as (_, seen),
        subscriber(mosquitto, "spBv1.0/#") as (_, elsewhere),
        serving(cfg, reload_from=None, extra=simulated(cfg, modules=1)),
    ):
        await seen.on(device_topic("DBIRTH", 1), within=10.0)
    assert after(host.decode(seen.messages), "NBIRTH")
    assert elsewhere.messages == []


def test_missing_tls_files_of_its_own_broker_are_config_errors(tmp_path: Path) -> None:
    cfg = config.parse(
        {"sparkplug": {"enabled": True, "host": "h", "tls": {"enabled": True, "ca_file": str(tmp_path / "ca.crt")}}}
    )
    with pytest.raises(ConfigError, match=r"sparkplug.tls.ca_file: no such file"):
        Gateway(cfg)


def test_the_edge_s_counters_reach_the_metrics_endpoint() -> None:
    gateway = Gateway(config.parse({"sparkplug": {"enabled": True}, "mqtt": {"enabled": False}}))
    assert gateway.edge_counters()["sparkplug"] == {
        "published": 0,
        "reconnects": 0,
        "errors": 0,
        "refused": 0,
        "restarts": 0,
    }
    assert "sparkplug" not in Gateway(config.parse({})).edge_counters()
