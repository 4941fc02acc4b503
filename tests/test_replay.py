"""Replay on hostile logs: clocks that jump, and garbage that must not become modules."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import can

from gateway import config
from gateway.replay import ReplayResult, replay
from gateway.sim import Simulator
from gateway.sim.bus import write_log

from helpers.clocks import unix

CFG = config.parse({})


def replayed(log: Path, **kwargs: Path) -> ReplayResult:
    """Replay in a thread, so that a replay that never ends fails this test instead of hanging the suite."""
    out: list[ReplayResult] = []
    worker = threading.Thread(target=lambda: out.append(replay(log, CFG, **kwargs)), daemon=True)
    worker.start()
    worker.join(timeout=60.0)
    assert out, "replay did not finish"
    return out[0]


def test_a_log_whose_clock_jumps_forward_is_one_silence_and_one_tick(tmp_path: Path) -> None:
    """1e8 s between two frames: the clock jumps and the master ticks once, it does not walk 1e9 ticks."""
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    write_log(first, Simulator(modules=2, seed=1), 5.0)
    write_log(second, Simulator(modules=2, seed=1), 5.0)
    lines = first.read_text().splitlines()
    for line in second.read_text().splitlines():
        stamp, rest = line.split(" ", 1)
        lines.append(f"({float(stamp.strip('()')) + 1e8:.6f}) {rest}")
    log = tmp_path / "jump.log"
    log.write_text("\n".join(lines) + "\n")
    result = replayed(log, snapshots=tmp_path / "s.jsonl")
    assert result.gaps == 1
    assert "1 silences longer than module_timeout jumped over (one tick each)" in result.summary()
    assert result.ticks < 2 * 5.0 / 0.1 + 10
    snapshots = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    after = next(s for s in snapshots if unix(s["t"]) > 1e8)  # replay's times are the log's, as ISO 8601
    assert after["modules_offline"] == [1, 2]  # the tick at the jump sees the silence
    assert snapshots[-1]["modules_online"] == [1, 2]


def test_garbage_frames_make_no_modules_and_the_snapshots_stay_small(tmp_path: Path) -> None:
    """Random IDs and payloads for 60 s: some decode in range, but no module's AliveCounter ever advances."""
    rng = random.Random(7)
    log = tmp_path / "garbage.log"
    with can.Logger(log) as writer:
        for n in range(60_000):
            length = rng.choice((8, 8, 8, rng.randint(0, 8)))
            writer(
                can.Message(
                    timestamp=n * 0.001,
                    arbitration_id=rng.randint(0, 0x7FF),
                    data=bytes(rng.getrandbits(8) for _ in range(length)),
                    is_extended_id=False,
                )
            )
    out = tmp_path / "s.jsonl"
    result = replayed(log, snapshots=out)
    assert result.decoded > 0  # garbage does decode: the rule is what keeps it out
    lines = out.read_text().splitlines()
    assert len(lines) == result.ticks
    assert all(json.loads(line)["modules"] == {} for line in lines)
    assert out.stat().st_size < 2_000 * len(lines)
