"""The adapter: moves the schedule's frames onto the inverter bus, from our own loop, until cancelled.

Never python-can's periodic sender: if this process hung, the kernel would go on sending the last limits, and
the inverter would trust them. The loop asks the schedule on every new snapshot (so sets ride on the master's
ticks, live exactly as in replay), at once when the inverter speaks (answers within the 100 ms inverters allow),
and at the schedule's own wake-up once the snapshot is stale.
"""

from __future__ import annotations

import asyncio
import contextlib

import can

from gateway.clock import Clock
from gateway.hub import SnapshotHub
from gateway.logs import BurstLog, get
from gateway.outputs.inverter.encode import Frame
from gateway.outputs.inverter.link import InverterLink
from gateway.outputs.inverter.schedule import FAST_INTERVAL, Schedule

log = get("gateway.inverter")


class InverterPublisher:
    """Sends the schedule's frames. A send error (a full transmit buffer when the inverter is unplugged) is
    counted and logged once per burst; the next set is tried all the same."""

    def __init__(
        self, bus: can.BusABC, hub: SnapshotHub, *, schedule: Schedule, clock: Clock, link: InverterLink | None = None
    ) -> None:
        self._bus = bus
        self._hub = hub
        self._clock = clock
        self._schedule = schedule
        self._link = link
        self._heard = asyncio.Event()
        self._burst = BurstLog(log, "inverter frame not sent")
        self.stopped = False
        """The fail-safe set of a stop went out: nothing more is sent."""
        self.frames_sent = 0
        self.send_errors = 0
        self._loop = asyncio.get_running_loop()
        if link is not None:
            link.on_heard = self._wake

    def _wake(self) -> None:
        """The inverter spoke (python-can's thread): wake the loop."""
        self._loop.call_soon_threadsafe(self._heard.set)

    @property
    def counters(self) -> dict[str, int]:
        return {"frames_sent": self.frames_sent, "send_errors": self.send_errors, "fast_sends": self.fast_sends}

    @property
    def fast_sends(self) -> int:
        return self._schedule.fast_sends

    def _step(self) -> None:
        self._heard.clear()  # before draining: a frame that arrives after it wakes the next wait
        heard = () if self._link is None else self._link.drain()
        self._send(self._schedule.due(self._clock(), self._hub.latest, heard))

    async def run(self) -> None:
        """Send what the schedule says each time the master ticks (a new snapshot) or the inverter speaks, and on
        the schedule's own wake-up once the snapshot is stale."""
        reason: str | None = None
        while not self.stopped:
            seq = self._hub.latest.seq
            self._step()
            if self._schedule.reason != reason:
                reason = self._schedule.reason
                if reason is None:
                    log.info("inverter gets the master's limits again")
                else:
                    log.warning("inverter gets the fail-safe set", reason=reason)
            self._burst.flush()
            delay = max(0.0, self._schedule.wake() - self._clock())
            waiters = {asyncio.ensure_future(self._hub.newer(seq)), asyncio.ensure_future(self._heard.wait())}
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:  # not awaited: awaiting here could swallow this task's own cancellation
                    waiter.cancel()

    async def send_failsafe(self, times: int = 3, *, answer_for: float = 0.0) -> None:
        """On stop: the fail-safe set `times` times, FAST_INTERVAL apart, so that the inverter stops by itself and
        shows why, instead of waiting out the silence with the last limits; requests still pending are answered
        with it. A request/response inverter is never sent anything unasked: its next request, if it comes within
        `answer_for` s, is answered with the fail-safe set. Nothing else is sent after it: `run` ends."""
        self.stopped = True
        schedule = self._schedule
        schedule.stopping = True
        data = schedule.failsafe(self._hub.latest)
        for n in range(times if data else 0):
            if n:
                await asyncio.sleep(FAST_INTERVAL)
            self._send(data)
        self._answer()  # requests already heard
        deadline = self._clock() + (answer_for if schedule.answers_only else 0.0)
        while schedule.stop_answers == 0 and (left := deadline - self._clock()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._heard.wait()
            self._answer()

    def _answer(self) -> None:
        self._heard.clear()
        heard = () if self._link is None else self._link.drain()
        self._send(self._schedule.answer(self._clock(), self._hub.latest, heard))

    def _send(self, data: list[Frame]) -> None:
        for can_id, payload, extended in data:
            try:
                self._bus.send(can.Message(arbitration_id=can_id, data=payload, is_extended_id=extended), timeout=0.0)
            except can.CanError as err:
                self.send_errors += 1
                self._burst("send_error", error=str(err))
            else:
                self.frames_sent += 1
