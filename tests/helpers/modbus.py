"""The Modbus tests' server and clients: a bank with distinct module values, the server on an ephemeral port with an
injected clock, a pymodbus client, and read requests packed by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway import config
from gateway.config import Config
from gateway.hub import SnapshotHub
from gateway.outputs.modbus import ModbusServer

from helpers.factories import reading

CELLS = tuple(round(3.300 + 0.001 * i, 3) for i in range(16))


class Clock:
    """The clock a server is handed: it reads `now`, which the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def readings(t: float) -> dict[int, Any]:
    """Three online modules with distinct values (2 has a warning bit), 5 gone quiet at 3 s, 6 with 15 cells."""
    return {
        1: reading(
            1,
            t,
            current=12.3,
            soc=61.0,
            cell_voltages=CELLS,
            cell_voltage_max=3.315,
            cell_voltage_max_index=16,
            cell_voltage_min=3.300,
            cell_voltage_min_index=1,
            cell_balancing=(True,) + (False,) * 15,
        ),
        2: reading(2, t, current=7.7, voltage=53.2, warnings=1, temperature_max=27.5, power_stage_temperature=31.0),
        4: reading(4, t, current=-1.0, soc=59.0, cycle_count=250, balancing_cells=2, module_state=2),
        5: reading(5, min(t, 3.0)),
        6: reading(6, t, cell_count=15, cells_in_series=15),
    }


@asynccontextmanager
async def serving(
    hub: SnapshotHub, clock: Callable[[], float], cfg: Config | None = None, frame_timeout: float = 2.0
) -> AsyncIterator[ModbusServer]:
    server = ModbusServer(
        hub, config=cfg or config.parse({"modbus": {"port": 0}}), clock=clock, frame_timeout=frame_timeout
    )
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.started(), 5)
        yield server
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@asynccontextmanager
async def client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await c.connect()
    try:
        yield c
    finally:
        c.close()


def request(function: int, address: int, count: int, unit: int = 1, tid: int = 7) -> bytes:
    pdu = bytes([function]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return tid.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu
