"""Monotonic time inside, wall-clock time at the edge: `gateway.clock` and the payloads that convert with it."""

from __future__ import annotations

import math
from dataclasses import replace

from gateway.clock import STEP, UNIX, Anchor, LiveClock
from gateway.master.model import Alarm, AlarmCode, InverterInfo, Level, empty_snapshot
from gateway.payload import alarm_dict, bank_dict, snapshot_dict

from helpers.clocks import WALL


def test_an_anchor_converts_readings_to_iso_utc_to_the_millisecond() -> None:
    assert UNIX.iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert UNIX.iso(WALL) == "2025-11-25T05:53:20.000Z"
    at_start = Anchor(clock=100.0, wall=WALL)  # the gateway clock read 100 s when it was WALL
    assert at_start.iso(114.25) == "2025-11-25T05:53:34.250Z"
    assert at_start.iso(99.0) == "2025-11-25T05:53:19.000Z"
    assert at_start.unix(114.25) == WALL + 14.25
    for damaged in (math.inf, -math.inf, math.nan, 1e12):  # a damaged log's timestamp is no date
        assert UNIX.iso(damaged) is None


class Sources:
    """The two system clocks, set by the test: monotonic, and the wall clock NTP may step."""

    def __init__(self) -> None:
        self.monotonic = 5_000.0  # seconds since boot
        self.wall = 1_700_000_000.0  # a Raspberry Pi without RTC booted with an old date

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def test_live_time_never_jumps_but_published_times_follow_a_wall_clock_step() -> None:
    sources = Sources()
    clock = LiveClock(monotonic=lambda: sources.monotonic, wall=lambda: sources.wall)
    assert clock() == sources.wall  # Unix-like at start
    assert clock.anchor() is UNIX
    sources.advance(10.0)
    raised = clock()  # an alarm raised now, on the master's clock
    assert clock.anchor().iso(raised) == UNIX.iso(sources.wall)
    sources.wall += STEP / 2  # slewing within STEP: the anchor stays (no millisecond flicker between publications)
    assert clock.anchor() is UNIX
    sources.wall = WALL + 25.0  # NTP steps the wall clock to the real date
    sources.advance(5.0)
    assert clock() == raised + 5.0  # the master's clock went on, 5 s, no jump
    assert clock.anchor().iso(raised) == "2025-11-25T05:53:45.000Z"  # the alarm as it happened, in real time
    assert clock.anchor().iso(clock()) == "2025-11-25T05:53:50.000Z"


def test_every_time_in_the_payloads_is_wall_clock_iso_and_durations_stay_seconds() -> None:
    wall = Anchor(clock=0.0, wall=WALL)
    alarm = Alarm(AlarmCode.CELL_IMBALANCE, Level.WARNING, (2,), since=12.5, detail="60 mV")
    assert alarm_dict(alarm, wall=wall) == {
        "code": "cell_imbalance",
        "level": "warning",
        "modules": [2],
        "since": "2025-11-25T05:53:32.500Z",
        "detail": "60 mV",
    }
    snapshot = replace(empty_snapshot(14.0), alarms=(alarm,), inverter=InverterInfo(name="SMA", last_seen=13.9))
    bank = bank_dict(snapshot, wall=wall)
    assert (bank["t"], bank["alarms"][0]["since"]) == ("2025-11-25T05:53:34.000Z", "2025-11-25T05:53:32.500Z")
    assert bank["inverter"] == {"name": "SMA", "last_seen": "2025-11-25T05:53:33.900Z"}
    assert snapshot_dict(snapshot)["t"] == "1970-01-01T00:00:14.000Z"  # replay: the log's time is Unix time
