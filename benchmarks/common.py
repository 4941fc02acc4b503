"""Shared helpers of the benchmark suite: result rows and the table, CPU clocks, realistic frame pools, a paced
sender on python-can's virtual bus, gateway configs, a running Gateway and a throw-away mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import itertools
import math
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import can
import can.interfaces.virtual
from cantools.database.can import Database, Message

from gateway import config
from gateway.can import dbc
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault
from gateway.sim.bus import write_log

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
ADDRESS_MASK = 0x1F
T = TypeVar("T")


class ToolMissing(Exception):
    """A benchmark needs a program this machine does not have (its rows are reported as skipped)."""


# -- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A goal from the issue: the measured value (or, with `on_ratio`, the ratio to the baseline; with
    `on_difference`, how far it is above the baseline) at most/least `value`; with `ratio` as well, the ratio to
    the baseline at most/least that too (both must hold)."""

    value: float
    at_most: bool
    unit: str = ""
    on_ratio: bool = False
    on_difference: bool = False
    ratio: float | None = None

    def met(self, measured: float, ratio: float | None, baseline: float | None = None) -> bool | None:
        if self.on_difference:
            x = None if baseline is None else measured - baseline
        else:
            x = ratio if self.on_ratio else measured
        checks = [(x, self.value)]
        if self.ratio is not None:
            checks.append((ratio, self.ratio))
        if any(x is None for x, _ in checks):
            return None
        return all(x <= limit if self.at_most else x >= limit for x, limit in checks)  # type: ignore[operator]

    def __str__(self) -> str:
        sign = "<=" if self.at_most else ">="
        if self.on_ratio:
            return f"{sign} {self.value:g} x baseline"
        if self.on_difference:
            text = f"{sign} baseline + {number(self.value)} {self.unit}".rstrip()
        else:
            text = f"{sign} {number(self.value)} {self.unit}".rstrip()
        return text if self.ratio is None else f"{text}, {sign} {self.ratio:g} x baseline"


@dataclass(slots=True)
class Row:
    """One line of the table: a measured value, its raw-library baseline from the same run, and the target."""

    benchmark: str
    metric: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or not math.isfinite(self.baseline):
            return None
        return self.measured / self.baseline

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.measured, self.ratio, self.baseline)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = None if self.target is None else str(self.target)
        out["ratio"] = self.ratio
        out["met"] = self.met
        return out


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for: a quick smoke run or the full one, and the latency events."""

    quick: bool
    events: int

    def pick(self, quick: T, full: T) -> T:
        """`quick` in a smoke run, else `full`."""
        return quick if self.quick else full


def number(value: float) -> str:
    """Three significant digits, or a whole number with thousands separators from 1000 up."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(rows: Sequence[Row], skipped: Mapping[str, str], failed: Mapping[str, str]) -> str:
    """benchmark | measured | baseline | ratio | target | met?"""
    header = ("benchmark", "measured", "baseline", "ratio", "target", "met?")
    lines: list[tuple[str, ...]] = []
    for r in rows:
        base = "-" if r.baseline is None else f"{number(r.baseline)} {r.unit} ({r.baseline_label})"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        met = {None: "-", True: "yes", False: "NO"}[r.met]
        lines.append(
            (f"{r.benchmark}: {r.metric}", f"{number(r.measured)} {r.unit}", base, ratio, str(r.target or "-"), met)
        )
    lines += [(f"{name}: skipped", reason, "", "", "", "") for name, reason in skipped.items()]
    lines += [(f"{name}: FAILED", reason, "", "", "", "") for name, reason in failed.items()]
    widths = [max(len(x[i]) for x in (header, *lines)) for i in range(len(header))]
    out = [" | ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (header, *lines)]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def progress(text: str) -> None:
    """A line on stderr while the suite runs (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


# -- CPU time ----------------------------------------------------------------------------------------------------


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds a running thread has used: Linux's per-thread clock, readable from any thread."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class CpuMeter:
    """Share of one core (%) used by this process minus `excluded` threads (senders, observers) since `start()`.

    Process CPU time counts every thread (python-can's Notifier thread, the event loop, the GC); the excluded
    threads' own clocks are subtracted, so a sender in the same process is not charged to the receiver.
    """

    def __init__(self, excluded: Sequence[threading.Thread] = ()) -> None:
        self._excluded = tuple(excluded)
        self._wall = self._process = self._other = 0.0
        self._threads: dict[threading.Thread, float] = {}

    def start(self, watch: Sequence[threading.Thread] = ()) -> None:
        """Open the window; `watch` are threads whose own share `thread_share` reports too."""
        self._threads = {t: thread_cpu(t) for t in watch}
        self._other = sum(thread_cpu(t) for t in self._excluded)
        self._process = time.process_time()
        self._wall = time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self._wall
        used = time.process_time() - self._process - (sum(thread_cpu(t) for t in self._excluded) - self._other)
        return 100.0 * used / wall

    def thread_share(self, thread: threading.Thread) -> float:
        return 100.0 * (thread_cpu(thread) - self._threads[thread]) / (time.perf_counter() - self._wall)


def notifier_threads(channel: str) -> list[threading.Thread]:
    """python-can's Notifier receive threads of the buses on a virtual channel."""
    return [t for t in threading.enumerate() if t.name.startswith("Notifier for bus") and channel in t.name]


def vm_kb(field_name: str) -> int:
    """A value of /proc/self/status in kB, e.g. VmRSS (resident now) or VmHWM (resident at peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


# -- traffic -----------------------------------------------------------------------------------------------------


def module_db() -> Database:
    return dbc.load(None, "module.dbc", "benchmarks")


def pylontech_db() -> Database:
    return dbc.load(None, "inverters/pylontech.dbc", "benchmarks")


def messages_by_base(db: Database) -> dict[int, Message]:
    """The DBC's messages by base ID (frame ID without the module address)."""
    return {m.frame_id & ~ADDRESS_MASK: m for m in db.messages}


def cached_log(
    *,
    modules: int,
    seconds: float,
    cells: int = 16,
    sensors: int = 4,
    current: float = 20.0,
    faults: Sequence[str] = (),
) -> Path:
    """A simulated candump log in benchmarks/.cache/, generated on first use and named by its parameters and a
    hash of the simulator's source (a changed simulator makes a new one); `faults` in the CLI form."""
    sources = sorted((ROOT / "gateway" / "sim").glob("*.py"))
    source = b"".join(p.read_bytes() for p in sources) + (repr(tuple(faults)).encode() if faults else b"")
    digest = hashlib.sha256(source).hexdigest()[:10]
    path = CACHE / f"sim-{modules}m{cells}c{sensors}s-{current:g}A-{seconds:g}s-{digest}.log"
    if not path.exists():
        progress(f"generating {path.name} ({seconds:g} s of {modules} modules)")
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.log")
        sim = Simulator(
            modules=modules,
            cells=cells,
            sensors=sensors,
            current=current,
            seed=1,
            faults=[parse_fault(f) for f in faults],
        )
        write_log(partial, sim, seconds)
        partial.rename(path)
    return path


def frame_pool(
    *, modules: int, seconds: float, cells: int = 16, sensors: int = 4, current: float = 20.0
) -> list[can.Message]:
    """`seconds` of simulated module traffic (every frame at its protocol period), in time order."""
    sim = Simulator(modules=modules, cells=cells, sensors=sensors, current=current, seed=1)
    return list(sim.advance(until=seconds))


_channel_numbers = itertools.count()


def unique_channel(name: str) -> str:
    """A virtual CAN channel name nothing else in this process uses."""
    return f"bench-{name}-{os.getpid()}-{next(_channel_numbers)}"


class PacedSender(threading.Thread):
    """Puts frames from `pool`, cyclically, into the queue of every receiver on a virtual channel at `rate`/s.

    This is what `VirtualBus.send` does, minus its per-frame deepcopy (about 12 us, which would cap what one
    thread can offer far below what a receiver can take); every receiver gets the same frames. Frames go out in
    batches every millisecond, as many as are due, so the rate holds on average; `sent` counts them. A rate of
    0 pauses. Buses in `exclude` (the benchmark's own) get nothing.
    """

    def __init__(
        self, channel: str, pool: Sequence[can.Message], rate: float = 0.0, exclude: Sequence[can.BusABC] = ()
    ) -> None:
        super().__init__(name=f"bench sender {channel}", daemon=True)
        self.channel = channel
        self.sent = 0
        self._pool = tuple(pool)
        self._excluded = {id(getattr(bus, "queue", None)) for bus in exclude}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._rate = rate
        self._origin = time.perf_counter()
        self._base = 0

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate, self._origin, self._base = rate, time.perf_counter(), self.sent

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2.0)

    def run(self) -> None:
        pool, n, i = self._pool, len(self._pool), 0
        while not self._stop_event.wait(0.001):
            with self._lock:
                due = int((time.perf_counter() - self._origin) * self._rate) - (self.sent - self._base)
            if due <= 0:
                continue
            queues = [q for q in can.interfaces.virtual.channels.get(self.channel, ()) if id(q) not in self._excluded]
            for _ in range(due):
                msg = pool[i]
                i = i + 1 if i + 1 < n else 0
                for q in queues:
                    q.put_nowait(msg)
            self.sent += due


@contextlib.contextmanager
def sending(
    channel: str, pool: Sequence[can.Message], rate: float = 0.0, exclude: Sequence[can.BusABC] = ()
) -> Iterator[PacedSender]:
    """A running `PacedSender`, started once a receiver (a bus not in `exclude`) is open on the channel."""
    excluded = {id(getattr(bus, "queue", None)) for bus in exclude}
    deadline = time.monotonic() + 10.0
    while not [q for q in can.interfaces.virtual.channels.get(channel, ()) if id(q) not in excluded]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no receiver opened virtual channel {channel!r}")
        time.sleep(0.01)
    sender = PacedSender(channel, pool, rate, exclude)
    sender.start()
    try:
        yield sender
    finally:
        sender.stop()


# -- the gateway -------------------------------------------------------------------------------------------------


def gateway_config(raw: Mapping[str, Any] | None = None) -> config.Config:
    """A config on fresh virtual channels, Modbus, MQTT and the web off, quiet logs; `raw` overrides (merged per
    table)."""
    merged: dict[str, Any] = {
        "gateway": {"log_level": "warning"},
        "can": {"modules": {"channel": unique_channel("modules")}, "inverter": {"channel": unique_channel("inverter")}},
        "modbus": {"enabled": False},
        "mqtt": {"enabled": False},
        "web": {"enabled": False},
    }
    _merge(merged, raw or {})
    return config.parse(merged)


def _merge(into: dict[str, Any], raw: Mapping[str, Any]) -> None:
    for key, value in raw.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@contextlib.asynccontextmanager
async def running(gateway: Gateway, within: float = 10.0) -> AsyncIterator[Gateway]:
    """The gateway's `run()` as a task, ready within `within` s, until the block ends (then cancelled, as on
    SIGTERM)."""
    task = asyncio.create_task(gateway.run(), name="gateway")
    ready = asyncio.create_task(gateway.ready.wait())
    try:
        await asyncio.wait({task, ready}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        if not ready.done():
            raise RuntimeError("the gateway did not get ready")
        yield gateway
    finally:
        ready.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- helpers for other processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto() -> Iterator[int]:
    """A mosquitto broker on a free loopback port (anonymous, no persistence); yields the port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise ToolMissing("mosquitto is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as directory:
        conf = Path(directory) / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        conf.write_text("\n".join([*lines, f"user {getpass.getuser()}"]) + "\n")
        log = Path(directory) / "mosquitto.log"
        with log.open("ab") as out:
            process = subprocess.Popen([exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 5.0
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {log.read_text()}")
                time.sleep(0.02)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def decode_cost_us(messages: Sequence[tuple[Message, bytes]], repeats: int = 3) -> float:
    """Bare cantools decode of prefetched payloads: the best of `repeats` passes, microseconds per frame."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for message, data in messages:
            message.decode(data, decode_choices=False)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(messages)


def prefetch(frames: Sequence[can.Message], db: Database) -> list[tuple[Message, bytes]]:
    """(DBC message, payload bytes) of each frame the DBC knows, for bare decoding."""
    by_base = messages_by_base(db)
    return [
        (by_base[f.arbitration_id & ~ADDRESS_MASK], bytes(f.data))
        for f in frames
        if f.arbitration_id & ~ADDRESS_MASK in by_base
    ]


@contextlib.contextmanager
def spawned(target: Callable[[Connection, Any], None], arg: Any) -> Iterator[tuple[Connection, Any]]:
    """`target(pipe, arg)` in a fresh interpreter (its CPU is not ours); yields the pipe and the first message
    it sends (its port, or that it is ready), and tells it "quit" at the end."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, arg), daemon=True)
    process.start()
    try:
        if not parent.poll(30.0):
            raise RuntimeError(f"{target.__name__} did not start")
        yield parent, parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("quit")
        process.join(10.0)
        if process.is_alive():
            process.terminate()
            process.join(5.0)
