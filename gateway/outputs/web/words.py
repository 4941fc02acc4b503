"""The master's `bound_by` in words: "why is the inverter getting 37 A?" answered for a person, not a parser.

Every rule that sets a limit names itself in `bound_by` ("temperature module 4", "current_share module 2", ...;
see gateway/master/limits.py). Here each form becomes a sentence; a form this table does not know is shown as it
is, so a new rule is never hidden, only less well worded.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.master.model import AlarmCode

LIMIT_NAMES = {
    "charge_current": "Charge current",
    "discharge_current": "Discharge current",
    "charge_voltage": "Charge voltage",
    "discharge_voltage": "Discharge voltage",
}

ALARM_NAMES: dict[AlarmCode, str] = {
    AlarmCode.CELL_OVER_VOLTAGE: "Cell over voltage",
    AlarmCode.CELL_UNDER_VOLTAGE: "Cell under voltage",
    AlarmCode.PACK_OVER_VOLTAGE: "Module over voltage",
    AlarmCode.PACK_UNDER_VOLTAGE: "Module under voltage",
    AlarmCode.CHARGE_OVER_TEMPERATURE: "Too warm to charge",
    AlarmCode.DISCHARGE_OVER_TEMPERATURE: "Too warm to discharge",
    AlarmCode.CHARGE_UNDER_TEMPERATURE: "Too cold to charge",
    AlarmCode.DISCHARGE_UNDER_TEMPERATURE: "Too cold to discharge",
    AlarmCode.CHARGE_OVER_CURRENT: "Charge over current",
    AlarmCode.DISCHARGE_OVER_CURRENT: "Discharge over current",
    AlarmCode.CELL_IMBALANCE: "Cell imbalance",
    AlarmCode.MODULE_MISMATCH: "Module mismatch",
    AlarmCode.MODULE_COMM_LOST: "Module communication lost",
    AlarmCode.INVERTER_COMM_LOST: "Inverter communication lost",
    AlarmCode.HEAT_ACCUMULATION: "Heat accumulation",
    AlarmCode.STACK_LIMIT: "Stack limit exceeded",
    AlarmCode.SENSOR_MISMATCH: "Current sensor mismatch",
    AlarmCode.MODULE_FAULT: "Module fault",
    AlarmCode.INTERNAL_ERROR: "Gateway internal error",
    AlarmCode.HISTORY_UNAVAILABLE: "History unavailable",
}
"""What the dashboard calls each alarm code (`/api/info`); a test fails when a code has no name."""

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]


def _module_rule(what: dict[str, str]) -> Callable[[re.Match[str], str], str]:
    """A rule whose wording depends on which limit it bounds (charge or discharge)."""

    def word(m: re.Match[str], limit: str) -> str:
        side = "discharge" if limit.startswith("discharge") else "charge"
        return what[side].format(m=m["m"])

    return word


_RULES: tuple[_Rule, ...] = (
    (
        re.compile(r"(?P<inner>.+) \(held: module (?P<m>\d+) left the bank\)"),
        lambda m, limit: (
            f"{words(m['inner'], limit)}; held since module {m['m']} left the bank, as it may still "
            "be connected ([bank] offline_hold)"
        ),
    ),
    (
        re.compile(r"charge_stop \((?P<inner>.*)\)"),
        lambda m, limit: f"charging stopped ({words(m['inner'], 'charge_current')}): held at the bank's voltage",
    ),
    (
        re.compile(r"rating module (?P<m>\d+)"),
        _module_rule(
            {
                "charge": "module {m}'s rated current ([bank] rated_charge_current)",
                "discharge": "module {m}'s rated current ([bank] rated_discharge_current)",
            }
        ),
    ),
    (re.compile(r"rating"), lambda m, limit: "the modules' rated currents: nothing holds it down"),
    (
        re.compile(r"reported module (?P<m>\d+) charge voltage (?P<v>[-\d.e+]+) V"),
        lambda m, limit: f"module {m['m']} asks for a charge voltage of {m['v']} V, below its lowest: no charging",
    ),
    (re.compile(r"reported module (?P<m>\d+)"), lambda m, limit: f"module {m['m']}'s own limit (what it reports)"),
    (
        re.compile(r"reported module (?P<m>\d+): module's own limit, no cell data"),
        lambda m, limit: f"module {m['m']}'s own limit: it sends no cell data, so its own BMS watches its cells",
    ),
    (
        re.compile(r"module (?P<m>\d+) forbids (?P<what>charging|discharging)"),
        lambda m, limit: f"module {m['m']}'s own BMS forbids {m['what']}",
    ),
    (
        re.compile(r"no reported limit module (?P<m>\d+)"),
        lambda m, limit: f"module {m['m']} has not reported its limits yet",
    ),
    (
        re.compile(r"cell_voltage module (?P<m>\d+)"),
        _module_rule(
            {
                "charge": "module {m}'s highest cell is near full ([limits] charge_cell_voltage)",
                "discharge": "module {m}'s lowest cell is near empty ([limits] discharge_cell_voltage)",
            }
        ),
    ),
    (
        re.compile(r"temperature module (?P<m>\d+)"),
        _module_rule(
            {
                "charge": "module {m}'s temperature ([limits] charge_temperature)",
                "discharge": "module {m}'s temperature ([limits] discharge_temperature)",
            }
        ),
    ),
    (
        re.compile(r"soc module (?P<m>\d+)"),
        _module_rule(
            {
                "charge": "module {m} is nearly full ([limits] charge_soc)",
                "discharge": "module {m} is nearly empty ([limits] discharge_soc)",
            }
        ),
    ),
    (
        re.compile(r"current_share module (?P<m>\d+)"),
        lambda m, limit: (
            f"the string of module {m['m']} takes more than its part of the current, so the bank "
            "stops before it passes its own limit"
        ),
    ),
    (re.compile(r"sum of module limits"), lambda m, limit: "the sum of the modules' limits"),
    (re.compile(r"slew_rate"), lambda m, limit: "rising gradually after a drop ([limits] slew_rate)"),
    (
        re.compile(r"balancing module (?P<m>\d+) cell (?P<c>\d+)"),
        lambda m, limit: (
            f"cell {m['c']} of module {m['m']} is above the per-cell target: held there while the "
            "other cells catch up (balancing)"
        ),
    ),
    (
        re.compile(r"charge_voltage_per_cell"),
        lambda m, limit: "cells x the per-cell charge target ([limits] charge_voltage_per_cell)",
    ),
    (
        re.compile(r"discharge_voltage_per_cell"),
        lambda m, limit: "cells x the per-cell discharge floor ([limits] discharge_voltage_per_cell)",
    ),
)


def words(bound_by: str, limit: str) -> str:
    """`bound_by` of the limit named `limit` (charge_current, ...) as a sentence a user reads."""
    for pattern, word in _RULES:
        match = pattern.fullmatch(bound_by)
        if match is not None:
            return word(match, limit)
    return bound_by


def limit_words(limits: dict[str, dict[str, object] | None]) -> dict[str, str]:
    """For a payload's `limits` (`{name: {value, bound_by}}`): name -> the bound in words."""
    return {name: words(str(limit["bound_by"]), name) for name, limit in limits.items() if limit is not None}
