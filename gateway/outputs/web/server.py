"""The web dashboard and its JSON API, served by aiohttp from the gateway's own event loop.

Pages (overview, modules, cell monitor, events, expansion assistant) are plain HTML, CSS and JavaScript shipped in
the package and held in memory: no CDN, no build step, nothing fetched from anywhere but the gateway, so the
dashboard works on a box that is offline. A page follows the bank live over Server-Sent Events
(`/api/stream?views=bank,modules,...`): one message per master tick at most, each view encoded once per snapshot
however many dashboards read it. A client that reads slowly is throttled, not queued for: its stream waits for
the socket to drain and then sends the latest snapshot, skipping the ones it had no time for; one that reads
nothing for WRITE_TIMEOUT is closed. The master never waits for a dashboard: it only replaces the hub's snapshot.

Operator actions (readmit an isolated module, request a full charge) are POSTs with `Authorization: Bearer
<token>`, offered only when a token is configured (`[web] token_file`, or the systemd credential `web.token`). A
missing or wrong token is 403 and logged; nothing else changes state. Every response carries security headers:
a CSP without inline script, no framing, no sniffing, no referrer.

A request whose Host header names neither an IP address nor a name the gateway is known by (`HostCheck`) is
refused with 421 before any route sees it: a web page could otherwise rebind its own DNS name to the gateway's
LAN address and read the API, follow the stream and try the actions with the visitor's browser (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import hdrs, web

from gateway import __version__, logs
from gateway.clock import UNIX, Anchor
from gateway.config import Config, WebSection
from gateway.errors import ConfigError
from gateway.events import LEVELS, EventLevel, EventSource
from gateway.hub import SnapshotHub
from gateway.logs import BurstLog
from gateway.master.joining import join_check
from gateway.master.model import BankSnapshot, Lifecycle
from gateway.outputs.mqtt import Actions, execute, preview
from gateway.outputs.web import views
from gateway.outputs.web.words import ALARM_NAMES
from gateway.payload import bank_dict

log = logs.get(__name__)

CREDENTIAL = "web.token"
"""The systemd credential (`LoadCredential=web.token:...`) read when `[web] token_file` is not set."""
MIN_TOKEN = 16
"""Characters a token needs at least: guessing one over HTTP must be hopeless."""
WRITE_TIMEOUT = 30.0
"""Seconds a stream may wait for its client to read before it is closed."""
MAX_STREAMS = 64
"""Live streams at once; more are refused (503), so dashboards can never crowd out the master."""
THROTTLE = 0.9
"""A stream sends again at the earliest this part of a master tick after its last message."""
SHUTDOWN_TIMEOUT = 1.0
"""Seconds open connections get to finish when the edge stops."""

PAGES = {
    "/": ("overview", "Overview"),
    "/modules": ("modules", "Modules"),
    "/cells": ("cells", "Cell monitor"),
    "/events": ("events", "Events"),
    "/expansion": ("expansion", "Expansion assistant"),
}
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def read_token(web_cfg: WebSection, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(token, where it came from), from `token_file` or else the systemd credential `web.token` (in
    `$CREDENTIALS_DIRECTORY`, which systemd sets for this service only); None when neither is there."""
    path, key = web_cfg.token_file, "web.token_file"
    if path is None:
        credentials = environ.get("CREDENTIALS_DIRECTORY")
        if not credentials or not (Path(credentials) / CREDENTIAL).is_file():
            return None
        path, key = Path(credentials) / CREDENTIAL, f"credential {CREDENTIAL}"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError([f"{key}: cannot read {path}: {err.strerror or err}"]) from err
    except UnicodeDecodeError as err:
        raise ConfigError([f"{key}: {path} is not UTF-8 text"]) from err
    if len(token) < MIN_TOKEN or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(
            [f"{key}: the token in {path} must be at least {MIN_TOKEN} printable characters without spaces"]
        )
    return token, str(path)


_HOST_HEADER = re.compile(r"(?:\[(?P<literal>[0-9A-Fa-f:.]+(?:%[\w.~-]+)?)\]|(?P<name>[^:\[\]]+))(?::[0-9]{1,5})?")
"""A Host header: a bracketed IPv6 literal or a name (or IPv4 literal), with an optional port."""


class HostCheck:
    """Which Host headers the dashboard answers; the defence against DNS rebinding.

    Rebinding needs a name the attacker controls, so every IP literal passes; so do `localhost`, this machine's
    hostname, its mDNS name `<hostname>.local` and `[web] allowed_hosts` (a name a reverse proxy or the LAN's DNS
    gives the gateway). Names compare without case and without a trailing dot.
    """

    def __init__(self, allowed: Iterable[str], *, hostname: str) -> None:
        own = hostname.lower()
        self.names = frozenset({"localhost", own, f"{own}.local", *(name.lower() for name in allowed)})

    def allows(self, header: str | None) -> bool:
        match = _HOST_HEADER.fullmatch(header or "")
        if match is None:
            return False
        if match["name"] is not None and match["name"].rstrip(".").lower() in self.names:
            return True
        try:
            ipaddress.ip_address(match["literal"] or match["name"])
        except ValueError:
            return False
        return True


def _problem(status: type[web.HTTPException], detail: str) -> web.HTTPException:
    return status(text=json.dumps({"error": detail}), content_type="application/json")


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Under /api/ every error is JSON, aiohttp's own 404 and 405 too."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if not request.path.startswith("/api/") or err.status < 400 or err.content_type == "application/json":
            raise
        return web.json_response({"error": err.reason}, status=err.status)


@dataclass(slots=True, eq=False)
class Stream:
    """One open live stream."""

    views: tuple[str, ...]
    peer: str
    sent: int = 0
    """Messages (one per snapshot) written."""
    skipped: int = 0
    """Snapshots published while this client was still reading an older one."""
    writing: bool = False
    """A message is on its way: a client that reads slowly keeps its stream here, waiting for the socket."""
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    transport: asyncio.Transport | None = field(default=None, repr=False)

    @property
    def backlog(self) -> int:
        """Bytes written for this client that its socket has not taken yet."""
        return 0 if self.transport is None or self.transport.is_closing() else self.transport.get_write_buffer_size()

    @property
    def blocked(self) -> bool:
        """Waiting for the client to read: a message is on its way and the socket's buffer is over its high-water
        mark (aiohttp waits for it to drain)."""
        if not self.writing or self.transport is None or self.transport.is_closing():
            return False
        return self.backlog > self.transport.get_write_buffer_limits()[1]


class _Encoded:
    """The latest snapshot's live views, each encoded once however many dashboards read it."""

    __slots__ = ("_cache", "_seq", "_wall")

    def __init__(self, wall: Callable[[], Anchor]) -> None:
        self._seq = -1
        self._cache: dict[str, bytes] = {}
        self._wall = wall

    def get(self, s: BankSnapshot, view: str) -> bytes:
        if s.seq != self._seq:
            self._seq, self._cache = s.seq, {}
        data = self._cache.get(view)
        if data is None:
            data = self._cache[view] = _event(view, views.live(view, s, self._wall()), s.seq)
        return data


def _event(name: str, payload: Any, ident: int) -> bytes:
    return f"event: {name}\nid: {ident}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _assets() -> dict[str, _Asset]:
    folder = resources.files("gateway.outputs.web") / "static"
    out = {}
    for name, content_type in STATIC_TYPES.items():
        body = (folder / name).read_bytes()
        out[name] = _Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return out


class WebServer:
    """The dashboard and the API for one gateway: `run()` serves until cancelled (the service supervises it)."""

    def __init__(
        self,
        hub: SnapshotHub,
        *,
        config: Config,
        events: EventSource,
        actions: Actions | None,
        environ: Mapping[str, str] | None = None,
        wall: Callable[[], Anchor] = lambda: UNIX,
    ) -> None:
        """`environ` is where systemd's CREDENTIALS_DIRECTORY is looked up (the service passes os.environ); `wall`
        converts the master's times to wall-clock time, as MQTT does (the service passes its clock's `anchor`)."""
        self._hub = hub
        self._wall = wall
        self._config = config
        self._events = events
        found = read_token(config.web, environ or {})
        self._token = None if found is None else found[0]
        self.token_source = None if found is None else found[1]
        self._actions = actions if self._token is not None else None
        self._encoded = _Encoded(self._wall)
        self._refusals = BurstLog(log, "web action refused")
        self._hosts = HostCheck(config.web.allowed_hosts, hostname=socket.gethostname())
        self._misdirected = BurstLog(log, "web request refused: Host not allowed")
        self._page = Template((resources.files("gateway.outputs.web") / "static" / "page.html").read_text("utf-8"))
        self._assets = _assets()
        self.streams: set[Stream] = set()
        self.port: int | None = None
        self.requests = 0
        self.refused = 0
        self.hosts_refused = 0
        """Requests refused for their Host header (421)."""

    @property
    def actions_offered(self) -> bool:
        return self._actions is not None

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._config.web.host, self._config.web.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: the bank's windows and tick (the web section itself needs a restart)."""
        self._config = config

    # -- serving ---------------------------------------------------------------------------------------------

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Listen on `[web] host:port` and serve until cancelled; `started` is set once listening."""
        runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._config.web.host, self._config.web.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            log.info(
                "web dashboard listening",
                url=self.url,
                actions="on, token from " + self.token_source if self.token_source else "off (no token)",
            )
            if started is not None:
                started.set()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    def application(self) -> web.Application:
        """A new aiohttp application with every route (each run of the edge serves a new one; tests serve one
        with aiohttp's test server)."""
        app = web.Application(middlewares=[self._known_host, _json_errors], client_max_size=4096)
        app.on_response_prepare.append(self._headers)
        app.on_shutdown.append(self._close_streams)
        for path in PAGES:
            app.router.add_get(path, self._page_handler)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/modules", self._modules)
        app.router.add_get("/api/modules/{address:[0-9]{1,3}}", self._module)
        app.router.add_get("/api/cells", self._cells)
        app.router.add_get("/api/events", self._event_list)
        app.router.add_get("/api/join-check", self._join_all)
        app.router.add_get("/api/join-check/{address:[0-9]{1,3}}", self._join)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/actions/readmit/{address:[0-9]{1,3}}", self._readmit)
        app.router.add_post("/api/actions/full-charge", self._full_charge)
        return app

    @web.middleware
    async def _known_host(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse a Host header that is not an allowed name (see `HostCheck`) before any route sees the request."""
        host = request.headers.get(hdrs.HOST)  # aiohttp refuses a request with two (400)
        if self._hosts.allows(host):
            return await handler(request)
        self.hosts_refused += 1
        self._misdirected(
            request.remote or "?", host=None if host is None else preview(host), path=preview(request.path)
        )
        return web.Response(
            status=421, text="Host not allowed: add it to [web] allowed_hosts in the gateway's config, or use its IP\n"
        )

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        self.requests += 1
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")

    async def _close_streams(self, _: web.Application) -> None:
        for stream in list(self.streams):
            if stream.task is not None:
                stream.task.cancel()

    # -- pages and assets ------------------------------------------------------------------------------------

    async def _page_handler(self, request: web.Request) -> web.Response:
        page, title = PAGES[request.path]
        body = self._page.substitute(page=page, title=title, name=self._config.gateway.name)
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})

    # -- the API ---------------------------------------------------------------------------------------------

    def _address(self, request: web.Request) -> int:
        address = int(request.match_info["address"])
        valid = self._config.can.addresses
        if address not in valid:
            raise _problem(web.HTTPNotFound, f"module addresses are {valid[0]}..{valid[-1]}, not {address}")
        return address

    async def _info(self, _: web.Request) -> web.Response:
        cfg = self._config
        valid = cfg.can.addresses
        return web.json_response(
            {
                "id": cfg.gateway.id,
                "name": cfg.gateway.name,
                "version": __version__,
                "actions": self.actions_offered,
                "tick": cfg.bank.tick,
                "addresses": [valid[0], valid[-1]],
                "max_modules": cfg.bank.max_modules,
                "cells_in_series": cfg.bank.cells_in_series,
                "events": self._events.description,
                "alarm_names": {str(code): name for code, name in ALARM_NAMES.items()},
            }
        )

    async def _snapshot(self, _: web.Request) -> web.Response:
        return web.json_response(bank_dict(self._hub.latest, wall=self._wall()))

    async def _modules(self, _: web.Request) -> web.Response:
        return web.json_response(views.modules(self._hub.latest))

    async def _module(self, request: web.Request) -> web.Response:
        address = self._address(request)
        found = views.module(self._hub.latest, address)
        if found is None:
            raise _problem(web.HTTPNotFound, f"module {address} is not known to the master")
        return web.json_response(found)

    async def _cells(self, _: web.Request) -> web.Response:
        return web.json_response(views.cells(self._hub.latest))

    async def _event_list(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            module = int(query["module"]) if query.get("module") else None
            after = int(query.get("after", "0"))
            limit = min(1000, max(1, int(query.get("limit", "200"))))
        except ValueError:
            raise _problem(web.HTTPBadRequest, "module, after and limit are whole numbers") from None
        level = query.get("level") or "info"
        if level not in LEVELS:
            raise _problem(web.HTTPBadRequest, f"level is one of {', '.join(LEVELS)}")
        found = self._events.events(module=module, level=_level(level), after=after, limit=limit)
        return web.json_response(
            {
                "source": self._events.description,
                "last_id": self._events.last_id,
                "events": [e.as_dict() for e in found],
            }
        )

    async def _join(self, request: web.Request) -> web.Response:
        address = self._address(request)
        return web.json_response(views.join(join_check(self._hub.latest, self._config.bank, address)))

    async def _join_all(self, _: web.Request) -> web.Response:
        """The answer for every module the master knows that is not online."""
        s = self._hub.latest
        waiting = [a for a, v in sorted(s.modules.items()) if v.lifecycle is not Lifecycle.ONLINE]
        return web.json_response([views.join(join_check(s, self._config.bank, a)) for a in waiting])

    # -- operator actions ------------------------------------------------------------------------------------

    def _authorize(self, request: web.Request, action: str) -> Actions:
        if self._actions is None or self._token is None:
            raise _problem(web.HTTPNotFound, "operator actions are off: no [web] token_file or web.token credential")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            self.refused += 1
            reason = "wrong token" if "Authorization" in request.headers else "no token"
            self._refusals(request.remote or "?", action=action, reason=reason)
            raise _problem(web.HTTPForbidden, f"{reason}: operator actions need the gateway's token")
        return self._actions

    async def _readmit(self, request: web.Request) -> web.Response:
        actions = self._authorize(request, "readmit")
        address = self._address(request)
        return self._acted(request, "readmit", *execute(actions, "readmit", str(address), addresses=self._valid))

    async def _full_charge(self, request: web.Request) -> web.Response:
        actions = self._authorize(request, "full_charge")
        return self._acted(request, "full_charge", *execute(actions, "full_charge", "1", addresses=self._valid))

    @property
    def _valid(self) -> range:
        return self._config.can.addresses

    def _acted(self, request: web.Request, action: str, ok: bool, detail: str) -> web.Response:
        log.info("web action", action=action, ok=ok, detail=detail, remote=request.remote)
        return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 409)

    # -- live ------------------------------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: the views asked for, at once and then after each snapshot, at most once a tick."""
        wanted = tuple(dict.fromkeys(v for v in request.query.get("views", "bank").split(",") if v))
        unknown = [v for v in wanted if v not in views.VIEWS]
        if unknown or not wanted:
            raise _problem(web.HTTPBadRequest, f"views are some of {', '.join(views.VIEWS)}")
        if len(self.streams) >= MAX_STREAMS:
            raise _problem(web.HTTPServiceUnavailable, f"{MAX_STREAMS} live streams are open already")
        try:
            last_event = int(request.query.get("after", str(self._events.last_id)))
        except ValueError:
            raise _problem(web.HTTPBadRequest, "after is a whole number") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        stream = Stream(wanted, request.remote or "?", task=asyncio.current_task(), transport=request.transport)
        self.streams.add(stream)
        try:
            await response.prepare(request)
            await self._follow(stream, response, last_event)
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or read nothing for WRITE_TIMEOUT
        finally:
            self.streams.discard(stream)
        return response

    async def _follow(self, stream: Stream, response: web.StreamResponse, last_event: int) -> None:
        hub, per_snapshot = self._hub, [v for v in stream.views if v != "events"]
        seq = -1
        while True:
            s = hub.latest if seq < 0 else await hub.newer(seq)
            if seq >= 0:
                stream.skipped += s.seq - seq - 1
            chunks = [self._encoded.get(s, view) for view in per_snapshot]
            if "events" in stream.views and (seq < 0 or self._events.last_id > last_event):
                found = list(reversed(self._events.events(after=last_event, limit=200)))
                if found or seq < 0:
                    last_event = found[-1].id if found else last_event
                    payload = {"last_id": last_event, "events": [e.as_dict() for e in found]}
                    chunks.append(_event("events", payload, s.seq))
            stream.writing = True
            async with asyncio.timeout(WRITE_TIMEOUT):
                await response.write(b"".join(chunks))
            stream.writing = False
            stream.sent += 1
            seq = s.seq
            # At most about one message per master tick: urgent ticks in between fold into the next message.
            await asyncio.sleep(THROTTLE * self._config.bank.tick)


def _level(text: str) -> EventLevel:
    return next(level for level in LEVELS if level == text)
