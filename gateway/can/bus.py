"""Opening python-can buses from the config, and the listener that decodes where frames arrive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import can

from gateway.errors import BusError
from gateway.logs import get

log = get("gateway.can")


def open_bus(interface: str, channel: str, bitrate: int, **options: Any) -> can.BusABC:
    """Open a bus with exactly these arguments: `ignore_config` keeps python-can from merging in ~/can.conf and
    CAN_* environment variables, since a gateway must do what its own config says."""
    try:
        return can.Bus(interface=interface, channel=channel, bitrate=bitrate, ignore_config=True, **options)
    except (can.CanError, OSError, ValueError, ImportError, TypeError, NotImplementedError) as err:
        raise BusError(f"cannot open CAN interface {interface!r} channel {channel!r}: {err}") from err


class DecodingListener(can.Listener):
    """Hands every received frame, stamped by `clock`, to `sink` in python-can's Notifier thread, which received it.

    Decoding here rather than queueing every frame into asyncio is what keeps a saturated bus cheap. A bus
    error is recorded and signalled through `on_failure` so the service can reopen the bus.
    """

    def __init__(
        self,
        sink: Callable[[can.Message, float], None],
        clock: Callable[[], float],
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._on_failure = on_failure
        self.error: BaseException | None = None

    def on_message_received(self, msg: can.Message) -> None:
        self._sink(msg, self._clock())

    def on_error(self, exc: Exception) -> None:
        self.error = exc
        if self._on_failure is not None:
            self._on_failure(exc)
