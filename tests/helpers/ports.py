"""TCP ports on 127.0.0.1: a free one to hand a server, one held busy, and whether one is listening."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    """A port nobody listens on now, for a server that must be told its port beforehand (a config file, a broker
    that restarts on the same port); where a server reports the port it bound, give it port 0 instead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def occupied() -> Iterator[tuple[socket.socket, int]]:
    """A TCP port on 127.0.0.1 that this test listens on (so nobody else can bind it): (socket, port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s, int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False
