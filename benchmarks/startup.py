"""startup: time from process start to READY=1, for `bms-gateway run --config FILE` as systemd starts it.

The command runs as a subprocess with NOTIFY_SOCKET pointing at a unix datagram socket this benchmark owns;
the clock starts just before the process is spawned and stops when a datagram with READY=1 arrives. The config
is a deployment's: virtual buses, Modbus on port 0, MQTT on (to a port where no broker listens: MQTT does not
gate readiness, but its imports count), inverter bus on. Then SIGTERM, as systemd stops it. The median of N
starts (10; 1 in quick mode) is reported, the slowest in the details.

Baseline: a bare interpreter that imports the same libraries (python-can, cantools, pymodbus, aiomqtt,
structlog), loads the module DBC, opens a virtual bus with a Notifier and sends READY=1.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common
from benchmarks.common import Options, Row, Target
from gateway.can.dbc import shipped

CONFIG = """\
[gateway]
log_level = "warning"
[can.modules]
channel = "startup-modules"
[can.inverter]
channel = "startup-inverter"
[modbus]
port = 0
[mqtt]
port = {port}
[web]
port = 0
"""

BARE = """\
import os, socket, can, cantools, pymodbus.server, aiomqtt, structlog, aiohttp.web
db = cantools.database.load_file({dbc!r}, database_format="dbc", strict=True)
bus = can.Bus(interface="virtual", channel="startup")
notifier = can.Notifier(bus, [can.BufferedReader()])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
notifier.stop()
bus.shutdown()
"""


def time_to_ready(argv: Sequence[str], directory: Path) -> float:
    """Seconds from spawning `argv` to its READY=1 on our notify socket."""
    address = directory / "notify"
    address.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, (directory / "stderr").open("w+b") as err:
        sock.bind(str(address))
        sock.settimeout(10.0)
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, env={**os.environ, "NOTIFY_SOCKET": str(address)}, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    err.seek(0)
                    raise RuntimeError(f"{argv[0]}: no READY=1 within 10 s: {err.read().decode()[-2000:]}") from None
                if b"READY=1" in data.split(b"\n"):
                    return time.perf_counter() - started
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(opts: Options) -> list[Row]:
    starts = opts.pick(1, 10)
    gateway = Path(sys.executable).with_name("bms-gateway")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as name:
        directory = Path(name)
        config = directory / "gateway.toml"
        config.write_text(CONFIG.format(port=common.free_port()))
        bare_argv = [sys.executable, "-c", BARE.format(dbc=str(shipped("module.dbc")))]
        ours, bare = [], []
        for _ in range(starts):
            ours.append(time_to_ready([str(gateway), "run", "--config", str(config)], directory))
            bare.append(time_to_ready(bare_argv, directory))
    common.progress(f"startup: gateway {ours}, bare {bare}")
    details = {"max_s": max(ours), "samples_s": ours, "bare_samples_s": bare}
    return [
        Row(
            "startup",
            f"process start to READY=1 (median of {starts})",
            statistics.median(ours),
            "s",
            statistics.median(bare),
            "bare imports + bus",
            Target(1.5, at_most=True, unit="s"),
            details,
        )
    ]
