"""The dashboard answers only to the names it is known by: the defence against DNS rebinding.

The real server (`WebServer.run()` on 127.0.0.1, an ephemeral port) and a real HTTP client that sends the Host
header a browser would send after following a name: an attacker's page whose name was rebound to the gateway's
address sends that name. Pages, the API, the live stream and the actions must all refuse it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.events import EventJournal
from gateway.hub import SnapshotHub
from gateway.master.master import Master
from gateway.outputs.web import WebServer
from gateway.outputs.web.server import HostCheck

from helpers.factories import configured
from helpers.web import TOKEN, token_file

ALLOWED = "gateway.example.lan"
PATHS = ("/", "/events", "/static/app.js", "/api/info", "/api/snapshot", "/api/stream?views=bank", "/api/nowhere")
FOREIGN = (
    "evil.example",
    "evil.example:8080",
    "localhost.evil.example",
    "127.0.0.1.evil.example",
    f"{ALLOWED}.evil.example",
    "[evil.example]",
    "[::1",
    "localhost@evil.example",
    "",
)


@dataclass
class Recorded:
    """Operator actions, recorded: a refused request must reach none."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def readmit(self, address: int) -> bool:
        self.calls.append(("readmit", address))
        return False

    def request_full_charge(self) -> None:
        self.calls.append(("full_charge",))


@dataclass
class Served:
    web: WebServer
    actions: Recorded
    base: str

    @property
    def port(self) -> int:
        assert self.web.port is not None
        return self.web.port


async def serve(tmp_path: Path, **web: Any) -> AsyncIterator[Served]:
    cfg = configured(
        mqtt={"enabled": False},
        modbus={"enabled": False},
        web={"host": "127.0.0.1", "port": 0, "token_file": str(token_file(tmp_path)), **web},
    )
    hub = SnapshotHub(Master(cfg).step(0.0, {}).snapshot)
    actions = Recorded()
    server = WebServer(hub, config=cfg, events=EventJournal(), actions=actions)
    started = asyncio.Event()
    task = asyncio.create_task(server.run(started=started))
    try:
        await asyncio.wait_for(started.wait(), 5.0)
        yield Served(server, actions, server.url.rstrip("/"))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in serve(tmp_path, allowed_hosts=[ALLOWED]):
        yield s


async def status(session: ClientSession, url: str, host: str, *, post: bool = False) -> tuple[int, str]:
    """The status and, for a refusal, the body of one request with this Host header (a POST with the token)."""
    headers = {"Host": host, "Authorization": f"Bearer {TOKEN}"} if post else {"Host": host}
    async with session.request("POST" if post else "GET", url, headers=headers) as r:
        return r.status, (await r.text()) if r.status == 421 else ""


async def test_allowed_names_and_ip_addresses_reach_pages_api_and_stream(served: Served) -> None:
    own = socket.gethostname()
    port = served.port
    hosts = [
        f"127.0.0.1:{port}",
        "192.168.1.20",  # any IP literal: rebinding needs a name
        "[::1]",
        f"[fe80::1%eth0]:{port}",
        f"localhost:{port}",
        "LocalHost.",
        own,
        f"{own}.local:{port}",
        ALLOWED,
        f"{ALLOWED.upper()}:{port}",
    ]
    async with ClientSession() as session:
        for host in hosts:
            for path in PATHS:
                expected = 404 if path == "/api/nowhere" else 200
                assert await status(session, served.base + path, host) == (expected, ""), (host, path)
            assert await status(session, served.base + "/api/actions/full-charge", host, post=True) == (200, "")
    assert served.actions.calls == [("full_charge",)] * len(hosts)
    assert served.web.hosts_refused == 0


async def test_a_foreign_name_is_refused_everywhere_counted_and_logged_once(served: Served) -> None:
    with structlog.testing.capture_logs() as logged:
        async with ClientSession() as session:
            for host in FOREIGN:
                for path in PATHS:
                    code, body = await status(session, served.base + path, host)
                    assert code == 421, (host, path)
                    assert body.startswith("Host not allowed"), body
                for path in ("/api/actions/full-charge", "/api/actions/readmit/3"):
                    assert (await status(session, served.base + path, host, post=True))[0] == 421
    assert served.actions.calls == []
    assert served.web.hosts_refused == len(FOREIGN) * (len(PATHS) + 2)
    refused = [e for e in logged if e["event"] == "web request refused: Host not allowed"]
    assert len(refused) == 1  # one burst, from one client
    assert (refused[0]["kind"], refused[0]["host"], refused[0]["path"]) == ("127.0.0.1", FOREIGN[0], "/")


async def test_a_request_without_one_host_header_is_refused(served: Served) -> None:
    """No Host (HTTP/1.0) is no name the gateway is known by; two of them aiohttp refuses itself."""
    for request, expected in (
        (b"GET /api/snapshot HTTP/1.0\r\n\r\n", b"421"),
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: {ALLOWED}\r\nConnection: close\r\n\r\n".encode(), b"400"),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        await writer.wait_closed()
        assert answer.split(b"\r\n", 1)[0].split()[1] == expected, answer[:80]


async def test_names_are_allowed_only_through_the_config(tmp_path: Path) -> None:
    async for served in serve(tmp_path):
        async with ClientSession() as session:
            assert (await status(session, served.base + "/api/info", ALLOWED))[0] == 421
            assert (await status(session, served.base + "/api/info", f"127.0.0.1:{served.port}"))[0] == 200
    async for served in serve(tmp_path, allowed_hosts=["other.lan", ALLOWED]):
        async with ClientSession() as session:
            for host in ("other.lan", ALLOWED):
                assert (await status(session, served.base + "/api/info", host))[0] == 200


def test_the_check_compares_names_without_case_port_or_trailing_dot() -> None:
    check = HostCheck(["Gateway.Example.LAN"], hostname="Box")
    assert check.names == {"localhost", "box", "box.local", "gateway.example.lan"}
    for host in ("box:80", "BOX.local.", "gateway.example.lan:8080", "10.0.0.1:1", "[2001:db8::1]:443"):
        assert check.allows(host), host
    for foreign in (None, "", "box.evil", "box:80:80", "[box]", "2001:db8::1", "10.0.0.1.", "gateway.example"):
        assert not check.allows(foreign), foreign


@pytest.mark.parametrize(
    "value",
    ["http://gateway.lan", "gateway.lan:8080", "*.lan", "-gateway.lan", "gateway..lan", "gateway.lan.", "", "a b"],
)
def test_a_bad_allowed_host_is_a_config_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(ConfigError) as err:
        configured(web={"allowed_hosts": ["ok.lan", value]})
    (problem,) = err.value.problems
    assert problem.startswith("web.allowed_hosts[1]: must be a host name"), problem
    path = tmp_path / "gateway.toml"
    path.write_text(f'[web]\nallowed_hosts = ["ok.lan", "{value}"]\n')
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("bms-gateway: web.allowed_hosts[1]: must be a host name")
