"""The live gateway keeps its history: a real SQLite file, the simulator on python-can virtual buses, real tasks.

A run records its start, what changed, reloads, edge failures and a clean stop with its reason; the next run
starts from its counters. A broken disk (full, a read-only file, a corrupt file, a missing directory) is logged
once and raises `history_unavailable`; the master ticks on and the bank keeps its limits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway import config
from gateway.errors import ConfigError
from gateway.history.store import Reader, Store
from gateway.master.model import Alarm, AlarmCode, BankSnapshot
from gateway.service import Gateway
from gateway.sim import Simulator

from helpers.buses import make_config, online, running, simulating, until
from helpers.disks import fill, read_only, small_tmpfs
from helpers.history import events, history, named
from helpers.ports import occupied


def history_config(channel: str, db: Path, **sections: dict[str, Any]) -> config.Config:
    return make_config(channel, history={"path": str(db)}, **sections)


async def run_until_online(gateway: Gateway, channel: str, sim: Simulator, *, then: float = 0.0) -> BankSnapshot:
    """Run the gateway with the simulator until both modules are online, `then` seconds more; the last snapshot."""
    async with running(gateway), simulating(channel, sim):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
        if then:
            await asyncio.sleep(then)
        return gateway.hub.latest


async def test_a_run_records_its_start_its_changes_and_a_clean_stop(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    cfg = history_config(channel, db)
    gateway = Gateway(cfg)
    async with running(gateway), simulating(cfg.can.modules[0].channel, Simulator(modules=2, current=20.0)):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
        await asyncio.sleep(1.5)
        last = gateway.hub.latest
        gateway.stopping("SIGTERM")  # as `_serve` says it, before it cancels the gateway
    found = events(db)
    assert [e["event"] for e in found[:2]] == ["gateway start", "bank not valid"]
    assert found[0]["detail"] == "version 0.1.0, embedded config"
    assert [e["modules"] for e in named(found, "module online")] == [[1], [2]]
    assert (found[-1]["event"], found[-1]["detail"]) == ("gateway stop", "SIGTERM")
    assert not Store(db).load().unclean
    counters = history(db)["counters"]
    assert counters["1"]["charged_ah"] > 0
    assert last.energy is not None
    assert counters["bank"]["charged_kwh"] >= round(last.energy.bank.charged_wh / 1000.0, 3)
    assert gateway.history is not None and gateway.history.batches >= 2


async def test_the_next_run_starts_from_the_stored_counters(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    cfg = history_config(channel, db)
    await run_until_online(Gateway(cfg), cfg.can.modules[0].channel, Simulator(modules=2, current=20.0), then=1.0)
    stored = history(db)["counters"]["bank"]["charged_kwh"]
    gateway = Gateway(cfg)
    first = None
    async with running(gateway):
        await until(lambda: gateway.hub.latest.seq > 0, within=5.0, what="a first tick")
        first = gateway.hub.latest
        shown = gateway.journal.events()  # the dashboard's events page, newest first
    assert first.energy is not None
    # The dashboard shows the last run too: its start, its modules coming online and its stop, then this start.
    names = [n.event.event for n in reversed(shown)]
    assert names[0] == "gateway start" and names.count("gateway start") == 2
    assert names.index("gateway stop") < len(names) - 1 - names[::-1].index("gateway start"), "stop, then start"
    assert [n.event.modules for n in reversed(shown) if n.event.event == "module online"] == [(1,), (2,)]
    assert [n.id for n in shown] == sorted({n.id for n in shown}, reverse=True)
    assert "the history" in gateway.journal.description
    assert round(first.energy.bank.charged_wh / 1000.0, 3) == pytest.approx(stored, abs=0.001)
    assert [e["event"] for e in named(events(db), "gateway start")] == ["gateway start", "gateway start"]


async def test_a_reload_records_what_changed_and_what_waits_for_a_restart(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    cfg = history_config(channel, db, limits={"alarm_hold": 5.0})
    gateway = Gateway(cfg)
    changed = history_config(channel, db, limits={"alarm_hold": 12.5}, bank={"tick": 0.2})
    async with running(gateway):
        await until(lambda: gateway.hub.latest.seq > 0, within=5.0, what="a first tick")
        assert gateway.reload(changed) == ["bank.tick"]
        with pytest.raises(ConfigError):
            gateway.reload(dataclasses.replace(changed, keys=frozenset()))
    reloaded, refused = named(events(db), "config reloaded", "config reload refused")
    assert reloaded["detail"] == "bank.tick: 0.1 -> 0.2; limits.alarm_hold: 5.0 -> 12.5; needs a restart: bank.tick"
    assert (refused["level"], refused["detail"]) == ("warning", "the file: sets no key (empty, or cut short)")


async def test_an_edge_failure_is_recorded(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    with occupied() as (_, port):
        cfg = history_config(channel, db, modbus={"enabled": True, "host": "127.0.0.1", "port": port})
        gateway = Gateway(cfg)
        async with running(gateway):
            await until(lambda: gateway.restarts["modbus"] >= 1, within=10.0, what="a Modbus restart")
    failed = named(events(db), "edge failed")
    assert failed
    assert (failed[0]["code"], failed[0]["level"]) == ("modbus", "warning")
    assert "cannot listen" in failed[0]["detail"]


# -- broken disks ---------------------------------------------------------------------------------------------


async def still_protects(gateway: Gateway, channel: str, problem: str) -> str:
    """Run the gateway with two simulated modules until the alarm shows; then the master must go on ticking with
    the bank valid and its limits up. The alarm's detail."""
    sim = Simulator(modules=2, current=20.0)
    async with running(gateway) as task, simulating(channel, sim):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
        await until(lambda: alarm(gateway.hub.latest) is not None, within=10.0, what="history_unavailable")
        seq = gateway.hub.latest.seq
        await until(lambda: gateway.hub.latest.seq >= seq + 20, within=10.0, what="20 more ticks")
        snapshot = gateway.hub.latest
        assert not task.done()
    assert snapshot.valid
    assert snapshot.limits.charge_current.value > 0
    found = alarm(snapshot)
    assert found is not None
    assert problem in found.detail, found.detail
    return found.detail


def alarm(snapshot: BankSnapshot) -> Alarm | None:
    return next((a for a in snapshot.alarms if a.code is AlarmCode.HISTORY_UNAVAILABLE), None)


def unavailable(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"].startswith("history unavailable")]


async def test_a_full_disk_costs_history_not_protection(
    channel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history's file system fills up while the gateway runs: a 256 KiB tmpfs the test mounts and then fills.
    Mounting needs root (as in the CI container); a file-system image would need the same, so where the test
    cannot mount, the store's writes are made to raise the OSError (ENOSPC) of a full disk instead: the one
    patched write of the suite, used only where no real file system can be made full."""
    with small_tmpfs(tmp_path / "disk") as disk:
        db = (disk or tmp_path) / "history.sqlite"

        def full() -> str:
            if disk is not None:
                assert fill(disk) > 0
                return "database or disk is full"

            def no_space(store: Store, batch: object) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(Store, "write", no_space)
            return os.strerror(errno.ENOSPC)

        cfg = history_config(channel, db)
        gateway = Gateway(cfg)
        with structlog.testing.capture_logs() as logs:
            sim = Simulator(modules=2, current=20.0)
            async with running(gateway) as task, simulating(cfg.can.modules[0].channel, sim):
                await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
                writer = gateway.history
                assert writer is not None
                await until(lambda: writer.batches >= 2, within=5.0, what="history written")
                reason = full()
                await until(lambda: alarm(gateway.hub.latest) is not None, within=15.0, what="history_unavailable")
                seq = gateway.hub.latest.seq
                await until(lambda: gateway.hub.latest.seq >= seq + 20, within=10.0, what="20 more ticks")
                snapshot = gateway.hub.latest
                assert not task.done()
            if disk is not None:
                (disk / "filler").unlink()
        assert snapshot.valid and snapshot.limits.charge_current.value > 0
        found = alarm(snapshot)
        assert found is not None and reason in found.detail
        assert len(unavailable(logs)) == 1
        with Reader(db) as reader:  # what went in before the disk filled is intact
            assert reader.events()[0].event == "gateway start"


async def test_a_read_only_file_costs_history_not_protection(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    Store(db).close()
    with read_only(db) as how:
        if how is None:
            pytest.skip("this process can make no file read-only for itself")
        with structlog.testing.capture_logs() as logs:
            detail = await still_protects(Gateway(history_config(channel, db)), f"{channel}-modules", "history.sqlite")
    assert "readonly" in detail or "unable to open" in detail, f"{how}: {detail}"
    assert len(unavailable(logs)) == 1


async def test_a_corrupt_file_costs_history_not_protection(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    with structlog.testing.capture_logs() as logs:
        detail = await still_protects(Gateway(history_config(channel, db)), f"{channel}-modules", "history.sqlite")
    assert "not a database" in detail or "malformed" in detail, detail
    assert len(unavailable(logs)) == 1
    assert db.read_bytes().startswith(b"SQLite format 3\x00\x00\x01")  # left as it was, for the installer to see


async def test_a_missing_directory_costs_history_not_protection(channel: str, tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "history.sqlite"
    with structlog.testing.capture_logs() as logs:
        detail = await still_protects(Gateway(history_config(channel, db)), f"{channel}-modules", "does not exist")
    assert detail == f"{db}: the directory {db.parent} does not exist"
    assert len(unavailable(logs)) == 1
    assert not db.parent.exists()
