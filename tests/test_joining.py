"""The expansion assistant's answer (`gateway.master.joining.join_check`), on snapshots of the real master.

Every module comes from `factories.reading` (16 cells, 100 Ah, 100 A, 60 % SOC, 53.0 V, every message group
fresh); the master runs on explicit time. The answer must be the master's own: a property test checks that the
verdict "joins" comes exactly when the master admits the module at its next tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config
from gateway.master.joining import JoinCheck, Verdict, join_check
from gateway.master.master import Master
from gateway.master.model import BankSnapshot, Lifecycle, ModuleReading

from helpers.factories import configured, reading, run

START = 5.0
"""Past the start-up phase (module_timeout 3 s): the bank has formed."""


def snapshot_of(
    readings: Callable[[float], Mapping[int, ModuleReading]], *, until: float = START, **sections: Any
) -> tuple[BankSnapshot, Config]:
    cfg = configured(**sections)
    return run(Master(cfg), 0.0, until, readings).snapshot, cfg


def check(address: int, readings: Callable[[float], Mapping[int, ModuleReading]], **sections: Any) -> JoinCheck:
    s, cfg = snapshot_of(readings, **sections)
    return join_check(s, cfg.bank, address)


def three_and(address: int, **values: Any) -> Callable[[float], dict[int, ModuleReading]]:
    """Modules 1-3 at 60 % charging at 10 A each (300 Ah), and module `address` joining at 4 s with `values`."""

    def readings(t: float) -> dict[int, ModuleReading]:
        out = {a: reading(a, t, current=10.0) for a in (1, 2, 3)}
        if t >= 4.0:
            out[address] = reading(address, t, first_seen=4.0, **values)
        return out

    return readings


def kinds(answer: JoinCheck) -> list[str]:
    return [i.kind for i in answer.items]


# -- SOC and voltage ----------------------------------------------------------------------------------------------


def test_a_module_with_20_percent_more_soc_waits_and_is_told_what_to_do() -> None:
    answer = check(4, three_and(4, soc=80.0, current=0.0))
    assert answer.verdict is Verdict.WAIT and not answer.can_join
    assert answer.state is Lifecycle.PENDING
    assert answer.reason == "SOC 80.0 % vs bank 60.0 % (window 5 %)"
    assert answer.summary == "Module 4 may not join yet: its SOC is 20.0 % above the bank's."
    (soc,) = answer.items
    assert (soc.kind, soc.text, soc.blocking) == ("soc", "SOC 80.0 % vs bank 60.0 % (window 5 %)", True)
    # 30 A into 300 Ah: 60 -> 75 % is 45 Ah, 1.5 h; 53 V x 30 A = 1.6 kW.
    assert soc.action == (
        "discharge module 4 to 55–65 % before connecting it, or wait: it joins by itself once the bank is within "
        "5 %, and the bank reaches 75 % in about 1.5 h at the present power (1.6 kW charging)"
    )
    assert answer.eta is not None and answer.eta.hours == pytest.approx(1.5)
    assert answer.module is not None and answer.module.soc == pytest.approx(80.0)
    assert answer.bank is not None and answer.bank.soc == pytest.approx(60.0)


def test_the_wait_for_the_bank_depends_on_where_its_current_goes() -> None:
    below = check(4, three_and(4, soc=40.0, current=0.0))  # the bank charges away from 40 %
    assert below.items[0].action.startswith("charge module 4 to 55–65 % before connecting it")
    assert below.eta is not None and below.eta.hours is None
    assert str(below.eta) == "the bank is charging (1.6 kW charging), away from 45 %"

    def resting(t: float) -> dict[int, ModuleReading]:
        return {**three_and(4, soc=80.0)(t), **{a: reading(a, t, current=0.0) for a in (1, 2, 3)}}

    answer = check(4, resting)
    assert answer.eta is not None and str(answer.eta) == "the bank is at rest: it does not come to 75 % on its own"

    def discharging(t: float) -> dict[int, ModuleReading]:
        return {**three_and(4, soc=40.0)(t), **{a: reading(a, t, current=-60.0) for a in (1, 2, 3)}}

    answer = check(4, discharging)
    # 180 A out of 300 Ah: 60 -> 45 % is 45 Ah, 15 min.
    assert answer.eta is not None and answer.eta.hours == pytest.approx(0.25)
    assert "the bank reaches 45 % in about 15 min at the present power (9.5 kW discharging)" in answer.items[0].action


def test_a_voltage_gap_is_listed_after_the_soc_gap_and_alone_when_the_soc_matches() -> None:
    both = check(4, three_and(4, soc=80.0, voltage=54.2))
    assert kinds(both) == ["soc", "voltage"]
    assert both.items[1].text == "voltage 54.20 V vs bank 53.00 V (window 0.5 V)"
    assert both.items[1].action.startswith("discharge module 4 to 52.5–53.5 V before connecting it")
    only = check(4, three_and(4, voltage=52.2))
    assert only.summary == "Module 4 may not join yet: its voltage is 0.80 V below the bank's."
    assert kinds(only) == ["voltage"] and only.eta is None


def test_a_module_that_matches_joins_and_one_in_the_bank_is_online() -> None:
    readings = three_and(4)
    s, cfg = snapshot_of(readings)
    assert join_check(s, cfg.bank, 1).verdict is Verdict.ONLINE
    assert join_check(s, cfg.bank, 1).summary == "Module 1 is in the bank."
    assert join_check(s, cfg.bank, 4).verdict is Verdict.ONLINE  # admitted the tick it matched


@given(soc=st.floats(40.0, 80.0), voltage=st.floats(52.0, 54.0))
def test_the_answer_is_what_the_master_decides(soc: float, voltage: float) -> None:
    """Module 9 arrives with any SOC and voltage near the bank's: when the master admits it, the assistant says it
    is in the bank; when it does not, the assistant's first missing item is the master's own reason (its gaps
    against the bank as the snapshot shows it are the ones the master found)."""
    cfg = configured()
    m = Master(cfg)
    bank = three_and(9)
    run(m, 0.0, START, lambda t: {a: r for a, r in bank(t).items() if a != 9})
    for t in (START + 0.1, START + 0.2):
        readings = {**{a: reading(a, t, current=10.0) for a in (1, 2, 3)}}
        readings[9] = reading(9, t, soc=soc, voltage=voltage, current=0.0, first_seen=START)
        after = m.step(t, readings).snapshot
    answer = join_check(after, cfg.bank, 9)
    if after.modules[9].lifecycle is Lifecycle.ONLINE:
        assert answer.verdict is Verdict.ONLINE
    else:
        assert answer.verdict is Verdict.WAIT
        assert answer.items[0].text == after.modules[9].reason
        assert all(i.kind in ("soc", "voltage") for i in answer.items)


# -- what the master decided: rejected, isolated, offline, waiting ----------------------------------------------


def test_a_module_with_another_cell_count_never_joins() -> None:
    answer = check(4, three_and(4, cells_in_series=15, cell_count=15))
    assert answer.verdict is Verdict.NEVER
    assert answer.summary == "Module 4 cannot join this bank: 15 cells, the bank has 16."
    assert kinds(answer) == ["cells"]
    assert "use it in a bank of its own kind" in answer.items[0].action


def test_a_module_outside_the_configured_strings_never_joins() -> None:
    answer = check(4, three_and(4), bank={"strings": [[1], [2], [3]]})
    assert answer.verdict is Verdict.NEVER
    assert answer.items[0].kind == "not_configured"
    assert answer.items[0].action.startswith("add module 4 to [bank] strings")


def test_the_stack_limit_for_a_module_seen_and_for_one_not_yet_connected() -> None:
    seen = check(4, three_and(4), bank={"max_modules": 3})
    assert seen.verdict is Verdict.NEVER
    assert seen.summary == "Module 4 cannot join this bank: the stack is full: max_modules is 3."
    assert kinds(seen) == ["stack_limit"]
    s, cfg = snapshot_of(lambda t: {a: reading(a, t) for a in (1, 2, 3)}, bank={"max_modules": 3})
    unseen = join_check(s, cfg.bank, 7)
    assert (unseen.verdict, unseen.state, kinds(unseen)) == (Verdict.NEVER, None, ["stack_limit"])
    roomy = join_check(s, configured(bank={"max_modules": 4}).bank, 7)
    assert roomy.verdict is Verdict.UNKNOWN


def test_a_module_not_seen_yet_is_told_what_to_match() -> None:
    s, cfg = snapshot_of(lambda t: {a: reading(a, t) for a in (1, 2, 3)})
    answer = join_check(s, cfg.bank, 7)
    assert answer.verdict is Verdict.UNKNOWN and answer.state is None
    assert answer.summary == "Module 7 is not on the bus yet: to join now it needs 55–65 % SOC and 52.5–53.5 V."
    assert kinds(answer) == ["not_seen", "target"]
    assert answer.items[0].action.startswith("connect its CAN cable, set its address to 7")
    nothing, cfg = snapshot_of(lambda t: {})
    alone = join_check(nothing, cfg.bank, 1)
    assert alone.verdict is Verdict.UNKNOWN and kinds(alone) == ["not_seen", "no_bank"]


def test_an_offline_or_frozen_module_needs_attention() -> None:
    def silent(t: float) -> dict[int, ModuleReading]:
        out = {a: reading(a, t) for a in (1, 2, 3)}
        out[3] = reading(3, min(t, 1.0))  # fell silent at 1 s
        return out

    answer = check(3, silent, bank={"strings": [[1], [2], [3]]})
    assert answer.verdict is Verdict.ATTENTION
    assert answer.summary.startswith("Module 3 is offline: no ModuleStatus for ")
    assert answer.items[0].action == "check module 3's CAN cable, termination, address (3) and power"
    frozen = check(3, lambda t: {**{a: reading(a, t) for a in (1, 2)}, 3: reading(3, t, alive=4, alive_repeats=9)})
    assert frozen.reason == "AliveCounter frozen at 4"
    assert frozen.items[0].action == "module 3's BMS seems hung: switch it off and on"


def test_an_isolated_module_is_told_how_it_comes_back() -> None:
    answer = check(4, three_and(4, protections=1))
    assert answer.verdict is Verdict.ATTENTION
    assert answer.summary == "Module 4 is isolated: protection: CellOverVoltage."
    assert answer.items[0].kind == "isolated"
    assert "isolation_holdoff (300 s)" in answer.items[0].action
    assert "an operator readmits it" in answer.items[0].action


def test_a_module_still_reporting_waits_a_few_seconds() -> None:
    answer = check(4, three_and(4, seen={"status": 4.9}))
    assert answer.verdict is Verdict.WAIT
    assert answer.summary == "Module 4 is waiting for CellSummary."
    assert kinds(answer) == ["waiting"]


def test_while_the_gateway_starts_a_module_waits() -> None:
    s, cfg = snapshot_of(lambda t: {a: reading(a, t) for a in (1, 2)}, until=1.0)
    answer = join_check(s, cfg.bank, 2)
    assert answer.verdict is Verdict.WAIT and kinds(answer) == ["starting"]


def test_a_module_of_an_incomplete_series_string_waits_for_the_others() -> None:
    answer = check(
        3,
        lambda t: {a: reading(a, t) for a in (1, 2, 3)},
        bank={"strings": [[1, 2], [3, 4]]},
    )
    assert answer.verdict is Verdict.WAIT
    assert answer.items[0].text == "its series string 3-4 is not complete"
    assert answer.items[0].action == "connect and switch on module 4 too"


# -- mismatch warnings ---------------------------------------------------------------------------------------------


def test_firmware_soh_and_cycle_mismatches_are_warnings_with_advice() -> None:
    answer = check(4, three_and(4, firmware=(1, 3, 0), soh=80.0, cycle_count=900))
    assert answer.verdict is Verdict.ONLINE
    warnings = {i.kind: i for i in answer.items}
    assert set(warnings) == {"firmware", "soh", "cycles"}
    assert not any(i.blocking for i in answer.items)
    assert warnings["firmware"].text == "module 4: firmware 1.3.0 differs from the bank's 1.4.2"
    assert warnings["soh"].action.startswith("an aged module belongs in a separate bank")
    pending = check(4, three_and(4, soc=80.0, full_capacity=50.0, nominal_capacity=50.0))
    assert kinds(pending) == ["soc", "capacity"]
