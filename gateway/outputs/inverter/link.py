"""What the inverter sends: its frames heard, for the master (`inverter_comm_lost`) and for the schedule (the
requests, pairings and heartbeats it answers).

Fed from python-can's receive thread (or by replay); only the frames the profile expects count. `info` is
replaced whole, so the master reads a consistent value; the heard frames wait in a bounded queue that the
publisher (or replay) drains into `Schedule.due`, so the schedule stays pure and replay reproduces it.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

import can

from gateway.logs import get
from gateway.master.model import InverterInfo
from gateway.outputs.inverter.profiles import Profile
from gateway.outputs.inverter.schedule import Heard

log = get("gateway.inverter")

NAME_LOG_INTERVAL = 60.0
""""inverter seen" is logged when the inverter's name changes, at most once per this many seconds of frame time:
a bus that carries other traffic on an identification ID (or a log with random IDs) decodes a new "name" from
every frame."""
QUEUE = 256
"""Heard frames waiting for the schedule at most; older ones are dropped (counted) if nobody drains them."""


class InverterLink:
    """The inverter's frames as they arrive.

    None is required: `info` stays None for an inverter that never sends one, and the master raises
    `inverter_comm_lost` only after one was seen. "inverter seen" is logged for the first frame and for a new
    name, at most once per NAME_LOG_INTERVAL: a burst of changing names is one line, and the name it settles on
    is the next, with how often it changed in between.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.on_heard: Callable[[], None] | None = None
        """Called (in the feeding thread) when a frame was queued for the schedule: the publisher wakes."""
        self.dropped = 0
        self._info: InverterInfo | None = None
        self._queue: deque[Heard] = deque()
        self._lock = threading.Lock()
        self._answers = bool(profile.rules)
        self._logged: str | None = None
        self._logged_at = -math.inf
        self._renames = 0

    @property
    def info(self) -> InverterInfo | None:
        return self._info

    def on_message(self, msg: can.Message, t: float) -> None:
        if msg.is_remote_frame or msg.is_error_frame or msg.is_extended_id != self.profile.extended:
            return
        self.feed(msg.arbitration_id, bytes(msg.data), t)

    def feed(self, can_id: int, data: bytes, t: float) -> None:
        """One frame received at `t`; frames the profile does not expect are ignored."""
        if can_id not in self.profile.expects:
            return
        before = self._info
        name = "" if before is None else before.name
        keepalive_seen = None if before is None else before.keepalive_seen
        identify = self.profile.identify
        named = identify(can_id, data) if identify is not None else None
        if named is None:
            keepalive_seen = t
        else:
            name = named
        self._info = InverterInfo(name=name, last_seen=t, keepalive_seen=keepalive_seen)
        if before is not None and before.name != name:
            self._renames += 1
        if name != self._logged and t >= self._logged_at + NAME_LOG_INTERVAL:
            renames = {"renames": self._renames} if self._renames > 1 else {}
            log.info("inverter seen", name=name or None, can_id=hex(can_id), **renames)
            self._logged, self._logged_at, self._renames = name, t, 0
        if self._answers:
            with self._lock:
                if len(self._queue) >= QUEUE:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(Heard(t, can_id, data))
            if self.on_heard is not None:
                self.on_heard()

    def drain(self) -> tuple[Heard, ...]:
        """The frames heard since the last call, oldest first."""
        with self._lock:
            heard = tuple(self._queue)
            self._queue.clear()
        return heard

    @property
    def pending(self) -> bool:
        with self._lock:
            return bool(self._queue)
