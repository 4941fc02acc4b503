"""The Modbus TCP server's connection rules on loopback: pipelined requests, idle clients, clients that never read."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from gateway import config
from gateway.hub import SnapshotHub
from gateway.master.model import BankSnapshot
from gateway.outputs.modbus import MAX_READ, PLAIN_SIZE, plain_image

from helpers.factories import master, run
from helpers.modbus import Clock, client, readings, request, serving

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


async def closed_by_server(connection: Connection) -> bool:
    return await asyncio.wait_for(connection[0].read(1), 5) == b""


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


# -- idle clients -------------------------------------------------------------------------------------------------


async def test_a_new_client_evicts_the_longest_idle_one_when_the_table_is_full(snapshot: BankSnapshot) -> None:
    cfg = config.parse({"modbus": {"port": 0, "max_clients": 3}})
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t), cfg) as server:
        idle, second, third = [await connect(server.port) for _ in range(3)]
        assert await served(second)
        assert await served(third)
        newcomer = await connect(server.port)
        assert await served(newcomer)
        assert await closed_by_server(idle)
        assert await served(second)
        assert await served(third)
        assert (server.clients, server.errors) == (3, 1)
        for _, writer in (second, third, newcomer):
            writer.close()


async def test_an_idle_client_is_closed_after_idle_timeout_and_a_polling_one_is_not(snapshot: BankSnapshot) -> None:
    cfg = config.parse({"modbus": {"port": 0, "idle_timeout": 1}})
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t), cfg) as server, client(server.port) as poller:
        idle = await connect(server.port)
        assert await served(idle)
        async with asyncio.timeout(10):
            while not idle[0].at_eof():  # polling every 0.2 s, well inside the 1 s timeout
                assert not (await poller.read_holding_registers(0, count=1)).isError()
                await asyncio.sleep(0.2)
        assert await closed_by_server(idle)
        # The poller connected first, so it has now lived longer than the timeout; polling kept it open.
        assert not (await poller.read_holding_registers(0, count=1)).isError()
        assert (server.clients, server.errors) == (1, 1)


# -- clients that never read --------------------------------------------------------------------------------------


def rss() -> int:
    """Resident memory of this process (server and test clients), in bytes."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def push_without_reading(port: int) -> int:
    """Send full-block reads as fast as the socket takes them, never read a reply, and stop only when the server
    closes the connection; the number of requests sent."""
    chunk = b"".join(request(3, 0, MAX_READ, tid=i) for i in range(1000))
    sent = 0
    _, writer = await connect(port)
    try:
        while True:
            writer.write(chunk)
            await writer.drain()
            sent += 1000
    except ConnectionError:
        return sent
    finally:
        writer.close()


async def test_clients_that_never_read_stay_bounded_and_are_closed_while_others_are_served(
    snapshot: BankSnapshot,
) -> None:
    # 2 s: long enough for a server that buffered every reply to grow well past the bound before the close.
    cfg = config.parse({"modbus": {"port": 0, "idle_timeout": 2}})
    async with serving(SnapshotHub(snapshot), Clock(snapshot.t), cfg) as server, client(server.port) as poller:
        assert not (await poller.read_holding_registers(0, count=MAX_READ)).isError()
        before = rss()
        done = asyncio.gather(*(push_without_reading(server.port) for _ in range(4)))
        polls = 0
        try:
            async with asyncio.timeout(30):  # they end only when the server closes them
                while not done.done():
                    assert not (await poller.read_holding_registers(0, count=MAX_READ)).isError()
                    polls += 1
                    assert rss() - before < 20_000_000
                    await asyncio.sleep(0.01)
        finally:
            done.cancel()
        sent = sum(await done)
        assert sent * (9 + 2 * MAX_READ) > 40_000_000  # tens of MB of replies asked for
        assert polls > 0
        assert server.clients == 1
        assert server.errors == 4  # "not reading", once per pusher
