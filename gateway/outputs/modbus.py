"""Modbus TCP: the master's view as a read-only register image, served on connections this module owns.

Three parts. The register image is pure: `plain_image(snapshot, now)` lays out the plain map from the table of
descriptions in `gateway.outputs.fields` (through the JSON payload, so Modbus can never disagree with MQTT) and
`gateway.outputs.sunspec` adds the SunSpec models at 40000. The protocol is pure too: `parse` finds request
frames in a byte buffer and `answer` turns one into its reply frame. The edge (`_Connection`, `ModbusServer`)
only moves bytes: it swaps in a new `Image` when the snapshot changes and builds each map once, on its first
read (no client, no work on the loop the CAN side shares); every request is answered from one image in one step,
so it never mixes two snapshots.

Why not pymodbus's server: pymodbus 3.16 drops or repeats pipelined requests (it clears its receive buffer when
it sends and keeps one request in flight), lets idle connections hold every slot and buffers replies to a client
that never reads without limit. A server must answer every request once, in order, in bounded memory, so this
module owns the connections; the two reply PDUs it sends (registers, exception) are packed here, and pymodbus
stays the test client that checks them.

Unit ids: requests to any unit id other than `modbus.unit_id` get exception 0x0B (gateway target device failed
to respond), so a misconfigured poller learns at once instead of timing out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from gateway.can.addressing import MAX_MODULES
from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.hub import SnapshotHub
from gateway.logs import BurstLog, get
from gateway.master.model import ALARM_BITS, BankSnapshot, Energy, Level, Lifecycle, ModuleView
from gateway.outputs import generated, sunspec
from gateway.outputs.alarm_table import MODBUS_BIT, SUNSPEC_EVT1, SUNSPEC_STRING_EVT1, Evt1
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, Field, RegisterType
from gateway.payload import bank_dict, lookup, module_dict, module_energy

log = get("gateway.modbus")

BANK_SIZE = 100
"""Registers 0..99 hold the bank; unused ones read 0 and are reserved for new fields."""
MODULE_BASE = BANK_SIZE
MODULE_SIZE = 32
"""Registers per module block; unused ones read 0 and are reserved."""
MODULE_ADDRESSES = range(1, MAX_MODULES + 1)
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


def _module_payload(view: ModuleView | None, address: int, t: float, energy: Energy | None) -> dict[str, Any]:
    if view is None:
        return {"address": address}
    payload = module_dict(view, t, energy)
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
        payload = _module_payload(snapshot.modules.get(a), a, snapshot.t, module_energy(snapshot, a))
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

    def holds(self, address: int, count: int) -> bool:
        """Whether registers [address, address + count) lie in one of the two maps."""
        end = address + count
        return end <= PLAIN_SIZE or (address >= sunspec.BASE and end <= sunspec.BASE + self.layout.size)

    def read(self, address: int, count: int, now: float) -> list[int]:
        """Registers [address, address + count), which must lie in one of the two maps (`holds`)."""
        if address >= sunspec.BASE:
            return list(self.sunspec[address - sunspec.BASE : address - sunspec.BASE + count])
        out = list(self.plain[address : address + count])
        if address <= AGE.address < address + count:
            out[AGE.address - address] = AGE.encode_value(age(self.snapshot, now))[0]
        return out


# -- docs ----------------------------------------------------------------------------------------------------

DOCS_COMMAND = "python -m gateway.outputs.modbus docs/modbus.md"
"""The generated part of docs/modbus.md and README.md (the same part in both)."""


def _rows(registers: tuple[Register, ...], offset: str) -> list[str]:
    rows = ["| address | key | name | type | scale | unit |", "|---|---|---|---|---:|---|"]
    for r in registers:
        f = r.field
        rows.append(f"| {offset}{r.address} | `{f.key}` | {f.name} | {f.register} | {f.scale:g} | {f.unit or ''} |")
    return rows


def _evt1(bit: Evt1) -> str:
    return f"{int(bit)} `{bit.name}`"


def _alarm_rows() -> list[str]:
    """Each code's bit, and the SunSpec Evt1 bit it sets at each level (where 803/804 differ from 802, both)."""
    rows = [
        "Bit n of `alarms` is set while alarm code n is active, of `protections` while it is at protection level.",
        "SunSpec `Evt1` (802; 803 `StrEvt1` and 804 `Evt1` per string) sets the bit of each active alarm's level.",
        "",
        "| bit | code | Evt1 at protection | Evt1 at warning |",
        "|---:|---|---|---|",
    ]
    for code, bit in sorted(MODBUS_BIT.items(), key=lambda item: item[1]):
        cells = []
        for bank, string in zip(SUNSPEC_EVT1[code], SUNSPEC_STRING_EVT1[code], strict=True):
            cells.append(_evt1(bank) if bank is string else f"{_evt1(bank)} (803/804: {_evt1(string)})")
        rows.append(f"| {bit} | `{code}` | {cells[0]} | {cells[1]} |")
    return rows


def markdown() -> str:
    """The generated part of docs/modbus.md: both register tables, the alarm bits and the default SunSpec layout."""
    layout = sunspec.layout(Config())
    lines = [
        f"### Bank block (registers 0..{BANK_SIZE - 1})",
        "",
        *_rows(BANK_REGISTERS, ""),
        "",
        f"### Module blocks (module *a* = 1..{MAX_MODULES} at {MODULE_BASE} + {MODULE_SIZE} x (*a* - 1), "
        f"{MODULE_SIZE} registers)",
        "",
        *_rows(MODULE_REGISTERS, "base + "),
        "",
        "### Alarm bits (`alarms`, `protections`; SunSpec EvtVnd1, EvtVnd2)",
        "",
        *_alarm_rows(),
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
    return generated.splice(text, DOCS_COMMAND, markdown())


# -- the protocol: pure ---------------------------------------------------------------------------------------


class ExceptionCode(IntEnum):
    """The Modbus exception codes this server answers with (application protocol, section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_ADDRESS = 0x02
    ILLEGAL_VALUE = 0x03
    GATEWAY_NO_RESPONSE = 0x0B
    """Gateway target device failed to respond: the request named another unit id."""


_READS = (3, 4)
"""Read holding registers and read input registers: both read the same image."""


class Request(NamedTuple):
    """One complete request frame, as `parse` found it in a buffer."""

    transaction: int
    unit: int
    function: int
    data: bytes
    """The PDU after its function code."""
    end: int
    """Offset just past the frame in the buffer it was parsed from: where the next frame starts."""


Wait = Literal["wait"]
Broken = Literal["broken"]


def parse(buffer: bytes, start: int = 0) -> Request | Wait | Broken:
    """The Modbus TCP request frame (MBAP header + PDU) that starts at `buffer[start]`. Never raises.

    "wait" while the frame is incomplete; "broken" when it cannot be a request (protocol id not 0, a length out of
    2..254, a response's function code, a read PDU of the wrong size): nothing after it can be trusted to start a
    frame, so the connection is closed.
    """
    head = buffer[start : start + 8]
    if len(head) >= 4 and head[2:4] != b"\0\0":
        return "broken"
    if len(head) < 7:
        return "wait"
    length = int.from_bytes(head[4:6], "big")
    if not 2 <= length <= 254:
        return "broken"
    end = start + 6 + length
    if len(buffer) < end:
        return "wait"
    function = head[7]
    if function & 0x80 or (function in _READS and length != 6):
        return "broken"
    return Request(int.from_bytes(head[0:2], "big"), head[6], function, buffer[start + 8 : end], end)


def answer(request: Request, image: Image, now: float, unit_id: int) -> bytes:
    """The reply frame to `request`: the registers it reads from `image` at `now`, or a Modbus exception."""
    if request.unit != unit_id:
        return _refusal(request, ExceptionCode.GATEWAY_NO_RESPONSE)
    if request.function not in _READS:
        return _refusal(request, ExceptionCode.ILLEGAL_FUNCTION)
    address, count = struct.unpack(">HH", request.data)
    if not 1 <= count <= MAX_READ:
        return _refusal(request, ExceptionCode.ILLEGAL_VALUE)
    if not image.holds(address, count):
        return _refusal(request, ExceptionCode.ILLEGAL_ADDRESS)
    registers = image.read(address, count, now)
    size = 2 * count
    return struct.pack(
        f">HHHBBB{count}H", request.transaction, 0, size + 3, request.unit, request.function, size, *registers
    )


def is_exception(reply: bytes) -> bool:
    """Whether a frame from `answer` is an exception response (its function code has the high bit set)."""
    return bool(reply[7] & 0x80)


def _refusal(request: Request, code: ExceptionCode) -> bytes:
    return struct.pack(">HHHBBB", request.transaction, 0, 3, request.unit, request.function | 0x80, code)


# -- the connection edge: moves bytes ----------------------------------------------------------------------------

OUTPUT_LIMIT = 64 * 1024
"""Bytes of unread replies a connection may hold; over it the server stops reading that client's requests."""
TURN = 64
"""Requests of one connection answered in one go; then the loop (and the CAN side on it) gets a turn."""


@dataclass(slots=True)
class _Edge:
    """What the listener's connections share: the reply function, the policy, the connection table, the counters."""

    reply: Callable[[Request], bytes]
    max_clients: int
    idle_timeout: float
    frame_timeout: float
    burst: BurstLog
    clients: set[_Connection] = dataclasses.field(default_factory=set)
    requests: int = 0
    errors: int = 0

    def admit(self, connection: _Connection) -> None:
        """Take `connection` into the table; when it is full, the connection idle the longest makes room."""
        if len(self.clients) >= self.max_clients:
            min(self.clients, key=lambda c: c.active).drop("evicted")
        self.clients.add(connection)


class _Connection(asyncio.Protocol):
    """One client: answers its requests in the order they arrive, each exactly once, and holds a bounded backlog.

    Requests are answered `TURN` at a time while the transport's output is under `OUTPUT_LIMIT`. Reading stops
    while answered requests wait (so the input holds at most one read) and while the output is full (the rest
    waits in the kernel, at the client's cost, until the client reads). A client that makes no progress, sending
    nothing and reading nothing, for `idle_timeout` is closed.
    """

    def __init__(self, edge: _Edge) -> None:
        self._edge = edge
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._input = b""
        self._used = 0
        """Bytes of `_input` already answered."""
        self._writing = True
        """False while the output is over its limit."""
        self._scheduled = False
        """A `_serve` is due on the loop."""
        self._idle: asyncio.TimerHandle | None = None
        self._frame: asyncio.TimerHandle | None = None
        self.active = self._loop.time()
        """Loop time of the client's last progress: bytes received or replies drained."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=OUTPUT_LIMIT)
        self._edge.admit(self)
        self._idle = self._loop.call_at(self.active + self._edge.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        self._edge.clients.discard(self)

    def data_received(self, data: bytes) -> None:
        self.active = self._loop.time()
        self._input = self._input[self._used :] + data
        self._used = 0
        self._serve()

    def pause_writing(self) -> None:
        self._writing = False
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing = True
        self.active = self._loop.time()
        # Not from here: the transport calls this while flushing, and closing it there runs connection_lost twice.
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._serve)

    def _serve(self) -> None:
        """Answer up to `TURN` complete requests, in order, while the output has room; read more once none wait."""
        self._scheduled = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        served = 0
        found: Request | Wait | Broken = "wait"
        while self._writing and served < TURN:
            found = parse(self._input, self._used)
            if found == "broken":
                self.drop("malformed frame")
                return
            if found == "wait":
                break
            reply = self._edge.reply(found)
            self._edge.requests += 1
            if is_exception(reply):
                self._edge.errors += 1
            transport.write(reply)
            self._used = found.end
            served += 1
        if self._writing and served == TURN:
            transport.pause_reading()  # the rest of this read first, after the loop's other work
            self._schedule()
        elif self._writing:
            transport.resume_reading()  # paused by a full output or a used-up turn, until now
        if found == "wait" and self._used < len(self._input):
            if served or self._frame is None:
                self._stop_frame_timer()
                self._frame = self._loop.call_later(self._edge.frame_timeout, self.drop, "incomplete request")
        else:
            self._stop_frame_timer()
        if self._used == len(self._input):
            self._input, self._used = b"", 0

    def _check_idle(self) -> None:
        due = self.active + self._edge.idle_timeout
        if self._loop.time() < due:
            self._idle = self._loop.call_at(due, self._check_idle)
        else:
            self._idle = None
            self.drop("idle" if self._writing else "not reading")

    def drop(self, why: str) -> None:
        """Close the connection because of the client, count it and log it (once per burst).

        `why`: "malformed frame", "incomplete request", "idle", "not reading" or "evicted".
        """
        if self._transport is None or self._transport.is_closing():
            return
        self._edge.errors += 1
        self._edge.burst(why, peer=str(self._transport.get_extra_info("peername")))
        self.close()

    def close(self) -> None:
        """Close at once: replies still queued are dropped, so a client that does not read cannot hold it open."""
        self._stop_timers()
        self._edge.clients.discard(self)
        if self._transport is None:
            return
        if self._transport.get_write_buffer_size():
            self._transport.abort()
        else:
            self._transport.close()

    def _stop_frame_timer(self) -> None:
        if self._frame is not None:
            self._frame.cancel()
            self._frame = None

    def _stop_timers(self) -> None:
        self._stop_frame_timer()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None


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
        self._unit_id = config.modbus.unit_id
        self._layout = sunspec.layout(config)
        self._image: Image | None = None
        self._port: int | None = None
        self._listening = asyncio.Event()
        self._edge = _Edge(
            reply=self._reply,
            max_clients=config.modbus.max_clients,
            idle_timeout=config.modbus.idle_timeout,
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
        return self._edge.requests

    @property
    def errors(self) -> int:
        """Exception responses sent plus connections the server closed (see `_Connection.drop` for the causes)."""
        return self._edge.errors

    @property
    def clients(self) -> int:
        return len(self._edge.clients)

    async def started(self) -> None:
        await self._listening.wait()

    async def run(self) -> None:
        """Listen and serve until cancelled, then close the listener and every connection."""
        loop = asyncio.get_running_loop()
        try:
            listener = await loop.create_server(lambda: _Connection(self._edge), self._host, self._requested_port)
        except OSError as err:
            raise GatewayError(f"modbus: cannot listen on {self._host}:{self._requested_port}") from err
        self._port = listener.sockets[0].getsockname()[1]
        self._listening.set()
        log.info("modbus listening", host=self._host, port=self._port)
        try:
            while True:
                await asyncio.sleep(10.0)
                self._edge.burst.flush()
        finally:
            self._listening.clear()
            self._port = None
            listener.close()
            for connection in list(self._edge.clients):
                connection.close()
            await listener.wait_closed()
            log.info("modbus stopped")

    def _reply(self, request: Request) -> bytes:
        """Answer from the current snapshot's image, in one step: a request never mixes two snapshots."""
        snapshot = self._hub.latest
        if self._image is None or self._image.snapshot is not snapshot:
            self._image = Image(snapshot, self._layout)
        return answer(request, self._image, self._clock(), self._unit_id)


def main(argv: list[str]) -> None:
    """Rewrite the generated part of the docs file given as the only argument."""
    generated.rewrite(Path(argv[0]), DOCS_COMMAND, markdown())


if __name__ == "__main__":
    main(sys.argv[1:])
