"""Shared fixtures: unique virtual CAN channels, and a check that no test leaks an open bus."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import can.interfaces.virtual
import pytest

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
    assert not leaked, f"virtual CAN buses left open on channels {sorted(leaked)}"
