"""The live terminal view reads the published payloads, times included (ISO 8601 UTC, shown in local time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from gateway.clock import Anchor
from gateway.master.model import Alarm, AlarmCode, Level
from gateway.monitor import view
from gateway.payload import alarm_dict, bank_dict, module_dict

from helpers.clocks import WALL
from helpers.factories import bank, master, run


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The terminal's local time zone: UTC+05:30, so a time shown in UTC would be told apart."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def rendered(bank_payload: dict[str, Any], modules: dict[int, Any]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(view(bank_payload, modules))
    return console.export_text()


@pytest.mark.usefixtures("kolkata")
def test_alarms_show_since_when_in_local_time() -> None:
    snapshot = run(master(), 0.0, 5.0, bank(1, 2)).snapshot
    alarm = Alarm(AlarmCode.CELL_IMBALANCE, Level.PROTECTION, (1,), since=3.5, detail="150 mV")
    wall = Anchor(clock=0.0, wall=WALL)  # reading 0 = 2025-11-25T05:53:20Z = 11:23:20 in Kolkata
    payload = bank_dict(snapshot, wall=wall)
    payload["alarms"] = [alarm_dict(alarm, wall=wall)]
    text = rendered(payload, {a: module_dict(v, snapshot.t) for a, v in snapshot.modules.items()})
    assert "PROTECTION cell_imbalance  modules [1]  since 11:23:23  150 mV" in text
    older = alarm_dict(Alarm(AlarmCode.MODULE_MISMATCH, Level.WARNING, (2,), since=-86_400.0), wall=wall)
    payload["alarms"] = [older]
    assert "since 2025-11-24 11:23:20" in rendered(payload, {})  # another day: with the date
    payload["alarms"] = [{**older, "since": None}]
    assert "modules [2]    " in rendered(payload, {})  # unknown: nothing shown, nothing raised
