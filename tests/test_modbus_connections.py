"""The Modbus TCP server's connection rules on loopback: pipelined requests."""

from __future__ import annotations

import asyncio
import struct

import pytest
from factories import master, run
from test_modbus import Clock, readings, request, serving

from gateway.hub import SnapshotHub
from gateway.master.model import BankSnapshot
from gateway.outputs.modbus import MAX_READ, PLAIN_SIZE, plain_image

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def snapshot() -> BankSnapshot:
    return run(master(), 0.0, 6.5, readings).snapshot


def reply(tid: int, address: int, count: int, image: tuple[int, ...]) -> bytes:
    """The frame a read of the plain map must get, packed here from the spec, not by the server's code."""
    if not 1 <= count <= MAX_READ:
        return struct.pack(">HHHBBB", tid, 0, 3, 1, 0x83, 3)
    return struct.pack(f">HHHBBB{count}H", tid, 0, 3 + 2 * count, 1, 3, 2 * count, *image[address : address + count])


async def connect(port: int) -> Connection:
    return await asyncio.open_connection("127.0.0.1", port)


async def served(connection: Connection, tid: int = 1) -> bool:
    """Whether the server answers a one-register read on this connection (False: it closed the connection)."""
    reader, writer = connection
    writer.write(request(3, 0, 1, tid=tid))
    try:
        return await asyncio.wait_for(reader.readexactly(11), 5) == bytes.fromhex(f"{tid:04x} 0000 0005 01 03 02 0001")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False


# -- pipelining ---------------------------------------------------------------------------------------------------


async def pipelined(snapshot: BankSnapshot, reads: list[tuple[int, int, int]]) -> None:
    """Send every (tid, address, count) read in one write; each must come back once, in order, with its tid."""
    image = plain_image(snapshot, snapshot.t)
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t)) as server:
        reader, writer = connection = await connect(server.port)
        writer.write(b"".join(request(3, address, count, tid=tid) for tid, address, count in reads))
        for tid, address, count in reads:
            expected = reply(tid, address, count, image)
            got = await asyncio.wait_for(reader.readexactly(len(expected)), 5)
            assert got == expected, (tid, address, count)
        # The next reply is for the next request: nothing was answered twice.
        assert await served(connection, tid=0xABCD)
        writer.close()
        assert server.requests == len(reads) + 1


async def test_two_requests_in_one_write_are_both_answered_in_order(snapshot: BankSnapshot) -> None:
    await pipelined(snapshot, [(1, 0, 10), (2, 14, 2)])


async def test_ten_requests_in_one_write_are_each_answered_once_in_order(snapshot: BankSnapshot) -> None:
    addresses = (0, 14, 100, 132, 700, 5, 1000, 20, PLAIN_SIZE - 125, 164)
    counts = (125, 1, 32, 64, 7, 126, 92, 3, 125, 2)  # 126: an exception answered in its turn
    tids = (0xFFFF, 0, 77, 3, 1024, 9, 12, 0x8000, 5, 6)
    await pipelined(snapshot, list(zip(tids, addresses, counts, strict=True)))
