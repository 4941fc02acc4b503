"""Modbus TCP: the master's view as a read-only register image, served by pymodbus's asyncio server.

Two parts. The register image is pure: `plain_image(snapshot, now)` lays out the plain map from the table of
descriptions in `gateway.outputs.fields` (through the JSON payload, so Modbus can never disagree with MQTT) and
`gateway.outputs.sunspec` adds the SunSpec models at 40000. The adapter below is the only code that knows
pymodbus: it swaps in a new `Image` when the snapshot changes and builds each map once, on its first read (no
client, no work on the loop the CAN side shares); every request is answered from one image in one step, so it
never mixes two snapshots. It screens each frame before pymodbus sees it, because pymodbus 3.16 answers
oversized reads and unknown function codes with malformed exception frames and never closes a connection that
sends garbage or half a request.

Unit ids: requests to any unit id other than `modbus.unit_id` get exception 0x0B (gateway target device failed
to respond), so a misconfigured poller learns at once instead of timing out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.hub import SnapshotHub
from gateway.logs import BurstLog, get
from gateway.master.alarms import CODES
from gateway.master.model import ALARM_BITS, BankSnapshot, Level, Lifecycle, ModuleView
from gateway.outputs import sunspec
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, Field, RegisterType
from gateway.payload import bank_dict, lookup, module_dict

log = get("gateway.modbus")

BANK_SIZE = 100
"""Registers 0..99 hold the bank; unused ones read 0 and are reserved for new fields."""
MODULE_BASE = BANK_SIZE
MODULE_SIZE = 32
"""Registers per module block; unused ones read 0 and are reserved."""
MODULE_ADDRESSES = range(1, 32)
PLAIN_SIZE = MODULE_BASE + MODULE_SIZE * len(MODULE_ADDRESSES)
MAX_READ = 125
"""Registers per read request (Modbus application protocol, function 3 and 4)."""
LIFECYCLE_NUMBERS = {lc: n for n, lc in enumerate(Lifecycle, 1)}
"""The module state register: 1 online, 2 pending, 3 isolated, 4 offline, 5 rejected."""

_SIZES: dict[RegisterType, tuple[int, bool]] = {
    "u16": (1, False),
    "s16": (1, True),
    "u32": (2, False),
    "s32": (2, True),
}


@dataclass(frozen=True, slots=True)
class Register:
    """One value of the plain map: a field of the description table at an address."""

    address: int
    """Absolute for bank registers, relative to the block for module registers."""
    field: Field

    @property
    def size(self) -> int:
        return _SIZES[self.field.register][0]

    def encode_value(self, value: float | None) -> tuple[int, ...]:
        size, signed = _SIZES[self.field.register]
        return sunspec.encode(None if value is None else float(value) / self.field.scale, size, signed)

    def encode(self, payload: dict[str, Any]) -> tuple[int, ...]:
        return self.encode_value(lookup(payload, self.field.path))


def _place(fields: tuple[Field, ...], size: int) -> tuple[Register, ...]:
    """Give consecutive addresses to `fields`, refusing a block that outgrows its reserved size."""
    out: list[Register] = []
    address = 0
    for f in fields:
        out.append(Register(address, f))
        address += out[-1].size
    if address > size:
        raise ValueError(f"the plain map block needs {address} registers but has {size}")
    return tuple(out)


def _status(key: str, name: str, register: RegisterType = "u16", unit: str | None = None, scale: float = 1.0) -> Field:
    """A Modbus-only value, computed into the payload's "modbus" part (`_bank_payload`, `_module_payload`)."""
    return Field(key, f"modbus.{key}", name, unit, state_class=None, register=register, scale=scale)


_FLAG_NAMES = ", ".join(f"bit {i} {f.name.lower()}" for i, f in enumerate(BANK_FLAGS))
_LIFECYCLES = ", ".join(f"{n} {lc}" for lc, n in LIFECYCLE_NUMBERS.items())
_COUNTED = ("modules_online", "modules_pending", "modules_isolated", "modules_offline", "modules_rejected")

BANK_REGISTERS: tuple[Register, ...] = _place(
    (
        _status("valid", "Data valid (1: the master vouches for the bank; 0: current limits are zero)"),
        _status("flags", f"Flags: {_FLAG_NAMES}"),
        _status("seq", "Snapshot counter (+1 per master tick)", "u32"),
        _status("age", "Age of the data at read time (saturates at 6553.4 s)", unit="s", scale=0.1),
        _status("alarms", "Active alarms, any level: bit n = alarm code n", "u32"),
        _status("protections", "Active alarms at protection level: bit n = alarm code n", "u32"),
        *(_status(key, f"Modules {key.removeprefix('modules_')}") for key in _COUNTED),
        *BANK_FIELDS,
    ),
    BANK_SIZE,
)
"""The bank block: Modbus-only status first, then `BANK_FIELDS` in order (append new fields at its end)."""
MODULE_REGISTERS: tuple[Register, ...] = _place(
    (
        Field("address", "address", "Module address (the block's own, present or not)", state_class=None),
        _status("state", f"Life-cycle state: {_LIFECYCLES}"),
        _status("isolate_reason", "Isolate reason (MasterCommand.IsolateReason)"),
        _status("module_state", "The module's own state (ModuleStatus.ModuleState)"),
        _status("warnings", "Module warning bits"),
        _status("protections", "Module protection bits"),
        Field("charge_voltage_limit", "limits.charge_voltage.value", "Charge voltage limit", "V", scale=0.01),
        Field("discharge_voltage_limit", "limits.discharge_voltage.value", "Discharge voltage limit", "V", scale=0.01),
        *MODULE_FIELDS,
    ),
    MODULE_SIZE,
)
"""One module block at `module_base(address)`: module-only values, then `MODULE_FIELDS` in order."""
AGE = next(r for r in BANK_REGISTERS if r.field.key == "age")


def module_base(address: int) -> int:
    """First register of module `address`'s block."""
    return MODULE_BASE + MODULE_SIZE * (address - 1)


def age(snapshot: BankSnapshot, now: float) -> float:
    return max(0.0, now - snapshot.t)


def _bank_payload(s: BankSnapshot, now: float) -> dict[str, Any]:
    payload = bank_dict(s)
    payload["modbus"] = {
        "valid": s.valid,
        "flags": sum(1 << i for i, f in enumerate(BANK_FLAGS) if lookup(payload, f.path)),
        "seq": s.seq % 0xFFFFFFFF,
        "age": age(s, now),
        "alarms": sunspec.alarm_bits(s.alarms),
        "protections": sunspec.alarm_bits(s.alarms, Level.PROTECTION),
        **{key: len(payload[key]) for key in _COUNTED},
    }
    return payload


def _module_payload(view: ModuleView | None, address: int, t: float) -> dict[str, Any]:
    if view is None:
        return {"address": address}
    payload = module_dict(view, t)
    payload["modbus"] = {
        "state": LIFECYCLE_NUMBERS[view.lifecycle],
        "isolate_reason": int(view.isolate_reason),
        "module_state": view.reading.module_state,
        "warnings": view.reading.warnings,
        "protections": view.reading.protections,
    }
    return payload


def plain_image(snapshot: BankSnapshot, now: float) -> tuple[int, ...]:
    """The plain map (registers 0 to PLAIN_SIZE - 1) for a snapshot read at `now`.

    A module address without a module reads "not available" everywhere but its address register.
    """
    regs = [0] * PLAIN_SIZE
    bank = _bank_payload(snapshot, now)
    for r in BANK_REGISTERS:
        regs[r.address : r.address + r.size] = r.encode(bank)
    for a in MODULE_ADDRESSES:
        payload = _module_payload(snapshot.modules.get(a), a, snapshot.t)
        base = module_base(a)
        for r in MODULE_REGISTERS:
            regs[base + r.address : base + r.address + r.size] = r.encode(payload)
    return tuple(regs)


class Image:
    """Every register for one snapshot. Each map is built in one step on its first read (a poller of the plain
    map never pays for SunSpec) and never changes after; only the age register depends on the read time."""

    __slots__ = ("_plain", "_sunspec", "layout", "snapshot")

    def __init__(self, snapshot: BankSnapshot, layout: sunspec.Layout) -> None:
        self.snapshot = snapshot
        self.layout = layout
        self._plain: tuple[int, ...] | None = None
        self._sunspec: tuple[int, ...] | None = None

    @property
    def plain(self) -> tuple[int, ...]:
        if self._plain is None:
            self._plain = plain_image(self.snapshot, self.snapshot.t)
        return self._plain

    @property
    def sunspec(self) -> tuple[int, ...]:
        if self._sunspec is None:
            self._sunspec = sunspec.image(self.layout, self.snapshot)
        return self._sunspec

    def read(self, address: int, count: int, now: float) -> list[int]:
        """Registers [address, address + count), which must lie in one of the two maps."""
        if address >= sunspec.BASE:
            return list(self.sunspec[address - sunspec.BASE : address - sunspec.BASE + count])
        out = list(self.plain[address : address + count])
        if address <= AGE.address < address + count:
            out[AGE.address - address] = AGE.encode_value(age(self.snapshot, now))[0]
        return out


# -- docs ----------------------------------------------------------------------------------------------------

_BEGIN = "<!-- BEGIN GENERATED: python -m gateway.outputs.modbus docs/modbus.md -->"
_END = "<!-- END GENERATED -->"


def _rows(registers: tuple[Register, ...], offset: str) -> list[str]:
    rows = ["| address | key | name | type | scale | unit |", "|---|---|---|---|---:|---|"]
    for r in registers:
        f = r.field
        rows.append(f"| {offset}{r.address} | `{f.key}` | {f.name} | {f.register} | {f.scale:g} | {f.unit or ''} |")
    return rows


def markdown() -> str:
    """The generated part of docs/modbus.md: both register tables, the alarm bits and the default SunSpec layout."""
    layout = sunspec.layout(Config())
    lines = [
        f"### Bank block (registers 0..{BANK_SIZE - 1})",
        "",
        *_rows(BANK_REGISTERS, ""),
        "",
        f"### Module blocks (module *a* = 1..31 at {MODULE_BASE} + {MODULE_SIZE} x (*a* - 1), {MODULE_SIZE} registers)",
        "",
        *_rows(MODULE_REGISTERS, "base + "),
        "",
        "### Alarm bits (`alarms`, `protections`; SunSpec EvtVnd1, EvtVnd2)",
        "",
        *(f"- bit {i}: `{code}`" for i, code in enumerate(CODES)),
        "",
        "### Module warning and protection bits",
        "",
        *(f"- bit {i}: `{name}`" for i, name in enumerate(ALARM_BITS)),
        "",
        "### SunSpec layout for the default config (16 single-module strings of 16 cells)",
        "",
        sunspec.describe(layout).rstrip("\n"),
    ]
    return "\n".join(lines)


def update_docs(text: str) -> str:
    """`text` (docs/modbus.md) with its generated part replaced by the current one."""
    head, begin, rest = text.partition(_BEGIN)
    _, end, tail = rest.partition(_END)
    if not begin or not end:
        raise ValueError(f"docs need the markers {_BEGIN!r} and {_END!r}")
    return f"{head}{_BEGIN}\n{markdown()}\n{_END}{tail}"


# -- the pymodbus adapter ------------------------------------------------------------------------------------


class Screen(NamedTuple):
    """What to do with the bytes a client sent, decided before pymodbus parses them."""

    action: Literal["wait", "close", "reply", "serve"]
    """Wait for more bytes, close the connection, reply with an exception, or let pymodbus serve the frame."""
    size: int = 0
    function_code: int = 0
    exception: int = 0
    transaction: int = 0
    unit: int = 0


def screen(data: bytes, unit_id: int) -> Screen:
    """Check the first Modbus TCP frame in `data` (MBAP header + PDU) against what this server accepts.

    Only read holding/input registers (3, 4) at our unit id get through to pymodbus; framing errors close the
    connection, since nothing after them can be trusted to start a frame.
    """
    if len(data) >= 4 and data[2:4] != b"\0\0":
        return Screen("close")
    if len(data) < 7:
        return Screen("wait")
    length = int.from_bytes(data[4:6], "big")
    if not 2 <= length <= 254:
        return Screen("close")
    size = 6 + length
    if len(data) < size:
        return Screen("wait")
    transaction, unit, function_code = int.from_bytes(data[0:2], "big"), data[6], data[7]
    if function_code & 0x80:
        return Screen("close")
    reply = Screen("reply", size, function_code, 0, transaction, unit)
    if unit != unit_id:
        return reply._replace(exception=ExcCodes.GATEWAY_NO_RESPONSE)
    if function_code not in (3, 4):
        return reply._replace(exception=ExcCodes.ILLEGAL_FUNCTION)
    if length != 6:
        return Screen("close")
    if not 1 <= int.from_bytes(data[10:12], "big") <= MAX_READ:
        return reply._replace(exception=ExcCodes.ILLEGAL_VALUE)
    return Screen("serve", size)


@dataclass(slots=True)
class _Shared:
    """Policy and counters shared by the listener and its connections."""

    unit_id: int
    max_clients: int
    frame_timeout: float
    burst: BurstLog
    clients: set[_Connection] = dataclasses.field(default_factory=set)
    requests: int = 0
    errors: int = 0


class _Connection(ServerRequestHandler):
    """One client: screens its frames, counts them, and closes it on garbage or a request left half-sent."""

    def __init__(self, server: _Listener) -> None:
        super().__init__(server, server.trace_packet, server.trace_pdu, server.trace_connect)
        self.shared = server.shared
        self.max_buffer_size = 0x10000  # pymodbus silently drops a buffer over 264 bytes; we close instead
        self._timer: asyncio.TimerHandle | None = None

    def callback_connected(self) -> None:
        super().callback_connected()
        if len(self.shared.clients) >= self.shared.max_clients:
            self._drop("too many clients")
        else:
            self.shared.clients.add(self)

    def callback_disconnected(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.shared.clients.discard(self)
        super().callback_disconnected(exc)

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        verdict = screen(data, self.shared.unit_id)
        if verdict.action == "close":
            self._drop("malformed frame")
            return len(data)
        used = 0
        if verdict.action != "wait":
            self.shared.requests += 1
            if verdict.action == "reply":
                response = ExceptionResponse(
                    verdict.function_code, verdict.exception, device_id=verdict.unit, transaction=verdict.transaction
                )
                self.server_send(response, addr)
                used = verdict.size
            else:
                used = super().callback_data(data[: verdict.size], addr)
        if len(data) > used:
            if self._timer is None:
                self._timer = self.loop.call_later(self.shared.frame_timeout, self._expired)
        else:
            self._stop_timer()
        return used

    def _expired(self) -> None:
        self._timer = None
        if self.recv_buffer:
            self._drop("incomplete request")

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop(self, why: str) -> None:
        self._stop_timer()
        self.shared.errors += 1
        self.shared.clients.discard(self)
        peer = self.transport.get_extra_info("peername") if self.transport else None
        self.shared.burst(why, peer=str(peer))
        self.close()


class _Listener(ModbusTcpServer):
    """pymodbus's TCP server with our connection class; counts every exception response it sends."""

    def __init__(self, shared: _Shared, device: SimDevice, address: tuple[str, int]) -> None:
        self.shared = shared
        super().__init__(device, address=address, trace_pdu=self._trace)

    def callback_new_connection(self) -> _Connection:
        return _Connection(self)

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending and pdu.isError():
            self.shared.errors += 1
        return pdu


class ModbusServer:
    """Serves the latest snapshot over Modbus TCP (plain map at 0, SunSpec at 40000), read-only.

    Construct it anywhere, run `run()` in the service's TaskGroup; `started()` returns once it listens.
    """

    def __init__(self, hub: SnapshotHub, *, config: Config, clock: Clock, frame_timeout: float = 2.0) -> None:
        """`frame_timeout`: seconds a client may take to complete a request it started before it is dropped."""
        self._hub = hub
        self._clock = clock
        self._host = config.modbus.host
        self._requested_port = config.modbus.port
        self._layout = sunspec.layout(config)
        self._image: Image | None = None
        self._port: int | None = None
        self._listening = asyncio.Event()
        self._shared = _Shared(
            unit_id=config.modbus.unit_id,
            max_clients=config.modbus.max_clients,
            frame_timeout=frame_timeout,
            burst=BurstLog(log, "modbus client dropped"),
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the Modbus server is not listening")
        return self._port

    @property
    def requests(self) -> int:
        """Complete request frames received."""
        return self._shared.requests

    @property
    def errors(self) -> int:
        """Exception responses sent plus connections dropped (garbage, half-sent request, too many clients)."""
        return self._shared.errors

    @property
    def clients(self) -> int:
        return len(self._shared.clients)

    async def started(self) -> None:
        await self._listening.wait()

    async def run(self) -> None:
        """Listen and serve until cancelled, then close the listener and every connection."""
        device = SimDevice(
            id=self._shared.unit_id,
            simdata=[
                SimData(0, count=PLAIN_SIZE, datatype=DataType.REGISTERS, readonly=True),
                SimData(sunspec.BASE, count=self._layout.size, datatype=DataType.REGISTERS, readonly=True),
            ],
            action=self._serve,
        )
        server = _Listener(self._shared, device, (self._host, self._requested_port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            raise GatewayError(f"modbus: cannot listen on {self._host}:{self._requested_port}") from err
        self._port = cast(asyncio.Server, server.transport).sockets[0].getsockname()[1]
        self._listening.set()
        log.info("modbus listening", host=self._host, port=self._port)
        try:
            while True:
                await asyncio.sleep(10.0)
                self._shared.burst.flush()
        finally:
            self._listening.clear()
            self._port = None
            await server.shutdown()
            log.info("modbus stopped")

    async def _serve(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's SimDevice action: fill the requested registers from the current image, in one step."""
        snapshot = self._hub.latest
        if self._image is None or self._image.snapshot is not snapshot:
            self._image = Image(snapshot, self._layout)
        offset = address - start_address
        registers[offset : offset + count] = self._image.read(address, count, self._clock())
        return None


def main(argv: list[str]) -> None:
    """Rewrite the generated part of the docs file given as the only argument."""
    path = Path(argv[0])
    path.write_text(update_docs(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
