"""The Modbus TCP server against real pymodbus clients on loopback: the plain map, the protocol rules, the adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pymodbus
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse

from gateway import config
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.hub import SnapshotHub
from gateway.master.model import AlarmCode, BankSnapshot, empty_snapshot
from gateway.outputs import modbus, sunspec
from gateway.outputs.alarm_table import MODBUS_BIT
from gateway.outputs.fields import BANK_FIELDS, MODULE_FIELDS
from gateway.outputs.modbus import (
    BANK_REGISTERS,
    MODULE_REGISTERS,
    PLAIN_SIZE,
    ExceptionCode,
    ModbusServer,
    Request,
    answer,
    module_base,
    parse,
)
from gateway.payload import bank_dict, lookup, module_dict

from helpers.factories import master, run
from helpers.modbus import Clock, client, readings, request, serving

DOCS = Path(__file__).parent.parent / "docs" / "modbus.md"


@pytest.fixture(scope="module")
def snapshot() -> BankSnapshot:
    return run(master(), 0.0, 6.5, readings).snapshot


async def read_all(c: AsyncModbusTcpClient, start: int, count: int, function: int = 3) -> list[int]:
    read = c.read_holding_registers if function == 3 else c.read_input_registers
    out: list[int] = []
    for address in range(start, start + count, 125):
        response = await read(address, count=min(125, start + count - address))
        assert not response.isError(), response
        out += response.registers
    return out


async def raw(port: int, data: bytes) -> bytes:
    """Send bytes on a fresh connection; what comes back before the server answers or closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(300), 2)
    finally:
        writer.close()


def decode(registers: list[int], kind: str) -> int | None:
    """A register value as an integer; None for the "not available" value of its type."""
    raw_value = registers[0] if len(registers) == 1 else registers[0] << 16 | registers[1]
    bits = 16 * len(registers)
    signed = kind.startswith("s")
    if raw_value == (1 << (bits - 1) if signed else (1 << bits) - 1):
        return None
    return raw_value - (1 << bits) if signed and raw_value >= 1 << (bits - 1) else raw_value


def value_at(image: list[int], base: int, register: modbus.Register) -> int | None:
    start = base + register.address
    return decode(image[start : start + register.size], register.field.register)


def assert_fields(
    image: list[int], base: int, payload: Mapping[str, Any], registers: tuple[modbus.Register, ...]
) -> None:
    for r in registers:
        expected = lookup(dict(payload), r.field.path)
        got = value_at(image, base, r)
        if expected is None:
            assert got is None, r.field.key
        else:
            assert got is not None, r.field.key
            assert got * r.field.scale == pytest.approx(float(expected), abs=r.field.scale / 2 + 1e-9), r.field.key


def register(key: str, registers: tuple[modbus.Register, ...] = BANK_REGISTERS) -> modbus.Register:
    return next(r for r in registers if r.field.key == key)


# -- the plain map ---------------------------------------------------------------------------------------------


async def test_every_plain_map_value_reads_back_as_the_payload(snapshot: BankSnapshot) -> None:
    clock = Clock(snapshot.t + 1.25)
    async with serving(SnapshotHub(snapshot), clock) as server, client(server.port) as c:
        image = await read_all(c, 0, PLAIN_SIZE)
        assert await read_all(c, 0, PLAIN_SIZE, function=4) == image

    bank = bank_dict(snapshot)
    fields = tuple(r for r in BANK_REGISTERS if r.field in BANK_FIELDS)
    assert len(fields) == len(BANK_FIELDS)
    assert_fields(image, 0, bank, fields)
    status = {r.field.key: value_at(image, 0, r) for r in BANK_REGISTERS if r.field not in BANK_FIELDS}
    assert status == {
        "valid": 1,
        "flags": 0b10011,  # charge enabled, discharge enabled, data valid
        "seq": snapshot.seq,
        "age": 12,  # 1.25 s, in 0.1 s
        "alarms": sum(
            1 << MODBUS_BIT[c]
            for c in (AlarmCode.CELL_OVER_VOLTAGE, AlarmCode.MODULE_MISMATCH, AlarmCode.MODULE_COMM_LOST)
        ),
        "protections": 0,
        "modules_online": 3,
        "modules_pending": 0,
        "modules_isolated": 0,
        "modules_offline": 1,
        "modules_rejected": 1,
    }
    # A few addresses by hand, so a shifted table cannot pass by being read through itself.
    assert image[14] == 5300  # voltage, 0.01 V
    assert image[22] == round(snapshot.limits.charge_current.value * 10)
    assert image[module_base(2) + 8] == 5320  # module 2 voltage

    for a in modbus.MODULE_ADDRESSES:
        base = module_base(a)
        view = snapshot.modules.get(a)
        assert image[base] == a
        if view is None:
            assert all(value_at(image, base, r) is None for r in MODULE_REGISTERS[1:]), a
            continue
        payload = module_dict(view, snapshot.t)
        assert_fields(image, base, payload, tuple(r for r in MODULE_REGISTERS if r.field in MODULE_FIELDS))
        assert_fields(image, base, payload, (register("charge_voltage_limit", MODULE_REGISTERS),))
    state = register("state", MODULE_REGISTERS)
    assert [value_at(image, module_base(a), state) for a in (1, 2, 4, 5, 6)] == [1, 1, 1, 4, 5]
    assert value_at(image, module_base(2), register("warnings", MODULE_REGISTERS)) == 1
    assert value_at(image, module_base(4), register("module_state", MODULE_REGISTERS)) == 2
    assert value_at(image, module_base(6), register("isolate_reason", MODULE_REGISTERS)) == 2  # mismatch


async def test_age_counts_at_read_time_and_each_snapshot_replaces_the_image(snapshot: BankSnapshot) -> None:
    clock = Clock(snapshot.t)
    hub = SnapshotHub(snapshot)
    async with serving(hub, clock) as server, client(server.port) as c:
        assert (await c.read_holding_registers(0, count=5)).registers[2:5] == [0, snapshot.seq, 0]
        clock.now += 3.0
        assert (await c.read_holding_registers(4, count=1)).registers == [30]
        newer = dataclasses.replace(snapshot, seq=snapshot.seq + 1, t=clock.now, voltage=54.0)
        hub.publish(newer)
        regs = (await c.read_holding_registers(0, count=15)).registers
        assert (regs[2:5], regs[14]) == ([0, newer.seq, 0], 5400)


async def test_one_request_never_mixes_two_snapshots(snapshot: BankSnapshot) -> None:
    others = [dataclasses.replace(snapshot, seq=snapshot.seq + i, voltage=50.0 + i) for i in range(1, 4)]
    hub = SnapshotHub(snapshot)
    stop = asyncio.Event()

    async def churn() -> None:
        i = 0
        while not stop.is_set():
            hub.publish(others[i % len(others)])
            i += 1
            await asyncio.sleep(0)

    async with serving(hub, Clock(snapshot.t)) as server, client(server.port) as c:
        task = asyncio.create_task(churn())
        seen = set()
        for _ in range(60):
            regs = (await c.read_holding_registers(0, count=125)).registers
            seq = regs[3]
            seen.add(seq)
            assert regs[14] == round((50.0 + seq - snapshot.seq) * 100)
        stop.set()
        await task
    assert len(seen) > 1


async def test_invalid_snapshot_reads_zero_limits_and_says_so() -> None:
    m = master()
    starting = m.step(0.0, readings(0.0)).snapshot
    assert not starting.valid
    async with serving(SnapshotHub(starting), Clock(0.5)) as server, client(server.port) as c:
        regs = await read_all(c, 0, modbus.BANK_SIZE)
    assert regs[0] == 0  # valid
    assert regs[1] & 0b10000 == 0
    assert regs[4] == 5  # age 0.5 s
    assert regs[22:24] == [0, 0]  # current limits

    async with serving(SnapshotHub(empty_snapshot(0.0)), Clock(0.0)) as server, client(server.port) as c:
        regs = await read_all(c, 0, modbus.BANK_SIZE)
    assert regs[14:16] == [0xFFFF, 0x8000]  # voltage u16, current s16: not available
    assert regs[16:18] == [0x8000, 0]  # power s32


# -- protocol rules ----------------------------------------------------------------------------------------------


async def test_writes_of_every_kind_are_refused_and_change_nothing(snapshot: BankSnapshot) -> None:
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t)) as server, client(server.port) as c:
        before = await read_all(c, 0, PLAIN_SIZE)
        responses = [
            await c.write_register(22, 0),
            await c.write_registers(22, [0, 0]),
            await c.write_coil(0, True),
            await c.write_coils(0, [True, False]),
            await c.mask_write_register(address=22, and_mask=0, or_mask=0),
            await c.readwrite_registers(read_address=22, read_count=1, write_address=22, values=[0]),
        ]
        assert [(r.function_code, r.exception_code) for r in responses] == [
            (0x86, ExcCodes.ILLEGAL_FUNCTION),
            (0x90, ExcCodes.ILLEGAL_FUNCTION),
            (0x85, ExcCodes.ILLEGAL_FUNCTION),
            (0x8F, ExcCodes.ILLEGAL_FUNCTION),
            (0x96, ExcCodes.ILLEGAL_FUNCTION),
            (0x97, ExcCodes.ILLEGAL_FUNCTION),
        ]
        assert await read_all(c, 0, PLAIN_SIZE) == before
        assert server.errors == 6


async def test_bad_reads_get_the_documented_exceptions(snapshot: BankSnapshot) -> None:
    cfg = config.parse({"modbus": {"port": 0}})
    end = sunspec.BASE + sunspec.layout(cfg).size
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t), cfg) as server, client(server.port) as c:
        for address, count in ((PLAIN_SIZE, 1), (PLAIN_SIZE - 2, 5), (5000, 1), (sunspec.BASE - 1, 2), (end, 1)):
            r = await c.read_holding_registers(address, count=count)
            assert (r.function_code, r.exception_code) == (0x83, ExcCodes.ILLEGAL_ADDRESS), address
        assert (await c.read_holding_registers(end - 2, count=2)).registers == [0xFFFF, 0]
        r = await c.read_coils(0, count=1)
        assert (r.function_code, r.exception_code) == (0x81, ExcCodes.ILLEGAL_FUNCTION)
        r = await c.read_holding_registers(0, count=1, device_id=2)
        assert (r.function_code, r.exception_code, r.dev_id) == (0x83, ExcCodes.GATEWAY_NO_RESPONSE, 2)
        assert await raw(server.port, request(3, 0, 126)) == bytes.fromhex("0007 0000 0003 01 83 03")
        assert await raw(server.port, request(4, 0, 0)) == bytes.fromhex("0007 0000 0003 01 84 03")
        assert await raw(server.port, request(0x41, 0, 1)) == bytes.fromhex("0007 0000 0003 01 C1 01")
        assert (await raw(server.port, request(3, 0, 125))).startswith(bytes.fromhex("0007 0000 00FD 01 03 FA"))


async def test_garbage_or_half_a_request_closes_only_that_connection(snapshot: BankSnapshot) -> None:
    hub = SnapshotHub(snapshot)
    async with serving(hub, Clock(snapshot.t), frame_timeout=0.2) as server, client(server.port) as c:
        assert not (await c.read_holding_registers(0, count=10)).isError()
        assert await raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""  # closed
        assert await raw(server.port, request(3, 0, 10)[:9]) == b""  # closed after frame_timeout
        assert await raw(server.port, request(3, 0, 10)[:6] + b"\x00\x03\x01\x03") == b""  # PDU of the wrong size
        assert await raw(server.port, b"\x00" * 600) == b""  # zero length field
        assert not (await c.read_holding_registers(0, count=10)).isError()
        assert server.clients == 1
        assert server.errors == 4


async def test_stops_cleanly_and_frees_the_port(snapshot: BankSnapshot) -> None:
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t)) as server, client(server.port) as c:
        port = server.port
        assert not (await c.read_holding_registers(0, count=1)).isError()
    with pytest.raises(RuntimeError):
        _ = server.port
    cfg = config.parse({"modbus": {"port": port}})
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t), cfg) as again:
        assert again.port == port


async def test_a_port_in_use_is_a_gateway_error(snapshot: BankSnapshot) -> None:
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t)) as server:
        taken = ModbusServer(
            SnapshotHub(snapshot), config=config.parse({"modbus": {"port": server.port}}), clock=Clock(0)
        )
        with pytest.raises(GatewayError, match="cannot listen"):
            await taken.run()


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"", "wait"),
        (request(3, 0, 1)[:6], "wait"),
        (request(3, 0, 1)[:11], "wait"),
        (b"\x00\x01\x00\x01", "broken"),  # protocol id 1
        (b"\x00\x01\x00\x00\x00\x01\x01", "broken"),  # length 1
        (b"\x00\x01\x00\x00\x01\x00\x01", "broken"),  # length 256
        (request(0x83, 0, 1), "broken"),  # a response code in a request
        (request(3, 0, 1)[:5] + b"\x07\x01\x03\x00\x00\x00\x01\x00", "broken"),  # a read PDU of 6 bytes
        (request(3, 0, 1), "request"),
        (request(4, 100, 125), "request"),
        (request(3, 0, 126), "request"),  # answered with an exception
        (request(3, 0, 1, unit=0), "request"),
        (request(16, 0, 1), "request"),
    ],
)
def test_parse(data: bytes, found: str) -> None:
    result = parse(data)
    assert (result if isinstance(result, str) else "request") == found


def test_parse_names_the_frame_and_where_the_next_one_starts() -> None:
    data = request(6, 0, 1, unit=9, tid=513) + request(3, 2, 3, tid=514)[:5]
    first = parse(data)
    assert first == Request(513, 9, 6, bytes.fromhex("0000 0001"), 12)
    assert parse(data, first.end) == "wait"
    assert parse(data + request(3, 2, 3, tid=514)[5:], first.end) == Request(514, 1, 3, bytes.fromhex("0002 0003"), 24)


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        (request(3, 0, 1, unit=9), "0007 0000 0003 09 83 0B"),
        (request(6, 0, 1), "0007 0000 0003 01 86 01"),
        (request(0x2B, 0, 1), "0007 0000 0003 01 AB 01"),
        (request(3, 0, 126), "0007 0000 0003 01 83 03"),
        (request(4, 0, 0), "0007 0000 0003 01 84 03"),
        (request(3, PLAIN_SIZE - 1, 2), "0007 0000 0003 01 83 02"),
        (request(3, sunspec.BASE - 1, 2), "0007 0000 0003 01 83 02"),
        (request(4, 13, 2, tid=0xBEEF), "BEEF 0000 0007 01 04 04 0001 14B4"),  # modules_rejected, voltage
    ],
    ids=["unit", "write", "other function", "count 126", "count 0", "past plain", "before sunspec", "read"],
)
def test_answer(snapshot: BankSnapshot, frame: bytes, reply: str) -> None:
    request_ = parse(frame)
    assert isinstance(request_, Request)
    image = modbus.Image(snapshot, sunspec.layout(Config()))
    assert answer(request_, image, snapshot.t, unit_id=1) == bytes.fromhex(reply)


def requests_in(data: bytes, start: int = 0) -> tuple[list[Request], int, str]:
    """Every request `parse` finds from `start` on, where it stopped and why: the loop the adapter runs."""
    found: list[Request] = []
    while not isinstance(result := parse(data, start), str):
        assert start < result.end <= len(data)
        found.append(result)
        start = result.end
    return found, start, result


@given(st.binary(max_size=600), st.integers(0, 600))
def test_parse_never_raises_on_any_bytes(data: bytes, start: int) -> None:
    requests_in(data, start)


frames = st.builds(
    lambda tid, unit, function, data: (tid, unit, function, data),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(1, 0x7F),
    st.binary(max_size=252),
).filter(lambda f: f[2] not in (3, 4) or len(f[3]) == 4)


@given(st.lists(frames, max_size=12), st.data())
def test_frames_cut_anywhere_come_out_whole_and_in_order(
    sent: list[tuple[int, int, int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(
        tid.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 2).to_bytes(2, "big") + bytes([unit, function]) + pdu
        for tid, unit, function, pdu in sent
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    buffer, received = b"", []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buffer += stream[a:b]
        found, used, why = requests_in(buffer)
        assert why == "wait"
        received += [r[:4] for r in found]
        buffer = buffer[used:]
    assert received == sent
    assert buffer == b""


@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40)))
def test_encode_never_overflows_and_only_missing_reads_missing(value: float | None) -> None:
    for size, signed in ((1, False), (1, True), (2, False), (2, True)):
        registers = sunspec.encode(value, size, signed)
        assert len(registers) == size
        assert all(0 <= r <= 0xFFFF for r in registers)
        missing = value is None or not math.isfinite(value)
        kind = ("s" if signed else "u") + str(16 * size)
        assert (decode(list(registers), kind) is None) == missing


@pytest.mark.parametrize("doc", [DOCS, DOCS.parent.parent / "README.md"], ids=["docs", "readme"])
def test_docs_are_up_to_date(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert modbus.update_docs(text) == text, f"run: python -m gateway.outputs.modbus {doc.name}"


def test_pure_image_equals_what_the_adapter_serves(snapshot: BankSnapshot) -> None:
    layout = sunspec.layout(Config())
    image = modbus.Image(snapshot, layout)
    now = snapshot.t + 7.0
    assert image.read(0, PLAIN_SIZE, now) == list(modbus.plain_image(snapshot, now))
    assert image.read(sunspec.BASE, layout.size, now) == list(sunspec.image(layout, snapshot))


# -- the contract with pymodbus, the test client ---------------------------------------------------------------


def test_pymodbus_is_the_version_these_tests_rely_on() -> None:
    assert pymodbus.__version__.startswith("3.16.")
    assert list(map(int, ExceptionCode)) == [ExcCodes.ILLEGAL_FUNCTION, 2, 3, ExcCodes.GATEWAY_NO_RESPONSE]


@given(
    tid=st.integers(0, 0xFFFF),
    function=st.sampled_from([3, 4]),
    address=st.integers(0, PLAIN_SIZE - 1),
    count=st.integers(0, 130),
    unit=st.sampled_from([1, 1, 1, 247]),
)
def test_pymodbus_decodes_every_reply_as_what_we_meant(
    snapshot: BankSnapshot, tid: int, function: int, address: int, count: int, unit: int
) -> None:
    """Our packed reply frames, read back by pymodbus's own client-side framer and decoder."""
    image = modbus.Image(snapshot, sunspec.layout(Config()))
    request_ = parse(request(function, address, count, unit=unit, tid=tid))
    assert isinstance(request_, Request)
    reply = answer(request_, image, snapshot.t, unit_id=1)
    used, pdu = FramerSocket(DecodePDU(False)).handleFrame(reply, 0, 0)
    assert used == len(reply)
    assert pdu is not None
    assert (pdu.transaction_id, pdu.dev_id) == (tid, unit)
    if modbus.is_exception(reply):
        assert isinstance(pdu, ExceptionResponse)
        assert pdu.function_code == function | 0x80
        assert pdu.exception_code in set(ExceptionCode)
    else:
        assert pdu.function_code == function
        assert list(pdu.registers) == image.read(address, count, snapshot.t)
