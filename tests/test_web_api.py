"""The dashboard's JSON API and pages over real HTTP (aiohttp's test server on 127.0.0.1, an ephemeral port).

The snapshots come from the real master, stepped on explicit time through a small bank: modules 1-3 healthy at
50 % SOC, module 4 joining with 20 % more, module 3 reporting a protection from t = 10 s (isolated), module 2
falling silent from t = 20 s (offline). The events are the changes the service would log, in an `EventJournal`;
the operator actions go to that master. Every endpoint, bad paths (404), bad tokens (403), the security headers,
the live stream, and a slow stream that does not hold up the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from gateway.changes import changes
from gateway.clock import UNIX
from gateway.config import Config, WebSection
from gateway.errors import ConfigError
from gateway.events import EventJournal
from gateway.history.events import from_change
from gateway.hub import SnapshotHub
from gateway.master.master import Master
from gateway.master.model import BankSnapshot, ModuleReading
from gateway.outputs.discovery import Topics
from gateway.outputs.mqtt import state_messages
from gateway.outputs.web import WebServer, read_token
from gateway.outputs.web.server import SECURITY_HEADERS

from helpers.buses import until
from helpers.factories import configured, reading
from helpers.web import TOKEN, messages, token_file

CELLS = 16


def cells(soc: float) -> dict[str, Any]:
    volts = tuple(round(3.30 + 0.001 * soc / 10 + 0.002 * (i % 5), 3) for i in range(CELLS))
    return {
        "cell_voltages": volts,
        "cell_balancing": tuple(i == 4 for i in range(CELLS)),
        "cell_temperatures": (24.0, 25.0, 25.5, None),
        "cell_voltage_max": max(volts),
        "cell_voltage_min": min(volts),
    }


def bank(t: float) -> dict[int, ModuleReading]:
    """The readings at `t`: see the module docstring."""
    out = {}
    for a in (1, 2, 3):
        if a == 2 and t >= 20.0:
            continue  # silent: its last reading ages in the store, here it is simply gone
        extra: dict[str, Any] = {"protections": 1} if a == 3 and t >= 10.0 else {}
        out[a] = reading(a, t, soc=50.0, voltage=52.8, current=15.0, **cells(50.0), **extra)
    if t >= 4.0:
        out[4] = reading(4, t, soc=70.0, voltage=53.4, current=0.0, first_seen=4.0, **cells(70.0))
    return out


@dataclass
class World:
    """The master, its hub and the journal of its changes, stepped on explicit time."""

    config: Config
    master: Master
    hub: SnapshotHub
    journal: EventJournal = field(default_factory=EventJournal)
    t: float = 0.0
    last: dict[int, ModuleReading] = field(default_factory=dict)

    def step(self, dt: float = 0.1) -> BankSnapshot:
        self.t = round(self.t + dt, 3)
        readings = {**self.last, **bank(self.t)}  # the store keeps a silent module's last reading
        self.last = readings
        tick = self.master.step(self.t, readings)
        for change in changes(self.hub.latest, tick.snapshot):
            self.journal.record(from_change(change, self.t))
        self.hub.publish(tick.snapshot)
        return tick.snapshot

    def until(self, t: float) -> BankSnapshot:
        while self.t < t:
            snapshot = self.step()
        return snapshot


def world() -> World:
    cfg = configured(
        gateway={"id": "api"}, mqtt={"enabled": False}, modbus={"enabled": False}, web={"host": "127.0.0.1", "port": 0}
    )
    m = Master(cfg)
    hub = SnapshotHub(m.step(0.0, {}).snapshot)
    return World(cfg, m, hub)


@pytest.fixture
def stepped() -> World:
    """The bank at t = 8 s: modules 1-3 online, module 4 pending (+20 % SOC); no trouble yet."""
    w = world()
    w.until(8.0)
    return w


def server(w: World, *, environ: dict[str, str] | None = None) -> WebServer:
    return WebServer(w.hub, config=w.config, events=w.journal, actions=w.master, environ=environ)


@pytest.fixture
async def client(stepped: World, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the dashboard of `stepped`, with operator actions (the token in a file)."""
    stepped.config = dataclasses.replace(stepped.config, web=WebSection(token_file=token_file(tmp_path)))
    async with TestClient(TestServer(server(stepped).application())) as c:
        yield c


async def get_json(c: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await c.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


def mqtt_payloads(s: BankSnapshot) -> dict[str, Any]:
    """What MQTT publishes for `s`, topic (under bms/api/) -> decoded JSON."""
    topics = Topics("bms/api")
    return {topic.removeprefix("bms/api/"): json.loads(data) for topic, data in state_messages(s, topics, UNIX).items()}


# -- every endpoint --------------------------------------------------------------------------------------------


async def test_the_snapshot_is_the_mqtt_bank_payload(client: TestClient[Any, Any], stepped: World) -> None:
    assert await get_json(client, "/api/snapshot") == mqtt_payloads(stepped.hub.latest)["bank"]
    stepped.step()
    snapshot = await get_json(client, "/api/snapshot")
    assert snapshot == mqtt_payloads(stepped.hub.latest)["bank"]
    assert snapshot["modules_online"] == [1, 2, 3]
    assert snapshot["modules_pending"] == [4]
    assert snapshot["limits"]["charge_current"]["value"] > 0


async def test_modules_and_one_module_are_the_mqtt_module_and_cells_payloads(
    client: TestClient[Any, Any], stepped: World
) -> None:
    published = mqtt_payloads(stepped.hub.latest)
    listed = await get_json(client, "/api/modules")
    assert [m["address"] for m in listed] == [1, 2, 3, 4]
    assert listed == [published[f"module/{a}"] for a in (1, 2, 3, 4)]
    one = await get_json(client, "/api/modules/4")
    assert one == {**published["module/4"], "cells": published["cells/4"]}
    assert one["state"] == "pending"
    assert len(one["cells"]["voltages"]) == CELLS


async def test_cells_carry_every_cell_with_the_modules_place_and_state(client: TestClient[Any, Any]) -> None:
    listed = await get_json(client, "/api/cells")
    assert [(m["address"], m["position"], m["state"]) for m in listed] == [
        (1, 1, "online"),
        (2, 2, "online"),
        (3, 3, "online"),
        (4, 4, "pending"),
    ]
    assert all(len(m["voltages"]) == len(m["balancing"]) == CELLS for m in listed)
    assert listed[0]["balancing"][4] is True


async def test_info_says_who_the_gateway_is_and_whether_actions_are_offered(client: TestClient[Any, Any]) -> None:
    info = await get_json(client, "/api/info")
    assert info["id"] == "api"
    assert info["actions"] is True
    assert info["addresses"] == [1, 31]
    assert info["tick"] == 0.1
    assert info["events"].startswith("since the gateway started")


async def test_events_list_alarms_and_lifecycle_filtered_by_module_and_level(
    client: TestClient[Any, Any], stepped: World
) -> None:
    stepped.until(26.0)  # module 3 isolated at 10 s, module 2 offline at 23 s
    everything = await get_json(client, "/api/events")
    assert everything["source"].startswith("since the gateway started")
    events = everything["events"]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)  # newest first
    assert everything["last_id"] == events[0]["id"]
    kinds = {(e["event"], tuple(e["modules"])) for e in events}
    assert ("module offline", (2,)) in kinds
    assert ("module isolated", (3,)) in kinds
    raised = [e for e in events if e["event"] == "alarm raised"]
    assert {e["code"] for e in raised} >= {"module_comm_lost", "cell_over_voltage"}
    lost = next(e for e in raised if e["code"] == "module_comm_lost")
    assert lost["modules"] == [2]
    assert lost["level"] in ("warning", "protection")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lost["time"])

    about_2 = (await get_json(client, "/api/events?module=2"))["events"]
    assert about_2 and all(2 in e["modules"] for e in about_2)
    assert {e["event"] for e in about_2} >= {"module offline", "alarm raised"}
    warnings = (await get_json(client, "/api/events?level=warning"))["events"]
    assert warnings and all(e["level"] in ("warning", "protection") for e in warnings)
    assert len(warnings) < len(events)
    newest = events[0]["id"]
    assert (await get_json(client, f"/api/events?after={newest}"))["events"] == []
    assert len((await get_json(client, "/api/events?limit=2"))["events"]) == 2


async def test_the_join_check_explains_a_module_joining_with_20_percent_more_soc(
    client: TestClient[Any, Any],
) -> None:
    answer = await get_json(client, "/api/join-check/4")
    assert answer["verdict"] == "wait"
    assert answer["can_join"] is False
    assert answer["state"] == "pending"
    assert answer["summary"] == "Module 4 may not join yet: its SOC is 20.0 % above the bank's."
    soc = next(i for i in answer["items"] if i["kind"] == "soc")
    assert soc["text"] == "SOC 70.0 % vs bank 50.0 % (window 5 %)"
    assert soc["action"].startswith("discharge module 4 to 45–55 % before connecting it, or wait")
    # The bank charges at 45 A into 300 Ah: 15 % to go (to 65 %) takes 1 h.
    assert answer["eta"]["target_soc"] == 65.0
    assert answer["eta"]["hours"] == pytest.approx(1.0, abs=0.01)
    assert "the bank reaches 65 % in about 1.0 h at the present power" in soc["action"]
    assert answer["module"]["soc"] == 70.0
    assert answer["bank"]["soc"] == 50.0
    assert answer["windows"] == {"soc": 5.0, "voltage": 0.5}

    online = await get_json(client, "/api/join-check/1")
    assert (online["verdict"], online["can_join"]) == ("online", True)
    new = await get_json(client, "/api/join-check/7")
    assert new["verdict"] == "unknown"
    assert [i["kind"] for i in new["items"]] == ["not_seen", "target"]
    waiting = await get_json(client, "/api/join-check")
    assert [a["address"] for a in waiting] == [4]


async def test_every_page_is_served_with_its_scripts_and_styles_from_the_gateway(
    client: TestClient[Any, Any],
) -> None:
    for path, page in (("/", "overview"), ("/modules", "modules"), ("/cells", "cells"), ("/events", "events")):
        response = await client.get(path)
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
        assert f'data-page="{page}"' in html
        assert_no_inline_code(html)
    html = await (await client.get("/expansion")).text()
    assert 'data-page="expansion"' in html
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(link.startswith("/") for link in links), "every asset and link stays on the gateway"
    assets = {link for link in links if link.startswith("/static/")}
    assert assets == {"/static/app.js", "/static/app.css", "/static/icon.svg"}
    for src in assets:
        response = await client.get(src)
        assert response.status == 200, src
        etag = response.headers["ETag"]
        again = await client.get(src, headers={"If-None-Match": etag})
        assert again.status == 304


def assert_no_inline_code(html: str) -> None:
    """No inline script, handler or style: the CSP forbids them, so none may be needed."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style"
    assert "<style" not in html


# -- bad paths, bad requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/nothing", 404),
        ("/api/modules/99", 404),  # beyond the address range
        ("/api/modules/9", 404),  # in range, never seen
        ("/api/modules/x", 404),
        ("/api/join-check/0", 404),
        ("/api/join-check/32", 404),
        ("/api/events?level=loud", 400),
        ("/api/events?module=one", 400),
        ("/api/stream?views=bank,secrets", 400),
        ("/api/stream?views=", 400),
    ],
)
async def test_bad_api_paths_and_queries_are_json_errors(client: TestClient[Any, Any], path: str, status: int) -> None:
    body = await get_json(client, path, status)
    assert body["error"]


@pytest.mark.parametrize("path", ["/nothing", "/static/page.html", "/static/../server.py", "/static/app.js/x"])
async def test_bad_page_paths_are_404(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path)
    assert response.status == 404


async def test_actions_are_post_only(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/api/actions/full-charge", 405)
    assert body["error"] == "Method Not Allowed"
    response = await client.post("/api/snapshot")
    assert response.status == 405


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/snapshot", "/api/nothing", "/nothing"])
async def test_every_response_carries_the_security_headers(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


# -- operator actions ---------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "logged"),
    [
        ({}, "no token"),
        (bearer("wrong-token-0123456789"), "wrong token"),
        ({"Authorization": TOKEN}, "wrong token"),  # not a bearer token
        (bearer(TOKEN[:-1]), "wrong token"),
    ],
)
async def test_a_missing_or_wrong_token_is_403_logged_and_changes_nothing(
    client: TestClient[Any, Any], stepped: World, headers: dict[str, str], logged: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.post("/api/actions/full-charge", headers=headers)
        readmit = await client.post("/api/actions/readmit/3", headers=headers)
    assert response.status == readmit.status == 403
    assert (await response.json())["error"] == f"{logged}: operator actions need the gateway's token"
    refused = [e for e in logs if e["event"] == "web action refused"]
    assert refused and refused[0]["reason"] == logged and refused[0]["kind"] == "127.0.0.1"
    assert refused[0]["log_level"] == "warning"
    assert not stepped.step().flags.full_charge


async def test_with_the_token_a_full_charge_is_requested_and_an_isolated_module_readmitted(
    client: TestClient[Any, Any], stepped: World
) -> None:
    assert not stepped.hub.latest.flags.full_charge
    with structlog.testing.capture_logs() as logs:
        response = await client.post("/api/actions/full-charge", headers=bearer(TOKEN))
    assert response.status == 200
    assert await response.json() == {"ok": True, "detail": "full charge requested"}
    assert any(e["event"] == "web action" and e["action"] == "full_charge" for e in logs)
    assert stepped.step().flags.full_charge

    # Module 3 is isolated at t = 10 s: readmit lifts the isolation (the master isolates it again at its next
    # tick while the module still reports its protection).
    stepped.until(12.0)
    assert stepped.hub.latest.modules[3].lifecycle == "isolated"
    response = await client.post("/api/actions/readmit/3", headers=bearer(TOKEN))
    assert response.status == 200
    assert (await response.json())["ok"] is True
    response = await client.post("/api/actions/readmit/1", headers=bearer(TOKEN))
    assert response.status == 409
    assert await response.json() == {"ok": False, "detail": "module 1 is not isolated"}
    response = await client.post("/api/actions/readmit/40", headers=bearer(TOKEN))
    assert response.status == 404


async def test_without_a_token_no_action_is_offered(stepped: World) -> None:
    async with TestClient(TestServer(server(stepped).application())) as c:
        assert (await get_json(c, "/api/info"))["actions"] is False
        for path in ("/api/actions/full-charge", "/api/actions/readmit/3"):
            response = await c.post(path, headers=bearer(TOKEN))
            assert response.status == 404
            assert "operator actions are off" in (await response.json())["error"]
    assert not stepped.step().flags.full_charge


def test_the_token_comes_from_token_file_or_the_systemd_credential(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    assert read_token(WebSection(token_file=path), {}) == (TOKEN, str(path))
    assert read_token(WebSection(), {}) is None
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    assert read_token(WebSection(), {"CREDENTIALS_DIRECTORY": str(credentials)}) is None
    (credentials / "web.token").write_text("from-systemd-0123456789\n")
    found = read_token(WebSection(), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert found == ("from-systemd-0123456789", str(credentials / "web.token"))
    # token_file wins over the credential.
    assert read_token(WebSection(token_file=path), {"CREDENTIALS_DIRECTORY": str(credentials)}) == (TOKEN, str(path))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("short\n", "at least 16 printable characters without spaces"),
        ("two words 0123456789\n", "at least 16 printable characters without spaces"),
        ("", "at least 16"),
        (None, "cannot read"),
    ],
)
def test_an_unusable_token_file_is_a_config_error(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "web.token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="web.token_file: ") as info:
        read_token(WebSection(token_file=path), {})
    assert problem in info.value.problems[0]


# -- live ----------------------------------------------------------------------------------------------------------


@dataclass
class Ticking:
    """The world stepped every `period` s of real time in a task (the master's loop in the gateway)."""

    world: World
    period: float = 0.02
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            self.world.step()
            await asyncio.sleep(self.period)


async def ticking(w: World, period: float = 0.02) -> asyncio.Task[None]:
    return asyncio.create_task(Ticking(w, period).run(), name="ticking")


async def test_a_stream_sends_the_views_asked_for_after_each_snapshot(
    client: TestClient[Any, Any], stepped: World
) -> None:
    task = await ticking(stepped)
    try:
        response = await client.get("/api/stream?views=bank,modules,cells,events&after=0")
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        seen: dict[str, list[Any]] = {"bank": [], "modules": [], "cells": [], "events": []}
        async with asyncio.timeout(10.0):
            async for message in messages(response):
                seen[message.event].append(message.data)
                if len(seen["bank"]) >= 5:
                    break
        response.close()
    finally:
        task.cancel()
    seqs = [b["seq"] for b in seen["bank"]]
    assert seqs == sorted(set(seqs)), "each message a newer snapshot"
    assert [m["seq"] for m in seen["modules"]][: len(seqs)] == seqs[: len(seen["modules"])]
    first = seen["bank"][0]
    assert set(first["bank"]) == set(mqtt_payloads(stepped.hub.latest)["bank"])
    assert first["words"]["charge_current"]
    assert [m["address"] for m in seen["modules"][0]["modules"]] == [1, 2, 3, 4]
    assert len(seen["cells"][0]["cells"][0]["voltages"]) == CELLS
    # The events view starts with everything after id 0, oldest first, then only what is new.
    replayed = seen["events"][0]["events"]
    assert [e["id"] for e in replayed] == sorted(e["id"] for e in replayed)
    assert {e["event"] for e in replayed} >= {"module online", "module appeared"}


async def test_a_slow_stream_client_does_not_hold_up_the_others(client: TestClient[Any, Any], stepped: World) -> None:
    """A client that stops reading fills its socket; its stream then waits, alone, for the socket to drain, while
    another stream and the API go on. Once it reads again it gets the latest snapshot, not every one it missed."""
    web_server = client.server
    assert isinstance(web_server, TestServer)
    streams: Callable[[], set[Any]] = lambda: _server_of(client).streams  # noqa: E731
    task = await ticking(stepped, period=0.01)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((web_server.host, web_server.port))  # loopback: at once
    try:
        slow.sendall(b"GET /api/stream?views=bank,modules,cells HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await until(lambda: len(streams()) == 1, within=5.0, what="the slow stream open")
        (stuck,) = streams()
        # Unread, its socket buffers fill and the stream waits with its message undelivered.
        assert stuck.transport is not None
        stuck.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a slow link
        await until(lambda: stuck.blocked, within=20.0, what="the slow stream blocked")
        sent = stuck.sent

        response = await client.get("/api/stream?views=bank")
        received = []
        async with asyncio.timeout(10.0):
            async for message in messages(response):
                received.append(message.data["seq"])
                assert (await client.get("/api/snapshot")).status == 200
                if len(received) == 20:
                    break
        response.close()
        assert received == sorted(set(received))
        assert stuck.sent == sent and stuck.blocked, "the slow stream stayed where it was"

        # It reads again: its stream catches up with the latest snapshots, skipping the ones it missed.
        slow.setblocking(False)
        loop = asyncio.get_running_loop()

        async def drain() -> None:
            while True:
                if not await loop.sock_recv(slow, 1 << 16):
                    return

        reader = asyncio.create_task(drain())
        await until(lambda: stuck.sent > sent + 2, within=20.0, what="the slow stream catching up")
        assert stuck.skipped > 0
        reader.cancel()
    finally:
        slow.close()
        task.cancel()
    await until(lambda: not streams(), within=5.0, what="the closed stream gone")


def _server_of(client: TestClient[Any, Any]) -> WebServer:
    """The WebServer behind a test client (its app's handlers are bound methods of it)."""
    assert isinstance(client.server, TestServer)
    app = client.server.app
    assert app is not None
    for route in app.router.routes():
        owner = getattr(route.handler, "__self__", None)
        if isinstance(owner, WebServer):
            return owner
    raise AssertionError("no WebServer behind this client")


async def test_stream_over_a_real_socket_with_a_plain_client(stepped: World, tmp_path: Path) -> None:
    """The edge as the service runs it: `run()` on 127.0.0.1 port 0, then a plain aiohttp session."""
    web = server(stepped)
    started = asyncio.Event()
    task = asyncio.create_task(web.run(started=started))
    ticker = await ticking(stepped)
    try:
        await asyncio.wait_for(started.wait(), 5.0)
        assert web.port and web.url == f"http://127.0.0.1:{web.port}/"
        async with ClientSession() as session:
            async with session.get(web.url + "api/snapshot") as response:
                assert response.status == 200
                assert (await response.json())["modules_online"] == [1, 2, 3]
            async with session.get(web.url + "api/stream") as response:
                async with asyncio.timeout(5.0):
                    async for message in messages(response):
                        assert message.event == "bank"
                        break
    finally:
        ticker.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_streams_beyond_the_limit_are_refused(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.outputs.web.server.MAX_STREAMS", 1)
    first = await client.get("/api/stream")
    assert first.status == 200
    body = await get_json(client, "/api/stream", 503)
    assert body["error"] == "1 live streams are open already"
    first.close()
    await until(lambda: not _server_of(client).streams, within=5.0, what="the first stream closed")
    again = await client.get("/api/stream")
    assert again.status == 200
    again.close()
