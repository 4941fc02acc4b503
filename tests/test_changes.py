"""The journal's events: what changed between consecutive snapshots of a real master, driven with explicit times."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from gateway.changes import Change, changes
from gateway.master.model import IsolateReason, Level, Lifecycle, ModuleReading, empty_snapshot

from helpers.factories import bank, master, reading, run

Readings = Callable[[float], Mapping[int, ModuleReading]]
Line = tuple[float, str, str, dict[str, Any]]


def journal(readings: Readings, stop: float, **sections: Mapping[str, Any]) -> list[Line]:
    """(t, event, severity, fields) of every change over a run from 0 to `stop` s at 0.1 s ticks, starting
    from the empty snapshot, as the service's hub does."""
    m = master(**sections)
    before = empty_snapshot(0.0)
    lines: list[Line] = []
    for i in range(round(stop * 10) + 1):
        t = round(i / 10, 1)
        after = m.step(t, readings(t)).snapshot
        lines += [(t, c.event, c.severity, c.fields()) for c in changes(before, after)]
        before = after
    return lines


START: list[Line] = [
    (0.0, "bank not valid", "warning", {"reason": "starting: waiting for every module to report"}),
    (0.0, "module appeared", "info", {"module": 1, "lifecycle": "pending", "isolate_reason": "not_admitted"}),
    (0.0, "module appeared", "info", {"module": 2, "lifecycle": "pending", "isolate_reason": "not_admitted"}),
    (3.0, "bank valid", "info", {}),
    (3.0, "module online", "info", {"module": 1, "lifecycle": "online", "was": "pending"}),
    (3.0, "module online", "info", {"module": 2, "lifecycle": "online", "was": "pending"}),
]
"""Two healthy modules: the bank forms once both have reported for module_timeout (3 s)."""


def test_a_steady_bank_changes_nothing() -> None:
    m = master()
    first = run(m, 0.0, 10.0, bank(1, 2)).snapshot
    second = m.step(10.1, bank(1, 2)(10.1)).snapshot
    assert first.seq != second.seq
    assert changes(first, second) == []
    assert changes(second, second) == []
    assert journal(bank(1, 2), 30.0) == START


def test_a_silent_module_goes_offline_once_and_comes_back_once() -> None:
    """Module 2 sends nothing from 5 s to 20 s: offline 3 s after its last frame, online again at once (same SOC
    and voltage as the bank), its comm-lost alarm cleared alarm_hold (5 s) after its last condition."""

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t if t < 5.0 or t >= 20.0 else 5.0)}

    assert journal(readings, 40.0) == [
        *START,
        (
            8.1,
            "module offline",
            "warning",
            {
                "module": 2,
                "lifecycle": "offline",
                "reason": "no ModuleStatus for 3.1 s",
                "was": "online",
                "isolate_reason": "communication_lost",
            },
        ),
        (
            8.1,
            "alarm raised",
            "warning",
            {
                "code": "module_comm_lost",
                "level": "warning",
                "modules": [2],
                "detail": "module 2: no ModuleStatus for 3.1 s",
            },
        ),
        (20.0, "module online", "info", {"module": 2, "lifecycle": "online", "was": "offline"}),
        (24.9, "alarm cleared", "info", {"code": "module_comm_lost", "level": "warning", "modules": [2]}),
    ]


def test_the_bank_stops_being_valid_with_its_reason_and_comes_back() -> None:
    def readings(t: float) -> dict[int, ModuleReading]:
        return {a: reading(a, t if t < 5.0 or t >= 12.0 else 5.0) for a in (1, 2)}

    lines = journal(readings, 12.0)
    assert [line[:3] for line in lines[len(START) :]] == [
        (8.1, "bank not valid", "warning"),
        (8.1, "module offline", "warning"),
        (8.1, "module offline", "warning"),
        (8.1, "alarm raised", "warning"),
        (12.0, "bank valid", "info"),
        (12.0, "module online", "info"),
        (12.0, "module online", "info"),
    ]
    assert lines[len(START)][3] == {"reason": "no module online"}
    assert lines[len(START) + 3][3]["level"] == "protection"  # no module left: the bank cannot run


def test_an_alarm_is_raised_escalated_eased_and_cleared_once_each() -> None:
    """A cell over 3.55 V (warning), over 3.65 V (protection), back to 3.58 V, back to 3.32 V. The protection
    level holds alarm_hold (5 s) after its last condition; the alarm clears 5 s after its last condition."""

    def readings(t: float) -> dict[int, ModuleReading]:
        if 10.0 <= t < 20.0:
            high = 12.0 <= t < 14.0
            return {1: reading(1, t, cell_voltage_max=3.70 if high else 3.58, cell_voltage_min=3.66 if high else 3.56)}
        return {1: reading(1, t)}

    lines = journal(readings, 40.0)
    assert [event for _, event, _, _ in lines[:4]] == [
        "bank not valid",
        "module appeared",
        "bank valid",
        "module online",
    ]
    alarm = {"code": "cell_over_voltage", "modules": [1]}
    assert lines[4:] == [
        (10.0, "alarm raised", "warning", alarm | {"level": "warning", "detail": "3.580 V"}),
        (
            12.0,
            "alarm level changed",
            "warning",
            alarm | {"level": "protection", "was": "warning", "detail": "3.700 V"},
        ),
        (19.0, "alarm level changed", "info", alarm | {"level": "warning", "was": "protection", "detail": "3.580 V"}),
        (24.9, "alarm cleared", "info", alarm | {"level": "warning"}),
    ]


def test_a_module_in_protection_is_isolated_and_a_second_module_on_an_alarm_is_named() -> None:
    def readings(t: float) -> dict[int, ModuleReading]:
        out = {1: reading(1, t), 2: reading(2, t, protections=1 if t >= 10.0 else 0)}
        if 20.0 <= t < 25.0:
            out[1] = reading(1, t, cell_voltage_max=3.58, cell_voltage_min=3.56)
        return out

    assert journal(readings, 30.0)[len(START) :] == [
        (
            10.0,
            "module isolated",
            "warning",
            {
                "module": 2,
                "lifecycle": "isolated",
                "reason": "protection: CellOverVoltage",
                "was": "online",
                "isolate_reason": "fault",
            },
        ),
        (
            10.0,
            "alarm raised",
            "warning",
            {
                "code": "cell_over_voltage",
                "level": "protection",
                "modules": [2],
                "detail": "module reports ProtCellOverVoltage",
            },
        ),
        (
            20.0,
            "alarm modules changed",
            "warning",
            {
                "code": "cell_over_voltage",
                "level": "protection",
                "modules": [1, 2],
                "was_modules": [2],
                "detail": "3.580 V; module reports ProtCellOverVoltage",
            },
        ),
        (
            25.0,
            "alarm modules changed",
            "info",
            {
                "code": "cell_over_voltage",
                "level": "protection",
                "modules": [2],
                "was_modules": [1, 2],
                "detail": "module reports ProtCellOverVoltage",
            },
        ),
    ]


def test_a_module_removed_from_the_snapshot() -> None:
    snapshot = run(master(), 0.0, 5.0, bank(1, 2)).snapshot
    without = replace(snapshot, modules=MappingProxyType({1: snapshot.modules[1]}))
    assert changes(snapshot, without) == [Change(event="module removed", severity="info", module=2, was="online")]
    assert changes(without, snapshot) == [
        Change(
            event="module appeared",
            severity="info",
            module=2,
            lifecycle=Lifecycle.ONLINE,
            isolate_reason=IsolateReason.NONE,
        )
    ]


def test_fields_are_the_journal_keys_without_empty_ones() -> None:
    change = Change(event="alarm raised", severity="warning", code="module_fault", level=Level.PROTECTION)
    assert change.fields() == {"code": "module_fault", "level": "protection"}
    offline = Change(
        event="module offline",
        severity="warning",
        module=3,
        lifecycle=Lifecycle.OFFLINE,
        reason="AliveCounter frozen at 7",
        isolate_reason=IsolateReason.COMMUNICATION_LOST,
    )
    assert offline.fields() == {
        "module": 3,
        "lifecycle": "offline",
        "reason": "AliveCounter frozen at 7",
        "isolate_reason": "communication_lost",
    }
