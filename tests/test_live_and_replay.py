"""One log, two drivers of the same core: `replay` and the live `Gateway` give the same snapshots and frames.

The live side is the real service: its module bus and inverter bus (python-can `virtual`, each frame received in
python-can's Notifier thread), its master loop, the inverter publisher's own loop, MasterCommands on the module
bus. To make live time exactly log time, the gateway runs on an event loop whose clock is the log's clock: the
test moves it to each tick of the log (the master loop's timer then fires) and to each frame's timestamp before
sending that frame on the bus, so the live gateway ticks, stamps and sends exactly when replay does. The log plays
as fast as the machine goes ("at speed"), with nothing mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can

from gateway import config, payload
from gateway.can.bus import open_bus
from gateway.can.logfile import LogFile
from gateway.clock import UNIX, Anchor
from gateway.master.model import BankSnapshot
from gateway.outputs.inverter import profile
from gateway.outputs.inverter.profiles import SimFrame
from gateway.outputs.inverter.schedule import Schedule
from gateway.replay import replay
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault
from gateway.sim.bus import write_log

from helpers.logs import two_bus_log

COMMANDS = 0x380


class LogClock:
    """The log's clock, moved by the test; the gateway's clock and its event loop's both read it."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def anchor(self) -> Anchor:
        """A log's timestamps are Unix time (candump), as replay takes them."""
        return UNIX


class LogTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is `clock`: timers fire when the test moves the log clock past them, never on
    their own, so the master loop ticks at the log's tick times."""

    def __init__(self, clock: LogClock) -> None:
        super().__init__()
        self._log_clock = clock

    def time(self) -> float:
        return self._log_clock()


class Recorder(can.Listener):
    """Every frame another bus instance sends on a channel, in order (python-can's thread; read under a lock)."""

    def __init__(self, channel: str) -> None:
        self.bus = open_bus("virtual", channel, 500_000)
        self._lock = threading.Lock()
        self._frames: list[tuple[int, bytes]] = []
        self._notifier = can.Notifier(self.bus, [self], timeout=0.05)

    def on_message_received(self, msg: can.Message) -> None:
        with self._lock:
            self._frames.append((msg.arbitration_id, bytes(msg.data)))

    def frames(self, keep: Callable[[int], bool] = lambda _: True) -> list[tuple[int, bytes]]:
        with self._lock:
            return [f for f in self._frames if keep(f[0])]

    def close(self) -> None:
        self._notifier.stop(timeout=1.0)
        self.bus.shutdown()


async def pause() -> None:
    """Let python-can's threads run a moment: a real-time wait that is no timer (log time stands still)."""
    await asyncio.to_thread(time.sleep, 0.0002)


async def settle(condition: Callable[[], bool], what: str) -> None:
    """Let the loop and python-can's threads run until `condition()` holds (log time stands still meanwhile)."""
    deadline = time.monotonic() + 10.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached")
        await pause()


async def live(
    log: Path, cfg: config.Config, channel: str
) -> tuple[list[BankSnapshot], list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    frames = list(LogFile(log))
    clock: LogClock = asyncio.get_running_loop()._log_clock  # type: ignore[attr-defined]
    clock.t = frames[0].timestamp
    gateway = Gateway(cfg, clock=clock)
    snapshots: list[BankSnapshot] = []
    modules, inverter = Recorder(cfg.can.modules[0].channel), Recorder(cfg.can.inverter.channel)
    sender = open_bus("virtual", cfg.can.modules[0].channel, 500_000)
    speaker = open_bus("virtual", cfg.can.inverter.channel, 500_000)
    """The inverter: sends the log's frames on the inverter's channel."""
    expects = gateway.core.link.profile.expects

    async def watch() -> None:
        seq = -1
        while True:
            snapshot = await gateway.hub.newer(seq)
            snapshots.append(snapshot)
            seq = snapshot.seq

    running = asyncio.create_task(gateway.run(), name="gateway")
    watching = asyncio.create_task(watch(), name="watch")
    try:
        await settle(gateway.ready.is_set, "gateway ready")

        async def tick_to(t: float) -> None:
            while gateway.core.next_tick <= t:
                due = gateway.core.next_tick
                clock.t = due

                def ticked(due: float = due) -> bool:
                    return gateway.hub.latest.t >= due

                await settle(ticked, f"tick at {due}")

        fed = heard = 0
        for msg in frames:
            await tick_to(msg.timestamp)
            clock.t = msg.timestamp
            if msg.channel == cfg.can.inverter.channel:
                heard += 1
                speaker.send(msg)
                schedule = gateway.core.inverter
                assert schedule is not None

                def answered(n: int = heard, s: Schedule = schedule) -> bool:
                    return s.heard >= n

                await settle(answered, "inverter frame answered")
            else:
                fed += 1
                sender.send(msg)

                def decoded(n: int = fed) -> bool:
                    return _handled(gateway) >= n

                await settle(decoded, "frame decoded")
            await settle(lambda: not gateway.core.urgent, "urgent tick")
        await tick_to(frames[-1].timestamp)
        await settle(lambda: snapshots[-1] is gateway.hub.latest, "last snapshot seen")
        await settle(lambda: len(inverter.frames()) >= _expected_inverter_frames(gateway), "inverter frames")
        commands = modules.frames(lambda can_id: can_id & ~0x1F == COMMANDS)
        sent = inverter.frames(lambda can_id: can_id not in expects)  # not the log's own inverter frames
        running.cancel()
        while not running.done():  # the fail-safe set on stop waits FAST_INTERVAL between its sets: let it
            clock.t += 0.05
            await pause()
    finally:
        watching.cancel()
        for task in (running, watching):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sender.shutdown()
        speaker.shutdown()
        modules.close()
        inverter.close()
    return snapshots, commands, sent


def _handled(gateway: Gateway) -> int:
    """Frames the store has finished with (decoded counts last, after the urgent wake it may have called)."""
    store = gateway.core.store
    return store.decoded + sum(store.rejected.values())


def _expected_inverter_frames(gateway: Gateway) -> int:
    return gateway.publisher.frames_sent if gateway.publisher is not None else 0


def test_replay_and_the_live_gateway_give_the_same_snapshots_and_frames_tick_by_tick(
    tmp_path: Path, channel: str
) -> None:
    sim = Simulator(
        modules=4,
        current=35.0,
        seed=11,
        faults=[parse_fault("overheat:3@4=56"), parse_fault("drop:2@9=4"), parse_fault("cell_high:4@6=3.58")],
    )
    log = tmp_path / "stack.log"
    write_log(log, sim, 16.0)
    cfg = config.parse(
        {
            "can": {
                "modules": {"channel": f"{channel}-modules"},
                "inverter": {"channel": f"{channel}-inverter"},
            },
            "modbus": {"enabled": False},
            "mqtt": {"enabled": False},
            "web": {"enabled": False},
            "limits": {"slew_rate": 50.0},
        }
    )
    lines = tmp_path / "snapshots.jsonl"
    out = tmp_path / "out.log"
    result = replay(log, cfg, snapshots=lines, output=out)
    replayed = [json.loads(line) for line in lines.read_text().splitlines()]
    written = list(LogFile(out))
    replay_commands = [(m.arbitration_id, bytes(m.data)) for m in written if m.channel == cfg.can.modules[0].channel]
    replay_inverter = [(m.arbitration_id, bytes(m.data)) for m in written if m.channel == "inverter"]

    loop = LogTimeLoop(LogClock(0.0))
    try:
        snapshots, commands, inverter = loop.run_until_complete(live(log, cfg, channel))
    finally:
        loop.close()

    # Tick by tick: the same snapshots (every field the payload has), then the same frames in the same order.
    shown = [_plain(payload.snapshot_dict(s)) for s in snapshots if s.seq > 0]
    assert len(shown) == result.ticks == len(replayed)
    for mine, theirs in zip(shown, replayed, strict=True):
        assert mine == theirs, (mine["t"], mine["seq"])
    assert commands == replay_commands
    assert inverter == replay_inverter
    assert any(s["limits"]["charge_current"]["value"] == 0.0 for s in replayed)  # the cell_high fault bit
    assert any(s["modules_offline"] == [2] for s in replayed)  # and the drop


def test_a_request_response_inverter_gets_the_same_answers_live_and_in_replay(tmp_path: Path, channel: str) -> None:
    """A pylon-hv inverter polling on its own channel of the log: live, its frames go out on the inverter bus at
    their log times; the gateway answers each from the snapshot of that moment, exactly as replay does."""
    cfg = config.parse(
        {
            "can": {
                "modules": {"channel": f"{channel}-modules"},
                "inverter": {"channel": f"{channel}-inverter", "protocol": "pylon-hv"},
            },
            "bank": {"strings": [[1, 2, 3, 4]]},
            "modbus": {"enabled": False},
            "mqtt": {"enabled": False},
            "web": {"enabled": False},
            "limits": {"slew_rate": 50.0},
        }
    )
    sim = Simulator(modules=4, strings=[[1, 2, 3, 4]], current=-20.0, seed=4, faults=[parse_fault("drop:2@7=2")])
    log = tmp_path / "both.log"
    polls = (
        SimFrame(0x4200, "00 00 00 00 00 00 00 00", 0.0, 0.7),
        SimFrame(0x4200, "02 00 00 00 00 00 00 00", 0.3, 3.0),
    )
    two_bus_log(
        log,
        sim,
        12.0,
        inverter=profile("pylon-hv"),
        modules_channel=cfg.can.modules[0].channel,
        inverter_channel=cfg.can.inverter.channel,
        frames=polls,
        start=1.0,
    )
    out = tmp_path / "out.log"
    result = replay(log, cfg, output=out)
    written = list(LogFile(out))
    replay_inverter = [(m.arbitration_id, bytes(m.data)) for m in written if m.channel == "inverter"]
    assert result.inverter_frames > 10 and len(replay_inverter) > 100

    loop = LogTimeLoop(LogClock(0.0))
    try:
        _, _, inverter = loop.run_until_complete(live(log, cfg, channel))
    finally:
        loop.close()
    assert inverter == replay_inverter
    assert {bytes(d[4:]) for i, d in replay_inverter if i == 0x4220} > {bytes.fromhex("30 75 30 75")}, (
        "fail-safe answers while the bank forms and after the drop, the master's limits in between"
    )


def _plain(value: Any) -> Any:
    """A snapshot dict as JSON reads it back (tuples become lists), to compare with replay's lines."""
    return json.loads(json.dumps(value))
