"""Lifetime counters from the real master's snapshots on explicit time: numbers computed by hand."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace

import pytest

from gateway.core import Core
from gateway.history.counters import BANK, Counters, Daily, Lifetime, Peak
from gateway.master.master import Master
from gateway.master.model import AlarmCode, Lifecycle, ModuleReading

from helpers.breakable import breakable
from helpers.factories import configured, reading

Readings = Callable[[float], Mapping[int, ModuleReading]]


def count(
    master: Master, start: float, stop: float, readings: Readings, step: float = 0.1, lifetime: Lifetime | None = None
) -> Lifetime:
    """Step the master every `step` s over [start, stop] and feed each snapshot to a Lifetime."""
    lifetime = lifetime or Lifetime()
    for n in range(round((stop - start) / step) + 1):
        t = start + n * step
        lifetime.update(master.step(t, readings(t)).snapshot, master.config.bank)
    return lifetime


def modules(*addresses: int, **values: object) -> Readings:
    return lambda t: {a: reading(a, t, **values) for a in addresses}


def test_a_constant_current_integrates_to_its_charge_and_energy() -> None:
    """30 A at 53 V for 60 s: 0.5 Ah and 26.5 Wh per module; two parallel modules make 1 Ah for the bank."""
    cfg = configured(bank={"strings": [[1], [2]]})
    lifetime = count(Master(cfg), 0.0, 60.0, modules(1, 2, current=30.0, voltage=53.0))
    counters = lifetime.counters()
    for a in (1, 2):
        assert counters[a].charged_ah == pytest.approx(0.5, rel=1e-9)
        assert counters[a].charged_wh == pytest.approx(26.5, rel=1e-9)
        assert (counters[a].discharged_ah, counters[a].cycles, counters[a].since, counters[a].updated) == pytest.approx(
            (0.0, 0.0, 0.0, 60.0)
        )
    assert counters[BANK].charged_ah == pytest.approx(1.0)
    assert counters[BANK].charged_wh == pytest.approx(53.0)
    energy = lifetime.energy()
    assert energy.bank.charged_wh == pytest.approx(53.0)
    assert energy.modules[1].charged_wh == pytest.approx(26.5)


def test_a_series_string_carries_one_charge_and_adds_its_energy() -> None:
    """Two modules in series at 20 A for 36 s: 0.2 Ah each, the bank too (one current); the energy adds up."""
    cfg = configured(bank={"strings": [[1, 2]]})
    counters = count(Master(cfg), 0.0, 36.0, modules(1, 2, current=20.0, voltage=50.0)).counters()
    assert counters[1].charged_ah == pytest.approx(0.2)
    assert counters[BANK].charged_ah == pytest.approx(0.2)
    assert counters[BANK].charged_wh == pytest.approx(2 * 0.2 * 50.0)


def test_discharge_counts_apart_and_makes_equivalent_full_cycles() -> None:
    """-50 A for 72 s is 1 Ah out of a 100 Ah module: 0.01 equivalent full cycles."""
    cfg = configured(bank={"strings": [[1]]})
    c = count(Master(cfg), 0.0, 72.0, modules(1, current=-50.0, voltage=52.0)).counters()[1]
    assert (c.charged_ah, c.charged_wh) == (0.0, 0.0)
    assert c.discharged_ah == pytest.approx(1.0)
    assert c.discharged_wh == pytest.approx(52.0)
    assert c.cycles == pytest.approx(0.01)


def test_a_ramp_is_integrated_as_trapezoids() -> None:
    """The current ramps from 0 to 60 A over 60 s: 0.5 Ah exactly (a left or right sum would be 0.5 % off)."""
    cfg = configured(bank={"strings": [[1]]})
    lifetime = count(Master(cfg), 0.0, 60.0, lambda t: {1: reading(1, t, current=t, voltage=50.0)})
    assert lifetime.counters()[1].charged_ah == pytest.approx(0.5, rel=1e-9)


def test_nothing_is_counted_across_a_silence() -> None:
    """The module is silent from 10 s to 30 s (offline after 3 s): only 0..10 s and 30..40 s count."""
    cfg = configured(bank={"strings": [[1]]})

    def silent(t: float) -> Mapping[int, ModuleReading]:
        seen = min(t, 10.0) if t < 30.0 else t
        return {1: reading(1, seen, current=36.0, voltage=50.0)}

    c = count(Master(cfg), 0.0, 40.0, silent).counters()[1]
    assert c.charged_ah == pytest.approx(36.0 * 20.0 / 3600.0)


def test_time_hot_and_cold_and_the_extremes_with_their_times() -> None:
    cfg = configured(bank={"strings": [[1]]})

    def weather(t: float) -> Mapping[int, ModuleReading]:
        hot = 20.0 <= t < 30.0
        return {
            1: reading(
                1,
                t,
                temperature_max=46.0 if hot else 30.0,
                temperature_min=-1.0 if t < 5.0 else 20.0,
                cell_voltage_max=3.62 if t == pytest.approx(12.0) else 3.40,
                cell_voltage_min=3.20,
            )
        }

    c = count(Master(cfg), 0.0, 40.0, weather).counters()[1]
    # Each sample's interval (since the one before) counts at the sample's temperature: hot are the samples at
    # 20.0 .. 29.9 s, 100 intervals of 0.1 s; cold those at 0.1 .. 4.9 s (the first sample, at 0, closes none).
    assert c.seconds_hot == pytest.approx(10.0)
    assert c.seconds_cold == pytest.approx(4.9)
    hottest, highest = c.temperature_max, c.cell_voltage_max
    assert hottest is not None and highest is not None
    assert hottest == Peak(46.0, hottest.t) and hottest.t == pytest.approx(20.0)
    assert c.temperature_min == Peak(-1.0, 0.0)
    assert highest == Peak(3.62, highest.t) and highest.t == pytest.approx(12.0)
    assert c.cell_voltage_min == Peak(3.20, 0.0)


def test_a_daily_sample_per_utc_day_with_the_widest_spread() -> None:
    """Across midnight UTC: each day's last SOH, capacity, resistance, cycle count, and its widest cell spread."""
    cfg = configured(bank={"strings": [[1]]})
    midnight = 19_000 * 86_400.0

    def ageing(t: float) -> Mapping[int, ModuleReading]:
        before = t < midnight
        return {
            1: reading(
                1,
                t,
                soh=97.0 if before else 96.5,
                full_capacity=99.0 if before else 98.5,
                internal_resistance=2.1 if before else 2.2,
                cycle_count=300 if before else 301,
                cell_voltage_max=3.35 if abs(t - (midnight - 2.0)) < 0.05 else 3.33,
                cell_voltage_min=3.30,
            )
        }

    lifetime = count(Master(cfg), midnight - 5.0, midnight + 5.0, ageing)
    _, daily = lifetime.take()
    assert daily[1] == Daily(
        day="2022-01-08",
        t=daily[1].t,
        soh=96.5,
        capacity_ah=98.5,
        resistance_mohm=2.2,
        cell_spread_max=daily[1].cell_spread_max,
        cycle_count=301,
    )
    assert daily[1].t == pytest.approx(midnight + 5.0, abs=1e-3)  # relative to 1.6e9 s, approx's default is ~1600 s
    assert daily[1].cell_spread_max == pytest.approx(0.03)
    lifetime = count(Master(cfg), midnight - 5.0, midnight - 0.1, ageing)
    _, daily = lifetime.take()
    assert (daily[1].day, daily[1].cycle_count) == ("2022-01-07", 300)
    assert daily[1].cell_spread_max == pytest.approx(0.05)


def test_counting_goes_on_from_restored_totals() -> None:
    cfg = configured(bank={"strings": [[1]]})
    stored = Counters(charged_ah=100.0, charged_wh=5_000.0, cell_voltage_max=Peak(3.65, 1.0), since=1.0, updated=2.0)
    lifetime = Lifetime()
    lifetime.restore({1: stored, BANK: stored}, {1: Daily(day="1970-01-01", t=0.0, cell_spread_max=0.2)})
    count(Master(cfg), 10.0, 46.0, modules(1, current=10.0, voltage=50.0), lifetime=lifetime)
    counters, daily = lifetime.take()
    assert counters[1].charged_ah == pytest.approx(100.1)
    assert counters[1].charged_wh == pytest.approx(5_005.0)
    assert counters[1].cell_voltage_max == Peak(3.65, 1.0)  # 3.32 V since: the old extreme stays
    assert counters[1].since == 1.0
    assert daily[1].cell_spread_max == 0.2  # the same day: today's widest so far is kept


def test_changed_scopes_only_and_energy_objects_kept_while_unchanged() -> None:
    cfg = configured(bank={"strings": [[1]]})
    master = Master(cfg)
    lifetime = count(master, 0.0, 1.0, modules(1, current=0.0))
    first = lifetime.energy()
    assert set(lifetime.take()[0]) == {BANK, 1}
    assert lifetime.take() == ({}, {})
    assert lifetime.energy() is first


def test_offline_and_rejected_modules_count_nothing() -> None:
    cfg = configured(bank={"strings": [[1]]})
    lifetime = count(Master(cfg), 0.0, 10.0, modules(1, 9, current=10.0))  # 9 is not in bank.strings: rejected
    snapshot_modules = lifetime.counters()
    assert 9 not in snapshot_modules
    assert snapshot_modules[1].charged_ah > 0


def test_the_core_attaches_the_energy_and_keeps_counting_off_a_failing_master() -> None:
    """A master step that raises sends the fail-safe set from the last snapshot: its old readings count
    nothing, and the energy stays where it was."""
    cfg = configured(bank={"strings": [[1]]})
    core = Core(cfg, now=0.0)
    core.history_unavailable("disk full", 0.0)
    master = breakable(core)
    values = modules(1, current=36.0, voltage=50.0)
    snapshot = None
    for n in range(101):
        t = n * 0.1
        core.store.readings = functools.partial(dict, values(t))  # type: ignore[method-assign]  # readings as given
        snapshot = core.tick(t).snapshot
    assert snapshot is not None
    assert snapshot.energy is not None
    assert snapshot.energy.modules[1].charged_wh == pytest.approx(5.0)  # 36 A x 50 V x 10 s
    assert [a.code for a in snapshot.alarms][-1] is AlarmCode.HISTORY_UNAVAILABLE
    master.broken = True
    for n in range(101, 131):
        snapshot = core.tick(n * 0.1).snapshot
    assert snapshot.energy is not None
    assert snapshot.energy.modules[1].charged_wh == pytest.approx(5.0)
    assert [a.code for a in snapshot.alarms][-2:] == [AlarmCode.INTERNAL_ERROR, AlarmCode.HISTORY_UNAVAILABLE]
    assert snapshot.modules[1].lifecycle is Lifecycle.ONLINE
    assert replace(snapshot, energy=None).energy is None
