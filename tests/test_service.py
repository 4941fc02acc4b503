"""The running service: supervised edges, sd_notify and the watchdog, signals, metrics and `status`, the demo.

Real parts only: the Gateway (or `gateway.cli._serve`, as `bms-gateway run` runs it) on python-can `virtual` buses,
the module simulator on its own bus instance, a unix datagram socket standing in for systemd's NOTIFY_SOCKET, a
real mosquitto, Modbus and metrics on 127.0.0.1. Signals go to this very process: `_serve` handles them with
`loop.add_signal_handler`, as under systemd (a subprocess could not be watched on a `virtual` bus). Every step
waits for a condition with a timeout; the only duration asserted is "SIGTERM stops within 5 s".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import can
import can.interfaces.virtual
import pytest
import structlog
from pymodbus.client import AsyncModbusTcpClient

from gateway import config, status
from gateway.cli import main
from gateway.errors import ConfigError
from gateway.history.store import Reader
from gateway.master.model import AlarmCode, Lifecycle
from gateway.outputs.alarm_table import MODBUS_BIT
from gateway.outputs.modbus import BANK_REGISTERS
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault

from helpers.breakable import breakable
from helpers.buses import (
    PROFILE,
    ROOT,
    decode,
    is_failsafe_limits,
    make_config,
    online,
    running,
    sets,
    simulating,
    tapped,
    until,
)
from helpers.mosquitto import Broker, subscriber
from helpers.ports import free_port, listening, occupied
from helpers.service import (
    NotifySocket,
    scrape,
    send_signal,
    serving,
    simulator_task,
    status_becomes,
    without_master_command,
    write_config,
)

# -- supervision ----------------------------------------------------------------------------------------------


async def test_an_edge_that_keeps_failing_is_restarted_while_the_others_keep_publishing(channel: str) -> None:
    with occupied() as (blocker, port):
        cfg = make_config(channel, modbus={"enabled": True, "host": "127.0.0.1", "port": port})
        gateway = Gateway(cfg)
        sim = Simulator(modules=2, current=5.0)
        async with (
            tapped(cfg.can.inverter.channel) as inverter,
            running(gateway) as task,
            simulating(cfg.can.modules[0].channel, sim),
        ):
            await until(lambda: gateway.restarts["modbus"] >= 2, within=10.0, what="two Modbus restarts")
            # The rest runs on: the master ticks, the bank forms, the inverter gets sets with its limits.
            seq = gateway.hub.latest.seq
            mark = inverter.mark()
            await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
            await inverter.wait(
                lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0, after=mark, within=5.0
            )
            assert gateway.hub.latest.seq > seq
            assert not task.done()
            assert gateway.restarts["modbus"] >= 2
            assert gateway.restarts["module-bus"] == gateway.restarts["inverter-bus"] == 0
            assert not gateway.ready.is_set()  # Modbus never listened

            # The port comes free: the next restart listens on it.
            blocker.close()
            await until(gateway.ready.is_set, within=10.0, what="Modbus listening after the port came free")
            assert gateway.modbus is not None and gateway.modbus.port == port
            assert listening(port)


async def test_a_closed_module_bus_is_reopened_and_the_bank_comes_back(channel: str) -> None:
    cfg = make_config(channel)
    gateway = Gateway(cfg)
    sim = Simulator(modules=2, current=5.0)
    async with running(gateway), simulating(cfg.can.modules[0].channel, sim):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
        received = gateway.core.store.counters["received"]
        bus = gateway._module_buses[0]
        assert bus is not None
        bus.shutdown()  # as when the CAN adapter is unplugged: the receive thread fails
        await until(lambda: gateway.restarts["module-bus"] >= 1, within=5.0, what="module bus restarted")
        await until(lambda: gateway._module_buses[0] not in (None, bus), within=5.0, what="module bus reopened")
        await until(
            lambda: gateway.core.store.counters["received"] > received + 20, within=5.0, what="frames received again"
        )
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online again")
        assert gateway.restarts["inverter-bus"] == 0


def test_a_dbc_without_master_command_is_a_config_error_at_start_not_a_crash_later(
    channel: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vendor = tmp_path / "vendor.dbc"
    vendor.write_text(without_master_command(ROOT / "dbc" / "module.dbc"))
    with pytest.raises(ConfigError, match="no MasterCommand"):
        Gateway(make_config(channel, can={"modules": {"dbc": str(vendor)}}))
    Gateway(make_config(channel, can={"modules": {"dbc": str(vendor), "commands": False}}))
    path = tmp_path / "gateway.toml"
    path.write_text(f"[can.modules]\ndbc = {str(vendor)!r}\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "bms-gateway: can.modules.dbc: the DBC has no MasterCommand message (set commands = false)\n"
    )


# -- the journal ----------------------------------------------------------------------------------------------


async def test_a_module_that_stops_sending_is_logged_offline_once_with_its_reason(channel: str) -> None:
    """Module 2 of the simulated stack falls silent 6 s after start: the journal says "module offline" once, with
    module=2 as a key and why (the first of its frame groups to time out), and raises the comm-lost alarm once;
    the ticks after that log nothing more."""
    cfg = make_config(channel)
    gateway = Gateway(cfg)
    sim = Simulator(modules=2, current=5.0, faults=[parse_fault("drop:2@6")])

    def events(name: str, module: int | None = None) -> list[MutableMapping[str, Any]]:
        return [e for e in logs if e["event"] == name and module in (None, e.get("module"))]

    with structlog.testing.capture_logs() as logs:
        async with running(gateway), simulating(cfg.can.modules[0].channel, sim):
            await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules online")
            await until(lambda: bool(events("module offline", 2)), within=15.0, what="module offline logged")
            seq = gateway.hub.latest.seq
            await until(lambda: gateway.hub.latest.seq >= seq + 20, within=10.0, what="20 more ticks")
    # Module 2's own events: on a machine loaded enough to stall the real-time simulator for module_timeout, module
    # 1 may flap as well, and that is the journal telling the truth, not this test's subject.
    (offline,) = events("module offline", 2)
    assert offline["log_level"] == "warning"
    assert offline["module"] == 2
    assert re.fullmatch(r"no Module\w+ for \d\.\d s", offline["reason"]), offline["reason"]  # a frame group timed out
    assert (offline["lifecycle"], offline["was"], offline["isolate_reason"]) == (
        "offline",
        "online",
        "communication_lost",
    )
    assert "module=" not in offline["event"] and "2" not in offline["event"]
    assert [e["log_level"] for e in events("module online", 2)] == ["info"]
    (raised,) = [e for e in events("alarm raised") if 2 in e["modules"]]
    assert (raised["code"], raised["level"], raised["modules"]) == ("module_comm_lost", "warning", [2])


# -- systemd notify and watchdog ------------------------------------------------------------------------------


async def test_ready_only_once_buses_are_open_and_modbus_listens_then_status_and_watchdog(
    channel: str, notify: NotifySocket
) -> None:
    with occupied() as (blocker, port):
        cfg = make_config(channel, modbus={"enabled": True, "host": "127.0.0.1", "port": port})
        gateway = Gateway(cfg)
        assert gateway.notifier.enabled
        async with running(gateway):
            # While the Modbus port is taken the gateway runs and pings the watchdog, but is not READY.
            await until(lambda: gateway.restarts["modbus"] >= 2, within=10.0, what="two Modbus restarts")
            await until(lambda: notify.count("WATCHDOG") >= 3, within=5.0, what="watchdog pings while not ready")
            assert notify.count("READY") == 0
            assert all(m == {"WATCHDOG": "1"} or set(m) == {"STATUS"} for m in notify.messages), notify.messages
            blocker.close()
            _, ready = await notify.wait("READY", within=10.0)
            # At READY the buses are open and Modbus listens on its port.
            assert listening(port)
            assert gateway.modbus is not None and gateway.modbus.port == port
            assert {cfg.can.modules[0].channel, cfg.can.inverter.channel} <= set(can.interfaces.virtual.channels)
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith("NOT VALID (")  # no modules on the bus: it says why
            # The master tick keeps pinging the watchdog.
            mark = notify.mark()
            await until(lambda: notify.count("WATCHDOG", after=mark) >= 3, within=5.0, what="watchdog pings")
        statuses = [m["STATUS"] for m in notify.messages if "STATUS" in m]
        assert len(statuses) >= 2
        assert all("modules online" in line for line in statuses)
        assert notify.count("READY") == 1


async def test_no_watchdog_pings_without_watchdog_usec(
    channel: str, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC")
    gateway = Gateway(make_config(channel))
    async with running(gateway):
        await notify.wait("READY")
        seq = gateway.hub.latest.seq
        await until(lambda: gateway.hub.latest.seq > seq + 5, within=5.0, what="master ticks")
    assert notify.count("STATUS") >= 1
    assert notify.count("WATCHDOG") == 0


# -- signals ----------------------------------------------------------------------------------------------------


async def test_sigterm_sends_the_fail_safe_set_three_times_says_offline_and_stops_in_time(
    channel: str, tmp_path: Path, mosquitto: Broker, notify: NotifySocket
) -> None:
    path = write_config(
        tmp_path / "gateway.toml",
        channel,
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "discovery": False},
    )
    cfg = config.load(path)
    sim = Simulator(modules=2, current=5.0)
    async with (
        subscriber(mosquitto, "bms/svc/status") as (_, mqtt),
        tapped(cfg.can.inverter.channel) as inverter,
        serving(cfg, reload_from=path, extra={"simulator": simulator_task(cfg.can.modules[0].channel, sim)}) as task,
    ):
        await notify.wait("READY")
        await mqtt.wait(lambda m: m.payload == b"online")
        await inverter.wait(lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0, within=10.0)
        mark = inverter.mark()
        offline = mqtt.mark()
        loop = asyncio.get_running_loop()
        sent = loop.time()
        send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(task, timeout=10.0) == 0
        assert loop.time() - sent < 5.0
        await notify.wait("STOPPING")
        await mqtt.wait(lambda m: m.payload == b"offline", after=offline)

        # The last frames on the bus: exactly three whole fail-safe sets, and none before them since the signal.
        def failsafe_tail() -> list[can.Message]:
            frames = inverter.since(mark)
            first = next((i for i, m in enumerate(frames) if is_failsafe_limits(m)), len(frames))
            return frames[first:]

        await until(lambda: len(sets(failsafe_tail())) >= 3, within=5.0, what="three fail-safe sets")
        tail = failsafe_tail()
        assert len(tail) == 3 * len(PROFILE)
        for whole in sets(tail):
            assert decode(whole[0x359])["ProtectionInternalError"] == 1
            requests = decode(whole[0x35C])
            assert (requests["ChargeEnable"], requests["DischargeEnable"]) == (0, 0)
            assert is_failsafe_limits(whole[0x351])
        before = inverter.since(mark)[: -len(tail)]
        assert all(decode(m)["ChargeCurrentLimit"] > 0 for m in before if m.arbitration_id == 0x351)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed again


async def test_sighup_applies_live_limits_and_keeps_what_needs_a_restart(channel: str, tmp_path: Path) -> None:
    modbus_port, other_port, metrics_port = free_port(), free_port(), free_port()
    path = tmp_path / "gateway.toml"
    base = {
        "modbus": {"enabled": True, "host": "127.0.0.1", "port": modbus_port},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port},
    }
    write_config(path, channel, **base)
    cfg = config.load(path)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    cell_alarm = ("bms_alarm", (("code", "cell_over_voltage"),))
    sim = Simulator(modules=2, current=5.0)
    with structlog.testing.capture_logs() as logs:
        async with serving(
            cfg, reload_from=path, extra={"simulator": simulator_task(cfg.can.modules[0].channel, sim)}
        ) as task:
            await status_becomes(url, 0)
            assert (await asyncio.to_thread(scrape, url))[cell_alarm] == 0

            # A cell over-voltage warning threshold under the cells' 3.3 V (live), and another Modbus port (not).
            limits = {"cell_over_voltage": [3.20, 3.65]}
            moved = {"modbus": {**base["modbus"], "port": other_port}, "metrics": base["metrics"]}
            write_config(path, channel, **moved, limits={"slew_rate": 1000.0, **limits})
            send_signal(signal.SIGHUP)
            lines = await status_becomes(url, 1)
            assert "alarms: cell_over_voltage (warning)" in lines
            assert (await asyncio.to_thread(scrape, url))[cell_alarm] == 1
            assert listening(modbus_port) and not listening(other_port)
            reloaded = [e for e in logs if e["event"] == "config reloaded"]
            assert len(reloaded) == 1
            assert reloaded[0]["needs_restart"] == ["modbus"]

            # A broken file is refused as a whole: the running config stays.
            path.write_text("[limits]\ncell_over_voltage = [3.9, 3.65]\n")
            send_signal(signal.SIGHUP)
            await until(lambda: any(e["event"].startswith("reload refused") for e in logs), within=5.0, what="refused")
            (refused,) = [e for e in logs if e["event"].startswith("reload refused")]
            assert refused["problems"] == [
                "limits.cell_over_voltage: the warning threshold must not be above the protection threshold"
            ]
            assert not task.done()
            send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(task, timeout=10.0) == 0


async def test_a_half_written_config_on_sighup_never_raises_a_limit(channel: str, tmp_path: Path) -> None:
    """Rated currents of 20 A: empty, cut-short and storming files (an editor's save) never let the defaults
    (100 A) go live; a storm of SIGHUPs is read once, after it settles."""
    path = tmp_path / "gateway.toml"
    write_config(
        path, channel, bank={"module_timeout": 1.5, "rated_charge_current": 20.0, "rated_discharge_current": 20.0}
    )
    whole = path.read_text()
    cfg = config.load(path)
    sim = Simulator(modules=2, current=5.0)

    def limits(frames: list[can.Message]) -> list[float]:
        return [decode(m)["ChargeCurrentLimit"] for m in frames if m.arbitration_id == 0x351]

    with structlog.testing.capture_logs() as logs:
        async with (
            tapped(cfg.can.inverter.channel) as inverter,
            serving(cfg, reload_from=path, extra={"simulator": simulator_task(cfg.can.modules[0].channel, sim)}),
        ):
            await inverter.wait(lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0, within=10)

            def refused() -> list[str]:
                return [
                    p for e in logs if e["event"] == "reload refused, keeping the running config" for p in e["problems"]
                ]

            path.write_text("")
            send_signal(signal.SIGHUP)
            await until(lambda: len(refused()) == 1, within=5.0, what="the empty file refused")
            assert refused()[0].endswith("sets no key (empty, or cut short)")

            path.write_text(whole[: whole.index("[limits]")])  # cut short: no [limits], no [bank] ratings after it
            send_signal(signal.SIGHUP)
            await until(lambda: len(refused()) == 2, within=5.0, what="the cut-short file refused")
            assert "no longer sets" in refused()[1] and "limits.slew_rate" in refused()[1]

            # The storm: 50 SIGHUPs while the file is written in pieces; then the whole file, with a new value.
            changed = whole.replace("slew_rate = 1000.0", "slew_rate = 500.0")
            for n in range(50):
                path.write_text(changed[: len(changed) * n // 50])
                send_signal(signal.SIGHUP)
                await asyncio.sleep(0.01)
            path.write_text(changed)
            send_signal(signal.SIGHUP)
            await until(lambda: any(e["event"] == "config reloaded" for e in logs), within=5.0, what="reloaded")
            await asyncio.sleep(1.5)
            assert len(refused()) == 2  # the half-written files were never read
            assert len([e for e in logs if e["event"] == "config reloaded"]) == 1
            warnings = [e for e in logs if e["event"].startswith("reload refused")]
            assert {e["log_level"] for e in warnings} == {"warning"}
            seen = limits(inverter.since())
            assert seen and max(seen) <= 40.0  # 2 x 20 A, never the defaults' 200 A
            send_signal(signal.SIGTERM)


async def test_a_reload_keeps_the_ratings_and_cells_it_started_with(channel: str, tmp_path: Path) -> None:
    """The SunSpec map, the inverter's fast-path ratings and admission are built from these: they need a restart."""
    path = tmp_path / "gateway.toml"
    write_config(path, channel, bank={"rated_charge_current": 20.0, "capacity_ah": 100.0})
    gateway = Gateway(config.load(path))
    write_config(path, channel, bank={"rated_charge_current": 200.0, "capacity_ah": 50.0, "cells_in_series": 15})
    kept = gateway.reload(config.load(path))
    assert kept == ["bank.cells_in_series/capacity_ah/rated_charge_current"]
    bank = gateway.core.master.config.bank
    assert (bank.rated_charge_current, bank.capacity_ah, bank.cells_in_series) == (20.0, 100.0, 16)


async def test_a_slow_stop_still_sends_the_fail_safe_set_and_exits_0(channel: str, tmp_path: Path) -> None:
    """An edge that takes 8 s to stop: the inverter got the fail-safe set at once, and `run` exits 0 after 5 s."""
    path = write_config(tmp_path / "gateway.toml", channel)
    cfg = config.load(path)
    stopping = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await asyncio.sleep(8.0)  # a stuck edge that swallows the cancel for a while
            raise

    sim = Simulator(modules=2, current=5.0)
    extra = {"simulator": simulator_task(cfg.can.modules[0].channel, sim), "slow": slow}
    with structlog.testing.capture_logs() as logs:
        async with tapped(cfg.can.inverter.channel) as inverter, serving(cfg, reload_from=path, extra=extra) as task:
            await inverter.wait(lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0, within=10)
            mark = inverter.mark()
            loop = asyncio.get_running_loop()
            sent = loop.time()
            send_signal(signal.SIGTERM)
            await inverter.wait(is_failsafe_limits, after=mark, within=1.0)
            assert await asyncio.wait_for(task, timeout=10.0) == 0
            assert loop.time() - sent < 7.0
            assert stopping.is_set()
            assert (
                len(sets([m for m in inverter.since(mark) if is_failsafe_limits(m) or m.arbitration_id != 0x351])) >= 3
            )
    (late,) = [e for e in logs if e["event"] == "stopping takes too long; exiting without waiting"]
    assert "gateway" in late["waiting"]
    for leftover in [t for t in asyncio.all_tasks() if t.get_name() in ("gateway", "slow")]:
        with contextlib.suppress(asyncio.CancelledError):
            await leftover


# -- metrics and status -----------------------------------------------------------------------------------------


async def test_metrics_endpoint_and_status_exit_codes(channel: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(channel, metrics={"enabled": True, "host": "127.0.0.1", "port": 0})
    gateway = Gateway(cfg)
    module_channel = cfg.can.modules[0].channel
    async with running(gateway):
        await until(gateway.ready.is_set, within=5.0, what="ready")
        assert gateway.metrics is not None
        url = f"http://127.0.0.1:{gateway.metrics.port}/metrics"
        # No modules: the gateway cannot vouch for the bank, the inverter is being stopped.
        lines = await status_becomes(url, 2)
        assert lines[0].startswith("PROTECTION: bank NOT VALID")
        assert "modules: none" in lines

        async with simulating(module_channel, Simulator(modules=2, current=5.0, seed=1)):
            lines = await status_becomes(url, 0)
            assert lines[0].startswith("OK: bank valid")
            assert "modules: 2 online" in lines
            metrics = await asyncio.to_thread(scrape, url)
            snapshot = gateway.hub.latest
            assert metrics[("bms_frames_total", (("outcome", "received"),))] > 0
            assert metrics[("bms_frames_total", (("outcome", "decoded"),))] > 0
            assert metrics[("bms_bank_valid", ())] == 1
            assert metrics[("bms_modules", (("state", "online"),))] == 2
            for address in ("1", "2"):
                assert metrics[("bms_module_state", (("module", address), ("state", "online")))] == 1
            charge = metrics[("bms_limit", (("limit", "charge_current"),))]
            assert charge > 100
            assert charge == pytest.approx(snapshot.limits.charge_current.value, rel=0.02)
            assert metrics[("bms_limit", (("limit", "charge_voltage"),))] == pytest.approx(55.2)
            assert metrics[("bms_master_tick_seconds_count", ())] > 10
            assert metrics[("bms_master_tick_seconds_bucket", (("le", "+Inf"),))] > 10
            assert metrics[("bms_edge_events_total", (("edge", "inverter-bus"), ("event", "frames_sent")))] > 0
            assert metrics[("bms_edge_events_total", (("edge", "module-bus"), ("event", "restarts")))] == 0
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["status", "--url", url]) == 0
            assert capsys.readouterr().out.startswith("OK: bank valid")

        # A module reporting a warning bit: exit 1, the alarm named.
        warning = Simulator(modules=2, current=5.0, seed=1, faults=[parse_fault("warning:2=CellImbalance")])
        async with simulating(module_channel, warning):
            lines = await status_becomes(url, 1)
            assert "alarms: cell_imbalance (warning)" in lines

        # A module in protection: it is isolated, the bank runs on with the other; exit 2.
        protection = Simulator(modules=2, current=5.0, seed=1, faults=[parse_fault("protection:1=CellOverVoltage")])
        async with simulating(module_channel, protection):
            lines = await status_becomes(url, 2)
            assert lines[0].startswith("PROTECTION: bank valid")
            assert gateway.hub.latest.addresses(Lifecycle.ISOLATED) == (1,)
            assert await asyncio.to_thread(main, ["status", "--url", url]) == 2

    # The gateway is gone: unreachable.
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "--url", url]) == 3
    assert capsys.readouterr().out.startswith("UNKNOWN: cannot read")


def test_status_of_an_endpoint_that_is_not_a_gateway_is_unknown() -> None:
    with pytest.raises(ValueError, match="not a bms-gateway"):
        status.parse("# HELP up Up\n# TYPE up gauge\nup 1\n")


# -- the demo -----------------------------------------------------------------------------------------------------


def test_demo_runs_for_its_duration_and_exits_0(channel: str, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "demo.toml",
        channel,
        gateway={"id": "demo", "log_level": "error"},
        modbus={"enabled": True, "host": "127.0.0.1", "port": 0},
        history={"path": str(tmp_path / "history.sqlite")},  # not the demo's own file in the temp directory
    )
    started = time.monotonic()
    assert main(["demo", "--duration", "3", "--modules", "2", "--config", str(path)]) == 0
    assert 3.0 <= time.monotonic() - started < 10.0
    with Reader(tmp_path / "history.sqlite") as history:
        assert history.events()[-1].detail == "ran for its duration of 3 s"


# -- the master never stops -----------------------------------------------------------------------------------


async def test_a_failing_master_step_stops_the_inverter_says_why_everywhere_and_recovers(
    channel: str, mosquitto: Broker
) -> None:
    """While master steps raise: the fail-safe set on the inverter bus, `internal_error` on Modbus and MQTT and in
    the counters; the gateway keeps running and comes back by itself."""
    port = free_port()
    cfg = make_config(
        channel,
        modbus={"enabled": True, "host": "127.0.0.1", "port": port},
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "discovery": False},
        metrics={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    gateway = Gateway(cfg)
    master = breakable(gateway.core)
    protections = next(r for r in BANK_REGISTERS if r.field.key == "protections")
    internal = 1 << MODBUS_BIT[AlarmCode.INTERNAL_ERROR]

    def charging(m: can.Message) -> bool:
        return m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0

    async with (
        subscriber(mosquitto, "bms/e2e/alarms") as (_, mqtt),
        tapped(cfg.can.inverter.channel) as inverter,
        simulating(cfg.can.modules[0].channel, Simulator(modules=2, current=10.0)),
        running(gateway),
    ):
        await inverter.wait(charging, within=10.0)
        mark, alarms = inverter.mark(), mqtt.mark()
        master.broken = True
        at, _ = await inverter.wait(is_failsafe_limits, after=mark, within=2.0)
        # The second 0x359 after the fail-safe limits: surely made from a failed step (the master is still broken).
        at, status = await inverter.wait(lambda m: m.arbitration_id == 0x359, after=at + 1, within=2.0)
        at, status = await inverter.wait(lambda m: m.arbitration_id == 0x359, after=at + 1, within=2.0)
        assert decode(status)["ProtectionInternalError"] == 1
        message = await mqtt.wait(lambda m: b"internal_error" in m.payload, after=alarms)
        (alarm,) = [a for a in json.loads(message.payload) if a["code"] == "internal_error"]
        assert alarm["level"] == "protection"
        assert alarm["detail"] == "master step failed: ZeroDivisionError: float division by zero"
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        try:
            reply = await client.read_holding_registers(protections.address, count=2)
        finally:
            client.close()
        assert (reply.registers[0] << 16 | reply.registers[1]) & internal
        assert gateway.hub.latest.reason == "internal error: ZeroDivisionError"
        assert gateway.metrics is not None
        lines = await status_becomes(f"http://127.0.0.1:{gateway.metrics.port}/metrics", 2)
        assert "internal_error (protection)" in lines[-2]
        assert re.fullmatch(r"master: \d+ steps failed since start \(see the journal\)", lines[-1])

        mark = inverter.mark()
        master.broken = False
        await inverter.wait(charging, after=mark, within=10.0)
        assert gateway.hub.latest.valid
        assert "internal_error" not in {a.code for a in gateway.hub.latest.alarms}
