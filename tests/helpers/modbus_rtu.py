"""The Modbus RTU tests' two ends: the gateway's serial server in a task, and a pymodbus serial client playing the
Fronius GEN24 (9600 8N1, device id 21) on the other end of a pty pair (`helpers.socat`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

from gateway import config
from gateway.clock import Clock
from gateway.config import Config
from gateway.hub import SnapshotHub
from gateway.master.model import BankSnapshot, Extreme, Flags, Limit, Limits
from gateway.outputs import byd
from gateway.outputs.modbus_rtu import ModbusRtuServer

GEN24_ID = 21
TOWER = {"strings": [[1, 2, 3, 4, 5, 6, 7, 8]], "max_modules": 8}
"""[bank] of one high-voltage tower: 8 modules of 16 cells in series, 409.6 V nominal (128 x 3.2 V)."""


def tower_snapshot(**changes: Any) -> BankSnapshot:
    """A valid snapshot of `TOWER` with numbers chosen to be told apart: discharging 12.5 A at 420.0 V."""
    limit = {"charge_current": 50.0, "discharge_current": 80.0, "charge_voltage": 441.6, "discharge_voltage": 384.0}
    values: dict[str, Any] = {
        "seq": 7,
        "t": 1000.0,
        "valid": True,
        "reason": "",
        "voltage": 420.0,
        "current": -12.5,
        "soc": 61.37,
        "soh": 97.5,
        "remaining_ah": 64.2,
        "full_ah": 105.0,
        "cell_voltage_max": Extreme(3.29, 3, 7),
        "cell_voltage_min": Extreme(3.27, 6, 12),
        "temperature_max": Extreme(24.6, 5, 3),
        "temperature_min": Extreme(17.3, 2, 1),
        "limits": Limits(*(Limit(v, "test") for v in limit.values())),
        "flags": Flags(charge_enable=True, discharge_enable=True),
        "fan_duty": 0,
        "alarms": (),
        "modules": {},
    }
    values.update(changes)
    return BankSnapshot(**values)


def rtu_config(port: str, **sections: dict[str, Any]) -> Config:
    """[modbus_rtu] on `port` with its defaults (9600 bit/s, unit id 21), and `sections` merged one level deep."""
    raw: dict[str, Any] = {"modbus_rtu": {"enabled": True, "port": port}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config.parse(raw)


@contextlib.asynccontextmanager
async def serving(
    hub: SnapshotHub, cfg: Config, clock: Clock, heartbeat: byd.Heartbeat | None = None
) -> AsyncIterator[ModbusRtuServer]:
    """The serial server running in a task, its port open; cancelled (and awaited) on exit."""
    server = ModbusRtuServer(hub, heartbeat=heartbeat, config=cfg, clock=clock)
    task = asyncio.create_task(server.run(), name="modbus-rtu")
    try:
        async with asyncio.timeout(10):
            await server.opened()
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def gen24(port: str, *, reply_timeout: float = 2.0) -> AsyncIterator[AsyncModbusSerialClient]:
    """A pymodbus serial client on `port` as the GEN24 talks: RTU, 9600 8N1; no retries, no reconnects."""
    client = AsyncModbusSerialClient(
        port,
        framer=FramerType.RTU,
        baudrate=9600,
        bytesize=8,
        parity="N",
        stopbits=1,
        timeout=reply_timeout,
        retries=0,
        reconnect_delay=0,
    )
    assert await client.connect(), f"cannot open {port}"
    try:
        yield client
    finally:
        client.close()


async def read(client: AsyncModbusSerialClient, address: int, count: int) -> list[int]:
    """Registers [address, address + count) from the GEN24's device id, 125 per request at most."""
    out: list[int] = []
    while count:
        n = min(count, 125)
        reply = await client.read_holding_registers(address, count=n, device_id=GEN24_ID)
        assert not reply.isError(), f"read {address} x {n}: {reply}"
        out += reply.registers
        address, count = address + n, count - n
    return out
