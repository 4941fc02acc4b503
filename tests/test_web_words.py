"""The limits' `bound_by` in words: every form the master's limit rules write has a sentence."""

from __future__ import annotations

import pytest

from gateway.master.model import AlarmCode
from gateway.outputs.web.words import ALARM_NAMES, limit_words, words

from helpers.factories import bank, master, reading, run

FORMS = [
    ("rating module 3", "charge_current", "module 3's rated current ([bank] rated_charge_current)"),
    ("rating module 3", "discharge_current", "module 3's rated current ([bank] rated_discharge_current)"),
    ("rating", "charge_current", "the modules' rated currents: nothing holds it down"),
    ("reported module 2", "charge_current", "module 2's own limit (what it reports)"),
    (
        "reported module 2 charge voltage 40 V",
        "charge_current",
        "module 2 asks for a charge voltage of 40 V, below its lowest: no charging",
    ),
    ("no reported limit module 5", "discharge_current", "module 5 has not reported its limits yet"),
    (
        "reported module 2: module's own limit, no cell data",
        "charge_current",
        "module 2's own limit: it sends no cell data, so its own BMS watches its cells",
    ),
    ("module 3 forbids charging", "charge_current", "module 3's own BMS forbids charging"),
    ("module 3 forbids discharging", "discharge_current", "module 3's own BMS forbids discharging"),
    ("cell_voltage module 4", "charge_current", "module 4's highest cell is near full ([limits] charge_cell_voltage)"),
    (
        "cell_voltage module 4",
        "discharge_current",
        "module 4's lowest cell is near empty ([limits] discharge_cell_voltage)",
    ),
    ("temperature module 4", "charge_current", "module 4's temperature ([limits] charge_temperature)"),
    ("soc module 1", "charge_current", "module 1 is nearly full ([limits] charge_soc)"),
    ("soc module 1", "discharge_current", "module 1 is nearly empty ([limits] discharge_soc)"),
    (
        "current_share module 2",
        "charge_current",
        "the string of module 2 takes more than its part of the current, so the bank stops before it passes its own "
        "limit",
    ),
    ("sum of module limits", "discharge_current", "the sum of the modules' limits"),
    ("slew_rate", "charge_current", "rising gradually after a drop ([limits] slew_rate)"),
    (
        "balancing module 3 cell 7",
        "charge_voltage",
        "cell 7 of module 3 is above the per-cell target: held there while the other cells catch up (balancing)",
    ),
    (
        "charge_voltage_per_cell",
        "charge_voltage",
        "cells x the per-cell charge target ([limits] charge_voltage_per_cell)",
    ),
    (
        "discharge_voltage_per_cell",
        "discharge_voltage",
        "cells x the per-cell discharge floor ([limits] discharge_voltage_per_cell)",
    ),
    (
        "charge_stop (temperature module 4)",
        "charge_voltage",
        "charging stopped (module 4's temperature ([limits] charge_temperature)): held at the bank's voltage",
    ),
    (
        "temperature module 4 (held: module 2 left the bank)",
        "charge_current",
        "module 4's temperature ([limits] charge_temperature); held since module 2 left the bank, as it may still be "
        "connected ([bank] offline_hold)",
    ),
]


@pytest.mark.parametrize(("bound_by", "limit", "expected"), FORMS)
def test_each_rule_is_worded(bound_by: str, limit: str, expected: str) -> None:
    assert words(bound_by, limit) == expected


def test_a_form_nobody_knows_is_shown_as_it_is() -> None:
    assert words("no module online", "charge_current") == "no module online"


def test_the_bound_by_of_real_master_runs_are_all_worded() -> None:
    """A healthy bank, a warm module, a nearly full one and a silent one: every bound the master names is worded."""
    m = master(limits={"slew_rate": 1000.0})
    seen = set()
    scenarios = [
        bank(1, 2),
        lambda t: {1: reading(1, t), 2: reading(2, t, temperature_max=50.0)},
        lambda t: {1: reading(1, t, soc=98.0), 2: reading(2, t, cell_voltage_max=3.52)},
        lambda t: {1: reading(1, t, current=60.0), 2: reading(2, t, current=20.0)},
    ]
    t = 0.0
    for readings in scenarios:
        tick = run(m, t, t + 5.0, readings)
        t += 5.1
        for name, worded in limit_words(
            {n: {"bound_by": getattr(tick.snapshot.limits, n).bound_by} for n in ("charge_current", "charge_voltage")}
        ).items():
            bound_by = getattr(tick.snapshot.limits, name).bound_by
            seen.add(bound_by)
            assert worded != bound_by, f"{bound_by!r} has no words"
    assert len(seen) >= 4


def test_every_alarm_code_has_a_name_on_the_dashboard() -> None:
    assert set(ALARM_NAMES) == set(AlarmCode)
    assert len(set(ALARM_NAMES.values())) == len(ALARM_NAMES)
