"""Invariants of the master over random banks (hypothesis).

- No module's share of a bank current limit exceeds its own effective limit.
- Removing data or a module never raises a limit.
- Limits are never negative or NaN; flags agree with limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.can import dbc
from gateway.can.codec import SCALARS
from gateway.master.master import Master
from gateway.master.model import (
    NO_PERMITS,
    RULE_INPUTS,
    BankSnapshot,
    InverterInfo,
    Lifecycle,
    Limits,
    ModuleReading,
    ModuleView,
)

from helpers.factories import reading

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def module_values(draw: st.DrawFn) -> dict[str, float]:
    vmin = draw(st.floats(2.5, 3.6))
    return {
        "soc": draw(st.floats(0.0, 100.0)),
        "current": draw(st.floats(-150.0, 150.0)),
        "cell_voltage_min": vmin,
        "cell_voltage_max": vmin + draw(st.floats(0.0, 0.2)),
        "temperature_min": (tmin := draw(st.floats(-25.0, 65.0))),
        "temperature_max": tmin + draw(st.floats(0.0, 10.0)),
        "charge_current_limit": draw(st.floats(0.0, 150.0)),
        "discharge_current_limit": draw(st.floats(0.0, 150.0)),
        "full_capacity": draw(st.floats(50.0, 120.0)),
        "voltage": draw(st.floats(52.0, 54.0)),
    }


def bank_config(strings: list[list[int]] | None) -> config.Config:
    return config.parse(
        {
            "bank": {
                "strings": strings or [],
                "max_modules": 31,
                "admission_soc_window": 100.0,
                "admission_voltage_window": 100.0,
            }
        }
    )


def history(
    cfg: config.Config, modules: Mapping[int, Mapping[str, float]], seconds: float = 90.0
) -> tuple[Master, float]:
    """Steady readings for long enough that the smoothed current shares have settled (to ~1e-8)."""
    m = Master(cfg)
    t = 0.0
    while t < seconds:
        m.step(t, {a: reading(a, t, **v) for a, v in modules.items()})
        t += 1.0
    return m, t


def own_limits(view: ModuleView) -> Limits:
    """A module's own limits: every module the master counts on has them."""
    assert view.limits is not None, view
    return view.limits


def check_snapshot(s: BankSnapshot) -> None:
    lim = s.limits
    for limit in (lim.charge_current, lim.discharge_current, lim.charge_voltage, lim.discharge_voltage):
        assert math.isfinite(limit.value) and limit.value >= 0.0, limit
    assert s.flags.charge_enable == (lim.charge_current.value > 0.0)
    assert s.flags.discharge_enable == (lim.discharge_current.value > 0.0)
    if not s.valid:
        assert lim.charge_current.value == lim.discharge_current.value == 0.0
        assert not (s.flags.charge_enable or s.flags.discharge_enable or s.flags.force_charge)
    for view in s.modules.values():
        if view.lifecycle is not Lifecycle.ONLINE:
            continue
        own = own_limits(view)
        assert view.share is not None and view.share > 0
        # no module is asked for more than its own limit: its share of the bank limit fits in it
        assert view.share * lim.charge_current.value <= own.charge_current.value + 1e-6
        assert view.share * lim.discharge_current.value <= own.discharge_current.value + 1e-6
        assert view.string is not None
        string = s.strings[view.string]
        assert lim.charge_voltage.value <= sum(own_limits(s.modules[a]).charge_voltage.value for a in string) + 1e-9


@SETTINGS
@given(modules=st.lists(module_values(), min_size=1, max_size=6))
def test_parallel_bank_never_asks_a_module_for_more_than_its_limit(modules: list[dict[str, float]]) -> None:
    values = dict(enumerate(modules, start=1))
    m, t = history(bank_config(None), values)
    s = m.step(t, {a: reading(a, t, **v) for a, v in values.items()}).snapshot
    assert s.valid
    check_snapshot(s)
    # ... and the shares used are at least what the modules really take under load
    total = sum(v["current"] for v in values.values())
    if abs(total) > 0.05 * 100.0 * len(values):
        flowing = {a: max(0.0, math.copysign(1.0, total) * v["current"]) for a, v in values.items()}
        for a, view in s.modules.items():
            measured = flowing[a] / sum(flowing.values())
            for bank_limit, own in (
                (s.limits.charge_current.value, own_limits(view).charge_current.value),
                (s.limits.discharge_current.value, own_limits(view).discharge_current.value),
            ):
                assert measured * bank_limit <= own * 1.001 + 1e-6


EMPTY = {
    "soc": 0.0,
    "current": 0.0,
    "cell_voltage_min": 3.0,
    "cell_voltage_max": 3.0,
    "temperature_min": 0.0,
    "temperature_max": 0.0,
    "charge_current_limit": 0.0,
    "discharge_current_limit": 0.0,
    "full_capacity": 50.0,
    "voltage": 52.0,
}


@SETTINGS
@given(strings=st.lists(st.lists(module_values(), min_size=1, max_size=3), min_size=1, max_size=3))
# A series string of full_ah 0 (one module empty, one full) had share 0: a ZeroDivisionError in the master.
@example(strings=[[EMPTY], [EMPTY, EMPTY, {**EMPTY, "soc": 100.0}]])
def test_series_and_parallel_banks_keep_every_invariant(strings: list[list[dict[str, float]]]) -> None:
    layout: list[list[int]] = []
    values: dict[int, dict[str, float]] = {}
    address = 1
    for string in strings:
        layout.append(list(range(address, address + len(string))))
        for v in string:
            values[address] = {**v, "current": string[0]["current"]}
            address += 1
    m, t = history(bank_config(layout), values)
    s = m.step(t, {a: reading(a, t, **v) for a, v in values.items()}).snapshot
    check_snapshot(s)


def _limits(s: BankSnapshot) -> tuple[float, float]:
    return s.limits.charge_current.value, s.limits.discharge_current.value


REMOVALS = ("module", "stale", "temperature", "cell_voltage", "soc", "reported_limits", "permits", "frozen")
CIRCULATING = [  # strings charging and discharging each other: module 1's 37 A tips the bank current's sign
    {**EMPTY, "current": 37.0, "discharge_current_limit": 1.0},
    {**EMPTY, "current": -61.0, "discharge_current_limit": 1.0},
    {**EMPTY, "current": 45.0, "cell_voltage_min": 2.875, "cell_voltage_max": 2.875, "discharge_current_limit": 3.0},
    {**EMPTY, "current": 0.0, "discharge_current_limit": 1.0},
]


@SETTINGS
@given(
    modules=st.lists(module_values(), min_size=1, max_size=5),
    victim_index=st.integers(0, 4),
    removal=st.sampled_from(REMOVALS),
)
# Without module 1 the bank current turned from +21 A to -16 A: module 3's share, measured 0 in the new direction,
# decayed, and DCL rose from 0.082 A (sent as 0) to 0.1 A. Shares no longer decay in a tick the bank changed.
@example(modules=CIRCULATING, victim_index=0, removal="module")
def test_removing_a_module_or_data_never_raises_a_limit(
    modules: list[dict[str, float]], victim_index: int, removal: str
) -> None:
    values = dict(enumerate(modules, start=1))
    cfg = bank_config([[a] for a in values])
    victim = sorted(values)[victim_index % len(values)]
    full, t = history(cfg, values)
    less, _ = history(cfg, values)
    readings: dict[int, ModuleReading] = {a: reading(a, t, **v) for a, v in values.items()}
    reduced = dict(readings)
    r = readings[victim]
    if removal == "module":
        del reduced[victim]
    elif removal == "stale":
        reduced[victim] = replace(r, seen=dict.fromkeys(r.seen, t - 10.0))
    elif removal == "temperature":
        reduced[victim] = replace(r, temperature_max=None, temperature_min=None)
    elif removal == "cell_voltage":
        reduced[victim] = replace(r, cell_voltage_max=None, cell_voltage_min=None)
    elif removal == "soc":
        reduced[victim] = replace(r, soc=None)
    elif removal == "reported_limits":
        reduced[victim] = replace(r, charge_current_limit=None, discharge_current_limit=None)
    elif removal == "permits":  # a BMS whose profile sends its permits (Pylontech 0x35C): both known, then not
        readings[victim] = replace(r, absent=frozenset(), charge_permitted=1, discharge_permitted=1)
        reduced[victim] = replace(r, absent=frozenset(), charge_permitted=None, discharge_permitted=None)
    else:
        reduced[victim] = replace(r, alive_repeats=10)
    a = full.step(t, readings).snapshot
    b = less.step(t, reduced).snapshot
    check_snapshot(b)
    for with_all, without in zip(_limits(a), _limits(b), strict=True):
        assert without <= with_all * (1 + 1e-4) + 1e-6, (removal, _limits(a), _limits(b))


# -- shares: the true share of every tick, not the smoothed one ----------------------------------------------

RATED = 100.0
THRESHOLD = 0.05 * RATED
"""The master measures shares once |bank current| exceeds 5 % of the rating per string (`share_threshold`)."""


Tick = tuple[float, list[float] | None, tuple[int, float, float] | None]
"""(dt, the strings' currents if they change, a module's new (address, charge, discharge limit) if any)."""
ShareRun = tuple[list[list[int]], dict[int, tuple[float, float, float]], list[Tick]]


@st.composite
def share_runs(draw: st.DrawFn) -> ShareRun:
    """A bank of 1..4 parallel strings of 1 or 2 modules; per module (charge limit, discharge limit, capacity);
    then ticks of (dt, per-string currents, a module's new reported limits or None)."""
    series = draw(st.integers(1, 2))
    count = draw(st.integers(1, 4))
    layout = [list(range(1 + i * series, 1 + (i + 1) * series)) for i in range(count)]
    limits = st.floats(0.0, 150.0)
    modules = {a: (draw(limits), draw(limits), draw(st.floats(50.0, 120.0))) for string in layout for a in string}
    currents = st.lists(st.floats(-150.0, 150.0), min_size=count, max_size=count)
    change = st.one_of(st.none(), st.tuples(st.sampled_from(sorted(modules)), limits, limits))
    ticks = draw(
        st.lists(
            st.tuples(st.floats(0.05, 2.0), st.one_of(st.none(), currents), change),
            min_size=5,
            max_size=60,
        )
    )
    return layout, modules, ticks


@settings(SETTINGS, max_examples=300, print_blob=True)
@given(run=share_runs())
@example(  # 60/40 from the start: the smoothed share lagged and the 60 % string was asked for 103 A
    run=([[1], [2]], {1: (100.0, 100.0, 100.0), 2: (100.0, 100.0, 100.0)}, [(1.0, [48.0, 32.0], None)] * 30)
)
@example(  # 50/50, then 70/30: the bank limit stayed near 177 A for seconds where 142.9 A was right
    run=(
        [[1], [2]],
        {1: (100.0, 100.0, 100.0), 2: (100.0, 100.0, 100.0)},
        [(1.0, [40.0, 40.0], None)] * 20 + [(0.1, [56.0, 24.0], None)] * 10,
    )
)
def test_no_string_is_asked_for_more_than_its_limit_at_its_true_share_of_any_tick(
    run: ShareRun,
) -> None:
    """At every tick after admission, bank limit x the share each string takes in that tick <= its limit + 0.1 A.

    The share is the one measured in that tick from the strings' currents (in the bank current's direction),
    whenever the bank current is large enough to measure it; below that, the currents say nothing about it.
    """
    layout, modules, ticks = run
    cfg = bank_config(layout)
    m = Master(cfg)
    own = dict(modules)
    currents = [0.0] * len(layout)
    t = 0.0
    start: list[Tick] = [(0.0, None, None), (3.5, None, None)]
    for dt, new_currents, change in [*start, *ticks]:
        t += dt
        if new_currents is not None:
            currents = new_currents
        if change is not None:
            address, charge, discharge = change
            own[address] = (charge, discharge, own[address][2])
        readings = {
            a: reading(
                a,
                t,
                current=current,
                charge_current_limit=own[a][0],
                discharge_current_limit=own[a][1],
                full_capacity=own[a][2],
                voltage=53.0,
            )
            for string, current in zip(layout, currents, strict=True)
            for a in string
        }
        s = m.step(t, readings).snapshot
        check_snapshot(s)
        total = sum(currents)
        if not s.valid or abs(total) <= THRESHOLD * len(layout):
            continue
        flowing = [max(0.0, math.copysign(1.0, total) * c) for c in currents]
        for string, f in zip(layout, flowing, strict=True):
            share = f / sum(flowing)
            views = [s.modules[a] for a in string]
            assert all(v.lifecycle is Lifecycle.ONLINE for v in views)
            charge = min(own_limits(v).charge_current.value for v in views)
            discharge = min(own_limits(v).discharge_current.value for v in views)
            assert s.limits.charge_current.value * share <= charge + 0.1, (t, string, share, s.limits)
            assert s.limits.discharge_current.value * share <= discharge + 0.1, (t, string, share, s.limits)


# -- the master never raises ------------------------------------------------------------------------------------

_DB = dbc.load(None, "module.dbc", "can.modules.dbc")
_SIGNALS = {s.name: s for m in _DB.messages for s in m.signals}
_ARRAYS = {"cell_voltages", "cell_balancing", "cell_temperatures", "seen", "firmware", "address", "first_seen"}


def _decodable(name: str) -> st.SearchStrategy[float | int]:
    """Any value the shipped DBC can decode for signal `name` (its whole raw range, not only the valid one)."""
    s = _SIGNALS[name]
    low = -(2 ** (s.length - 1)) if s.is_signed else 0
    high = 2 ** (s.length - 1) - 1 if s.is_signed else 2**s.length - 1
    return st.integers(low, high).map(lambda raw: raw * s.scale + s.offset)


_BEYOND_OURS = {
    "ChargePermitted": st.integers(0, 1),
    "DischargePermitted": st.integers(0, 1),
    "TemperatureSensorCount": st.integers(0, 255),
}
"""Signals of other BMSs' profiles that our DBC does not carry (Pylontech's 0x35C flags: one bit each; Daly's
sensor count: a byte)."""
_FIELDS = {
    key: _BEYOND_OURS[name] if name in _BEYOND_OURS else _decodable(name)
    for name, (_, key) in SCALARS.items()
    if not key.startswith("firmware")
}
_GROUPS = ("status", "limits", "cells", "temperatures", "alarms", "info", "capacity")


@st.composite
def any_reading(draw: st.DrawFn, address: int, now: float) -> ModuleReading:
    """A reading with any subset of values, each anything the DBC can decode, and any groups at any age; half of
    them a healthy module with a few values replaced, so that banks form and the limit rules run too."""
    values: dict[str, Any]  # whatever the DBC decodes, per field
    if draw(st.booleans()):
        changed = draw(st.sets(st.sampled_from(sorted(_FIELDS)), max_size=3))
        values = {key: draw(_FIELDS[key]) for key in changed}
        for key in ("module_state", "alive", "fault_code", "cells_in_series", "cycle_count", "cell_count"):
            if key in values:
                values[key] = int(values[key])
        return reading(address, now, **values)
    values = {key: draw(st.one_of(st.none(), strategy)) for key, strategy in _FIELDS.items()}
    for key in ("module_state", "alive", "fault_code", "cells_in_series", "cycle_count", "cell_count"):
        if values.get(key) is not None:
            values[key] = int(values[key])
    return ModuleReading(
        address=address,
        **{k: v for k, v in values.items() if v is not None},
        absent=draw(st.sampled_from([NO_PERMITS, frozenset(), frozenset(RULE_INPUTS["cells"]) | NO_PERMITS])),
        alive_repeats=draw(st.integers(0, 10)),
        warnings=draw(st.integers(0, 0xFFFF)),
        protections=draw(st.sampled_from([0, 0, 0, 1, 1 << 11, 0xFFFF])),
        firmware=draw(st.one_of(st.none(), st.tuples(*[st.integers(0, 255)] * 3))),
        cell_voltages=tuple(draw(st.lists(st.one_of(st.none(), st.floats(0.0, 65.535)), max_size=48))),
        cell_temperatures=tuple(draw(st.lists(st.one_of(st.none(), st.floats(-40.0, 215.0)), max_size=28))),
        seen={g: now - draw(st.floats(-1.0, 10.0)) for g in draw(st.sets(st.sampled_from(_GROUPS)))},
        first_seen=now - draw(st.floats(0.0, 100.0)),
    )


CONFIGS = [
    bank_config(None),
    bank_config([[1], [2], [3]]),
    bank_config([[1, 2], [3, 4]]),
    config.parse({"bank": {"max_modules": 3, "min_online": 2}}),
]


@settings(SETTINGS, max_examples=300, print_blob=True)
@given(cfg=st.sampled_from(CONFIGS), data=st.data())
def test_the_master_never_raises_whatever_it_is_fed(cfg: config.Config, data: st.DataObject) -> None:
    m = Master(cfg)
    now = data.draw(st.floats(-1e6, 1e9))
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.one_of(st.floats(-2.0, 5.0), st.sampled_from([0.0, 0.1, 1000.0])))
        addresses = data.draw(st.sets(st.integers(1, 6), max_size=5))
        readings = {a: data.draw(any_reading(a, now)) for a in addresses}
        inverter = data.draw(st.one_of(st.none(), st.builds(InverterInfo, st.text(max_size=4), st.floats(-1e6, 1e9))))
        s = m.step(now, readings, inverter).snapshot
        lim = s.limits
        for limit in (lim.charge_current, lim.discharge_current, lim.charge_voltage, lim.discharge_voltage):
            assert math.isfinite(limit.value) and limit.value >= 0.0, limit
        assert s.flags.charge_enable == (lim.charge_current.value > 0.0)
        assert s.flags.discharge_enable == (lim.discharge_current.value > 0.0)
