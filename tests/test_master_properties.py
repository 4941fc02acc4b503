"""Invariants of the master over random banks (hypothesis).

- No module's share of a bank current limit exceeds its own effective limit.
- Removing data or a module never raises a limit.
- Limits are never negative or NaN; flags agree with limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from factories import reading
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.master.master import Master
from gateway.master.model import BankSnapshot, Lifecycle, ModuleReading

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def module_values(draw: st.DrawFn) -> dict:
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


def history(cfg: config.Config, modules: Mapping[int, dict], seconds: float = 90.0) -> tuple[Master, float]:
    """Steady readings for long enough that the smoothed current shares have settled (to ~1e-8)."""
    m = Master(cfg)
    t = 0.0
    while t < seconds:
        m.step(t, {a: reading(a, t, **v) for a, v in modules.items()})
        t += 1.0
    return m, t


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
        own = view.limits
        assert own is not None and view.share is not None and view.share > 0
        # no module is asked for more than its own limit: its share of the bank limit fits in it
        assert view.share * lim.charge_current.value <= own.charge_current.value + 1e-6
        assert view.share * lim.discharge_current.value <= own.discharge_current.value + 1e-6
        assert (
            lim.charge_voltage.value
            <= sum(
                s.modules[a].limits.charge_voltage.value
                for a in s.strings[view.string]  # type: ignore[union-attr]
            )
            + 1e-9
        )


@SETTINGS
@given(modules=st.lists(module_values(), min_size=1, max_size=6))
def test_parallel_bank_never_asks_a_module_for_more_than_its_limit(modules: list[dict]) -> None:
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
                (s.limits.charge_current.value, view.limits.charge_current.value),
                (s.limits.discharge_current.value, view.limits.discharge_current.value),
            ):
                assert measured * bank_limit <= own * 1.001 + 1e-6


@SETTINGS
@given(strings=st.lists(st.lists(module_values(), min_size=1, max_size=3), min_size=1, max_size=3))
def test_series_and_parallel_banks_keep_every_invariant(strings: list[list[dict]]) -> None:
    layout, values, address = [], {}, 1
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


@SETTINGS
@given(
    modules=st.lists(module_values(), min_size=1, max_size=5),
    data=st.data(),
)
def test_removing_a_module_or_data_never_raises_a_limit(modules: list[dict], data: st.DataObject) -> None:
    values = dict(enumerate(modules, start=1))
    cfg = bank_config([[a] for a in values])
    victim = data.draw(st.sampled_from(sorted(values)))
    removal = data.draw(
        st.sampled_from(["module", "stale", "temperature", "cell_voltage", "soc", "reported_limits", "frozen"])
    )
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
    else:
        reduced[victim] = replace(r, alive_repeats=10)
    a = full.step(t, readings).snapshot
    b = less.step(t, reduced).snapshot
    check_snapshot(b)
    for with_all, without in zip(_limits(a), _limits(b), strict=True):
        assert without <= with_all * (1 + 1e-4) + 1e-6, (removal, _limits(a), _limits(b))
