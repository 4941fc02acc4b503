"""The inverter side: bytes of every frame and profile, rounding and clamping, the alarm map, the fail-safe set,
the schedule, the inverter link, and the publisher on python-can virtual buses.

Expected bytes and bit positions are written here from the protocol text, and every payload is also decoded
with tests/data/pylontech_independent.dbc (written by hand, not from dbc/inverters/pylontech.dbc).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypedDict

import can
import cantools
import pytest
import structlog
from cantools.database.can import Database
from hypothesis import given
from hypothesis import strategies as st

from gateway import __version__
from gateway.can import dbc
from gateway.can.bus import DecodingListener, open_bus
from gateway.clock import LiveClock
from gateway.config import BankSection, InverterBusSection
from gateway.hub import SnapshotHub
from gateway.master.model import (
    Alarm,
    AlarmCode,
    BankSnapshot,
    Extreme,
    Flags,
    IsolateReason,
    Level,
    Lifecycle,
    Limit,
    Limits,
    ModuleReading,
    ModuleView,
    empty_snapshot,
)
from gateway.outputs.alarm_table import PYLONTECH, NotSent
from gateway.outputs.inverter import (
    PROFILES,
    STALE_AFTER,
    Frame,
    InverterLink,
    InverterPublisher,
    Schedule,
    frames,
    profile,
)
from gateway.outputs.inverter.docs import update as update_docs
from gateway.outputs.inverter.pylon_lv import INVERTER_IDS

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parents[1] / "docs" / "inverter.md"


def load_independent() -> Database:
    """The independently written DBC, loaded by cantools itself."""
    db = cantools.database.load_file(DATA / "pylontech_independent.dbc", strict=True)
    assert isinstance(db, Database)
    return db


INDEPENDENT = load_independent()
MAJOR, MINOR = (int(x) for x in __version__.split(".")[:2])

PYLON_12 = [0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E]
VICTRON = [*PYLON_12, 0x35A, 0x35F, 0x372, 0x373, 0x379]


# -- snapshots built by hand ----------------------------------------------------------------------------------


def view(address: int, lifecycle: Lifecycle = Lifecycle.ONLINE, *, ccl: float = 100.0) -> ModuleView:
    limits = Limits(Limit(ccl, "test"), Limit(100.0, "test"), Limit(56.0, "test"), Limit(46.0, "test"))
    return ModuleView(
        reading=ModuleReading(address=address),
        lifecycle=lifecycle,
        reason="",
        position=address,
        string=None,
        limits=limits,
        share=None,
        isolate_reason=IsolateReason.NONE,
    )


class LimitValues(TypedDict, total=False):
    """`snapshot`'s limits, any of them."""

    cvl: float
    ccl: float
    dcl: float
    dvl: float


def snapshot(
    t: float = 0.0,
    seq: int = 1,
    *,
    cvl: float = 55.2,
    ccl: float = 100.0,
    dcl: float = 150.0,
    dvl: float = 48.0,
    **values: Any,
) -> BankSnapshot:
    """A valid bank: 52.31 V, -12.3 A, 25.4 degC, SOC 75 %, SOH 98 %, 200 Ah; modules 1 and 2 online (2 blocks
    charge), 3 pending, each its own parallel string; the limits as given, flags that agree with them."""
    base = {
        "seq": seq,
        "valid": True,
        "reason": "",
        "voltage": 52.31,
        "current": -12.3,
        "soc": 75.0,
        "soh": 98.0,
        "remaining_ah": 150.0,
        "full_ah": 200.0,
        "cell_voltage_max": Extreme(3.345, 2, 7),
        "cell_voltage_min": Extreme(3.301, 1, 3),
        "temperature_max": Extreme(25.4, 1, 2),
        "temperature_min": Extreme(22.0, 2, 1),
        "limits": Limits(Limit(ccl, "test"), Limit(dcl, "test"), Limit(cvl, "test"), Limit(dvl, "test")),
        "flags": Flags(charge_enable=ccl > 0, discharge_enable=dcl > 0),
        "modules": MappingProxyType({1: view(1), 2: view(2, ccl=0.0), 3: view(3, Lifecycle.PENDING)}),
        "strings": ((1,), (2,), (3,)),
    }
    return replace(empty_snapshot(t), **{**base, **values})


def alarm(code: str, level: Level) -> Alarm:
    return Alarm(code=AlarmCode(code), level=level, modules=(1,), since=0.0)


def by_id(snap: BankSnapshot, name: str = "victron", **kw: Any) -> dict[int, bytes]:
    return {f.can_id: f.data for f in frames(snap, profile(name), **kw) if not f.extended}


def by_frame(sent: list[Frame]) -> dict[int, bytes]:
    return {f.can_id: f.data for f in sent}


def hexes(data: bytes | bytearray) -> str:
    return data.hex(" ").upper()


def limits_raw(snap: BankSnapshot) -> tuple[int, int, int, int]:
    """0x351 as (CVL, CCL, DCL, DVL) raw: u16, s16, s16, u16 little-endian."""
    return struct.unpack("<HhhH", by_id(snap, "pylontech")[0x351])


def config(**values: Any) -> InverterBusSection:
    return InverterBusSection(**values)


BANK = BankSection()
"""100 A rated charge and discharge current per string: with two strings online the bank's rating is 200 A."""


def schedule(bank: BankSection = BANK, **values: Any) -> Schedule:
    return Schedule(config(**values), bank=bank)


# -- the DBC and the profiles ---------------------------------------------------------------------------------


def test_the_shipped_dbc_has_every_frame_with_its_length_cycle_comment_and_flag_tables() -> None:
    db = dbc.load(None, "inverters/pylontech.dbc", "can.inverter")
    lengths = {0x351: 8, 0x355: 4, 0x356: 6, 0x359: 7, 0x35A: 8, 0x35C: 2, 0x35E: 8}
    lengths |= {0x35F: 8, 0x372: 8, 0x373: 8, 0x379: 8, 0x305: 8, 0x307: 8}
    assert {m.frame_id: m.length for m in db.messages} == lengths
    for m in db.messages:
        assert not m.is_extended_frame
        assert m.cycle_time == 1000, m.name
        assert m.comment, m.name
        for s in m.signals:
            assert s.byte_order == "little_endian"
            if s.length in (1, 2):
                assert s.choices, f"{m.name}.{s.name} has no value table"


FAMILY = ("pylontech", "pylontech-1.3", "victron", "sma-lv", "deye-lv")


def test_profiles_send_the_frames_of_the_issue_in_order() -> None:
    assert {name: list(PROFILES[name].frame_ids) for name in FAMILY} == {
        "pylontech": PYLON_12,
        "pylontech-1.3": [0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F],
        "victron": VICTRON,
        "sma-lv": VICTRON,
        "deye-lv": PYLON_12,
    }
    assert profile("sma") is PROFILES["sma-lv"]
    assert schedule().period == 1.0
    assert schedule(period=0.5, protocol="victron").period == 0.5
    assert schedule(period=1.0, protocol="sma").period == 0.1
    for name in FAMILY:
        assert [f.can_id for f in frames(snapshot(), PROFILES[name])] == list(PROFILES[name].frame_ids), name


# -- bytes ----------------------------------------------------------------------------------------------------


def test_every_frame_byte_for_byte() -> None:
    sent = by_id(snapshot())
    assert {hex(i): hexes(d) for i, d in sent.items()} == {
        "0x351": "28 02 E8 03 DC 05 E0 01",
        "0x355": "4B 00 62 00",
        "0x356": "6F 14 85 FF FE 00",
        "0x359": "00 00 00 00 02 50 4E",
        "0x35c": "C0 00",
        "0x35e": "50 59 4C 4F 4E 20 20 20",
        "0x35a": "AA AA AA 02 AA AA AA 02",
        "0x35f": f"4C 49 {MAJOR:02X} {MINOR:02X} C8 00 00 00",
        "0x372": "02 00 01 00 00 00 01 00",
        "0x373": "E5 0C 11 0D 27 01 2B 01",
        "0x379": "C8 00 00 00 00 00 00 00",
    }
    assert by_id(snapshot(), "pylontech-1.3") == {i: sent[i] for i in PROFILES["pylontech-1.3"].frame_ids}


def test_request_flags() -> None:
    def requests(**flags: bool) -> str:
        return hexes(by_id(snapshot(flags=Flags(**flags)))[0x35C])

    assert requests() == "00 00"
    assert requests(charge_enable=True) == "80 00"
    assert requests(discharge_enable=True) == "40 00"
    assert requests(charge_enable=True, discharge_enable=True, force_charge=True) == "F0 00"
    assert requests(charge_enable=True, discharge_enable=True, full_charge=True) == "C8 00"


def test_module_count_can_be_given() -> None:
    assert by_id(snapshot(), modules_count=7)[0x359][4] == 7
    assert by_id(snapshot(), modules_count=300)[0x359][4] == 255


# -- rounding and clamping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"ccl": 100.06}, (552, 1000, 1500, 480)),
        ({"dcl": 150.09}, (552, 1000, 1500, 480)),
        ({"cvl": 55.27}, (552, 1000, 1500, 480)),
        ({"dvl": 47.95}, (552, 1000, 1500, 480)),
        ({"dvl": 47.91}, (552, 1000, 1500, 480)),
        # Exact values stay exact, where float division would land one step off (0.3 / 0.1 < 3).
        ({"ccl": 0.3, "dcl": 0.3}, (552, 3, 3, 480)),
        ({"dvl": 46.1}, (552, 1000, 1500, 461)),
        ({"cvl": 57.7}, (577, 1000, 1500, 480)),
    ],
)
def test_rounding_never_raises_a_limit(limits: LimitValues, expected: tuple[int, ...]) -> None:
    assert limits_raw(snapshot(**limits)) == expected


@given(st.floats(0.0, 3276.7), st.floats(0.0, 6553.5))
def test_current_limits_round_down_and_dvl_rounds_up_by_less_than_a_step(current: float, voltage: float) -> None:
    cvl, ccl, dcl, dvl = limits_raw(snapshot(cvl=voltage, ccl=current, dcl=current, dvl=voltage))
    tenths = Decimal(repr(current)) * 10
    assert ccl == dcl
    assert ccl <= tenths < ccl + 1
    assert cvl <= Decimal(repr(voltage)) * 10 < cvl + 1
    assert dvl - 1 < Decimal(repr(voltage)) * 10 <= dvl


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"cvl": 1e9, "ccl": 1e9, "dcl": 1e9, "dvl": 1e9}, (0xFFFF, 0x7FFF, 0x7FFF, 0xFFFF)),
        ({"cvl": -1.0, "ccl": -5.0, "dcl": -5.0, "dvl": -1.0}, (0, 0, 0, 0)),
        # Non-finite never raises a limit: current limits and CVL to 0, DVL to its top.
        ({"cvl": math.nan, "ccl": math.nan, "dcl": math.inf, "dvl": math.nan}, (0, 0, 0, 0xFFFF)),
    ],
)
def test_limits_are_clamped_to_the_field(values: LimitValues, expected: tuple[int, ...]) -> None:
    assert limits_raw(snapshot(**values)) == expected


def test_measurements_are_clamped_and_unknown_is_zero() -> None:
    wild = snapshot(
        soc=150.0,
        soh=math.nan,
        voltage=400.0,
        current=-1e6,
        temperature_max=Extreme(1e5, 1, 1),
        temperature_min=Extreme(-300.0, 1, 1),
        cell_voltage_max=Extreme(70.0, 1, 1),
        cell_voltage_min=None,
    )
    sent = by_id(wild)
    assert struct.unpack("<HH", sent[0x355]) == (100, 0)
    assert struct.unpack("<hhh", sent[0x356]) == (32767, -32768, 32767)
    assert struct.unpack("<HHHH", sent[0x373]) == (0, 65535, 0, 65535)
    assert struct.unpack("<HH", by_id(snapshot(soc=-3.0))[0x355]) == (0, 98)
    unknown = by_id(snapshot(voltage=None, current=None, temperature_max=None, soc=None, full_ah=None))
    assert hexes(unknown[0x356]) == "00 00 00 00 00 00"
    assert hexes(unknown[0x355]) == "00 00 62 00"
    assert hexes(unknown[0x379]) == "00 00 00 00 00 00 00 00"


# -- alarms ---------------------------------------------------------------------------------------------------

PAIR = {
    "general": 0,
    "high voltage": 1,
    "low voltage": 2,
    "high temperature": 3,
    "low temperature": 4,
    "high temperature charge": 5,
    "low temperature charge": 6,
    "high discharge current": 7,
    "high charge current": 8,
    "contactor": 9,
    "short circuit": 10,
    "BMS internal": 11,
    "cell imbalance": 12,
}
EXPECTED = {
    "cell_over_voltage": (1, "high voltage"),
    "pack_over_voltage": (1, "high voltage"),
    "cell_under_voltage": (2, "low voltage"),
    "pack_under_voltage": (2, "low voltage"),
    "charge_over_temperature": (3, "high temperature charge"),
    "discharge_over_temperature": (3, "high temperature"),
    "charge_under_temperature": (4, "low temperature charge"),
    "discharge_under_temperature": (4, "low temperature"),
    "discharge_over_current": (7, "high discharge current"),
    "charge_over_current": (8, "high charge current"),
    "cell_imbalance": (None, "cell imbalance"),
    "module_fault": (11, "BMS internal"),
    "module_comm_lost": (11, "BMS internal"),
    "sensor_mismatch": (11, "BMS internal"),
    "internal_error": (11, "BMS internal"),
}
"""Alarm code -> (0x359 bit in bytes 0-1, counted from byte 0 bit 0; 0x35A pair), from the protocol text."""
NOT_SENT = {"module_mismatch", "stack_limit", "heat_accumulation", "inverter_comm_lost", "history_unavailable"}


def pairs(data: bytes, half: int) -> list[int]:
    """The 16 two-bit pairs of one half of 0x35A (0 = alarms, 1 = warnings)."""
    word = int.from_bytes(data[4 * half : 4 * half + 4], "little")
    return [(word >> (2 * n)) & 3 for n in range(16)]


def all_ok() -> list[int]:
    return [2] * 13 + [0] * 3


def test_every_alarm_code_is_decided() -> None:
    assert set(EXPECTED) | NOT_SENT == set(AlarmCode)
    assert not set(EXPECTED) & NOT_SENT
    assert {c for c, m in PYLONTECH.items() if not isinstance(m, NotSent)} == set(EXPECTED)


@pytest.mark.parametrize("level", list(Level))
@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_alarm_sets_its_bit_and_pair_at_its_level(code: str, level: Level) -> None:
    bit, pair = EXPECTED[code]
    sent = by_id(snapshot(alarms=(alarm(code, level),)))
    half = 0 if level is Level.PROTECTION else 1
    bits = int.from_bytes(sent[0x359][:4], "little")
    assert bits == (0 if bit is None else 1 << (bit + 16 * half))
    expected = all_ok()
    expected[PAIR["general"]] = expected[PAIR[pair]] = 1
    assert pairs(sent[0x35A], half) == expected
    assert pairs(sent[0x35A], 1 - half) == all_ok()


@pytest.mark.parametrize("code", sorted(NOT_SENT))
def test_installation_alarms_set_no_inverter_bit(code: str) -> None:
    sent = by_id(snapshot(alarms=(alarm(code, Level.WARNING), alarm(code, Level.PROTECTION))))
    assert hexes(sent[0x359][:4]) == "00 00 00 00"
    assert hexes(sent[0x35A]) == "AA AA AA 02 AA AA AA 02"


def test_several_alarms_combine() -> None:
    alarms = (
        alarm("cell_over_voltage", Level.PROTECTION),
        alarm("charge_over_current", Level.PROTECTION),
        alarm("discharge_under_temperature", Level.WARNING),
        alarm("cell_imbalance", Level.WARNING),
    )
    sent = by_id(snapshot(alarms=alarms))
    assert hexes(sent[0x359][:4]) == "02 01 10 00"
    assert hexes(sent[0x35A]) == "A5 AA A9 02 A9 A9 AA 01"


# -- fail-safe ------------------------------------------------------------------------------------------------

FAILSAFE_351 = "0B 02 00 00 00 00 E0 01"
"""CVL at the bank voltage (52.31 V, rounded down), CCL = DCL = 0, DVL unchanged."""
INTERNAL_ERROR_35A = "A9 AA 6A 02 AA AA AA 02"


def test_an_invalid_snapshot_goes_out_as_the_fail_safe_set() -> None:
    """Even one that (wrongly) still carries limits and flags: the output never shows them."""
    sent = by_id(snapshot(valid=False, reason="no module online", flags=Flags(True, True, True, True)))
    assert hexes(sent[0x351]) == FAILSAFE_351
    assert hexes(sent[0x35C]) == "00 00"
    assert hexes(sent[0x359][:4]) == "00 08 00 00"
    assert hexes(sent[0x35A]) == INTERNAL_ERROR_35A
    # No voltage known: CVL is never 0 V (an inverter could read "charge to 0 V"). It holds what the master held
    # (the last known bank voltage, 52.4 V), else DVL (48.0 V).
    held = snapshot(valid=False, reason="no module online", voltage=None, cvl=52.4)
    assert hexes(by_id(held)[0x351]) == "0C 02 00 00 00 00 E0 01"
    assert hexes(by_id(empty_snapshot(0.0, discharge_voltage=48.0))[0x351]) == "E0 01 00 00 00 00 E0 01"


def test_a_stale_master_gets_the_fail_safe_set() -> None:
    fresh, stale = schedule(), schedule()
    live = fresh.due(STALE_AFTER - 0.01, snapshot(t=0.0))
    assert hexes(by_frame(live)[0x351]) == "28 02 E8 03 DC 05 E0 01"
    assert fresh.reason is None
    sent = by_frame(stale.due(STALE_AFTER, snapshot(t=0.0)))
    assert hexes(sent[0x351]) == FAILSAFE_351
    assert hexes(sent[0x35C]) == "00 00"
    assert hexes(sent[0x359][:4]) == "00 08 00 00"
    assert stale.reason == "master stale"


# -- the schedule (pure, explicit times) -------------------------------------------------------------------------


class Feed:
    """A schedule fed with fresh snapshots, so that only the values decide."""

    def __init__(self, bank: BankSection = BANK, **cfg: Any) -> None:
        self.schedule = schedule(bank, **cfg)
        self.seq = 0

    def __call__(self, now: float, **values: Any) -> list[int]:
        self.seq += 1
        return [f.can_id for f in self.schedule.due(now, snapshot(t=now, seq=self.seq, **values))]


def test_the_whole_set_goes_out_every_period() -> None:
    feed = Feed(period=1.0)
    assert feed(0.0) == PYLON_12
    assert feed(0.5) == []
    assert feed.schedule.wake() == 2.5  # the next tick asks; on its own only when this snapshot goes stale
    assert feed(0.96) == PYLON_12  # a tick a few ms early carries the period's set
    assert feed(1.3) == []
    assert feed(2.7) == PYLON_12  # late (no tick for a while): the next period counts from here
    assert feed.schedule.wake() == 4.7
    assert feed.schedule.fast_sends == 0


@pytest.mark.parametrize(
    "change",
    [
        {"ccl": 50.0},
        {"ccl": 95.9},  # 4.1 A: more than 2 % of the 200 A rating
        {"dcl": 145.9},
        {"dcl": 0.0},
        {"cvl": 53.0},
        {"cvl": 54.6},  # 0.6 V: more than 1 % of 55.2 V
        {"dvl": 49.0},
        {"dvl": 48.5},  # 0.5 V: more than 1 % of 48.0 V
        {"alarms": (alarm("cell_over_voltage", Level.PROTECTION),)},
        {"flags": Flags(charge_enable=True, discharge_enable=True, full_charge=True)},
        {"flags": Flags(charge_enable=True, discharge_enable=True, force_charge=True)},
        {"flags": Flags(charge_enable=False, discharge_enable=True)},
        {"valid": False, "reason": "no module online"},
    ],
)
def test_protective_changes_go_out_at_once(change: dict[str, Any]) -> None:
    feed = Feed(period=5.0)
    feed(0.0)
    assert feed(0.2, **change) == PYLON_12
    assert feed.schedule.fast_sends == 1
    assert feed(0.4, **change) == []  # sent: nothing new


@pytest.mark.parametrize(
    "change",
    [
        {"ccl": 120.0},
        {"dcl": 200.0},
        {"cvl": 56.0},
        {"dvl": 47.0},
        {"ccl": 100.04},  # the same 0x351
        {"ccl": 99.9},  # current-share drift
        {"ccl": 96.0, "dcl": 146.0},  # 4.0 A: not more than 2 % of the 200 A rating
        {"cvl": 54.7},  # 0.5 V: not more than 1 % of 55.2 V
        {"dvl": 48.4},
        {"alarms": (alarm("cell_over_voltage", Level.WARNING),)},
        {"soc": 20.0, "voltage": 49.0},
    ],
)
def test_other_changes_wait_for_the_period(change: dict[str, Any]) -> None:
    feed = Feed(period=5.0)
    feed(0.0)
    assert feed(0.2, **change) == []
    assert feed(5.0, **change) == PYLON_12
    assert feed.schedule.fast_sends == 0


ONE_STRING = MappingProxyType({1: view(1), 2: view(2, Lifecycle.OFFLINE), 3: view(3, Lifecycle.PENDING)})


@pytest.mark.parametrize(
    ("rated", "modules", "waits", "goes"),
    [
        (100.0, None, 4.0, 4.1),  # two strings online: 2 % of 200 A
        (100.0, ONE_STRING, 2.0, 2.1),  # module 2 offline: 2 % of 100 A
        (40.0, ONE_STRING, 1.0, 1.1),  # 2 % of 40 A is 0.8 A: the 1 A floor
        (280.0, None, 11.2, 11.3),  # 2 % of 560 A
    ],
)
@pytest.mark.parametrize("limit", ["ccl", "dcl"])
def test_a_current_limit_goes_out_at_once_when_it_falls_by_more_than_2_percent_of_the_rating(
    rated: float, modules: Any, waits: float, goes: float, limit: str
) -> None:
    bank = BankSection(rated_charge_current=rated, rated_discharge_current=rated)
    extra = {} if modules is None else {"modules": modules}
    feed = Feed(bank, period=5.0)
    feed(0.0, ccl=100.0, dcl=100.0, **extra)
    assert feed(0.2, **{"ccl": 100.0, "dcl": 100.0, limit: 100.0 - waits}, **extra) == []
    assert feed(0.4, **{"ccl": 100.0, "dcl": 100.0, limit: 100.0 - goes}, **extra) == PYLON_12
    assert feed.schedule.fast_sends == 1


def test_small_falls_add_up_to_one_fast_send() -> None:
    """CCL drifting down 0.1 A a tick (current share): one set when it is 4.1 A below what was sent, not one a
    tick; judged against the last set sent, period or fast."""
    feed = Feed(period=5.0)
    sent = [round(0.1 * n, 1) for n in range(50) if feed(0.1 * n, ccl=100.0 - 0.1 * n)]
    assert sent == [0.0, 4.1]
    assert feed.schedule.fast_sends == 1


def test_any_fall_to_zero_goes_out_at_once() -> None:
    feed = Feed(period=5.0)
    feed(0.0, ccl=0.5, dcl=0.3)
    assert feed(0.2, ccl=0.0, dcl=0.3) == PYLON_12
    assert feed(0.4, ccl=0.0, dcl=0.0) == PYLON_12
    assert feed.schedule.fast_sends == 2


def test_a_voltage_limit_crossing_the_bank_voltage_goes_out_at_once() -> None:
    """The bank is at 52.31 V. CVL 52.5 -> 52.3 V is a fall of 0.4 %, but charging must stop now; CVL that then
    follows the voltage down (charge stop) waits. The same for DVL rising to the voltage."""
    feed = Feed(period=5.0)
    feed(0.0, cvl=52.5)
    assert feed(0.2, cvl=52.3) == PYLON_12
    assert feed(0.4, cvl=52.2, voltage=52.2) == []
    feed = Feed(period=5.0)
    feed(0.0, dvl=52.0)
    assert feed(0.2, dvl=52.4) == PYLON_12
    assert feed(0.4, dvl=52.5, voltage=52.5) == []


def test_a_warning_that_becomes_a_protection_goes_out_at_once() -> None:
    feed = Feed(period=5.0)
    feed(0.0, alarms=(alarm("cell_over_voltage", Level.WARNING),))
    assert feed(0.2, alarms=(alarm("cell_over_voltage", Level.PROTECTION),)) == PYLON_12
    assert feed(0.4, alarms=()) == []  # cleared: waits


def test_the_fail_safe_set_goes_out_at_once_even_when_nothing_else_changes() -> None:
    """Limits already 0 and enables already off: only the snapshot's validity changes."""
    feed = Feed(period=5.0)
    idle = {"ccl": 0.0, "dcl": 0.0, "cvl": 52.31, "alarms": (alarm("module_comm_lost", Level.PROTECTION),)}
    feed(0.0, **idle)
    assert feed(0.2, valid=False, reason="no module online", **idle) == PYLON_12
    assert feed.schedule.fast_sends == 1


def test_fast_sends_are_rate_limited_and_judged_against_what_was_sent() -> None:
    feed = Feed(period=5.0)
    feed(0.0)
    assert feed(1.0, ccl=50.0) == PYLON_12
    assert feed(1.05, ccl=20.0) == []  # within FAST_INTERVAL of the last: the next tick sends it
    assert feed(1.08, ccl=60.0) == []  # back above 50: nothing protective left to send
    assert feed(1.09, ccl=20.0) == []
    assert feed(1.1, ccl=20.0) == PYLON_12
    assert feed.schedule.fast_sends == 2


def test_ticks_that_add_up_small_steps_keep_the_period_and_the_rate() -> None:
    """Replay ticks at t += 0.1, which lands a hair before 1.0, 2.0, ...: the sets must not slip a tick."""
    feed, t, sent = Feed(period=1.0), 0.0, []
    for step in range(51):
        if feed(t, ccl=300.0 - 5 * step):  # a limit that falls 5 A every tick: fast sends at the rate limit
            sent.append(t)
        t += 0.1
    assert len(sent) == 51
    assert feed.schedule.fast_sends == 51 - 6


def test_the_schedule_wakes_up_when_the_snapshot_goes_stale() -> None:
    stale = schedule(period=5.0)
    stale.due(0.0, snapshot(t=0.0))
    assert stale.wake() == STALE_AFTER
    assert stale.due(STALE_AFTER, snapshot(t=0.0)) != []
    assert stale.fast_sends == 1
    assert stale.wake() == 5.0


def test_the_schedule_sends_what_frames_encodes() -> None:
    """Replay writes what `due` returns: it must be the pure encoding of the snapshot."""
    snap = snapshot(alarms=(alarm("module_fault", Level.PROTECTION),))
    assert schedule(protocol="sma").due(0.0, snap) == frames(snap, profile("sma"))


# -- against an independently written DBC -------------------------------------------------------------------------


def independent(snap: BankSnapshot) -> dict[int, dict[str, float]]:
    out = {}
    for can_id, data, _ in frames(snap, PROFILES["victron"]) + frames(snap, PROFILES["pylontech-1.3"]):
        message = INDEPENDENT.get_message_by_frame_id(can_id)
        assert len(data) == message.length, hex(can_id)
        out[can_id] = dict(dbc.decode(message, data))
    return out


def ascii_signals(prefix: str, text: str) -> dict[str, int]:
    return {f"{prefix}{n}": ord(c) for n, c in enumerate(text)}


def ok_pairs(**active: int) -> dict[str, int]:
    names = [f"A_B{b}_P{p}" for b in range(3) for p in range(4)] + [f"W_B{b}_P{p}" for b in (4, 5, 6) for p in range(4)]
    return {**dict.fromkeys(names, 2), "A_B3": 2, "W_B7": 2, **active}


def requests(**active: int) -> dict[str, int]:
    """0x35C as the independent DBC reads it: the five flags, and zeros in every other bit."""
    return {**dict.fromkeys(("ChgEn", "DisEn", "ForceI", "ForceII", "FullChg", "Low3Bits", "Byte1"), 0), **active}


def test_an_independent_dbc_reads_every_value_back() -> None:
    expected = {
        0x351: {"CVL": 55.2, "CCL": 100.0, "DCL": 150.0, "DVL": 48.0},
        0x355: {"SOC": 75, "SOH": 98},
        0x356: {"Volts": 52.31, "Amps": -12.3, "DegC": 25.4},
        0x359: {"ProtByte0": 0, "ProtByte1": 0, "WarnByte0": 0, "WarnByte1": 0, "Modules": 2}
        | {"Letter1": ord("P"), "Letter2": ord("N")},
        0x35A: ok_pairs(),
        0x35C: requests(ChgEn=1, DisEn=1),
        0x35E: ascii_signals("Ch", "PYLON   "),
        0x35F: ascii_signals("Chem", "LI") | {"FwHi": MAJOR, "FwLo": MINOR, "CapacityAh": 200, "Spare": 0},
        0x372: {"Online": 2, "BlockCharge": 1, "BlockDischarge": 0, "Offline": 1},
        0x373: {"CellMinMilliVolt": 3301, "CellMaxMilliVolt": 3345, "CellMinKelvin": 295, "CellMaxKelvin": 299},
        0x379: {"InstalledAh": 200, "Rest": 0},
    }
    decoded = independent(snapshot())
    assert decoded.keys() == expected.keys()
    for can_id, values in expected.items():
        assert decoded[can_id] == pytest.approx(values), hex(can_id)


def test_an_independent_dbc_reads_alarms_requests_and_the_fail_safe_set() -> None:
    alarms = (alarm("discharge_over_current", Level.PROTECTION), alarm("cell_imbalance", Level.WARNING))
    flags = Flags(charge_enable=True, discharge_enable=True, force_charge=True, full_charge=True)
    decoded = independent(snapshot(alarms=alarms, flags=flags))
    assert decoded[0x359] | {"Letter1": 0, "Letter2": 0} == pytest.approx(
        {"ProtByte0": 0x80, "ProtByte1": 0, "WarnByte0": 0, "WarnByte1": 0, "Modules": 2, "Letter1": 0, "Letter2": 0}
    )
    assert decoded[0x35A] == ok_pairs(A_B0_P0=1, A_B1_P3=1, W_B4_P0=1, W_B7=1)
    assert decoded[0x35C] == requests(ChgEn=1, DisEn=1, ForceI=1, ForceII=1, FullChg=1)

    failsafe = independent(snapshot(valid=False, reason="no module online"))
    assert failsafe[0x351] == pytest.approx({"CVL": 52.3, "CCL": 0.0, "DCL": 0.0, "DVL": 48.0})
    assert failsafe[0x359]["ProtByte1"] == 0x08
    assert failsafe[0x35A] == ok_pairs(A_B0_P0=1, A_B2_P3=1)
    assert failsafe[0x35C] == requests()


# -- the inverter link ---------------------------------------------------------------------------------------------

VICTRON_307 = bytes.fromhex("12 34 56 78 56 49 43 00")


def test_the_link_hears_keepalive_and_decodes_identification() -> None:
    link = InverterLink(profile("pylontech"))
    assert link.info is None
    link.feed(0x307, VICTRON_307, 5.0)
    assert link.info is not None
    assert (link.info.name, link.info.last_seen, link.info.keepalive_seen) == ("VIC", 5.0, None)
    link.feed(0x305, bytes(8), 6.0)
    assert (link.info.name, link.info.last_seen, link.info.keepalive_seen) == ("VIC", 6.0, 6.0)


def test_the_link_ignores_other_frames_and_pads_short_ones() -> None:
    link = InverterLink(profile("pylontech"))
    link.feed(0x351, bytes(8), 1.0)
    link.on_message(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=True), 1.0)
    link.on_message(can.Message(arbitration_id=0x307, is_remote_frame=True, is_extended_id=False), 1.0)
    assert link.info is None
    link.on_message(can.Message(arbitration_id=0x307, data=b"\x00\x00\x00\x00SMA", is_extended_id=False), 2.0)
    assert link.info is not None
    assert (link.info.name, link.info.last_seen) == ("SMA", 2.0)
    link.feed(0x305, b"", 3.0)
    assert (link.info.name, link.info.last_seen, link.info.keepalive_seen) == ("SMA", 3.0, 3.0)
    link.feed(0x307, bytes(4) + b" \x01V\x00", 4.0)
    assert link.info.name == "V"


def test_the_link_logs_a_burst_of_changing_names_once_then_the_name_it_settles_on() -> None:
    """1000 frames on 0x307 with a new "name" each (a bus or log with other traffic on that ID), 10 ms apart:
    one line. The name it settles on is logged when NAME_LOG_INTERVAL (60 s) has passed, with how often it
    changed; a later real change is logged at once. Times are frame times, as in replay."""
    link = InverterLink(profile("pylontech"))
    with structlog.testing.capture_logs() as logged:
        for n in range(1000):
            link.feed(0x307, bytes(4) + f"N{n:03}".encode(), n * 0.01)
        for second in range(10, 71):
            link.feed(0x307 if second == 10 else 0x305, bytes(4) + b"VIC\0", float(second))
        link.feed(0x307, bytes(4) + b"SMA\0", 200.0)
        link.feed(0x305, bytes(8), 201.0)
    seen = [e for e in logged if e["event"] == "inverter seen"]
    assert [(e["name"], e.get("renames")) for e in seen] == [("N000", None), ("VIC", 1000), ("SMA", None)]
    assert link.info is not None and link.info.name == "SMA"


def test_the_link_reads_an_identification_encoded_with_the_independent_dbc() -> None:
    message = INDEPENDENT.get_message_by_frame_id(0x307)
    data = message.encode({"Code": 0x78563412, "N0": ord("V"), "N1": ord("I"), "N2": ord("C"), "N3": 0})
    assert bytes(data) == VICTRON_307
    assert sorted(INVERTER_IDS) == [0x305, 0x307]


# -- docs ------------------------------------------------------------------------------------------------------------


def table_rows(heading: str) -> list[list[str]]:
    text = DOCS.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text[start : end if end > 0 else None].splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]
    return rows[1:]


def ticked(cell: str) -> str | None:
    found = re.match(r"`([^`]+)`", cell)
    return found[1] if found else None


def test_the_docs_alarm_table_is_the_code() -> None:
    documented = {}
    for code, bit, pair in table_rows("## Alarm bits"):
        name = ticked(code)
        if name is not None:
            documented[name] = (ticked(bit), ticked(pair))
    assert set(documented) == set(AlarmCode)
    assert {c: m for c, m in documented.items() if m != (None, None)} == {
        c: m for c, m in PYLONTECH.items() if not isinstance(m, NotSent)
    }


def test_the_docs_alarm_table_is_generated_from_the_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert update_docs(text) == text, "run: python -m gateway.outputs.inverter README.md docs/inverter.md"


def test_the_docs_bit_positions_are_the_dbc() -> None:
    db = dbc.load(None, "inverters/pylontech.dbc", "can.inverter")
    alarms, pairs_ = db.get_message_by_frame_id(0x359), db.get_message_by_frame_id(0x35A)
    position = re.compile(r"byte (\d) bits? (\d)")
    checked = 0
    for message, heading, prefixes in (
        (alarms, "### 0x359", ("Protection", "Warning")),
        (pairs_, "### 0x35A", ("Alarm", "Warning")),
    ):
        for row in table_rows(heading):
            for prefix, cell in zip(prefixes, row[1:3], strict=True):
                found = position.match(cell)
                assert found, cell
                byte, bit = (int(x) for x in found.groups())
                signal = message.get_signal_by_name(f"{prefix}{ticked(row[0])}")
                assert signal.start == 8 * byte + bit, signal.name
                checked += 1
    assert checked == 2 * 7 + 2 * 13


# -- the publisher on virtual buses ---------------------------------------------------------------------------------


class JumpClock:
    """Real time plus an offset the test can jump forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def buses(channel: str) -> Any:
    """(gateway side, inverter side) of one virtual bus."""
    gateway = open_bus("virtual", channel, 500_000)
    inverter = open_bus("virtual", channel, 500_000)
    yield gateway, inverter
    gateway.shutdown()
    inverter.shutdown()


@contextlib.asynccontextmanager
async def listening(bus: can.BusABC) -> AsyncIterator[can.AsyncBufferedReader]:
    reader = can.AsyncBufferedReader()
    notifier = can.Notifier(bus, [reader], timeout=0.05, loop=asyncio.get_running_loop())
    try:
        yield reader
    finally:
        notifier.stop()


@contextlib.asynccontextmanager
async def publishing(
    bus: can.BusABC, hub: SnapshotHub, clock: Callable[[], float], **cfg: Any
) -> AsyncIterator[InverterPublisher]:
    publisher = InverterPublisher(bus, hub, schedule=Schedule(config(**cfg), bank=BANK), clock=clock)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Ticking:
    """A master that publishes a fresh snapshot of `values` every 0.1 s (the publisher sends with the ticks)."""

    def __init__(self, hub: SnapshotHub, clock: Callable[[], float], **values: Any) -> None:
        self.values = values
        self.running = True
        self._hub, self._clock = hub, clock

    async def run(self) -> None:
        seq = self._hub.latest.seq
        while self.running:
            await asyncio.sleep(0.1)
            seq += 1
            self._hub.publish(snapshot(t=self._clock(), seq=seq, **self.values))


@contextlib.asynccontextmanager
async def ticking(hub: SnapshotHub, clock: Callable[[], float], **values: Any) -> AsyncIterator[Ticking]:
    master = Ticking(hub, clock, **values)
    task = asyncio.create_task(master.run())
    try:
        yield master
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_frame(reader: can.AsyncBufferedReader, can_id: int, within: float = 1.0) -> can.Message:
    async with asyncio.timeout(within):
        while True:
            msg = await reader.get_message()
            if msg.arbitration_id == can_id:
                return msg


def ccl_of(msg: can.Message) -> int:
    _, ccl, _, _ = struct.unpack("<HhhH", msg.data)
    return int(ccl)


async def test_cadence_each_frame_once_per_period(buses: Any) -> None:
    gateway, inverter = buses
    clock = LiveClock()
    hub = SnapshotHub(snapshot(t=clock()))
    period, seconds = 0.1, 2.0

    async def master() -> None:
        for seq in range(2, 1000):
            await asyncio.sleep(0.1)
            hub.publish(snapshot(t=clock(), seq=seq))

    async with listening(inverter) as reader, publishing(gateway, hub, clock, period=period) as publisher:
        ticking = asyncio.create_task(master())
        await asyncio.sleep(seconds)
        ticking.cancel()
    received = []
    while not reader.buffer.empty():
        received.append(reader.buffer.get_nowait())
    sets = len(received) // len(PYLON_12)
    assert [m.arbitration_id for m in received[: sets * len(PYLON_12)]] == PYLON_12 * sets
    assert seconds / period * 0.7 <= sets <= seconds / period + 2
    for can_id in PYLON_12:
        stamps = [m.timestamp for m in received if m.arbitration_id == can_id]
        assert max(b - a for a, b in itertools.pairwise(stamps)) < 1.5 * period, hex(can_id)
    assert publisher.counters == {"frames_sent": len(received), "send_errors": 0, "fast_sends": 0}


async def test_a_falling_limit_goes_out_before_the_period(buses: Any) -> None:
    gateway, inverter = buses
    clock = LiveClock()
    hub = SnapshotHub(snapshot(t=clock()))
    async with (
        listening(inverter) as reader,
        ticking(hub, clock) as master,
        publishing(gateway, hub, clock, period=5.0) as publisher,
    ):
        assert ccl_of(await next_frame(reader, 0x351)) == 1000
        master.values = {"ccl": 0.0}
        assert ccl_of(await next_frame(reader, 0x351, within=1.0)) == 0
        assert publisher.fast_sends == 1


async def test_a_stale_master_gets_the_fail_safe_set_on_the_bus(buses: Any) -> None:
    gateway, inverter = buses
    clock = JumpClock()
    hub = SnapshotHub(snapshot(t=clock()))
    with structlog.testing.capture_logs() as logged:
        async with listening(inverter) as reader, publishing(gateway, hub, clock, period=0.1):
            async with ticking(hub, clock):
                assert ccl_of(await next_frame(reader, 0x351)) == 1000
            clock.offset += STALE_AFTER + 1.0  # the master stopped: no more snapshots, and time goes on
            # The publisher wakes when the last snapshot turns stale (its timer runs in real time: <= 2 s).
            first = await next_frame(reader, 0x351, within=STALE_AFTER + 1.0)
            while hexes(first.data) != FAILSAFE_351:  # a set already on its way before the jump
                first = await next_frame(reader, 0x351)
            assert hexes((await next_frame(reader, 0x35C)).data) == "00 00"
            assert (await next_frame(reader, 0x359)).data[1] == 0x08
            assert hexes((await next_frame(reader, 0x351)).data) == FAILSAFE_351  # and it keeps sending
    assert [e["reason"] for e in logged if e["event"] == "inverter gets the fail-safe set"] == ["master stale"]


async def test_send_failsafe_sends_three_sets(buses: Any) -> None:
    gateway, inverter = buses
    clock = LiveClock()
    hub = SnapshotHub(snapshot(t=clock()))
    publisher = InverterPublisher(gateway, hub, schedule=Schedule(config(), bank=BANK), clock=clock)
    async with listening(inverter) as reader:
        await publisher.send_failsafe()
        received = [await asyncio.wait_for(reader.get_message(), 1.0) for _ in range(3 * len(PYLON_12))]
    assert [m.arbitration_id for m in received] == PYLON_12 * 3
    assert {hexes(m.data) for m in received if m.arbitration_id == 0x351} == {FAILSAFE_351}
    assert {hexes(m.data) for m in received if m.arbitration_id == 0x35C} == {"00 00"}
    assert publisher.frames_sent == 18


class FullBus:
    """A bus whose transmit buffer is always full."""

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        raise can.CanOperationError("Transmit buffer full")


async def test_send_errors_are_counted_and_logged_once_per_burst() -> None:
    clock = LiveClock()
    hub = SnapshotHub(snapshot(t=clock()))
    with structlog.testing.capture_logs() as logged:
        async with ticking(hub, clock), publishing(FullBus(), hub, clock, period=0.05) as publisher:  # type: ignore[arg-type]  # a fake bus: only send()
            await asyncio.sleep(0.35)
            await publisher.send_failsafe(times=1)
    assert publisher.send_errors >= 3 * len(PYLON_12)
    assert publisher.frames_sent == 0
    assert len([e for e in logged if e["event"] == "inverter frame not sent"]) == 1


async def test_the_link_hears_the_inverter_through_a_bus(buses: Any) -> None:
    gateway, inverter = buses
    link = InverterLink(profile("pylontech"))
    loop = asyncio.get_running_loop()
    identified = asyncio.Event()

    def sink(msg: can.Message, t: float) -> None:  # python-can's thread, as in the service
        link.on_message(msg, t)
        if msg.arbitration_id == 0x307:
            loop.call_soon_threadsafe(identified.set)

    notifier = can.Notifier(gateway, [DecodingListener(sink, lambda: 42.0)], timeout=0.05)
    try:
        inverter.send(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False))
        inverter.send(can.Message(arbitration_id=0x307, data=VICTRON_307, is_extended_id=False))
        await asyncio.wait_for(identified.wait(), 1.0)
    finally:
        notifier.stop()
    assert link.info is not None
    assert (link.info.name, link.info.last_seen, link.info.keepalive_seen) == ("VIC", 42.0, 42.0)
