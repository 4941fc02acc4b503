"""Modbus RTU: a register map on a serial line (today the BYD map the Fronius GEN24 reads), served by pymodbus's
serial server.

pymodbus owns the port, the RTU framing (frame boundaries, CRC) and the PDU codec. This module hands it the map's
blocks (`byd.BLOCKS`) as one `SimDevice`: the computed blocks read-only, the inverter's own block writable, every
other address invalid, so pymodbus answers exception 02 ILLEGAL DATA ADDRESS to a read or write outside the blocks
and to a write into a read-only one. pymodbus calls the device's `action` on every access that passes those checks:
a read gets the registers of the latest snapshot's image (one image per snapshot, built on its first read, so one
request never mixes two snapshots); a write is stored, and a change of 401 goes to the `Heartbeat`.

What pymodbus 3.16's serial server does not do, added through its public hooks (a contract test in
tests/test_modbus_rtu.py holds each):
- **Other devices on the line.** pymodbus answers a request for any device id (exception 04 for one it does not
  serve), which on RS485 collides with the real device's answer. `trace_pdu` drops a request for another id before
  it is handled, and `trace_packet` never lets out a frame with another id: the gateway stays silent, as a server
  must. Broadcasts (id 0) are ignored too: the map has nothing to broadcast to.
- **Function codes.** The map is read with 3 and written with 6 and 16. The action answers 01 ILLEGAL FUNCTION to
  any other function that reaches the registers (4, 23, the coil functions), after pymodbus's address check.
- **A port that goes away.** pymodbus's serial server neither reopens its port nor raises when it loses it; it only
  calls `trace_connect(False)`. `run()` then raises a GatewayError, and the supervisor reopens the port with
  backoff (a USB adapter unplugged and plugged back in, a pseudo-terminal replaced).
"""

from __future__ import annotations

import asyncio
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.hub import SnapshotHub
from gateway.logs import get
from gateway.master.model import BankSnapshot
from gateway.outputs import byd

log = get("gateway.modbus_rtu")

FUNCTIONS = frozenset({3, 6, 16})
"""Read holding registers, write one register, write several: all the GEN24 uses."""


class ModbusRtuServer:
    """Serves the BYD map of the latest snapshot on `[modbus_rtu] port`; `run()` in the service's TaskGroup until
    cancelled or until the port fails (GatewayError). `opened()` returns once the port is open."""

    def __init__(self, hub: SnapshotHub, *, heartbeat: byd.Heartbeat | None, config: Config, clock: Clock) -> None:
        """`heartbeat`: where writes to 401 go (the core's, which the master reads), or None to only store them."""
        rtu = config.modbus_rtu
        self._hub = hub
        self._heartbeat = heartbeat
        self._clock = clock
        self._port = rtu.port or ""
        self._baudrate = rtu.baudrate
        self._unit_id = rtu.unit_id
        self._plate = byd.nameplate(config)
        self._image: tuple[BankSnapshot, dict[int, int]] | None = None
        self._open = asyncio.Event()
        self.requests = 0
        """Requests to our unit id."""
        self.errors = 0
        """Exception responses sent."""
        self.ignored = 0
        """Requests to other unit ids, left to their device."""

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def opened(self) -> None:
        await self._open.wait()

    async def run(self) -> None:
        lost = asyncio.Event()

        def connection(up: bool) -> None:
            if not up:
                lost.set()

        server = ModbusSerialServer(
            self._device(),
            framer=FramerType.RTU,
            port=self._port,
            baudrate=self._baudrate,
            bytesize=8,
            parity="N",
            stopbits=1,
            trace_pdu=self._trace_pdu,
            trace_packet=self._trace_packet,
            trace_connect=connection,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus's word for "the port did not open"
            raise GatewayError(f"modbus_rtu: cannot open {self._port}") from err
        self._open.set()
        log.info("modbus rtu serving", port=self._port, baudrate=self._baudrate, unit_id=self._unit_id)
        try:
            await lost.wait()
            raise GatewayError(f"modbus_rtu: lost {self._port}")
        finally:
            self._open.clear()
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus 3.16 leaves it unannotated

    def _device(self) -> SimDevice:
        blocks = [
            SimData(b.start, count=b.length, values=0, datatype=DataType.REGISTERS, readonly=not b.writable)
            for b in byd.BLOCKS
        ]
        return SimDevice(id=self._unit_id, simdata=blocks, action=self._action)

    async def _action(  # noqa: PLR0917 - pymodbus calls it with its SimAction signature, positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's hook on every access to valid addresses; `registers` is the whole device from `start_address`."""
        if function_code not in FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if values is None:  # a read (and the read-back of a write 6)
            image = self._current()
            for a in range(address, address + count):
                if (register := image.get(a)) is not None:
                    registers[a - start_address] = register
        elif self._heartbeat is not None and address <= byd.HEARTBEAT < address + len(values):
            self._heartbeat.write(int(values[byd.HEARTBEAT - address]), self._clock())
        return None

    def _current(self) -> dict[int, int]:
        snapshot = self._hub.latest
        if self._image is None or self._image[0] is not snapshot:
            self._image = (snapshot, byd.image(snapshot, self._plate))
        return self._image[1]

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            if isinstance(pdu, ExceptionResponse) and pdu.dev_id == self._unit_id:
                self.errors += 1
            return pdu
        if pdu.dev_id != self._unit_id:
            self.ignored += 1
            return cast(ModbusPDU, None)  # pymodbus handles a received request only when this returns it
        self.requests += 1
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Nothing goes out in another device's name (pymodbus answers a frame it cannot decode with exception 01
        under the id the frame carried)."""
        if sending and data[:1] != bytes([self._unit_id]):
            return b""
        return data
