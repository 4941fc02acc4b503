"""Events as the history keeps them: made from snapshot changes and from the gateway's own moments, one shape."""

from __future__ import annotations

import pytest

from gateway.changes import Change
from gateway.history import report
from gateway.history.events import Event, edge_failed, event_dict, from_change, operator, reloaded, started, stopped
from gateway.master.model import AlarmCode, IsolateReason, Level, Lifecycle


def test_an_alarm_change_keeps_its_code_level_modules_detail_and_value() -> None:
    raised = Change(
        event="alarm raised",
        severity="warning",
        code=AlarmCode.CHARGE_OVER_TEMPERATURE,
        level=Level.WARNING,
        modules=(2,),
        detail="51.700 degC",
        value=51.7,
    )
    assert from_change(raised, 83.2) == Event(
        t=83.2,
        event="alarm raised",
        level="warning",
        code="charge_over_temperature",
        modules=(2,),
        detail="51.700 degC",
        value=51.7,
    )
    worse = Change(
        event="alarm level changed",
        severity="warning",
        code=AlarmCode.CHARGE_OVER_TEMPERATURE,
        level=Level.PROTECTION,
        was="warning",
        modules=(2,),
        detail="55.700 degC",
        value=55.7,
    )
    assert from_change(worse, 85.2).level == "protection"
    assert from_change(worse, 85.2).detail == "55.700 degC (was warning)"
    spread = Change(
        event="alarm modules changed",
        severity="warning",
        code=AlarmCode.CELL_IMBALANCE,
        level=Level.WARNING,
        modules=(1, 2),
        was_modules=(1,),
        detail="60 mV",
    )
    assert from_change(spread, 1.0).detail == "60 mV (was modules 1)"


def test_a_module_change_keeps_why_and_what_it_was() -> None:
    offline = Change(
        event="module offline",
        severity="warning",
        module=3,
        lifecycle=Lifecycle.OFFLINE,
        reason="no ModuleStatus for 3.1 s",
        was="online",
        isolate_reason=IsolateReason.COMMUNICATION_LOST,
    )
    assert from_change(offline, 48.0) == Event(
        t=48.0,
        event="module offline",
        level="warning",
        code="communication_lost",
        modules=(3,),
        detail="no ModuleStatus for 3.1 s (was online)",
    )
    readmitted = Change(event="module online", severity="info", module=3, lifecycle=Lifecycle.ONLINE, was="isolated")
    assert from_change(readmitted, 60.0).detail == "was isolated"
    assert from_change(readmitted, 60.0).code == ""


def test_the_gateways_own_events() -> None:
    assert started(1.0, version="1.2.3", source="/etc/bms-gateway/gateway.toml", unclean=False) == Event(
        t=1.0, event="gateway start", level="info", detail="version 1.2.3, /etc/bms-gateway/gateway.toml"
    )
    unclean = started(2.0, version="1.2.3", source="x.toml", unclean=True, last_seen=0.5)
    assert unclean.level == "warning"
    assert unclean.detail == (
        "previous run ended without a clean stop, last written 1970-01-01T00:00:00.500Z; version 1.2.3, x.toml"
    )
    assert stopped(3.0, "SIGTERM").detail == "SIGTERM"
    assert reloaded(4.0, ["limits.alarm_hold: 5.0 -> 10.0"], ["bank.tick"]).detail == (
        "limits.alarm_hold: 5.0 -> 10.0; needs a restart: bank.tick"
    )
    assert edge_failed(5.0, "mqtt", "OSError()").code == "mqtt"
    readmit = operator(6.0, "readmit", source="mqtt", done=False, detail="not isolated", module=4)
    assert (readmit.event, readmit.level, readmit.code, readmit.modules) == (
        "operator readmit",
        "warning",
        "mqtt",
        (4,),
    )
    assert operator(7.0, "full_charge", source="cli", done=True, detail="asked").event == "operator full charge"


def test_the_json_form() -> None:
    e = Event(t=83.2004, event="alarm raised", level="warning", code="x", modules=(2, 3), detail="d", value=51.70004)
    assert event_dict(e) == {
        "t": 83.2,
        "time": "1970-01-01T00:01:23.200Z",
        "event": "alarm raised",
        "level": "warning",
        "code": "x",
        "modules": [2, 3],
        "detail": "d",
        "value": 51.7,
    }
    assert report.event_line(e) == "1970-01-01T00:01:23.200Z  warning     alarm raised [2,3]  x  d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", 10_000.0 - 7_200.0),
        ("30m", 10_000.0 - 1_800.0),
        ("45s", 10_000.0 - 45.0),
        ("1.5d", 10_000.0 - 129_600.0),
        ("1w", 10_000.0 - 604_800.0),
        ("1970-01-01T01:00:00", 3_600.0),
        ("1970-01-01T01:00:00Z", 3_600.0),
        ("1970-01-01T02:00:00+01:00", 3_600.0),
        ("1970-01-02", 86_400.0),
    ],
)
def test_since_takes_a_span_ago_or_a_time(text: str, expected: float) -> None:
    assert report.since(text, now=10_000.0) == pytest.approx(expected)


def test_since_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="not a span like 2h"):
        report.since("yesterday", now=0.0)
