"""Replay on hostile logs: clocks that jump, and garbage that must not become modules."""

from __future__ import annotations

import gzip
import io
import json
import random
import threading
from pathlib import Path
from unittest.mock import patch

import can

from gateway import config
from gateway.replay import Progress, ReplayResult, progress_bar, replay
from gateway.sim import Simulator
from gateway.sim.bus import write_log

from helpers.clocks import unix

CFG = config.parse({})


def replayed(log: Path, *, snapshots: Path | None = None) -> ReplayResult:
    """Replay in a thread, so that a replay that never ends fails this test instead of hanging the suite."""
    out: list[ReplayResult] = []
    worker = threading.Thread(target=lambda: out.append(replay(log, CFG, snapshots=snapshots)), daemon=True)
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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def recording(told: list[tuple[int, float | None]]) -> Progress:
    """A progress callback that keeps what it is told in `told`."""
    return lambda n, fraction: told.append((n, fraction))


def test_progress_is_told_the_frames_and_how_much_of_the_log_is_read(tmp_path: Path) -> None:
    plain = tmp_path / "stack.log"
    frames = write_log(plain, Simulator(modules=2, seed=1), 20.0)
    compressed = tmp_path / "stack.log.gz"
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    for log in (plain, compressed):
        told: list[tuple[int, float | None]] = []
        with patch("gateway.replay.PROGRESS_EVERY", 100), patch("gateway.can.logfile.CHUNK", 4096):
            result = replay(log, CFG, progress=recording(told))
        assert result.frames == frames
        assert [n for n, _ in told] == list(range(100, frames + 1, 100))
        fractions = [f for _, f in told]
        assert all(f is not None and 0.0 < f <= 1.0 for f in fractions)
        assert fractions == sorted(f for f in fractions if f is not None)
        if log is plain:  # read 4 kB at a time: the fraction grows with the frames
            assert fractions[0] != fractions[-1] and told[0][1] is not None and told[0][1] < 0.2


def test_the_progress_bar_is_drawn_only_on_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "stack.log"
    with progress_bar(log, io.StringIO()) as progress:
        assert progress is None
    terminal = Terminal()
    with progress_bar(log, terminal) as progress:
        assert progress is not None
        progress(16384, 0.25)
        progress(32768, None)  # a format python-can reads from the path itself: no fraction
    assert "replay stack.log" in terminal.getvalue()
    assert "frames/s" in terminal.getvalue()
