"""A real mosquitto broker for tests, and an aiomqtt subscriber that records what it receives.

Fixtures `mosquitto` (anonymous), `mosquitto_auth` (password file, anonymous refused; see `USERS`) and
`mosquitto_tls` (TLS only, with a throw-away CA whose server certificate is for IP 127.0.0.1) start a broker on
a free 127.0.0.1 port with a config file in the test's tmp_path, and stop it afterwards; `restart()` brings it
back on the same port. Without persistence, a restart also forgets every retained message, which is
what a client's full republish must make up for. Tests skip when mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from helpers.ports import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USERS = {"gateway": "s3cret pass", "viewer": "viewer"}
"""Users of the `mosquitto_auth` broker (name -> password)."""


def _certificates(directory: Path) -> None:
    """A CA (ca.crt) and a server certificate for IP 127.0.0.1 signed by it (server.crt, server.key)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    ca = ["-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt"]
    ca_extensions = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
    openssl("req", "-x509", *ec, *ca, *ca_extensions)
    openssl("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext"]
    openssl("x509", "-req", "-in", "server.csr", *sign, "-out", "server.crt")


@dataclass
class Broker:
    directory: Path
    users: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        """The CA that signed the TLS broker's certificate."""
        return self.directory / "ca.crt"

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        lines = [f"listener {self.port} {self.host}", "persistence false", f"user {getpass.getuser()}"]
        if self.tls:
            if not self.ca_file.exists():
                _certificates(self.directory)
            d = self.directory
            lines += [f"cafile {self.ca_file}", f"certfile {d / 'server.crt'}", f"keyfile {d / 'server.key'}"]
        if self.users:
            passwords = self.directory / "passwords"
            for n, (name, password) in enumerate(self.users.items()):
                create = ["-c"] if n == 0 else []
                subprocess.run(["mosquitto_passwd", *create, "-b", str(passwords), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        log = (self.directory / "mosquitto.log").open("ab")
        self._process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 5.0
        while True:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {(self.directory / 'mosquitto.log').read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port (retained messages are gone: no persistence)."""
        self.stop()
        self.start()


def _broker(directory: Path, users: dict[str, str], *, tls: bool = False) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    if users and shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    if tls and shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    broker = Broker(directory, dict(users), tls)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running broker that allows anonymous clients."""
    yield from _broker(tmp_path, {})


@pytest.fixture(name="mosquitto_auth")
def mosquitto_auth_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running broker that only lets in the users of `USERS`."""
    yield from _broker(tmp_path, USERS)


@pytest.fixture(name="mosquitto_tls")
def mosquitto_tls_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running broker that only speaks TLS (certificate for 127.0.0.1, CA in `ca_file`)."""
    yield from _broker(tmp_path, {}, tls=True)


class Recorder:
    """Every message a subscriber received, in order, with a way to wait for one."""

    def __init__(self) -> None:
        self.messages: list[aiomqtt.Message] = []
        self._arrived = asyncio.Event()

    def add(self, message: aiomqtt.Message) -> None:
        self.messages.append(message)
        self._arrived.set()

    def mark(self) -> int:
        """A position: `wait(..., after=mark)` then only looks at messages received from now on."""
        return len(self.messages)

    async def wait(
        self,
        match: Callable[[aiomqtt.Message], bool],
        *,
        after: int = 0,
        within: float = 5.0,
    ) -> aiomqtt.Message:
        """The first message (from position `after`) that `match` accepts, waiting up to `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                for message in self.messages[after:]:
                    if match(message):
                        return message
                after = len(self.messages)
                self._arrived.clear()
                await self._arrived.wait()

    async def on(self, topic: str, *, after: int = 0, within: float = 5.0) -> aiomqtt.Message:
        return await self.wait(lambda m: m.topic.value == topic, after=after, within=within)

    def latest(self, prefix: str = "") -> dict[str, bytes]:
        """Topic -> last payload received, for topics starting with `prefix`."""
        return {m.topic.value: m.payload for m in self.messages if m.topic.value.startswith(prefix)}


@contextlib.asynccontextmanager
async def subscriber(
    broker: Broker, *topics: str, username: str | None = None, password: str | None = None
) -> AsyncIterator[tuple[aiomqtt.Client, Recorder]]:
    """A connected client subscribed to `topics` (QoS 1), recording everything it receives."""
    recorder = Recorder()
    tls = aiomqtt.TLSParameters(ca_certs=str(broker.ca_file)) if broker.tls else None
    async with aiomqtt.Client(broker.host, broker.port, username=username, password=password, tls_params=tls) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def feed() -> None:
            async for message in client.messages:
                recorder.add(message)

        task = asyncio.create_task(feed(), name="test-subscriber")
        try:
            yield client, recorder
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def retained(broker: Broker, *filters: str) -> dict[str, bytes]:
    """Every retained message under `filters` now: topic -> payload.

    A broker sends a subscription's retained messages before it handles what the client sends next, so a marker
    published after subscribing, once it comes back, closes the list: a topic missing from it has no retained
    message (absence is proven, not waited for).
    """
    marker = f"test/marker/{uuid.uuid4().hex}"
    async with subscriber(broker, *filters, marker) as (client, seen):
        await client.publish(marker, b"end", qos=1)
        await seen.on(marker)
        return {m.topic.value: m.payload for m in seen.messages if m.retain and m.topic.value != marker}
