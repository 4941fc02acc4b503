"""`replay --history` writes what the live gateway would have written, on the log's clock; read back through
`bms-gateway events --json` and `history --json`. The expected events and their times are worked out from the
log itself (decoded with cantools, independently of the gateway) and the documented rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cantools
import pytest
import tomli_w
from cantools.database.can import Database

from gateway.can.logfile import LogFile
from gateway.sim import Simulator, parse_fault
from gateway.sim.bus import write_log

from helpers.buses import ROOT
from helpers.history import cli, events, history, named

MODULE_DB: Database = cantools.database.load_file(ROOT / "dbc" / "module.dbc", strict=True)  # type: ignore[assignment]
TICK = 0.1
TIMEOUT = 3.0
"""bank.module_timeout: a module silent this long is offline; the start-up lasts as long."""
REQUIRED = ("ModuleStatus", "ModuleLimits", "CellSummary", "Temperatures")
"""The messages of the groups a module must keep sending (gateway.can.codec.REQUIRED_GROUPS)."""
HEAT = 5.0
WARM = 50.0
"""limits.heat_accumulation and the warning threshold of limits.charge_over_temperature."""
URGENT = 40.0
"""A temperature from here on wakes the master at once (the first knee of the charge temperature table)."""


def decoded(log: Path) -> list[tuple[float, int, str, dict[str, Any]]]:
    """(t, module address, message name, signals) of every module frame of the log, in order."""
    out = []
    for msg in LogFile(log):
        message = MODULE_DB.get_message_by_frame_id(msg.arbitration_id & ~0x1F)
        values = message.decode(bytes(msg.data))
        assert isinstance(values, dict)  # module messages are not container messages
        out.append((msg.timestamp, msg.arbitration_id & 0x1F, message.name, values))
    return out


def config_file(path: Path, **bank: Any) -> Path:
    path.write_text(tomli_w.dumps({"bank": bank} if bank else {}))
    return path


def within(t: float, after: float, by: float) -> bool:
    """`t` (3 decimals) is the first tick after `after`: in (after, after + by]."""
    return after - 0.0005 < t <= after + by + 0.0005


def test_a_scripted_log_yields_exactly_its_events_at_their_log_times(tmp_path: Path) -> None:
    """Four modules charging at 40 A; module 3 drops out at 45 s, module 2 overheats towards 53 degC from 70 s."""
    log, db = tmp_path / "day.log", tmp_path / "history.sqlite"
    faults = [parse_fault("drop:3@45"), parse_fault("overheat:2@70=53")]
    write_log(log, Simulator(modules=4, current=40.0, seed=1, faults=faults), 90.0)
    frames = decoded(log)
    cli("replay", str(log), "--config", str(config_file(tmp_path / "gateway.toml")), "--history", str(db))

    first, last = frames[0][0], frames[-1][0]

    def tick(t: float) -> int:
        """The number of the first tick after `t` (ticks every TICK from the first frame; a frame at a tick's
        time is read after that tick)."""
        return math.floor((t - first) / TICK + 1e-6) + 1

    # A module counts once its AliveCounter has advanced: from its second ModuleStatus.
    appeared = {a: sorted(t for t, m, name, _ in frames if m == a and name == "ModuleStatus")[1] for a in (1, 2, 3, 4)}
    # Module 3 goes offline at the first tick after its first required message is TIMEOUT old.
    silent_since = min(max(t for t, m, name, _ in frames if m == 3 and name == n) for n in REQUIRED)
    # Heat accumulation: module 2 (the middle of 1, 2, 4 once 3 is offline) over HEAT above the outer mean.
    hottest: dict[int, float] = {}
    heat_frame = warm_frame = None
    for t, m, name, signals in frames:
        if name != "Temperatures" or t < silent_since + TIMEOUT + TICK:
            continue
        hottest[m] = signals["TemperatureMax"]
        if heat_frame is None and {1, 2, 4} <= hottest.keys():
            excess = hottest[2] - (hottest[1] + hottest[4]) / 2
            if excess > HEAT:
                heat_frame, heat_excess = t, excess
        if warm_frame is None and m == 2 and signals["TemperatureMax"] >= WARM:
            warm_frame, warm_value = t, signals["TemperatureMax"]
    assert heat_frame is not None and warm_frame is not None
    assert hottest[2] < URGENT or heat_frame < warm_frame

    found = events(db)
    assert [(e["event"], e["code"], e["modules"]) for e in found] == [
        ("gateway start", "", []),
        ("bank not valid", "", []),
        *(("module appeared", "not_admitted", [a]) for a in sorted(appeared, key=lambda a: (tick(appeared[a]), a))),
        ("bank valid", "", []),
        *(("module online", "", [a]) for a in (1, 2, 3, 4)),
        ("module offline", "communication_lost", [3]),
        ("alarm raised", "module_comm_lost", [3]),
        ("alarm raised", "heat_accumulation", [2]),
        ("alarm raised", "charge_over_temperature", [2]),
        ("gateway stop", "", []),
    ]
    start, not_valid, *_ = found
    assert start["t"] == not_valid["t"] == pytest.approx(first, abs=0.0005)
    assert start["detail"] == "version 0.1.0, replay of day.log"
    assert not_valid["detail"] == "starting: waiting for every module to report"
    for e in named(found, "module appeared"):
        assert within(e["t"], appeared[e["modules"][0]], TICK)
    for e in named(found, "bank valid", "module online"):
        assert within(e["t"], first + TIMEOUT - TICK, 2 * TICK)  # the first tick at least TIMEOUT after the start
    offline, lost = named(found, "module offline", "alarm raised")[:2]
    assert within(offline["t"], silent_since + TIMEOUT, TICK)
    assert lost["t"] == offline["t"]
    assert (offline["level"], lost["level"]) == ("warning", "warning")
    heat, warm = named(found, "alarm raised")[1:]
    assert within(heat["t"], heat_frame, TICK)  # not urgent: the next regular tick
    assert heat["value"] == pytest.approx(heat_excess, abs=0.001)
    assert warm["t"] == pytest.approx(warm_frame, abs=0.0005)  # urgent: a tick at the frame itself
    assert (warm["value"], warm["detail"], warm["level"]) == (
        pytest.approx(warm_value),
        f"{warm_value:.3f} degC",
        "warning",
    )
    assert found[-1]["t"] == pytest.approx(last, abs=0.0005)
    assert found[-1]["detail"] == "end of log"

    assert [e["event"] for e in events(db, "--module", "3")] == [
        "module appeared",
        "module online",
        "module offline",
        "alarm raised",
    ]
    assert [e["code"] for e in events(db, "--level", "warning")] == [
        "",
        "communication_lost",
        "module_comm_lost",
        "heat_accumulation",
        "charge_over_temperature",
    ]
    assert all(e["t"] >= 70.0 for e in events(db, "--since", "1970-01-01T00:01:10Z"))


def test_a_constant_30_amperes_for_60_seconds_is_half_an_ampere_hour_per_module(tmp_path: Path) -> None:
    """Three modules in series carry the same 30 A: each counts 0.5 Ah (within 0.5 %), and so does the bank (one
    current through the string); its energy is the sum of theirs."""
    log, db = tmp_path / "series.log", tmp_path / "history.sqlite"
    write_log(log, Simulator(modules=3, strings=[[1, 2, 3]], current=30.0, seed=2), 60.0)
    currents = {s["ModuleCurrent"] for _, _, name, s in decoded(log) if name == "ModuleStatus"}
    assert currents == {30.0}
    cli(
        "replay", str(log), "-c", str(config_file(tmp_path / "gateway.toml", strings=[[1, 2, 3]])), "--history", str(db)
    )
    counters = history(db)["counters"]
    for scope in ("1", "2", "3", "bank"):
        assert counters[scope]["charged_ah"] == pytest.approx(0.5, rel=0.005), scope
        assert counters[scope]["discharged_ah"] == 0.0
    assert counters["bank"]["charged_kwh"] == pytest.approx(sum(counters[a]["charged_kwh"] for a in "123"), abs=0.002)


def test_a_later_log_of_the_same_bank_goes_on_where_the_earlier_ended(tmp_path: Path) -> None:
    """Two consecutive logs into one file: the counters add up, the second start is clean (the first replay
    ended with its log), and an isolation from the first log still holds at the start of the second."""
    db, cfg = tmp_path / "history.sqlite", config_file(tmp_path / "gateway.toml", isolation_holdoff=3600.0)
    first, second = tmp_path / "1.log", tmp_path / "2.log"
    faults = [parse_fault("protection:2@10=CellOverVoltage")]
    write_log(first, Simulator(modules=2, current=-36.0, seed=3, faults=faults, start=1_000.0), 30.0)
    write_log(second, Simulator(modules=2, current=-36.0, seed=3, start=2_000.0), 30.0)
    cli("replay", str(first), "-c", str(cfg), "--history", str(db))
    after_first = history(db)
    cli("replay", str(second), "-c", str(cfg), "--history", str(db))
    after_second = history(db)
    discharged = [h["counters"]["bank"]["discharged_ah"] for h in (after_first, after_second)]
    assert discharged[1] == pytest.approx(2 * discharged[0], rel=0.02)
    assert [i["module"] for i in after_second["memory"]["isolations"]] == [2]
    starts = named(events(db), "gateway start")
    assert [s["level"] for s in starts] == ["info", "info"]
    module_2 = [
        e for e in events(db, "--module", "2", "--since", "1970-01-01T00:33:20Z") if e["event"] != "alarm raised"
    ]
    assert [(e["event"], e["code"]) for e in module_2] == [("module appeared", "fault")]
    assert module_2[0]["detail"].startswith("protection: CellOverVoltage (re-admission in")
