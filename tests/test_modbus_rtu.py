"""The BYD map over a real serial line: socat's pseudo-terminal pair, the gateway's pymodbus serial server on one end
and a pymodbus serial client on the other, talking as the Fronius GEN24 does (RTU, 9600 8N1, device id 21)."""

from __future__ import annotations

from pathlib import Path

import pymodbus
import pytest
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException

from gateway.hub import SnapshotHub
from gateway.master.model import AlarmCode, Level
from gateway.outputs import byd
from gateway.service import Gateway

from helpers.buses import make_config, running, until
from helpers.clocks import FixedClock
from helpers.modbus import Clock
from helpers.modbus_rtu import GEN24_ID, TOWER, gen24, read, rtu_config, serving, tower_snapshot
from helpers.socat import PtyPair, socat, socat_missing

# The snapshot `tower_snapshot()`, worked by hand. One tower of 8 modules x 16 cells: nominal 128 x 3.2 = 409.6 V.
# The registers of the ASCII strings equal Battery-Emulator's constants (BYD-MODBUS.cpp), written there in decimal.
IDENTITY = [
    0x5349, 1,  # 100 "SI", 101: 1
    0x4259, 0x4400, *[0] * 14,  # 102..117 "BY" "D\0"
    0x4259, 0x4420, 0x4261, 0x7474, 0x6572, 0x792D, 0x426F, 0x7820,  # 118.. "BY" "D " "Ba" "tt" "er" "y-" "Bo" "x "
    0x5072, 0x656D, 0x6975, 0x6D20, 0x4856, 0, 0, 0,  # .. "Pr" "em" "iu" "m " "HV" ..133
    0x352E, 0x3000, *[0] * 6,  # 134..141 "5." "0\0"
    0x332E, 0x3236, *[0] * 6,  # 142..149 "3." "26"
    0x6774, 0x7731, *[0] * 14,  # 150..165 the serial, gateway.id "gtw1": "gt" "w1"
    1, 0,  # 166, 167
]  # fmt: skip
RATINGS = [
    0, 0,  # 200, 201
    43008,  # 202 capacity: full_ah 105 Ah x 409.6 V = 43008 Wh (under the 57960 cap)
    40960, 40960,  # 203, 204 max power
    4672,  # 205 max voltage: 128 cells x 3.65 V = 467.2 V in 0.1 V (what a real 128-cell BYD tells a GEN24)
    3200,  # 206 min voltage: 128 cells x 2.50 V = 320.0 V
    53248, 10, 53248, 10, 0, 0,  # 207..212
]  # fmt: skip
LIVE = [
    3,  # 300 ACTIVE: valid, voltage measured
    0,  # 301
    130,  # 302 discharging: -12.5 A is beyond -0.5 A and discharge is enabled
    6137,  # 303 SOC 61.37 % in 0.01 %
    43008,  # 304 total energy: 105 Ah x 409.6 V
    26296,  # 305 remaining: 64.2 Ah x 409.6 V = 26296.32 Wh
    30000,  # 306 max discharge power: DCL 80 A x 420.0 V = 33600 W, capped at 30000
    21000,  # 307 max charge power: CCL 50 A x 420.0 V = 21000 W
    4200,  # 308 outer voltage 420.0 V (ACTIVE)
    5250,  # 309 outer power: 420.0 V x -12.5 A = -5250 W in the snapshot; BYD counts discharge positive
    4200,  # 310 inner voltage
    5250,  # 311 inner power
    173,  # 312 Tmin 17.3 degC in 0.1 degC
    246,  # 313 Tmax 24.6 degC
    0, 0, 0, 0,  # 314..317 charged energy: no lifetime counter in the snapshot
    0, 0, 0, 0,  # 318..321 discharged energy
    246,  # 322 device temperature: Tmax
    9750,  # 323 SOH 97.5 % in 0.01 %
]  # fmt: skip


@pytest.fixture
def hub() -> SnapshotHub:
    return SnapshotHub(tower_snapshot())


async def test_the_gen24_reads_the_whole_map_computed_by_hand(pty_pair: PtyPair, hub: SnapshotHub) -> None:
    cfg = rtu_config(pty_pair.gateway, gateway={"id": "gtw1"}, bank=TOWER)
    async with serving(hub, cfg, Clock(1000.0)), gen24(pty_pair.inverter) as client:
        assert await read(client, 100, 68) == IDENTITY
        assert await read(client, 200, 13) == RATINGS
        assert await read(client, 300, 24) == LIVE
        assert await read(client, 400, 20) == [0] * 20
        assert await read(client, 1000, 100) == [0] * 100
        assert await read(client, 12288, 768) == [0] * 768


async def test_each_read_follows_the_latest_snapshot(pty_pair: PtyPair, hub: SnapshotHub) -> None:
    cfg = rtu_config(pty_pair.gateway, bank=TOWER)
    async with serving(hub, cfg, Clock(1000.0)), gen24(pty_pair.inverter) as client:
        assert await read(client, 300, 8) == LIVE[:8]
        hub.publish(tower_snapshot(seq=8).failsafe("module 3 lost"))
        # Not valid: STANDBY (no protection active), idle, power limits 0, outer voltage 0; the SOC stays.
        assert await read(client, 300, 9) == [0, 0, 128, 6137, 43008, 26296, 0, 0, 0]


async def test_writes_go_to_the_gen24_block_only(pty_pair: PtyPair, hub: SnapshotHub) -> None:
    cfg = rtu_config(pty_pair.gateway, bank=TOWER)
    heartbeat = byd.Heartbeat(cfg.modbus_rtu.heartbeat_timeout)
    clock = Clock(1000.0)
    async with serving(hub, cfg, clock, heartbeat), gen24(pty_pair.inverter) as client:
        assert not (await client.write_register(401, 0x00FF, device_id=GEN24_ID)).isError()
        assert await read(client, 401, 1) == [0x00FF]
        assert heartbeat.info is not None and heartbeat.info.last_seen == 1000.0
        clock.now = 1060.0  # what the GEN24 writes at start: mode 2, the heartbeat toggled, a 60 s watchdog
        assert not (await client.write_registers(400, [2, 0xFF00, 60], device_id=GEN24_ID)).isError()
        assert await read(client, 400, 4) == [2, 0xFF00, 60, 0]
        assert heartbeat.info.last_seen == 1060.0
        refused = {
            "a computed register": await client.write_register(300, 4, device_id=GEN24_ID),
            "an identity register": await client.write_registers(150, [0x4142], device_id=GEN24_ID),
            "no register at all": await client.write_register(99, 1, device_id=GEN24_ID),
            "past the GEN24 block": await client.write_registers(418, [1, 2, 3], device_id=GEN24_ID),
            "a read across a gap": await client.read_holding_registers(160, count=10, device_id=GEN24_ID),
        }
        assert {what: r.exception_code for what, r in refused.items()} == dict.fromkeys(
            refused, ExcCodes.ILLEGAL_ADDRESS
        )
        other_functions = {
            "4 read input registers": await client.read_input_registers(300, count=2, device_id=GEN24_ID),
            "5 write coil": await client.write_coil(401, True, device_id=GEN24_ID),
            "23 read/write registers": await client.readwrite_registers(
                read_address=300, read_count=2, write_address=401, values=[0x00FF], device_id=GEN24_ID
            ),
        }
        assert {what: r.exception_code for what, r in other_functions.items()} == dict.fromkeys(
            other_functions, ExcCodes.ILLEGAL_FUNCTION
        )
        assert await read(client, 300, 1) == [3]  # nothing refused changed anything
        assert await read(client, 400, 20) == [2, 0xFF00, 60] + [0] * 17


async def test_requests_to_other_devices_on_the_line_get_no_answer(pty_pair: PtyPair, hub: SnapshotHub) -> None:
    """RS485 is shared: an answer to another device's request would collide with that device's own."""
    cfg = rtu_config(pty_pair.gateway, bank=TOWER)
    heartbeat = byd.Heartbeat(cfg.modbus_rtu.heartbeat_timeout)
    async with (
        serving(hub, cfg, Clock(1000.0), heartbeat) as server,
        gen24(pty_pair.inverter, reply_timeout=0.5) as client,
    ):
        for device in (GEN24_ID + 1, 0):
            with pytest.raises(ModbusIOException):
                await client.write_register(401, 0x00FF, device_id=device)
        assert await read(client, 401, 1) == [0]
        assert heartbeat.info is None
        assert (server.ignored, server.requests) == (2, 1)


async def test_a_silent_gen24_raises_inverter_comm_lost_by_the_heartbeat_timeout(
    pty_pair: PtyPair, channel: str
) -> None:
    """The master's CAN inverter timeout is 30 s; the heartbeat's own (120 s here, the shortest allowed) applies.
    The gateway runs on an injected clock: minutes pass in no time, and nothing is asserted about real time."""
    cfg = make_config(
        channel,
        can={"inverter": {"enabled": False}},
        modbus_rtu={"enabled": True, "port": pty_pair.gateway, "heartbeat_timeout": 120.0},
    )
    clock = FixedClock(1000.0)
    gateway = Gateway(cfg, clock=clock)

    def lost() -> bool:
        return any(a.code is AlarmCode.INVERTER_COMM_LOST for a in gateway.hub.latest.alarms)

    async def tick_at(t: float) -> None:
        clock.t = t
        await until(lambda: gateway.hub.latest.t >= t, within=5, what=f"a snapshot at {t}")

    async with running(gateway), gen24(pty_pair.inverter) as client:
        await until(gateway.ready.is_set, within=10, what="ready")
        assert not (await client.write_register(401, 0x00FF, device_id=GEN24_ID)).isError()
        await tick_at(1119.0)  # 119 s of silence: beyond 30 s, within 120 s
        inverter = gateway.hub.latest.inverter
        assert inverter is not None and (inverter.name, inverter.last_seen) == ("GEN24", 1000.0)
        assert not lost()
        await tick_at(1121.0)  # 121 s
        assert lost()
        alarm = next(a for a in gateway.hub.latest.alarms if a.code is AlarmCode.INVERTER_COMM_LOST)
        assert (alarm.level, alarm.detail) == (Level.WARNING, "no frame for 121 s")
        assert not (await client.write_register(401, 0xFF00, device_id=GEN24_ID)).isError()  # back, toggled
        await tick_at(1121.0 + cfg.limits.alarm_hold + 1.0)
        assert not lost()
        assert not (await client.write_register(401, 0xFF00, device_id=GEN24_ID)).isError()  # a repeat is no sign
        await tick_at(1121.0 + 121.0)
        assert lost()


@pytest.mark.skipif(socat_missing(), reason="socat is not installed")
async def test_the_edge_survives_its_serial_port_going_away(tmp_path: Path, channel: str) -> None:
    """socat stops (the adapter is unplugged): the edge fails and is restarted with backoff while the rest runs; a
    new socat on the same paths (plugged back in) is served again."""
    links = (tmp_path / "gateway-end", tmp_path / "gen24-end")
    cfg = make_config(
        channel, can={"inverter": {"enabled": False}}, modbus_rtu={"enabled": True, "port": str(links[0])}
    )
    gateway = Gateway(cfg)
    server = gateway.modbus_rtu
    assert server is not None
    async with running(gateway) as task:
        async with socat(links) as pair, gen24(pair.inverter) as client:
            await until(gateway.ready.is_set, within=10, what="ready")
            assert (await read(client, 100, 2)) == [0x5349, 1]
        await until(lambda: gateway.restarts["modbus-rtu"] >= 1, within=10, what="the edge restarting")
        assert not task.done()
        async with socat(links) as pair, gen24(pair.inverter) as client:
            await until(lambda: server.is_open, within=30, what="the port reopened")
            assert (await read(client, 100, 2)) == [0x5349, 1]
        assert not task.done()


def test_pymodbus_is_the_version_the_serial_server_relies_on() -> None:
    """The server leans on 3.16's SimDevice action, trace_pdu, trace_packet and trace_connect (see modbus_rtu)."""
    assert pymodbus.__version__.startswith("3.16.")
