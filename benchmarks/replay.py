"""replay: `gateway.replay.replay` of a simulated 16-module log (1 hour; 30 s in quick mode), end to end.

The log (candump .log, what `candump -l` on a gateway box writes; 30 A of charge) is generated once into
benchmarks/.cache/ (about 50 s for the hour). Measured:
frames/s of the whole pipeline (read, decode, store, master every 0.1 s of log time, MasterCommand and inverter
schedules) with snapshot writing off and on (JSON lines into a temporary file), and the gateway's log reader
(`LogFile`) alone. Baseline from the same run: `can.LogReader` reading the log alone (the issue's targets: at
least 0.5 x that with snapshots off). In the details: bare cantools decode of its frames (prefetched), and the
raw-library floor of reading plus decoding, 1 / (1/read + 1/decode).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import can

from benchmarks import common
from benchmarks.common import Options, Row, Target
from gateway import config
from gateway.can.logfile import LogFile
from gateway.replay import ReplayResult, replay

MODULES = 16
DECODE_SAMPLE = 300_000
"""Frames prefetched for the bare decode baseline (all of them would not fit in memory comfortably)."""


def read_rate(log: Path) -> tuple[int, float]:
    """Frames in the log, and frames/s of can.LogReader alone."""
    started = time.perf_counter()
    with can.LogReader(log) as reader:
        frames = sum(1 for _ in reader)
    return frames, frames / (time.perf_counter() - started)


def log_file_rate(log: Path) -> float:
    """frames/s of the gateway's own reader (`LogFile`: python-can's parser with a fast path for candump)."""
    started = time.perf_counter()
    frames = sum(1 for _ in LogFile(log))
    return frames / (time.perf_counter() - started)


def decode_rate(log: Path) -> float:
    with can.LogReader(log) as reader:
        sample = common.prefetch(list(itertools.islice(reader, DECODE_SAMPLE)), common.module_db())
    return 1e6 / common.decode_cost_us(sample, repeats=1)


def day_minutes(result: ReplayResult) -> float | None:
    """Minutes this replay rate needs for 24 hours of the same traffic."""
    if result.start is None or result.end is None or result.end <= result.start or not result.wall:
        return None
    return 24 * 3600 * result.frames / (result.end - result.start) / (result.frames / result.wall) / 60


def run(opts: Options) -> list[Row]:
    log = common.cached_log(modules=MODULES, seconds=opts.pick(30.0, 3600.0), current=30.0)
    cfg = config.parse({"gateway": {"log_level": "warning"}})
    frames, read = read_rate(log)
    ours = log_file_rate(log)
    decode = decode_rate(log)
    floor = 1.0 / (1.0 / read + 1.0 / decode)
    common.progress(
        f"replay: {frames} frames; LogReader {read:,.0f}/s, LogFile {ours:,.0f}/s, bare decode {decode:,.0f}/s"
    )
    plain = replay(log, cfg)
    common.progress(f"replay: {plain.summary()}")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as directory:
        snapshots = Path(directory) / "snapshots.jsonl"
        written = replay(log, cfg, snapshots=snapshots)
        size = snapshots.stat().st_size
    common.progress(f"replay with snapshots: {written.summary()}")
    details = {
        "log": log.name,
        "frames": frames,
        "log_reader_per_s": read,
        "log_file_per_s": ours,
        "bare_decode_per_s": decode,
        "log_reader_plus_decode_per_s": floor,
        "ticks": plain.ticks,
        "snapshot_bytes": size,
        "minutes_per_day_of_log": {name: day_minutes(r) for name, r in (("off", plain), ("on", written))},
    }
    label = "can.LogReader alone"
    off = Target(100_000, at_most=False, unit="frames/s", ratio=0.5)
    on = Target(50_000, at_most=False, unit="frames/s")
    return [
        Row("replay", "snapshots off", plain.frames / plain.wall, "frames/s", read, label, off, details),
        Row("replay", "snapshots on", written.frames / written.wall, "frames/s", read, label, on),
        Row("replay", "log read (LogFile)", ours, "frames/s", read, label),
    ]
