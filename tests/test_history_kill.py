"""kill -9 and start again: the history is continuous within its loss bound and the restart is on record.

The gateway runs as a process of its own, `bms-gateway demo --config FILE`: the same `_serve` that `run` runs,
with the simulator as one more task on the config's virtual module bus (python-can's virtual bus lives inside one
process, so a separate simulator process could not reach it). The test reads the history the way an installer
does, read-only, while the gateway writes it, kills the process with SIGKILL, and starts it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from gateway.history.events import UNCLEAN
from gateway.history.store import HistoryError, Reader

from helpers.history import events, history, named

T = TypeVar("T")
COUNTER_LOSS = 5.0
"""The promise: a kill loses at most this many seconds of counters (and no committed event)."""
BANK_CURRENT = 30.0


def write_config(path: Path, channel: str, db: Path) -> Path:
    raw = {
        "gateway": {"id": "killed", "log_level": "info", "log_format": "json"},
        "can": {
            "modules": {"interface": "virtual", "channel": f"{channel}-modules"},
            "inverter": {"interface": "virtual", "channel": f"{channel}-inverter"},
        },
        "bank": {"strings": [[1], [2], [3]], "isolation_holdoff": 3600.0},
        "modbus": {"enabled": False},
        "mqtt": {"enabled": False},
        "history": {"path": str(db)},
    }
    path.write_text(tomli_w.dumps(raw))
    return path


@contextmanager
def gateway(cfg: Path, log: Path, *faults: str) -> Iterator[subprocess.Popen[bytes]]:
    """`bms-gateway demo --config CFG` with three modules charging at 30 A; killed if the test leaves it running."""
    command = [sys.executable, "-m", "gateway", "demo", "--config", str(cfg), "--modules", "3"]
    command += ["--current", str(BANK_CURRENT), *(f"--fault={f}" for f in faults)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10.0)


def wait_for(read: Callable[[], T | None], *, within: float, what: str, log: Path) -> T:
    """Poll `read` (a HistoryError counts as not yet) until it returns something."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            found = read()
        except HistoryError:
            found = None
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {within} s; the gateway's log:\n{log.read_text()[-3000:]}")


def bank(db: Path) -> dict[str, Any]:
    counters: dict[str, Any] = history(db)["counters"]["bank"]
    return counters


def test_kill_9_loses_at_most_seconds_of_counters_and_a_restart_remembers_the_isolation(
    channel: str, tmp_path: Path
) -> None:
    db, log = tmp_path / "history.sqlite", tmp_path / "gateway.log"
    cfg = write_config(tmp_path / "gateway.toml", channel, db)

    # First run: module 2 reports a protection at 2 s and is isolated; modules 1 and 3 take the current.
    with gateway(cfg, log, "protection:2@2=CellOverVoltage") as first:
        isolated = wait_for(
            lambda: [e for e in read(db).events(module=2) if e.event == "module isolated"] or None,
            within=30.0,
            what="module 2 isolated",
            log=log,
        )[0]
        assert isolated.detail.startswith("protection: CellOverVoltage")
        # Let the counters be written a few times after that, then read what the history holds and kill.
        wait_for(
            lambda: True if read(db).counters()[0].charged_ah > 0.02 else None,
            within=30.0,
            what="the bank's counters written",
            log=log,
        )
        before_kill = events(db)
        counted = bank(db)
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.time()
        assert first.wait(10.0) == -signal.SIGKILL

    # What a kill costs: no committed event, and counters no older than the loss bound.
    after_kill = events(db)
    assert after_kill == before_kill or after_kill[: len(before_kill)] == before_kill
    stored = bank(db)
    assert stored["charged_ah"] >= counted["charged_ah"]
    last_counted = stored_time(db)
    assert killed_at - last_counted <= COUNTER_LOSS, f"{killed_at - last_counted:.2f} s of counters lost"
    assert named(after_kill, "gateway stop") == []

    # Second run, module 2 healthy now: the restart is on record, and module 2 stays isolated.
    with gateway(cfg, log) as second:
        started = time.time()
        wait_for(
            lambda: len([e for e in read(db).events(since=started - 2) if e.event == "module online"]) >= 2 or None,
            within=30.0,
            what="modules 1 and 3 online after the restart",
            log=log,
        )
        restart, *rest = events(db, "--since", iso(started - 2))
        assert restart["event"] == "gateway start"
        assert restart["level"] == "warning"
        assert restart["detail"].startswith(UNCLEAN)
        assert [e["modules"] for e in named(rest, "module online")] == [[1], [3]]
        # Module 2 reports (it may wait for its groups first, pending, like any module) and is isolated again by
        # the restored memory (its hold-off counts from the last moment its trouble was seen, before the kill).
        module_2 = [e for e in rest if e["modules"] == [2]]
        assert [e["event"] for e in module_2] in (
            ["module appeared", "module isolated"],
            ["module appeared", "module pending", "module isolated"],
        )
        assert module_2[-1]["code"] == "fault"
        assert module_2[-1]["detail"].startswith("protection: CellOverVoltage (re-admission in ")
        assert [i["module"] for i in history(db)["memory"]["isolations"]] == [2]

        # Counting goes on from the stored totals: not from zero, and not counted twice.
        wait_for(lambda: stored_time(db) > started + 1.0 or None, within=20.0, what="counters of run 2", log=log)
        now = bank(db)
        elapsed = time.time() - started
        assert stored["charged_ah"] <= now["charged_ah"] <= stored["charged_ah"] + BANK_CURRENT * elapsed / 3600.0
        assert now["since"] == stored["since"]

        second.send_signal(signal.SIGTERM)
        assert second.wait(15.0) == 0
    stop = events(db)[-1]
    assert (stop["event"], stop["detail"]) == ("gateway stop", "SIGTERM")
    assert history(db)["running"] is False


def read(db: Path) -> Reader:
    """The history as it is now (HistoryError while the gateway has not created it yet)."""
    return Reader(db)


def stored_time(db: Path) -> float:
    """When the bank's stored counters were last counted (the gateway's clock: Unix time)."""
    with read(db) as reader:
        updated = reader.counters()[0].updated
    assert updated is not None
    return updated


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"
