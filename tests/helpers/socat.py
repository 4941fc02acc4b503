"""A pseudo-terminal pair from socat, the two ends of a null-modem serial cable: the gateway opens one end, a test's
serial client the other. The fixture `pty_pair` skips the test when socat is not installed (.ci/run installs it).

`socat -d -d pty,raw,echo=0 pty,raw,echo=0` logs "PTY is /dev/pts/N" once per end on stderr; the paths are read from
there, and the pair is used once socat logs "starting data transfer loop" (both ends open). With `links`, socat also
makes a symbolic link to each end (and removes it on exit): a second pair on the same links stands in for a serial
adapter unplugged and plugged back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PTY = re.compile(rb"PTY is (\S+)")


@dataclass(frozen=True, slots=True)
class PtyPair:
    gateway: str
    """The end the gateway serves on (`[modbus_rtu] port`)."""
    inverter: str
    """The end the test's client (the inverter) opens."""
    process: asyncio.subprocess.Process


def socat_missing() -> bool:
    return shutil.which("socat") is None


@contextlib.asynccontextmanager
async def socat(links: tuple[Path, Path] | None = None, *, within: float = 10.0) -> AsyncIterator[PtyPair]:
    """A running socat and its two pty paths (the links when given); stopped, and waited for, on exit."""
    ends = ["pty,raw,echo=0", "pty,raw,echo=0"]
    if links is not None:
        ends = [f"{end},link={link}" for end, link in zip(ends, links, strict=True)]
    process = await asyncio.create_subprocess_exec(
        "socat", "-d", "-d", *ends, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        paths: list[str] = []
        async with asyncio.timeout(within):
            while b"starting data transfer loop" not in (line := await process.stderr.readline()):
                if not line:
                    raise AssertionError(f"socat exited ({await process.wait()}) before it made two ptys")
                if found := PTY.search(line):
                    paths.append(found.group(1).decode())
        assert len(paths) == 2, paths
        drain = asyncio.create_task(_drain(process.stderr), name="socat-stderr")
        first, second = (str(link) for link in links) if links is not None else paths
        yield PtyPair(first, second, process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if drain is not None:
            await drain


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read socat's log to its end, so a full pipe never stalls it."""
    while await stream.readline():
        pass


@pytest.fixture
async def pty_pair() -> AsyncIterator[PtyPair]:
    if socat_missing():
        pytest.skip("socat is not installed (apt-get install socat; .ci/run installs it)")
    async with socat() as pair:
        yield pair
