"""Bank conditions and mismatch notes, driven directly with an explicit membership: lost modules (warning, or
protection when the bank cannot run without them), the stack limit, a current-sensor mismatch in a series string,
a silent inverter, and firmware, SOH, capacity and cycle-count spreads naming the outlier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from gateway.config import Config
from gateway.master.admission import Health, Membership
from gateway.master.alarms import Condition
from gateway.master.conditions import bank_conditions, mismatch, mismatch_conditions
from gateway.master.model import AlarmCode, InverterInfo, IsolateReason, Level, Lifecycle, ModuleReading

from helpers.factories import configured, reading, tick_input

CFG = configured()
ONLINE = Health(Lifecycle.ONLINE, "", IsolateReason.NONE)
SILENT = Health(Lifecycle.OFFLINE, "no ModuleStatus for 3.1 s", IsolateReason.COMMUNICATION_LOST)
FAULT = Health(Lifecycle.ISOLATED, "protection: CellOverVoltage", IsolateReason.FAULT)


def membership(
    strings: Sequence[tuple[int, ...]], health: Mapping[int, Health], broken: Sequence[tuple[int, ...]] = ()
) -> Membership:
    """What admission would say: the strings whose modules are all online are admitted."""
    online = frozenset(a for a, h in health.items() if h.lifecycle is Lifecycle.ONLINE)
    return Membership(
        strings=tuple(strings),
        addresses=tuple(sorted(health)),
        health=health,
        admitted=tuple(s for s in strings if set(s) <= online),
        broken=tuple(broken),
        online=online,
    )


def conditions(
    m: Membership,
    readings: Mapping[int, ModuleReading] | None = None,
    *,
    now: float = 10.0,
    cfg: Config = CFG,
    inverter: InverterInfo | None = None,
    timeout: float = 30.0,
    starting: bool = False,
) -> list[Condition]:
    readings = {a: reading(a, now) for a in m.addresses} if readings is None else readings
    tick = tick_input(cfg, now, readings, inverter=inverter, starting=starting)
    return list(bank_conditions(tick, m, timeout))


# -- module_comm_lost ------------------------------------------------------------------------------------------


def test_a_lost_module_is_a_warning_while_the_bank_runs_on() -> None:
    m = membership([(1,), (2,), (3,)], {1: ONLINE, 2: ONLINE, 3: SILENT})
    assert conditions(m) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.WARNING, 3, "module 3: no ModuleStatus for 3.1 s")
    ]


def test_a_lost_module_is_a_protection_under_min_online() -> None:
    cfg = configured(bank={"min_online": 3})
    m = membership([(1,), (2,), (3,)], {1: ONLINE, 2: ONLINE, 3: SILENT})
    assert conditions(m, cfg=cfg) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, 3, "module 3: no ModuleStatus for 3.1 s")
    ]


def test_every_module_lost_is_a_protection() -> None:
    never = Health(Lifecycle.OFFLINE, "never seen", IsolateReason.COMMUNICATION_LOST)
    m = membership([(1,), (2,)], {1: SILENT, 2: never})
    assert conditions(m) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, 1, "module 1: no ModuleStatus for 3.1 s"),
        Condition(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, 2, "module 2: never seen"),
    ]


def test_a_lost_module_that_breaks_its_series_string_is_a_protection() -> None:
    m = membership([(1, 2), (3, 4)], {1: ONLINE, 2: SILENT, 3: ONLINE, 4: ONLINE}, broken=[(1, 2)])
    assert conditions(m) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, 2, "module 2: no ModuleStatus for 3.1 s")
    ]


def test_a_lost_module_outside_the_broken_string_is_a_warning() -> None:
    """String 1-2 is broken by an isolation, not by module 4, which is a string of its own."""
    health = {1: ONLINE, 2: FAULT, 3: ONLINE, 4: SILENT}
    m = membership([(1, 2), (3,), (4,)], health, broken=[(1, 2)])
    assert conditions(m) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.WARNING, 4, "module 4: no ModuleStatus for 3.1 s")
    ]


def test_nothing_is_lost_while_starting() -> None:
    m = membership([(1,), (2,)], {1: ONLINE, 2: SILENT})
    assert conditions(m, starting=True) == []


# -- stack_limit, sensor_mismatch ---------------------------------------------------------------------------------


def test_a_module_over_the_stack_limit_raises_stack_limit() -> None:
    over = Health(Lifecycle.ISOLATED, "stack limit: max_modules is 2", IsolateReason.STACK_LIMIT)
    m = membership([(1,), (2,)], {1: ONLINE, 2: ONLINE, 3: over})
    assert conditions(m, cfg=configured(bank={"max_modules": 2})) == [
        Condition(AlarmCode.STACK_LIMIT, Level.WARNING, 3, "max_modules is 2")
    ]


def series(*currents: float | None, t: float = 10.0) -> dict[int, ModuleReading]:
    return {a: reading(a, t, current=c) for a, c in enumerate(currents, start=1)}


def test_currents_over_5_percent_of_the_rating_apart_in_a_series_string_raise_sensor_mismatch() -> None:
    m = membership([(1, 2)], {1: ONLINE, 2: ONLINE})
    # 27 - 20 = 7 A > 5 % of 100 A
    detail = "current spread 7.0 A in one string"
    assert conditions(m, series(20.0, 27.0)) == [
        Condition(AlarmCode.SENSOR_MISMATCH, Level.WARNING, 1, detail),
        Condition(AlarmCode.SENSOR_MISMATCH, Level.WARNING, 2, detail),
    ]
    assert conditions(m, series(20.0, 25.0)) == []  # 5 A: not over
    assert conditions(m, series(20.0, None)) == []  # one sensor says nothing
    assert conditions(m, series(20.0, 27.0), cfg=configured(limits={"sensor_mismatch": 10.0})) == []


def test_parallel_strings_may_carry_different_currents() -> None:
    m = membership([(1,), (2,)], {1: ONLINE, 2: ONLINE})
    assert conditions(m, series(20.0, 60.0)) == []


def test_an_offline_modules_old_current_is_no_sensor_mismatch() -> None:
    lost = Health(Lifecycle.OFFLINE, "no ModuleStatus for 10.0 s", IsolateReason.COMMUNICATION_LOST)
    m = membership([(1, 2), (3, 4)], {1: ONLINE, 2: lost, 3: ONLINE, 4: ONLINE}, broken=[(1, 2)])
    # module 2 went silent at rest at 10 s; at 20 s module 1 measures the charge current
    readings = {
        1: reading(1, 20.0, current=20.0),
        2: reading(2, 10.0, current=0.0),
        3: reading(3, 20.0),
        4: reading(4, 20.0),
    }
    assert conditions(m, readings, now=20.0) == [
        Condition(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, 2, "module 2: no ModuleStatus for 10.0 s")
    ]


# -- inverter_comm_lost -------------------------------------------------------------------------------------------


def test_a_silent_inverter_raises_inverter_comm_lost_after_the_timeout() -> None:
    m = membership([(1,)], {1: ONLINE})
    inverter = InverterInfo(name="VIC", last_seen=5.0)
    assert conditions(m, now=35.0, inverter=inverter) == []  # 30 s: not more than the timeout
    assert conditions(m, now=36.0, inverter=inverter) == [
        Condition(AlarmCode.INVERTER_COMM_LOST, Level.WARNING, None, "no frame for 31 s")
    ]
    assert conditions(m, now=1000.0, inverter=inverter, timeout=0.0) == []  # 0 disables
    assert conditions(m, now=1000.0, inverter=None) == []  # no inverter seen yet


def test_a_link_with_its_own_timeout_is_judged_by_it_not_by_the_masters() -> None:
    """The GEN24's heartbeat comes every 60 s: its link says 120 s, whatever the master's 30 s for CAN."""
    m = membership([(1,)], {1: ONLINE})
    gen24 = InverterInfo(name="GEN24", last_seen=5.0, timeout=120.0)
    assert conditions(m, now=125.0, inverter=gen24) == []
    assert conditions(m, now=126.0, inverter=gen24) == [
        Condition(AlarmCode.INVERTER_COMM_LOST, Level.WARNING, None, "no frame for 121 s")
    ]
    assert conditions(m, now=1000.0, inverter=InverterInfo("GEN24", 5.0, timeout=0.0)) == []  # its 0 disables


# -- mismatch notes -------------------------------------------------------------------------------------------------


def notes(
    values: Mapping[int, Mapping[str, Any]], health: Mapping[int, Health] | None = None, *, cfg: Config = CFG
) -> dict[int, list[str]]:
    readings = {a: reading(a, 10.0, **v) for a, v in values.items()}
    health = health or dict.fromkeys(readings, ONLINE)
    m = membership([(a,) for a in readings], health)
    return mismatch(tick_input(cfg, 10.0, readings), list(readings.values()), m)


def test_a_module_off_the_firmware_majority_is_named() -> None:
    result = notes({1: {}, 2: {}, 3: {"firmware": (1, 3, 0)}})
    assert result == {3: ["firmware 1.3.0 differs from the bank's 1.4.2"]}


def test_with_no_majority_the_newer_firmware_counts_as_the_banks() -> None:
    assert notes({1: {"firmware": (1, 3, 0)}, 2: {}}) == {1: ["firmware 1.3.0 differs from the bank's 1.4.2"]}


def test_firmware_mismatch_can_be_switched_off() -> None:
    assert notes({1: {}, 2: {"firmware": (1, 3, 0)}}, cfg=configured(bank={"firmware_mismatch": False})) == {}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # SOH spread over 10 points
        ({3: {"soh": 85.0}}, {3: ["SOH 85 vs bank median 98"]}),
        ({3: {"soh": 88.0}}, {}),  # 98 - 88 = 10: not over
        # capacity spread over 20 %
        ({3: {"full_capacity": 79.0}}, {3: ["capacity 79 vs bank median 100"]}),  # 100 > 79 x 1.2 = 94.8
        ({3: {"full_capacity": 120.0}}, {}),  # 120 = 100 x 1.2: not over
        ({3: {"full_capacity": 121.0}}, {3: ["capacity 121 vs bank median 100"]}),
        (  # no measured capacity: the nominal one
            {3: {"full_capacity": None, "nominal_capacity": 70.0, "remaining_capacity": 42.0}},
            {3: ["capacity 70 vs bank median 100"]},
        ),
        # cycle-count spread over 500
        ({3: {"cycle_count": 900}}, {3: ["cycle count 900 vs bank median 100"]}),
        ({3: {"cycle_count": 600}}, {}),  # 600 - 100 = 500: not over
        ({3: {"soh": None, "cycle_count": None}}, {}),  # unknown values are no spread
    ],
)
def test_spreads_name_the_outlier(values: dict[int, dict[str, Any]], expected: dict[int, list[str]]) -> None:
    assert notes({1: {}, 2: {}, **values}) == expected


def test_with_two_modules_equally_far_from_the_median_both_are_named() -> None:
    # median of 98 and 85 is 91.5; both are 6.5 away
    assert notes({1: {}, 2: {"soh": 85.0}}) == {
        1: ["SOH 98 vs bank median 91.5"],
        2: ["SOH 85 vs bank median 91.5"],
    }


def test_every_note_of_a_module_in_order() -> None:
    aged = {"firmware": (1, 3, 0), "soh": 85.0, "full_capacity": 79.0, "cycle_count": 900}
    assert notes({1: {}, 2: {}, 3: aged}) == {
        3: [
            "firmware 1.3.0 differs from the bank's 1.4.2",
            "SOH 85 vs bank median 98",
            "capacity 79 vs bank median 100",
            "cycle count 900 vs bank median 100",
        ]
    }


def test_a_rejected_module_is_noted_with_its_reason_and_counts_in_no_spread() -> None:
    rejected = Health(Lifecycle.REJECTED, "15 cells, the bank has 16", IsolateReason.MISMATCH)
    other_bank = Health(Lifecycle.REJECTED, "not in bank.strings", IsolateReason.NOT_ADMITTED)
    odd = {"firmware": (2, 0, 0), "soh": 50.0, "full_capacity": 20.0, "cycle_count": 5000, "cells_in_series": 15}
    result = notes({1: {}, 2: {}, 3: odd, 9: odd}, {1: ONLINE, 2: ONLINE, 3: rejected, 9: other_bank})
    assert result == {3: ["15 cells, the bank has 16"], 9: ["not in bank.strings"]}
    assert list(mismatch_conditions(result)) == [
        Condition(AlarmCode.MODULE_MISMATCH, Level.WARNING, 3, "module 3: 15 cells, the bank has 16"),
        Condition(AlarmCode.MODULE_MISMATCH, Level.WARNING, 9, "module 9: not in bank.strings"),
    ]


def test_a_pending_module_is_compared_too() -> None:
    """The expansion assistant shows why a module waiting to join does not fit the bank."""
    pending = Health(Lifecycle.PENDING, "SOC 80.0 % vs bank 60.0 % (window 5 %)", IsolateReason.NOT_ADMITTED)
    result = notes({1: {}, 2: {}, 3: {"soc": 80.0, "soh": 85.0}}, {1: ONLINE, 2: ONLINE, 3: pending})
    assert result == {3: ["SOH 85 vs bank median 98"]}


def test_mismatch_conditions_are_warnings_naming_the_module() -> None:
    conditions = list(mismatch_conditions({3: ["SOH 85 vs bank median 98", "cycle count 900 vs bank median 100"]}))
    assert conditions == [
        Condition(AlarmCode.MODULE_MISMATCH, Level.WARNING, 3, "module 3: SOH 85 vs bank median 98"),
        Condition(AlarmCode.MODULE_MISMATCH, Level.WARNING, 3, "module 3: cycle count 900 vs bank median 100"),
    ]
