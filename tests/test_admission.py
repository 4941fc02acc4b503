"""Admission, driven directly: who is in the bank, who waits and why, who is isolated and for how long.

Every module comes from `factories.reading` (16 cells, 100 Ah, 100 A, 60 % SOC, 53.0 V, every message group
fresh at the time given); the defaults of `bank` apply unless a test configures them: module_timeout 3 s,
frozen_counter_frames 5, SOC window 5 %, voltage window 0.5 V, isolation_holdoff 300 s, cutoff_first_count 3.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Config
from gateway.master.admission import DEFAULT_REQUIRED, Admission, Health, Membership
from gateway.master.inputs import TickInput
from gateway.master.limits import module_limits
from gateway.master.model import IsolateReason, Lifecycle, ModuleReading

from helpers.factories import configured, reading, tick_input

ALL_GROUPS = DEFAULT_REQUIRED
ONLINE = Health(Lifecycle.ONLINE, "", IsolateReason.NONE)
WAITING = Health(Lifecycle.PENDING, "", IsolateReason.NOT_ADMITTED)
"""Healthy but not admitted (yet): while starting, or in a broken series string."""


def fresh(t: float, *addresses: int, **values: Any) -> dict[int, ModuleReading]:
    return {a: reading(a, t, **values) for a in addresses}


def step(rule: Admission, cfg: Config, t: float, readings: dict[int, ModuleReading]) -> tuple[Membership, TickInput]:
    tick = tick_input(cfg, t, readings)
    return rule.update(tick), tick


# -- starting, topology ------------------------------------------------------------------------------------------


def test_while_starting_nothing_is_admitted_then_the_bank_forms() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    tick = tick_input(cfg, 0.0, fresh(0.0, 1, 2), dt=0.0, starting=True)
    m = rule.update(tick)
    assert m.strings == ((1,), (2,))  # auto mode: every module seen is its own parallel string
    assert m.admitted == ()
    assert m.online == frozenset()
    assert m.health[1] == m.health[2] == WAITING
    assert m.reason(tick) == "starting: waiting for every module to report"

    m, tick = step(rule, cfg, 3.0, fresh(3.0, 1, 2))
    assert m.admitted == ((1,), (2,))
    assert m.online == {1, 2}
    assert m.health[1] == m.health[2] == ONLINE
    assert m.reason(tick) == ""


def test_configured_strings_are_the_topology_and_others_are_rejected() -> None:
    cfg = configured(bank={"strings": [[1, 2], [3, 4]]})
    m, tick = step(Admission(ALL_GROUPS), cfg, 10.0, fresh(10.0, 1, 2, 3, 4, 9))
    assert m.strings == ((1, 2), (3, 4))
    assert m.addresses == (1, 2, 3, 4, 9)
    assert m.admitted == ((1, 2), (3, 4))
    assert m.health[9] == Health(Lifecycle.REJECTED, "not in bank.strings", IsolateReason.NOT_ADMITTED)
    assert 9 not in m.online
    assert m.reason(tick) == ""


def test_stack_limit_in_auto_mode_keeps_the_first_seen_modules() -> None:
    cfg = configured(bank={"max_modules": 2})
    readings = {
        1: reading(1, 10.0, first_seen=1.0),
        2: reading(2, 10.0, first_seen=0.0),
        3: reading(3, 10.0, first_seen=5.0),  # the last one plugged in
    }
    m, _ = step(Admission(ALL_GROUPS), cfg, 10.0, readings)
    assert m.strings == ((1,), (2,))
    assert m.addresses == (1, 2, 3)
    assert m.health[3] == Health(Lifecycle.ISOLATED, "stack limit: max_modules is 2", IsolateReason.STACK_LIMIT)
    assert m.admitted == ((1,), (2,))

    # seen at the same time: the higher address is the one over the limit
    m, _ = step(Admission(ALL_GROUPS), cfg, 10.0, fresh(10.0, 6, 4, 5))
    assert m.strings == ((4,), (5,))
    assert m.health[6].isolate_reason is IsolateReason.STACK_LIMIT


# -- offline: silent, stale, frozen --------------------------------------------------------------------------------


def test_a_module_is_offline_only_after_module_timeout_without_status() -> None:
    cfg = configured(bank={"strings": [[1], [2]]})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    # 13.0 - 10.0 = 3.0 s: not more than module_timeout (3 s)
    m, _ = step(rule, cfg, 13.0, {1: reading(1, 13.0), 2: reading(2, 10.0)})
    assert m.health[2] == ONLINE
    # 13.1 - 10.0 = 3.1 s
    m, tick = step(rule, cfg, 13.1, {1: reading(1, 13.1), 2: reading(2, 10.0)})
    assert m.health[2] == Health(Lifecycle.OFFLINE, "no ModuleStatus for 3.1 s", IsolateReason.COMMUNICATION_LOST)
    assert m.admitted == ((1,),)
    assert m.online == {1}
    assert m.broken == ()  # a parallel string that goes silent leaves; the bank runs on at N-1
    assert m.reason(tick) == ""


def test_a_configured_module_never_seen_is_offline() -> None:
    cfg = configured(bank={"strings": [[1], [2], [3]]})
    only_limits = reading(3, 10.0, seen={"limits": 10.0, "cells": 10.0, "temperatures": 10.0})
    m, _ = step(Admission(ALL_GROUPS), cfg, 10.0, {1: reading(1, 10.0), 3: only_limits})
    never = Health(Lifecycle.OFFLINE, "never seen", IsolateReason.COMMUNICATION_LOST)
    assert m.health[2] == never
    assert m.health[3] == never  # no ModuleStatus yet: nothing else it sends counts
    assert m.admitted == ((1,),)


@pytest.mark.parametrize(
    ("frames", "repeats", "offline"),
    [
        (5, 3, False),  # 4 equal AliveCounter values in a row
        (5, 4, True),  # 5 equal values: frozen_counter_frames reached
        (2, 0, False),
        (2, 1, True),  # 2 equal values
    ],
)
def test_an_alive_counter_frozen_for_frozen_counter_frames_is_offline(frames: int, repeats: int, offline: bool) -> None:
    cfg = configured(bank={"frozen_counter_frames": frames})
    m, _ = step(
        Admission(ALL_GROUPS), cfg, 10.0, {1: reading(1, 10.0), 2: reading(2, 10.0, alive=7, alive_repeats=repeats)}
    )
    if offline:
        assert m.health[2] == Health(Lifecycle.OFFLINE, "AliveCounter frozen at 7", IsolateReason.COMMUNICATION_LOST)
        assert m.online == {1}
    else:
        assert m.health[2] == ONLINE


def test_a_missing_group_keeps_a_module_pending_and_a_stale_one_makes_it_offline() -> None:
    cfg = configured()
    readings = {
        1: reading(1, 10.0),
        2: reading(2, 10.0, seen={"status": 10.0, "limits": 10.0, "cells": 10.0}),
        3: reading(3, 10.0, seen={"status": 10.0}),
        4: reading(4, 10.0, seen={"status": 10.0, "limits": 10.0, "cells": 10.0, "temperatures": 6.5}),
    }
    m, _ = step(Admission(ALL_GROUPS), cfg, 10.0, readings)
    assert m.health[2] == Health(Lifecycle.PENDING, "waiting for Temperatures", IsolateReason.NOT_ADMITTED)
    assert m.health[3] == Health(Lifecycle.PENDING, "waiting for CellSummary", IsolateReason.NOT_ADMITTED)
    # 10.0 - 6.5 = 3.5 s > module_timeout
    assert m.health[4] == Health(Lifecycle.OFFLINE, "no Temperatures for 3.5 s", IsolateReason.COMMUNICATION_LOST)
    assert m.admitted == ((1,),)

    # a DBC that carries only ModuleStatus: the other groups are not required
    m, _ = step(Admission(frozenset({"status"})), cfg, 10.0, {3: readings[3]})
    assert m.health[3] == ONLINE


# -- rejected -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bank", "values", "reason"),
    [
        ({}, {"cells_in_series": 15, "cell_count": 15}, "15 cells, the bank has 16"),
        ({}, {"cells_in_series": None, "cell_count": 15}, "15 cells, the bank has 16"),  # counted cells, if no more
        ({"cells_in_series": 15}, {}, "16 cells, the bank has 15"),
    ],
)
def test_a_module_with_another_cell_count_is_rejected(
    bank: dict[str, Any], values: dict[str, Any], reason: str
) -> None:
    cfg = configured(bank={"strings": [[1], [2]], **bank})
    other = {"cells_in_series": 15, "cell_count": 15} if bank else {}
    readings = {1: reading(1, 10.0, **other), 2: reading(2, 10.0, **values)}
    m, tick = step(Admission(ALL_GROUPS), cfg, 10.0, readings)
    assert m.health[2] == Health(Lifecycle.REJECTED, reason, IsolateReason.MISMATCH)
    assert m.admitted == ((1,),)  # the rest of the bank goes on
    assert m.reason(tick) == ""


# -- admission windows ----------------------------------------------------------------------------------------------


def test_a_module_joins_only_within_the_soc_window() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    m, _ = step(rule, cfg, 10.0, {**fresh(10.0, 1, 2), 3: reading(3, 10.0, soc=80.0)})
    assert m.admitted == ((1,), (2,))
    assert m.health[3] == Health(
        Lifecycle.PENDING, "SOC 80.0 % vs bank 60.0 % (window 5 %)", IsolateReason.NOT_ADMITTED
    )
    # |65.1 - 60.0| = 5.1 > 5
    m, _ = step(rule, cfg, 10.1, {**fresh(10.1, 1, 2), 3: reading(3, 10.1, soc=65.1)})
    assert m.health[3].reason == "SOC 65.1 % vs bank 60.0 % (window 5 %)"
    # |65.0 - 60.0| = 5.0: within the window
    m, _ = step(rule, cfg, 10.2, {**fresh(10.2, 1, 2), 3: reading(3, 10.2, soc=65.0)})
    assert m.admitted == ((1,), (2,), (3,))
    assert m.health[3] == ONLINE


def test_the_soc_window_is_configurable_and_named_in_the_reason() -> None:
    cfg = configured(bank={"admission_soc_window": 2.5})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1))
    m, _ = step(rule, cfg, 10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, soc=57.0)})
    assert m.health[2].reason == "SOC 57.0 % vs bank 60.0 % (window 2.5 %)"


def test_a_module_joins_only_within_the_voltage_window_and_soc_is_checked_first() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    # |53.51 - 53.00| = 0.51 V > 0.5 V
    m, _ = step(rule, cfg, 10.1, {**fresh(10.1, 1, 2), 3: reading(3, 10.1, voltage=53.51)})
    assert m.health[3] == Health(
        Lifecycle.PENDING, "voltage 53.51 V vs bank 53.00 V (window 0.5 V)", IsolateReason.NOT_ADMITTED
    )
    m, _ = step(rule, cfg, 10.2, {**fresh(10.2, 1, 2), 3: reading(3, 10.2, voltage=52.4)})
    assert m.health[3].reason == "voltage 52.40 V vs bank 53.00 V (window 0.5 V)"
    m, _ = step(rule, cfg, 10.3, {**fresh(10.3, 1, 2), 3: reading(3, 10.3, voltage=54.0, soc=80.0)})
    assert m.health[3].reason == "SOC 80.0 % vs bank 60.0 % (window 5 %)"
    # |53.5 - 53.0| = 0.5 V: within the window
    m, _ = step(rule, cfg, 10.4, {**fresh(10.4, 1, 2), 3: reading(3, 10.4, voltage=53.5)})
    assert m.health[3] == ONLINE


def test_the_bank_forms_around_the_string_that_matches_the_most_others() -> None:
    """Module 1 has the lowest address but stands alone at 70 %; 2 and 3 at 60 % match each other."""
    cfg = configured()
    readings = {1: reading(1, 10.0, soc=70.0), 2: reading(2, 10.0), 3: reading(3, 10.0)}
    m, _ = step(Admission(ALL_GROUPS), cfg, 10.0, readings)
    assert m.admitted == ((2,), (3,))
    assert m.health[1].reason == "SOC 70.0 % vs bank 60.0 % (window 5 %)"


def test_an_admitted_module_is_not_checked_again_but_a_returning_one_is() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    # in the bank, module 2 drifts to 70 %: it stays (the window is for connecting, and it is connected)
    m, _ = step(rule, cfg, 10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, soc=70.0)})
    assert m.health[2] == ONLINE
    # silent for 3.5 s (14.0 - 10.5), it leaves ...
    m, _ = step(rule, cfg, 14.0, {1: reading(1, 14.0), 2: reading(2, 10.5, soc=70.0)})
    assert m.health[2].lifecycle is Lifecycle.OFFLINE
    # ... and when it is back it must match the bank again
    m, _ = step(rule, cfg, 14.1, {1: reading(1, 14.1), 2: reading(2, 14.1, soc=70.0)})
    assert m.health[2] == Health(
        Lifecycle.PENDING, "SOC 70.0 % vs bank 60.0 % (window 5 %)", IsolateReason.NOT_ADMITTED
    )
    m, _ = step(rule, cfg, 14.2, {1: reading(1, 14.2), 2: reading(2, 14.2, soc=62.0)})
    assert m.health[2] == ONLINE


# -- isolation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"module_state": 5, "fault_code": 1234}, "module in fault (code 1234)"),
        ({"fault_code": 77}, "fault code 77"),
        ({"protections": 0b101}, "protection: CellOverVoltage, ModuleOverVoltage"),
        ({"protections": 1 << 14}, "protection: ShortCircuit"),
    ],
)
def test_a_module_in_trouble_is_isolated_with_the_reason(values: dict[str, Any], reason: str) -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    m, _ = step(rule, cfg, 10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, **values)})
    assert m.health[2] == Health(Lifecycle.ISOLATED, reason, IsolateReason.FAULT)
    assert m.admitted == ((1,),)


def test_isolation_holds_off_from_the_last_moment_of_trouble_then_admission_decides() -> None:
    cfg = configured(bank={"isolation_holdoff": 10.0})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    step(rule, cfg, 20.0, {1: reading(1, 20.0), 2: reading(2, 20.0, protections=1)})
    m, _ = step(rule, cfg, 24.0, {1: reading(1, 24.0), 2: reading(2, 24.0, protections=1)})
    assert m.health[2] == Health(Lifecycle.ISOLATED, "protection: CellOverVoltage", IsolateReason.FAULT)
    # cleared at 25 s; last seen at 24 s: 24 + 10 - 25 = 9 s to go
    m, _ = step(rule, cfg, 25.0, fresh(25.0, 1, 2))
    assert m.health[2] == Health(
        Lifecycle.ISOLATED, "protection: CellOverVoltage (re-admission in 9 s)", IsolateReason.FAULT
    )
    # 24 + 10 - 33 = 1 s
    m, _ = step(rule, cfg, 33.0, {1: reading(1, 33.0), 2: reading(2, 33.0, soc=70.0)})
    assert m.health[2].reason == "protection: CellOverVoltage (re-admission in 1 s)"
    # 34 s: the hold-off is over, and admission still applies: 70 % is outside the window
    m, _ = step(rule, cfg, 34.0, {1: reading(1, 34.0), 2: reading(2, 34.0, soc=70.0)})
    assert m.health[2] == Health(
        Lifecycle.PENDING, "SOC 70.0 % vs bank 60.0 % (window 5 %)", IsolateReason.NOT_ADMITTED
    )
    m, _ = step(rule, cfg, 34.1, fresh(34.1, 1, 2))
    assert m.health[2] == ONLINE


def test_an_operator_readmits_an_isolated_module_through_admission() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    step(rule, cfg, 10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, module_state=5, fault_code=1234)})
    assert rule.readmit(2) is True
    assert rule.readmit(2) is False  # already lifted
    assert rule.readmit(1) is False  # never isolated
    assert rule.readmit(42) is False  # unknown
    # no 300 s hold-off, but the SOC window still applies
    m, _ = step(rule, cfg, 10.2, {1: reading(1, 10.2), 2: reading(2, 10.2, soc=70.0)})
    assert m.health[2].reason == "SOC 70.0 % vs bank 60.0 % (window 5 %)"
    m, _ = step(rule, cfg, 10.3, fresh(10.3, 1, 2))
    assert m.health[2] == ONLINE


def test_a_readmitted_module_still_in_trouble_is_isolated_again() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    faulty = {1: reading(1, 10.1), 2: reading(2, 10.1, module_state=5, fault_code=1234)}
    step(rule, cfg, 10.1, faulty)
    assert rule.readmit(2)
    m, _ = step(rule, cfg, 10.2, {1: reading(1, 10.2), 2: reading(2, 10.2, module_state=5, fault_code=1234)})
    assert m.health[2] == Health(Lifecycle.ISOLATED, "module in fault (code 1234)", IsolateReason.FAULT)


# -- broken series strings and the bank's reason ------------------------------------------------------------------


def test_a_series_string_with_a_module_offline_is_broken_and_the_bank_is_not_valid() -> None:
    cfg = configured(bank={"strings": [[1, 2, 3, 4]]})
    rule = Admission(ALL_GROUPS)
    m, _ = step(rule, cfg, 10.0, fresh(10.0, 1, 2, 3, 4))
    assert m.admitted == ((1, 2, 3, 4),)
    # 13.1 - 10.0 = 3.1 s without module 4's ModuleStatus
    m, tick = step(rule, cfg, 13.1, {**fresh(13.1, 1, 2, 3), 4: reading(4, 10.0)})
    assert m.broken == ((1, 2, 3, 4),)
    assert m.admitted == ()
    assert m.online == frozenset()
    assert m.health[1] == m.health[2] == m.health[3] == WAITING  # healthy, but the string cannot carry current
    assert m.reason(tick) == "series string 1-2-3-4 broken: module 4 offline"


def test_a_broken_string_names_every_module_that_is_out() -> None:
    cfg = configured(bank={"strings": [[1, 2, 3, 4]]})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2, 3, 4))
    readings = {
        1: reading(1, 13.1),
        2: reading(2, 13.1, protections=1),
        3: reading(3, 13.1, cells_in_series=15),
        4: reading(4, 10.0),
    }
    m, tick = step(rule, cfg, 13.1, readings)
    assert m.reason(tick) == "series string 1-2-3-4 broken: module 2 isolated, module 3 rejected, module 4 offline"


def test_a_broken_string_makes_the_bank_invalid_even_when_another_string_is_fine() -> None:
    cfg = configured(bank={"strings": [[1, 2], [3, 4]]})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2, 3, 4))
    m, tick = step(rule, cfg, 14.0, {**fresh(14.0, 1, 3, 4), 2: reading(2, 10.0)})
    assert m.admitted == ((3, 4),)
    assert m.broken == ((1, 2),)
    assert m.reason(tick) == "series string 1-2 broken: module 2 offline"


def test_a_series_string_with_every_module_offline_is_broken_too() -> None:
    cfg = configured(bank={"strings": [[1, 2], [3, 4]]})
    rule = Admission(ALL_GROUPS)
    step(rule, cfg, 10.0, fresh(10.0, 1, 2, 3, 4))
    # module 2 alone silent: broken, the bank is not valid (the test above)
    m, tick = step(rule, cfg, 14.0, {**fresh(14.0, 1, 3, 4), 2: reading(2, 10.0)})
    assert m.reason(tick) == "series string 1-2 broken: module 2 offline"
    # module 1 silent too: nothing more is known about that string, and it may still be connected
    m, tick = step(rule, cfg, 15.0, {**fresh(15.0, 3, 4), 1: reading(1, 11.0), 2: reading(2, 10.0)})
    assert m.broken == ((1, 2),)
    assert m.reason(tick) == "series string 1-2 broken: module 1 offline, module 2 offline"


def test_starting_comes_before_a_broken_string() -> None:
    cfg = configured(bank={"strings": [[1, 2]]})
    tick = tick_input(cfg, 2.0, {1: reading(1, 2.0)}, starting=True)
    m = Admission(ALL_GROUPS).update(tick)
    assert m.broken == ((1, 2),)
    assert m.reason(tick) == "starting: waiting for every module to report"


def test_no_module_online_and_min_online() -> None:
    cfg = configured()
    waiting = reading(1, 10.0, seen={"status": 10.0})
    m, tick = step(Admission(ALL_GROUPS), cfg, 10.0, {1: waiting})
    assert m.reason(tick) == "no module online"

    cfg = configured(bank={"min_online": 2})
    rule = Admission(ALL_GROUPS)
    m, tick = step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    assert m.reason(tick) == ""
    m, tick = step(rule, cfg, 10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, fault_code=3)})
    assert m.reason(tick) == "1 modules online, min_online is 2"


# -- the module that is time after time first at the cutoff -------------------------------------------------------


def cutoff_step(rule: Admission, cfg: Config, t: float, readings: dict[int, ModuleReading]) -> Membership:
    """One tick as the master runs it for a valid bank: admission, module limits, then the cutoff tracking."""
    m, tick = step(rule, cfg, t, readings)
    if not m.reason(tick):
        per_module = {a: module_limits(readings[a], cfg.bank, cfg.limits) for a in m.online}
        rule.track_cutoffs(tick, m, per_module)
    return m


def full(t: float, *addresses: int) -> dict[int, ModuleReading]:
    """3.56 V: charge derated to 0 by cell voltage (0 % from 3.55 V), the cutoff."""
    return {a: reading(a, t, cell_voltage_max=3.56) for a in addresses}


def test_the_module_first_at_the_cutoff_three_times_in_a_row_is_isolated() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    cutoff_step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    for i, t in enumerate((10.1, 10.3, 10.5), start=1):
        m = cutoff_step(rule, cfg, t, {**fresh(t, 1), **full(t, 2)})
        assert m.health[2] == ONLINE, i  # isolated from the next tick on
        cutoff_step(rule, cfg, t + 0.1, fresh(t + 0.1, 1, 2))
    # isolated at 10.5 s; 10.5 + 300 - 10.7 = 299.8 s to go, shown as 300 s
    m, _ = step(rule, cfg, 10.7, fresh(10.7, 1, 2))
    assert m.health[2] == Health(
        Lifecycle.ISOLATED,
        "first to reach the cell-voltage cutoff 3 times in a row (re-admission in 300 s)",
        IsolateReason.FAULT,
    )
    assert m.admitted == ((1,),)


def test_staying_at_the_cutoff_counts_once() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    cutoff_step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    for i in range(1, 6):
        t = 10.0 + i / 10
        m = cutoff_step(rule, cfg, t, {**fresh(t, 1), **full(t, 2)})
    m = cutoff_step(rule, cfg, 11.0, fresh(11.0, 1, 2))
    assert m.health[2] == ONLINE


def test_reaching_the_cutoff_together_or_after_another_module_breaks_the_run() -> None:
    cfg = configured()
    rule = Admission(ALL_GROUPS)
    t = 10.0
    cutoff_step(rule, cfg, t, fresh(t, 1, 2))
    # module 2 first, 2 first, both at once, 2 first, 1 first, 2 first, 2 first: never three in a row
    for first in ((2,), (2,), (1, 2), (2,), (1,), (2,), (2,)):
        t += 0.1
        cutoff_step(rule, cfg, t, {**fresh(t, 1, 2), **full(t, *first)})
        t += 0.1
        m = cutoff_step(rule, cfg, t, fresh(t, 1, 2))
        assert m.health[1] == m.health[2] == ONLINE
    t += 0.1
    cutoff_step(rule, cfg, t, {**fresh(t, 1), **full(t, 2)})  # the third in a row
    m, _ = step(rule, cfg, t + 0.1, fresh(t + 0.1, 1, 2))
    assert m.health[2].lifecycle is Lifecycle.ISOLATED


def test_the_discharge_cutoff_counts_and_other_zero_limits_do_not() -> None:
    cfg = configured(bank={"cutoff_first_count": 2})
    rule = Admission(ALL_GROUPS)
    cutoff_step(rule, cfg, 10.0, fresh(10.0, 1, 2))
    # 0 degC: charge 0 by temperature, not a cell-voltage cutoff
    for t in (10.1, 10.3):
        cutoff_step(rule, cfg, t, {1: reading(1, t), 2: reading(2, t, temperature_min=0.0)})
        cutoff_step(rule, cfg, t + 0.1, fresh(t + 0.1, 1, 2))
    m, _ = step(rule, cfg, 10.5, fresh(10.5, 1, 2))
    assert m.health[2] == ONLINE
    # 2.79 V: discharge 0 by cell voltage (0 % at 2.80 V), twice
    for t in (10.6, 10.8):
        cutoff_step(rule, cfg, t, {1: reading(1, t), 2: reading(2, t, cell_voltage_min=2.79)})
        cutoff_step(rule, cfg, t + 0.1, fresh(t + 0.1, 1, 2))
    m, _ = step(rule, cfg, 11.0, fresh(11.0, 1, 2))
    assert m.health[2].reason.startswith("first to reach the cell-voltage cutoff 2 times in a row")


def test_a_bank_of_one_string_never_isolates_its_only_string() -> None:
    cfg = configured(bank={"strings": [[1, 2]]})
    rule = Admission(ALL_GROUPS)
    t = 10.0
    cutoff_step(rule, cfg, t, fresh(t, 1, 2))
    for _ in range(5):
        t += 0.1
        cutoff_step(rule, cfg, t, {**fresh(t, 1), **full(t, 2)})
        t += 0.1
        m = cutoff_step(rule, cfg, t, fresh(t, 1, 2))
    assert m.admitted == ((1, 2),)


def test_isolating_the_weak_module_of_a_series_string_does_not_stop_the_bank() -> None:
    """Two strings of two: module 2 is the weak one, first at the top of charge three times. Isolation is there so
    that the bank runs on without the weak module, not so that it stops."""
    cfg = configured(bank={"strings": [[1, 2], [3, 4]]})
    rule = Admission(ALL_GROUPS)
    t = 10.0
    cutoff_step(rule, cfg, t, fresh(t, 1, 2, 3, 4))
    for _ in range(3):
        t += 0.1
        cutoff_step(rule, cfg, t, {**fresh(t, 1, 3, 4), **full(t, 2)})
        t += 0.1
        cutoff_step(rule, cfg, t, fresh(t, 1, 2, 3, 4))
    m, tick = step(rule, cfg, t + 0.1, fresh(t + 0.1, 1, 2, 3, 4))
    assert (3, 4) in m.admitted
    assert m.reason(tick) == ""
