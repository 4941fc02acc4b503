"""One broker connection's life cycle, shared by the MQTT and the Sparkplug publisher.

Both are clients of one broker that connect with a Will, serve until the link breaks, say a last word when they are
stopped and reconnect with backoff. `Link` does that part once; each publisher keeps what is its own: its topics and
payloads, what its Will and its last word say, MQTT's discovery and retained state, Sparkplug's births and bdSeq.

- `Broker`: where to connect, with which credentials and TLS ([mqtt]'s, or [sparkplug]'s own broker); an unreadable
  password file or a missing TLS file is a config error when the publisher is built, not a reconnect loop.
- `Link.run(session)`: sessions until cancelled, with capped exponential backoff and jitter between them. A lost
  connection is logged once, then each distinct failure once per series of attempts; refused credentials are an
  error naming the section's keys, since retrying cannot fix them.
- `Link.session(...)`: one connection: serve until it breaks; when cancelled, the publisher's last word (its
  "offline" status, its NDEATH) and the disconnect get `shutdown_timeout` seconds.
- Counters of messages published, reconnects, errors and incoming messages refused; what is refused (hostile
  input: anyone who may publish on the broker can send it) is logged once per burst, so a flood cannot fill the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from gateway.backoff import Backoff
from gateway.config import Config, TlsSection
from gateway.errors import ConfigError
from gateway.logs import BurstLog

KEEPALIVE = 30
"""Seconds; the broker publishes the Last Will after 1.5 x this of silence from a hung gateway."""
INCOMING_LIMIT = 100
"""Received messages (commands, HA's birth, the module record, a host's STATE) waiting to be handled; more are
dropped by the MQTT client."""
REFUSED = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes for bad credentials / not authorised (MQTT 3.1.1 and their MQTT 5 reason codes)."""

Serve = Callable[[aiomqtt.Client, int], Awaitable[None]]
"""A publisher's work on one connection: (client, the task's cancel requests at connect; see `raise_if_cancelled`)."""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a publisher connects, and the config section its keys are named by in messages."""

    section: Literal["mqtt", "sparkplug"]
    host: str
    port: int
    username: str | None
    password_file: Path | None
    tls: TlsSection

    @classmethod
    def of(cls, config: Config, output: Literal["mqtt", "sparkplug"]) -> Broker:
        """[mqtt]'s broker; for the Sparkplug node, [sparkplug]'s own when `[sparkplug] host` is set."""
        spb = config.sparkplug
        if output == "mqtt" or spb.host is None:
            m = config.mqtt
            return cls("mqtt", m.host, m.port, m.username, m.password_file, m.tls)
        return cls("sparkplug", spb.host, spb.port, spb.username, spb.password_file, spb.tls)

    def password(self) -> str | None:
        """The password from `password_file` (trailing newline stripped); an unreadable file is a config error."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise ConfigError(
                [f"{self.section}.password_file: cannot read {self.password_file}: {err.strerror or err}"]
            ) from err
        except UnicodeDecodeError as err:
            raise ConfigError(
                [
                    f"{self.section}.password_file: {self.password_file} is not UTF-8 text "
                    f"(byte {err.start}: {err.reason})"
                ]
            ) from err

    def tls_parameters(self) -> aiomqtt.TLSParameters | None:
        """TLS with the broker's certificate always verified; missing files are config errors."""
        tls = self.tls
        if not tls.enabled:
            return None
        files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
        missing = [
            f"{self.section}.tls.{key}: no such file: {path}"
            for key, path in files.items()
            if path and not path.is_file()
        ]
        if missing:
            raise ConfigError(missing)
        return aiomqtt.TLSParameters(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )


class Link:
    """One publisher's connection to its broker; see the module docstring.

    `name` ("mqtt", "sparkplug") starts the log events; `log` is the publisher's logger, so its lines keep their
    logger name; `clock` times the bursts of refused messages.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        name: str,
        client_id: str,
        shutdown_timeout: float,
        log: Any,
        clock: Callable[[], float],
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self._name = name
        self._shutdown_timeout = shutdown_timeout
        self._log = log
        self._password = broker.password()
        self._tls = broker.tls_parameters()
        self._backoff = Backoff()
        self._failure: str | None = None
        """The last failed attempt's error: the same one again is logged at debug level only."""
        self._ever_connected = False
        self._lost = False
        """The last session got connected: its end is logged as a lost connection, not as a failed attempt."""
        self._rejected = BurstLog(log, f"{name}: incoming message rejected", clock=clock)
        self.connected = False
        self.published = 0
        """Messages handed to the broker."""
        self.reconnects = 0
        """Successful connections after the first one."""
        self.errors = 0
        """Failed connection attempts and lost connections."""
        self.refused = 0
        """Incoming messages and commands not taken."""

    @property
    def counters(self) -> dict[str, int]:
        return {
            "published": self.published,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "refused": self.refused,
        }

    async def run(self, session: Callable[[], Awaitable[None]]) -> None:
        """Run `session` again and again until cancelled, waiting with capped exponential backoff and jitter."""
        while True:
            try:
                await session()
            except aiomqtt.MqttError as err:
                self.errors += 1
                self._report(err)
            await asyncio.sleep(self._backoff.next())

    def start_over(self) -> None:
        """The publisher ended its session on purpose: no lost connection to report, and it reconnects soon."""
        self._lost = False
        self._backoff.reset()

    async def session(
        self,
        will: aiomqtt.Will,
        serve: Serve,
        last_word: Callable[[aiomqtt.Client], Awaitable[None]],
        *,
        clean_session: bool | None = None,
        **context: Any,
    ) -> None:
        """One connection with `will`: `serve` until it breaks; when cancelled, `last_word` and the disconnect
        within `shutdown_timeout`. `context` goes into the "connected" log line."""
        baseline = cancel_requests()
        async with asyncio.timeout(None) as deadline, self._client(will, clean_session) as client:
            self._on_connected(context)
            try:
                await serve(client, baseline)
            except asyncio.CancelledError:
                deadline.reschedule(asyncio.get_running_loop().time() + self._shutdown_timeout)
                with contextlib.suppress(aiomqtt.MqttError):
                    await last_word(client)
                raise
            finally:
                self.connected = False

    async def publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Hand one message to the broker, and count it."""
        await client.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1

    def refuse(self, kind: str, **details: Any) -> None:
        """An incoming message or command not taken: counted, and logged once per burst of its `kind`."""
        self.refused += 1
        self._rejected(kind, **details)

    def acted(self, command: str, payload: str, ok: bool, detail: str) -> None:
        """An operator command's outcome (`gateway.outputs.mqtt.execute`): logged when done, else refused."""
        if ok:
            self._log.info(f"{self._name} command", command=command, payload=payload, ok=ok, detail=detail)
        else:
            self.refuse("command", command=command, payload=payload, reason=detail)

    def report_bursts(self) -> None:
        """Log the bursts of refused messages that have gone quiet (call it now and then)."""
        self._rejected.flush()

    def _client(self, will: aiomqtt.Will, clean_session: bool | None) -> aiomqtt.Client:
        b = self.broker
        return aiomqtt.Client(
            b.host,
            b.port,
            identifier=self.client_id,
            username=b.username,
            password=self._password,
            will=will,
            clean_session=clean_session,
            keepalive=KEEPALIVE,
            max_queued_incoming_messages=INCOMING_LIMIT,
            tls_params=self._tls,
            tls_insecure=b.tls.insecure if b.tls.enabled else None,
        )

    def _on_connected(self, context: Mapping[str, Any]) -> None:
        b = self.broker
        if self._ever_connected:
            self.reconnects += 1
        self.connected = self._ever_connected = self._lost = True
        self._failure = None
        self._backoff.reset()
        self._log.info(f"{self._name} connected", host=b.host, port=b.port, client_id=self.client_id, **context)

    def _report(self, err: aiomqtt.MqttError) -> None:
        """Log a lost connection once, then each distinct failure once per series of attempts."""
        b = self.broker
        text = str(err)
        if self._lost:
            self._lost = False
            self._log.warning(f"{self._name} connection lost; reconnecting", host=b.host, port=b.port, error=text)
        elif text == self._failure:
            self._log.debug(f"{self._name} connect failed again", error=text, attempt=self._backoff.attempt)
        elif isinstance(err, MqttConnectError) and getattr(err.rc, "value", err.rc) in REFUSED:
            self._failure = text
            self._log.error(
                f"{self._name} broker refused the credentials; check [{b.section}] username and password_file",
                host=b.host,
                port=b.port,
                username=b.username,
                error=text,
            )
        else:
            self._failure = text
            self._log.warning(
                f"{self._name} broker unreachable; retrying with backoff", host=b.host, port=b.port, error=text
            )


async def together(tasks: Mapping[str, Coroutine[Any, Any, None]], *, ends: tuple[type[Exception], ...]) -> None:
    """Run a connection's `tasks` (by name) until one fails; its exception, if one of `ends`, is raised bare rather
    than in an ExceptionGroup, so the session ends as it would with a single task."""
    try:
        async with asyncio.TaskGroup() as group:
            for name, coroutine in tasks.items():
                group.create_task(coroutine, name=name)
    except* ends as failed:
        raise failed.exceptions[0] from None


def cancel_requests() -> int:
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def raise_if_cancelled(baseline: int = 0) -> None:
    """Honour a cancellation that Python 3.11's `asyncio.wait_for` (inside aiomqtt) swallowed.

    3.11's wait_for drops a cancel that races the awaited result (fixed in 3.12); the task would then run on
    after being cancelled, and a TaskGroup waiting for it would hang. `baseline` is the count of cancel
    requests the task already had (3.11's TaskGroup leaves one behind when a child fails).
    """
    if cancel_requests() > baseline:
        raise asyncio.CancelledError
