"""Shared fixtures: unique virtual CAN channels, a check that no test leaks an open bus, and logging put back; the
fixtures of helpers/ (a mosquitto broker, a systemd notify socket) registered as plugins."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import can.interfaces.virtual
import pytest
import structlog
from hypothesis import settings

from gateway import logs

settings.register_profile("gateway", print_blob=True)
settings.load_profile("gateway")
"""A property that fails prints `@reproduce_failure(...)` to replay it exactly; keep what it finds as `@example`."""

pytest.register_assert_rewrite("helpers")  # their asserts report values, as in the test modules

pytest_plugins = ["helpers.mosquitto", "helpers.service", "helpers.socat"]
"""`mosquitto`, `mosquitto_auth`, `mosquitto_tls`; `notify`; `pty_pair`."""

_counter = itertools.count()


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """A virtual CAN channel name no other test uses."""
    return f"{request.node.name}-{next(_counter)}"


@pytest.fixture(autouse=True)
def no_leaked_buses() -> Iterator[None]:
    """Fail a test that leaves a python-can virtual bus open (its channel stays registered)."""
    before = set(can.interfaces.virtual.channels)
    yield
    leaked = set(can.interfaces.virtual.channels) - before
    for name in leaked:
        can.interfaces.virtual.channels.pop(name, None)
    assert not leaked, f"virtual CAN buses left open on channels {sorted(leaked, key=str)}"


@pytest.fixture(autouse=True)
def logging_put_back(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo `gateway.logs.configure`, which the CLI's commands run: it gives structlog a new processor list, and
    `structlog.testing.capture_logs` in a later test would miss the loggers cached with the previous one; its
    root handler would write to this test's captured stderr after it is closed. Within the test it configures
    without `cache_logger_on_first_use`: a module's logger first used then (`gateway.history`'s, by a `demo`)
    would otherwise keep this test's processors for the rest of the session, out of every later capture."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure = logs.configure

    def uncached(*args: Any, **kwargs: Any) -> None:
        configure(*args, **kwargs)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(logs, "configure", uncached)
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
