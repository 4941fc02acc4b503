"""Scenarios: the simulator with faults, recorded to a log, replayed through ingest and the master.

This is how installers' logs are answered, so the snapshots a replay writes are what these tests read.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import can
import pytest

from gateway import config
from gateway.outputs.inverter import PROFILES
from gateway.replay import replay
from gateway.sim import Simulator, parse_fault
from gateway.sim.bus import write_log

from helpers.clocks import unix


def scenario(
    tmp_path: Path, *faults: str, modules: int = 4, seconds: float = 40.0, current: float = 40.0, **sections: Any
) -> list[dict[str, Any]]:
    """Simulate, write a candump log, replay it; the snapshots, one per master tick."""
    sim = Simulator(
        modules=modules,
        current=current,
        seed=3,
        soc=60.0,
        strings=[list(s) for s in sections.get("bank", {}).get("strings", [])] or None,
        faults=[parse_fault(f) for f in faults],
    )
    log = tmp_path / "stack.log"
    write_log(log, sim, seconds)
    out = tmp_path / "snapshots.jsonl"
    result = replay(log, config.parse(sections), snapshots=out)
    assert result.rejected == {}
    return [json.loads(line) for line in out.read_text().splitlines()]


def at(snapshots: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The last snapshot at or before log time t."""
    return [s for s in snapshots if unix(s["t"]) <= t][-1]


def alarm(snapshot: dict[str, Any], code: str) -> dict[str, Any]:
    """The snapshot's alarm `code`; a test that expects one fails here, naming it, when it is not raised."""
    found: dict[str, Any] | None = next((a for a in snapshot["alarms"] if a["code"] == code), None)
    assert found is not None, f"no {code} alarm in {snapshot['alarms']}"
    return found


def test_healthy_parallel_bank(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path)
    first, s = snapshots[0], at(snapshots, 30.0)
    assert not first["valid"]
    assert first["reason"].startswith("starting")
    assert s["valid"]
    assert s["modules_online"] == [1, 2, 3, 4]
    assert s["current"] == pytest.approx(40.0, abs=0.5)
    charge = s["limits"]["charge_current"]["value"]
    assert 0 < charge <= 400.0
    capacity = sum(s["modules"][str(a)]["full_ah"] for a in (1, 2, 3, 4))
    for a in (1, 2, 3, 4):  # never below the capacity share
        assert s["modules"][str(a)]["share"] >= s["modules"][str(a)]["full_ah"] / capacity - 1e-3
    for a in (1, 2, 3, 4):  # the payload rounds shares to 0.001: allow that much of the bank limit
        own = s["modules"][str(a)]["limits"]["charge_current"]["value"]
        assert s["modules"][str(a)]["share"] * charge <= own + 0.0005 * charge + 1e-3
    assert s["flags"]["charge_enable"] and s["flags"]["discharge_enable"]
    assert s["alarms"] == []


def test_a_module_that_drops_off_leaves_the_limits(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "drop:3@20")
    before, after = at(snapshots, 19.0), at(snapshots, 25.0)
    assert after["modules_offline"] == [3]
    assert after["modules"]["3"]["reason"] == "no ModuleStatus for 4.9 s"  # last one at 20.0 s - phase
    assert after["valid"]
    assert 0 < after["limits"]["discharge_current"]["value"] <= 3 * 100.0
    assert before["limits"]["discharge_current"]["value"] > after["limits"]["discharge_current"]["value"]
    assert alarm(after, "module_comm_lost")["modules"] == [3]
    gone = next(s for s in snapshots if 3 in s["modules_offline"])
    assert 22.0 <= unix(gone["t"]) <= 23.1  # 3 s after its last frame of one of the required messages


def test_a_cell_drifting_high_stops_charging(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "cell_high:2@10=3.62")
    s = at(snapshots, 39.0)
    assert s["cell_voltage_max"]["module"] == 2
    assert s["cell_voltage_max"]["value"] >= 3.55
    assert s["limits"]["charge_current"] == {"value": 0.0, "bound_by": "cell_voltage module 2"}
    assert not s["flags"]["charge_enable"]
    assert s["limits"]["charge_voltage"]["value"] <= s["voltage"]
    assert alarm(s, "cell_over_voltage")["modules"] == [2]


def test_a_module_joining_with_another_soc_waits(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "soc_offset:4=20")
    s = at(snapshots, 20.0)
    assert s["modules_pending"] == [4]
    assert s["modules"]["4"]["reason"].startswith("SOC 7")
    assert s["modules"]["4"]["reason"].endswith("(window 5 %)")
    assert s["modules_online"] == [1, 2, 3]


def test_a_frozen_alive_counter_is_offline(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "freeze:2@10")
    s = at(snapshots, 15.0)
    assert s["modules_offline"] == [2]
    assert s["modules"]["2"]["reason"].startswith("AliveCounter frozen at")


def test_an_overheating_module_derates_and_alarms(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "overheat:1@5=58", seconds=60.0)
    s = at(snapshots, 59.0)
    assert s["temperature_max"]["module"] == 1
    assert s["temperature_max"]["value"] > 55.0
    assert s["modules"]["1"]["limits"]["charge_current"]["bound_by"] == "temperature module 1"
    assert s["limits"]["charge_current"]["value"] == 0.0
    assert alarm(s, "charge_over_temperature")["level"] == "protection"
    assert s["fan_duty"] == 100


def test_a_module_reporting_protection_is_isolated(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "protection:3@10=CellOverVoltage")
    s = at(snapshots, 12.0)
    assert s["modules_isolated"] == [3]
    assert s["modules"]["3"]["reason"] == "protection: CellOverVoltage"
    assert s["modules"]["3"]["isolate_reason"] == "fault"
    assert s["valid"]
    assert alarm(s, "cell_over_voltage")["level"] == "protection"


def test_a_broken_series_string_stops_everything(tmp_path: Path) -> None:
    snapshots = scenario(tmp_path, "drop:4@20", bank={"strings": [[1, 2, 3, 4]]}, current=20.0)
    before, after = at(snapshots, 19.0), at(snapshots, 25.0)
    assert before["valid"]
    assert before["voltage"] == pytest.approx(4 * 53.0, abs=8.0)
    assert before["limits"]["charge_voltage"]["value"] == pytest.approx(4 * 55.2)
    assert not after["valid"]
    assert after["reason"] == "series string 1-2-3-4 broken: module 4 offline"
    assert after["limits"]["charge_current"]["value"] == after["limits"]["discharge_current"]["value"] == 0.0
    assert alarm(after, "module_comm_lost")["level"] == "protection"


def test_current_share_drift_does_not_flood_the_inverter(tmp_path: Path) -> None:
    """Two modules with unequal resistance (2.5 and 3.6 mOhm) share 40 A unevenly; their measured shares drift a
    little every tick and the bank's CCL and DCL with them. Over 60 s the inverter gets each frame once per 1 s
    period, within 10 %, not a set for every 0.1 A of drift."""
    sim = Simulator(modules=2, current=40.0, seed=0, soc=60.0)
    assert (sim.module(1).resistance, sim.module(2).resistance) == pytest.approx((0.0036, 0.0025), abs=1e-4)
    log, out, lines = tmp_path / "stack.log", tmp_path / "sent.log", tmp_path / "snapshots.jsonl"
    write_log(log, sim, 60.0)
    replay(log, config.parse({}), snapshots=lines, output=out)

    snapshots = [json.loads(line) for line in lines.read_text().splitlines()]
    ccl = {round(s["limits"]["charge_current"]["value"], 1) for s in snapshots if s["valid"]}
    assert len(ccl) > 20, "the limit drifts: the scenario exercises the fast path's threshold"
    sent = Counter(m.arbitration_id for m in can.LogReader(out) if m.channel == "inverter")
    assert set(sent) == set(PROFILES["pylontech"].frame_ids)
    for can_id, count in sent.items():
        assert 54 <= count <= 66, (hex(can_id), count)
