"""Limits, driven directly: each module's effective limits, strings, parallel strings by their shares, the
measured shares, and the Limiter (held bounds, slew, the charge voltage rules, the limits of a stopped bank).

Modules come from `factories.reading` (16 cells, 100 A rating, 53.0 V, cells 3.30..3.32 V, 22..25 degC, 60 % SOC,
reporting 100 A, CVL 56 V and DVL 46 V). With the default config a module's own limits are therefore 100 A
("rating"), CVL 16 x 3.45 = 55.2 V and DVL 16 x 3.00 = 48.0 V.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import pytest

from gateway.config import Config
from gateway.master import aggregate
from gateway.master.limits import Limiter, Shares, module_limits, parallel_current, string_limits
from gateway.master.model import NO_PERMITS, Electrical, Limit, Limits, ModuleReading

from helpers.factories import configured, reading, tick_input

CFG = configured()


def pair(limit: Limit) -> tuple[float, str]:
    """A limit as (value to 1 mA or 1 mV, the rule that set it), to compare with numbers worked out by hand."""
    return round(limit.value, 3), limit.bound_by


NO_LIMITS = frozenset({"charge_current_limit", "discharge_current_limit"}) | NO_PERMITS
"""What a DBC without the modules' own current limits (nor permits) leaves absent."""


class Permits(TypedDict, total=False):
    """A module's own charge/discharge permits, as its reading carries them."""

    charge_permitted: int
    discharge_permitted: int


def own(cfg: Config = CFG, *, reported: bool = True, permits: bool = False, **values: Any) -> Limits:
    """`reported`: the DBC carries the module's own current limits; `permits`: and its charge/discharge permits."""
    absent = (NO_PERMITS if reported else NO_LIMITS) - (NO_PERMITS if permits else frozenset())
    return module_limits(reading(1, 0.0, absent=absent, **values), cfg.bank, cfg.limits)


# -- one module ---------------------------------------------------------------------------------------------------


def test_a_healthy_module_gets_its_rating_and_the_per_cell_voltages() -> None:
    limits = own()
    assert limits.charge_current == Limit(100.0, "rating module 1")
    assert limits.discharge_current == Limit(100.0, "rating module 1")
    assert limits.charge_voltage.value == pytest.approx(55.2)  # 16 x 3.45 V
    assert limits.charge_voltage.bound_by == "charge_voltage_per_cell"
    assert limits.discharge_voltage == Limit(48.0, "discharge_voltage_per_cell")  # 16 x 3.00 V


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (42.0, Limit(42.0, "reported module 1")),
        (100.0, Limit(100.0, "rating module 1")),
        (150.0, Limit(100.0, "rating module 1")),  # never above the configured rating
        (-5.0, Limit(0.0, "reported module 1")),
        (None, Limit(0.0, "no reported limit module 1")),  # missing data never raises a limit
    ],
)
def test_the_lower_of_reported_limit_and_rating(reported: float | None, expected: Limit) -> None:
    limits = own(charge_current_limit=reported, discharge_current_limit=reported)
    assert limits.charge_current == expected
    assert limits.discharge_current == expected


def test_without_reported_limits_in_the_dbc_the_rating_is_in_force() -> None:
    assert own(reported=False, charge_current_limit=None).charge_current == Limit(100.0, "rating module 1")
    assert own(reported=False, charge_current_limit=42.0).charge_current == Limit(100.0, "rating module 1")


@pytest.mark.parametrize(
    ("values", "charge", "discharge", "rule"),
    [
        # charge by max cell voltage: 100 % at 3.40 V, 50 % at 3.45 V, 10 % at 3.50 V, 0 % from 3.55 V
        ({"cell_voltage_max": 3.425}, 75.0, 100.0, "cell_voltage"),  # halfway 100 -> 50
        ({"cell_voltage_max": 3.475}, 30.0, 100.0, "cell_voltage"),  # halfway 50 -> 10
        ({"cell_voltage_max": 3.55}, 0.0, 100.0, "cell_voltage"),
        # discharge by min cell voltage: 100 % at 3.10 V, 50 % at 3.00 V, 10 % at 2.90 V, 0 % at 2.80 V
        ({"cell_voltage_min": 2.95}, 100.0, 30.0, "cell_voltage"),
        ({"cell_voltage_min": 2.80}, 100.0, 0.0, "cell_voltage"),
        # charge by temperature: 0 % at 0, 20 % at 5, 100 % from 15 to 40, 0 % from 55 degC; the worse sensor
        ({"temperature_min": 2.0}, 8.0, 100.0, "temperature"),  # 20 % x 2/5
        ({"temperature_min": 10.0, "temperature_max": 10.0}, 60.0, 100.0, "temperature"),  # 20 + 80 x 5/10
        ({"temperature_max": 47.5}, 50.0, 100.0, "temperature"),  # 100 - 100 x 7.5/15
        # discharge by temperature: 0 % at -20, 100 % from -10 to 50, 0 % from 60 degC
        ({"temperature_min": -15.0, "temperature_max": -12.0}, 0.0, 50.0, "temperature"),  # 100 x 5/10 at -15
        ({"temperature_max": 55.0}, 0.0, 50.0, "temperature"),
        # charge by SOC: 100 % to 95 %, 20 % at 99 %; discharge by SOC: 100 % down to 10 %, 20 % at 3 %
        ({"soc": 97.0}, 60.0, 100.0, "soc"),  # 100 - 80 x 2/4
        ({"soc": 99.5}, 20.0, 100.0, "soc"),
        ({"soc": 6.5}, 100.0, 60.0, "soc"),  # 20 + 80 x 3.5/7
        ({"soc": 2.0}, 100.0, 20.0, "soc"),
    ],
)
def test_derating_tables(values: dict[str, Any], charge: float, discharge: float, rule: str) -> None:
    limits = own(**values)
    assert limits.charge_current.value == pytest.approx(charge)
    assert limits.discharge_current.value == pytest.approx(discharge)
    reduced = limits.charge_current if charge < 100.0 else limits.discharge_current
    assert reduced.bound_by == f"{rule} module 1"


@pytest.mark.parametrize(
    ("values", "charge", "discharge"),
    [
        ({"cell_voltage_max": None}, Limit(0.0, "cell_voltage module 1"), Limit(100.0, "rating module 1")),
        ({"cell_voltage_min": None}, Limit(100.0, "rating module 1"), Limit(0.0, "cell_voltage module 1")),
        ({"temperature_max": None}, Limit(0.0, "temperature module 1"), Limit(0.0, "temperature module 1")),
        ({"soc": None, "remaining_capacity": 60.0}, Limit(0.0, "soc module 1"), Limit(0.0, "soc module 1")),
    ],
)
def test_an_unknown_input_derates_to_zero(values: dict[str, Any], charge: Limit, discharge: Limit) -> None:
    limits = own(**values)
    assert (limits.charge_current, limits.discharge_current) == (charge, discharge)


RATED = Limit(100.0, "rating module 1")


@pytest.mark.parametrize(
    ("sent", "values", "charge", "discharge"),
    [
        (False, {}, RATED, RATED),  # our protocol: no permits at all
        (True, {"charge_permitted": 1, "discharge_permitted": 1}, RATED, RATED),
        (True, {"charge_permitted": 0, "discharge_permitted": 1}, Limit(0.0, "module 1 forbids charging"), RATED),
        (True, {"charge_permitted": 1, "discharge_permitted": 0}, RATED, Limit(0.0, "module 1 forbids discharging")),
        # Sent by its profile but not known: missing data never raises a limit.
        (True, {}, Limit(0.0, "module 1 forbids charging"), Limit(0.0, "module 1 forbids discharging")),
    ],
)
def test_a_module_s_own_bms_may_forbid_a_direction(
    sent: bool, values: Permits, charge: Limit, discharge: Limit
) -> None:
    limits = own(permits=sent, **values)
    assert (limits.charge_current, limits.discharge_current) == (charge, discharge)


def test_factors_multiply_and_the_lowest_names_the_rule() -> None:
    # 100 A x 0.75 (3.425 V) x 0.60 (97 %) = 45 A; SOC is the lower factor
    limits = own(cell_voltage_max=3.425, soc=97.0)
    assert limits.charge_current.value == pytest.approx(45.0)
    assert limits.charge_current.bound_by == "soc module 1"
    # 100 A x 0.30 (3.475 V) x 0.60 = 18 A; cell voltage is the lower factor
    limits = own(cell_voltage_max=3.475, soc=97.0)
    assert limits.charge_current.value == pytest.approx(18.0)
    assert limits.charge_current.bound_by == "cell_voltage module 1"
    # reported 80 A x 0.75 x 0.60 = 36 A
    assert own(charge_current_limit=80.0, cell_voltage_max=3.425, soc=97.0).charge_current.value == pytest.approx(36.0)


def test_a_reported_charge_voltage_below_the_per_cell_one_binds() -> None:
    limits = own(charge_voltage_limit=54.4)
    assert limits.charge_voltage == Limit(54.4, "reported module 1")
    assert limits.charge_current == Limit(100.0, "rating module 1")


@pytest.mark.parametrize("reported", [0.0, 47.5])
def test_a_reported_charge_voltage_below_dvl_means_do_not_charge(reported: float) -> None:
    """CVL 0 V must never reach an inverter as "charge to 0 V": charge current 0, CVL at DVL (16 x 3.00 V)."""
    limits = own(charge_voltage_limit=reported)
    assert limits.charge_current == Limit(0.0, f"reported module 1 charge voltage {reported:g} V")
    assert limits.charge_voltage == Limit(48.0, "reported module 1")
    assert limits.discharge_current == Limit(100.0, "rating module 1")


def test_a_reported_discharge_voltage_above_the_per_cell_one_binds_but_never_above_cvl() -> None:
    assert own(discharge_voltage_limit=50.0).discharge_voltage == Limit(50.0, "reported module 1")
    limits = own(discharge_voltage_limit=60.0)
    assert limits.discharge_voltage.value == pytest.approx(55.2)
    assert limits.discharge_voltage.bound_by == "reported module 1"


def test_voltages_follow_the_configured_cells_and_per_cell_voltages() -> None:
    silent: dict[str, Any] = {
        "charge_voltage_limit": None,
        "discharge_voltage_limit": None,
    }  # no voltage limits of its own
    limits = own(configured(bank={"cells_in_series": 15}), cells_in_series=15, **silent)
    assert limits.charge_voltage.value == pytest.approx(51.75)  # 15 x 3.45
    assert limits.discharge_voltage.value == pytest.approx(45.0)  # 15 x 3.00
    # the module's own 46 V is above 15 x 3.00 V: it binds
    assert own(configured(bank={"cells_in_series": 15})).discharge_voltage == Limit(46.0, "reported module 1")
    limits = own(configured(limits={"charge_voltage_per_cell": 3.40, "discharge_voltage_per_cell": 2.90}), **silent)
    assert limits.charge_voltage.value == pytest.approx(54.4)  # 16 x 3.40
    assert limits.discharge_voltage.value == pytest.approx(46.4)  # 16 x 2.90


# -- strings and parallel strings ---------------------------------------------------------------------------------


def test_a_string_of_one_module_is_that_module() -> None:
    limits = own(charge_current_limit=42.0)
    assert string_limits([limits]) is limits


def test_a_series_string_takes_its_weakest_module_and_adds_the_voltages() -> None:
    one = own()
    two = module_limits(reading(2, 0.0, cell_voltage_max=3.45, charge_voltage_limit=54.4), CFG.bank, CFG.limits)
    limits = string_limits([one, two])
    assert limits.charge_current == Limit(50.0, "cell_voltage module 2")  # 50 % at 3.45 V
    assert limits.discharge_current == Limit(100.0, "rating module 1")
    assert limits.charge_voltage.value == pytest.approx(109.6)  # 55.2 + 54.4
    assert limits.charge_voltage.bound_by == "reported module 2"
    assert limits.discharge_voltage == Limit(96.0, "discharge_voltage_per_cell")  # 48 + 48


@pytest.mark.parametrize(
    ("limits", "shares", "expected"),
    [
        # two 100 A modules sharing 60/40 (the 40 % one counted at its capacity share 0.5): 100 / 0.6
        (
            [Limit(100.0, "rating module 1"), Limit(100.0, "rating module 2")],
            [0.6, 0.5],
            Limit(100.0 / 0.6, "current_share module 1"),
        ),
        ([Limit(100.0, "rating module 1"), Limit(100.0, "rating module 2")], [0.5, 0.5], Limit(200.0, "rating")),
        # a derated string binds under its own rule: 50 / 0.5 = 100 A
        (
            [Limit(100.0, "rating module 1"), Limit(50.0, "cell_voltage module 2")],
            [0.5, 0.5],
            Limit(100.0, "cell_voltage module 2"),
        ),
        # capped at the sum of the limits: min(100 + 20, 100 / 0.1, 20 / 0.1) = 120 A
        (
            [Limit(100.0, "rating module 1"), Limit(20.0, "reported module 2")],
            [0.1, 0.1],
            Limit(120.0, "sum of module limits"),
        ),
        ([Limit(42.0, "reported module 1")], [1.0], Limit(42.0, "reported module 1")),
        # a share of 0 says nothing: min(100 + 80, 80 / 0.5) = 160 A
        (
            [Limit(100.0, "rating module 1"), Limit(80.0, "reported module 2")],
            [0.0, 0.5],
            Limit(160.0, "reported module 2"),
        ),
    ],
)
def test_parallel_strings_by_their_shares(limits: list[Limit], shares: list[float], expected: Limit) -> None:
    names = [f"module {i}" for i in range(1, len(limits) + 1)]
    result = parallel_current(limits, shares, names)
    assert result.value == pytest.approx(expected.value)
    assert result.bound_by == expected.bound_by


# -- measured shares ----------------------------------------------------------------------------------------------

TWO = ((1,), (2,))


def string(current: float, capacity: float = 100.0) -> Electrical:
    """A string at 53.0 V and 60 % SOC whose smallest module holds `capacity` Ah."""
    return Electrical(53.0, current, 0.6 * capacity, capacity, 60.0, 98.0, capacity)


def shares_of(
    shares: Shares,
    currents: Sequence[float],
    *,
    dt: float = 0.1,
    cfg: Config = CFG,
    admitted: Sequence[tuple[int, ...]] = TWO,
) -> list[float]:
    return shares.update(tick_input(cfg, 100.0, {}, dt=dt), admitted, [string(c) for c in currents])


def test_at_rest_the_shares_are_capacity_shares() -> None:
    assert Shares().update(tick_input(CFG, 0.0, {}), TWO, [string(0.0), string(0.0)]) == [0.5, 0.5]
    result = Shares().update(tick_input(CFG, 0.0, {}), TWO, [string(0.0, 100.0), string(0.0, 50.0)])
    assert result == pytest.approx([2 / 3, 1 / 3])  # 100 Ah and 50 Ah
    assert Shares().update(tick_input(CFG, 0.0, {}), (), []) == []


def test_shares_are_measured_above_the_threshold_only() -> None:
    # threshold: 5 % of 100 A per string, 2 strings: 10 A
    assert shares_of(Shares(), [6.0, 4.0]) == [0.5, 0.5]  # 10 A: not above it
    # 11 A: measured 6.6 / 11 = 0.6 and 4.4 / 11 = 0.4, the second never below its capacity share 0.5
    assert shares_of(Shares(), [6.6, 4.4]) == pytest.approx([0.6, 0.5])


def test_a_rising_share_applies_at_once_and_a_falling_one_decays() -> None:
    shares = Shares()
    assert shares_of(shares, [5.5, 5.5]) == pytest.approx([0.5, 0.5])
    assert shares_of(shares, [7.7, 3.3]) == pytest.approx([0.7, 0.5])  # 7.7 / 11, at once
    # back to 50/50: one 0.1 s tick with share_smoothing 5 s moves it by 1 - exp(-0.1 / 5) of the way
    alpha = 1 - math.exp(-0.1 / 5.0)
    first = 0.7 - 0.2 * alpha
    assert shares_of(shares, [5.5, 5.5]) == pytest.approx([first, 0.5], abs=1e-12)
    assert first == pytest.approx(0.696040, abs=1e-6)
    # after n ticks: 0.5 + 0.2 x exp(-n x 0.02); n = 50 (5 s): 0.5 + 0.2 / e
    for _ in range(49):
        result = shares_of(shares, [5.5, 5.5])
    assert result == pytest.approx([0.5 + 0.2 * math.exp(-1.0), 0.5], abs=1e-9)
    # rising again applies at once
    assert shares_of(shares, [7.7, 3.3]) == pytest.approx([0.7, 0.5])


def test_share_smoothing_is_the_time_constant() -> None:
    cfg = configured(limits={"share_smoothing": 1.0})
    shares = Shares()
    shares_of(shares, [7.7, 3.3], cfg=cfg)
    # 0.7 - 0.2 x (1 - exp(-0.1 / 1))
    assert shares_of(shares, [5.5, 5.5], cfg=cfg)[0] == pytest.approx(0.7 - 0.2 * (1 - math.exp(-0.1)), abs=1e-12)


def test_time_going_backwards_dt_0_does_not_decay_a_share() -> None:
    shares = Shares()
    shares_of(shares, [7.7, 3.3])
    assert shares_of(shares, [5.5, 5.5], dt=0.0) == pytest.approx([0.7, 0.5])
    assert shares_of(shares, [8.8, 2.2], dt=0.0) == pytest.approx([0.8, 0.5])  # rising still applies


def test_at_rest_the_last_measured_share_holds() -> None:
    """Below the threshold the currents say nothing about the resistances: the next load step must find the share
    it will really take, not the capacity share."""
    shares = Shares()
    shares_of(shares, [7.7, 3.3])
    for _ in range(100):
        result = shares_of(shares, [0.0, 0.0])
    assert result == pytest.approx([0.7, 0.5])


def test_discharge_shares_use_the_discharge_rating_for_the_threshold() -> None:
    assert shares_of(Shares(), [-7.7, -3.3]) == pytest.approx([0.7, 0.5])
    # 5 % of 200 A x 2 strings = 20 A: 11 A is not measured
    cfg = configured(bank={"rated_discharge_current": 200.0})
    assert shares_of(Shares(), [-7.7, -3.3], cfg=cfg) == [0.5, 0.5]


def test_a_string_flowing_against_the_bank_current_counts_as_taking_nothing() -> None:
    # discharging 40 A: string 2 gives 45 A, string 1 takes 5 A back: shares 0 (-> capacity 0.5) and 45 / 45
    assert shares_of(Shares(), [5.0, -45.0]) == pytest.approx([0.5, 1.0])


def test_a_string_that_leaves_forgets_its_share() -> None:
    shares = Shares()
    shares_of(shares, [7.7, 3.3])
    assert shares_of(shares, [0.0], admitted=((2,),)) == [1.0]
    assert shares_of(shares, [0.0, 0.0]) == [0.5, 0.5]


def test_a_series_string_with_one_module_empty_and_one_full_still_has_a_share() -> None:
    """The string can move 0 Ah (full_ah 0), yet it is connected and takes current: its capacity share comes from
    its smallest module's full capacity (100 Ah), never 0."""
    readings = [reading(1, 0.0, soc=0.0), reading(2, 0.0, soc=100.0)]
    empty_full = aggregate.series(readings, 100.0)
    assert (empty_full.full_ah, empty_full.capacity_ah) == (0.0, 100.0)
    half = aggregate.series([reading(3, 0.0, full_capacity=50.0)], 100.0)
    result = Shares().update(tick_input(CFG, 0.0, {}), ((1, 2), (3,)), [empty_full, half])
    assert result == pytest.approx([100 / 150, 50 / 150])


# -- the Limiter: module limits remembered -----------------------------------------------------------------------


def test_module_limits_are_remembered_while_their_inputs_stay_the_same() -> None:
    limiter = Limiter()
    first = limiter.module(tick_input(CFG, 0.0, {}), reading(1, 0.0))
    # current and alive counter change every tick; the limits do not depend on them
    assert limiter.module(tick_input(CFG, 0.1, {}), reading(1, 0.1, current=20.0)) is first
    changed = limiter.module(tick_input(CFG, 0.2, {}), reading(1, 0.2, charge_current_limit=42.0))
    assert changed.charge_current == Limit(42.0, "reported module 1")
    reloaded = configured(limits={"charge_voltage_per_cell": 3.50})
    assert limiter.module(tick_input(reloaded, 0.3, {}), reading(1, 0.3)).charge_voltage.value == pytest.approx(56.0)


def test_a_limiter_without_reported_limits_uses_the_rating() -> None:
    without = reading(1, 0.0, charge_current_limit=None, absent=NO_LIMITS)
    limits = Limiter().module(tick_input(CFG, 0.0, {}), without)
    assert limits.charge_current == Limit(100.0, "rating module 1")


# -- the Limiter: the bank --------------------------------------------------------------------------------------


def bank_limits(
    limiter: Limiter,
    t: float,
    readings: dict[int, ModuleReading],
    admitted: Sequence[tuple[int, ...]],
    shares: Sequence[float],
    *,
    dt: float = 0.1,
    cfg: Config = CFG,
) -> Limits:
    """One valid tick as the master runs it: module limits, the admitted strings' values, then the bank's limits."""
    tick = tick_input(cfg, t, readings, dt=dt)
    per_module = {a: limiter.module(tick, readings[a]) for s in admitted for a in s}
    strings = [aggregate.series([readings[a] for a in s], cfg.bank.capacity_ah) for s in admitted]
    return limiter.bank(
        tick,
        admitted=admitted,
        per_module=per_module,
        shares=shares,
        strings=strings,
        total=aggregate.parallel(strings),
    )


def modules(t: float, *addresses: int, **values: Any) -> dict[int, ModuleReading]:
    return {a: reading(a, t, **values) for a in addresses}


ONE = ((1,),)
WARM = 100.0
"""A dt long enough for any rise: 10 %/s x 100 s = 10 x the rating."""


def test_rising_limits_slew_at_10_percent_of_the_rating_per_second() -> None:
    limiter = Limiter()
    # 10 %/s x 100 A x 0.1 s = 1 A per tick, from 0
    limits = bank_limits(limiter, 0.1, modules(0.1, 1), ONE, [1.0])
    assert pair(limits.charge_current) == (1.0, "slew_rate")
    assert pair(limits.discharge_current) == (1.0, "slew_rate")
    for i in range(2, 7):
        limits = bank_limits(limiter, i / 10, modules(i / 10, 1), ONE, [1.0])
    assert limits.charge_current.value == pytest.approx(6.0)
    # 10 %/s x 100 A x 9.4 s = 94 A more: the rating, 100 A, is reached
    limits = bank_limits(limiter, 10.0, modules(10.0, 1), ONE, [1.0], dt=9.4)
    assert pair(limits.charge_current) == (100.0, "rating module 1")


def test_the_slew_is_of_the_banks_rating_two_strings_two_amps_per_tick() -> None:
    limiter = Limiter()
    # 10 %/s x (2 x 100 A) x 0.1 s = 2 A
    limits = bank_limits(limiter, 0.1, modules(0.1, 1, 2), TWO, [0.5, 0.5])
    assert limits.charge_current.value == pytest.approx(2.0)


def test_slew_rate_is_configurable() -> None:
    cfg = configured(limits={"slew_rate": 100.0})
    limiter = Limiter()
    # 100 %/s x 100 A x 0.1 s = 10 A per tick
    assert bank_limits(limiter, 0.1, modules(0.1, 1), ONE, [1.0], cfg=cfg).charge_current.value == pytest.approx(10.0)
    assert bank_limits(limiter, 0.2, modules(0.2, 1), ONE, [1.0], cfg=cfg).charge_current.value == pytest.approx(20.0)


def test_falling_limits_apply_at_once_and_rise_again_slowly() -> None:
    limiter = Limiter()
    bank_limits(limiter, 100.0, modules(100.0, 1), ONE, [1.0], dt=WARM)
    limits = bank_limits(limiter, 100.1, modules(100.1, 1, cell_voltage_max=3.45), ONE, [1.0])
    assert limits.charge_current == Limit(50.0, "cell_voltage module 1")  # 100 -> 50 A at once
    limits = bank_limits(limiter, 100.2, modules(100.2, 1), ONE, [1.0])
    assert pair(limits.charge_current) == (51.0, "slew_rate")


def test_time_going_backwards_dt_0_raises_nothing_and_still_lowers() -> None:
    limiter = Limiter()
    bank_limits(limiter, 100.0, modules(100.0, 1), ONE, [1.0], dt=WARM)
    bank_limits(limiter, 100.1, modules(100.1, 1, cell_voltage_max=3.45), ONE, [1.0])  # 50 A
    limits = bank_limits(limiter, 99.0, modules(99.0, 1), ONE, [1.0], dt=0.0)
    assert limits.charge_current == Limit(50.0, "slew_rate")  # target 100 A, but no time has passed
    limits = bank_limits(limiter, 98.0, modules(98.0, 1, cell_voltage_max=3.475), ONE, [1.0], dt=0.0)
    assert pair(limits.charge_current) == (30.0, "cell_voltage module 1")


def test_limits_under_a_tenth_of_an_amp_are_zero_while_the_ramp_keeps_counting() -> None:
    cfg = configured(limits={"slew_rate": 0.5})
    limiter = Limiter()
    # 0.5 %/s x 100 A x 0.1 s = 0.05 A per tick: reported 0 (so the enable flag agrees), then 0.1 A
    assert bank_limits(limiter, 0.1, modules(0.1, 1), ONE, [1.0], cfg=cfg).charge_current == Limit(0.0, "slew_rate")
    limits = bank_limits(limiter, 0.2, modules(0.2, 1), ONE, [1.0], cfg=cfg)
    assert pair(limits.charge_current) == (0.1, "slew_rate")
    small = bank_limits(Limiter(), 0.1, modules(0.1, 1, charge_current_limit=0.05), ONE, [1.0], dt=WARM)
    assert small.charge_current == Limit(0.0, "reported module 1")


# -- held bounds of strings that left -------------------------------------------------------------------------------

THREE = ((1,), (2,), (3,))


def test_a_string_that_leaves_keeps_its_bound_for_offline_hold_then_it_is_gone() -> None:
    limiter = Limiter()
    # module 1 takes 60 % (measured), 2 and 3 their capacity share 1/3: 100 A / 0.6 = 166.7 A
    limits = bank_limits(limiter, 199.9, modules(199.9, 1, 2, 3), THREE, [0.6, 1 / 3, 1 / 3], dt=WARM)
    assert limits.charge_current.value == pytest.approx(166.67, abs=0.005)
    assert limits.charge_current.bound_by == "current_share module 1"
    # module 1 leaves at 200 s: the two others alone could take 200 A, but module 1 may still be connected
    held = "rating module 1 (held: module 1 left the bank)"
    for t in (200.0, 215.0, 230.0):  # 230 - 200 = 30 s: not more than offline_hold
        limits = bank_limits(limiter, t, modules(t, 2, 3), ((2,), (3,)), [0.5, 0.5])
        assert limits.charge_current.value == pytest.approx(166.67, abs=0.005)
        assert limits.charge_current.bound_by == held
        assert limits.discharge_current.value == pytest.approx(166.67, abs=0.005)
        assert limits.discharge_current.bound_by == held
    # 30.1 s: gone; the limit rises by the slew, 10 %/s x 2 x 100 A x 0.1 s = 2 A
    limits = bank_limits(limiter, 230.1, modules(230.1, 2, 3), ((2,), (3,)), [0.5, 0.5])
    assert limits.charge_current.value == pytest.approx(100 / 0.6 + 2.0)
    assert limits.charge_current.bound_by == "slew_rate"


def test_the_held_bounds_are_the_binding_modules_limits_and_voltages() -> None:
    cfg = configured(bank={"offline_hold": 10.0})
    limiter = Limiter()
    # module 3 derated to 50 A (3.45 V) at a share of 1/3: 50 x 3 = 150 A; it reports CVL 54.4 V and DVL 50 V
    third = reading(3, 99.9, cell_voltage_max=3.45, charge_voltage_limit=54.4, discharge_voltage_limit=50.0)
    readings = {**modules(99.9, 1, 2), 3: third}
    limits = bank_limits(limiter, 99.9, readings, THREE, [1 / 3] * 3, dt=WARM, cfg=cfg)
    assert limits.charge_current.value == pytest.approx(150.0)
    assert limits.charge_current.bound_by == "cell_voltage module 3"
    limits = bank_limits(limiter, 100.0, modules(100.0, 1, 2), TWO, [0.5, 0.5], cfg=cfg)
    why = " (held: module 3 left the bank)"
    assert limits.charge_current.value == pytest.approx(150.0)
    assert limits.charge_current.bound_by == "cell_voltage module 3" + why
    assert limits.discharge_current.value == pytest.approx(200.0)  # 100 x 3 held, the two left give 200
    assert limits.charge_voltage == Limit(54.4, "reported module 3" + why)
    assert limits.discharge_voltage == Limit(50.0, "reported module 3" + why)
    limits = bank_limits(limiter, 110.1, modules(110.1, 1, 2), TWO, [0.5, 0.5], cfg=cfg)  # 10.1 s > offline_hold
    assert limits.charge_voltage.value == pytest.approx(55.2)
    assert limits.discharge_voltage == Limit(48.0, "discharge_voltage_per_cell")


def test_a_string_that_comes_back_is_bound_by_what_it_says_now() -> None:
    limiter = Limiter()
    third = reading(3, 99.9, cell_voltage_max=3.45)
    bank_limits(limiter, 99.9, {**modules(99.9, 1, 2), 3: third}, THREE, [1 / 3] * 3, dt=WARM)
    bank_limits(limiter, 100.0, modules(100.0, 1, 2), TWO, [0.5, 0.5])
    limits = bank_limits(limiter, 100.1, modules(100.1, 1, 2, 3), THREE, [1 / 3] * 3)
    assert "held" not in limits.charge_current.bound_by
    assert pair(limits.charge_current) == (153.0, "slew_rate")  # 150 A + 10 %/s x 3 x 100 A x 0.1 s


# -- the charge voltage --------------------------------------------------------------------------------------------


def test_cvl_is_the_lowest_strings_and_dvl_the_highest() -> None:
    limits = bank_limits(Limiter(), 100.0, modules(100.0, 1, 2), TWO, [0.5, 0.5], dt=WARM)
    assert limits.charge_voltage.value == pytest.approx(55.2)
    assert limits.charge_voltage.bound_by == "charge_voltage_per_cell"
    assert limits.discharge_voltage == Limit(48.0, "discharge_voltage_per_cell")
    readings = {1: reading(1, 100.0, charge_voltage_limit=54.4), 2: reading(2, 100.0, discharge_voltage_limit=50.0)}
    limits = bank_limits(Limiter(), 100.0, readings, TWO, [0.5, 0.5], dt=WARM)
    assert limits.charge_voltage == Limit(54.4, "reported module 1")
    assert limits.discharge_voltage == Limit(50.0, "reported module 2")


def test_a_series_string_adds_its_modules_voltages() -> None:
    limits = bank_limits(Limiter(), 100.0, modules(100.0, 1, 2), ((1, 2),), [1.0], dt=WARM)
    assert limits.charge_voltage.value == pytest.approx(110.4)  # 2 x 55.2
    assert limits.discharge_voltage.value == pytest.approx(96.0)  # 2 x 48.0


def test_a_cell_over_the_target_pulls_cvl_below_the_present_voltage_by_its_excess() -> None:
    high = reading(2, 100.0, cell_voltage_max=3.47, cell_voltage_max_index=7)
    limits = bank_limits(Limiter(), 100.0, {1: reading(1, 100.0), 2: high}, TWO, [0.5, 0.5], dt=WARM)
    assert pair(limits.charge_voltage) == (52.98, "balancing module 2 cell 7")
    # 53.0 V - (3.47 - 3.45) V; charging goes on at 34 % (50 - 40 x 0.02/0.05) of module 2's 100 A, / 0.5
    assert limits.charge_current.value == pytest.approx(68.0)
    # in a series string the string's voltage is pulled: 106.0 - 0.02
    limits = bank_limits(Limiter(), 100.0, {1: reading(1, 100.0), 2: high}, ((1, 2),), [1.0], dt=WARM)
    assert pair(limits.charge_voltage) == (105.98, "balancing module 2 cell 7")


def test_the_balancing_pull_stops_at_a_voltage_the_string_can_have() -> None:
    # 48.0 V - (3.50 - 3.45) V = 47.95 V: plausible, kept (under DVL 48 V, but charging at the top is what counts)
    low = reading(1, 100.0, voltage=48.0, cell_voltage_max=3.50)
    limits = bank_limits(Limiter(), 100.0, {1: low}, ONE, [1.0], dt=WARM)
    assert limits.charge_voltage == Limit(47.95, "balancing module 1 cell 2")
    assert limits.charge_current.value == pytest.approx(10.0)  # 10 % at 3.50 V: still charging
    # 40.0 V - 0.05 V = 39.95 V is under 16 cells x 2.50 V (the cell protection): no string has it, CVL 40 V
    implausible = reading(1, 100.0, voltage=40.0, cell_voltage_max=3.50)
    limits = bank_limits(Limiter(), 100.0, {1: implausible}, ONE, [1.0], dt=WARM)
    assert limits.charge_voltage == Limit(40.0, "balancing module 1 cell 2")


def test_when_charging_is_not_allowed_cvl_is_at_most_the_present_voltage() -> None:
    cold = modules(100.0, 1, temperature_min=0.0)  # 0 % at 0 degC
    limits = bank_limits(Limiter(), 100.0, cold, ONE, [1.0], dt=WARM)
    assert limits.charge_current == Limit(0.0, "temperature module 1")
    assert limits.charge_voltage == Limit(53.0, "charge_stop (temperature module 1)")
    # above CVL already: CVL is not raised to the present voltage
    limits = bank_limits(Limiter(), 100.0, modules(100.0, 1, temperature_min=0.0, voltage=56.0), ONE, [1.0], dt=WARM)
    assert limits.charge_voltage.value == pytest.approx(55.2)
    assert limits.charge_voltage.bound_by == "charge_voltage_per_cell"


def test_a_charge_stop_holds_cvl_at_the_voltage_however_low() -> None:
    """47.0 V, under DVL (48 V), charging not allowed: CVL 47.0 V. Above it, an inverter that ignores CCL = 0
    would charge the cold module."""
    limits = bank_limits(Limiter(), 100.0, modules(100.0, 1, temperature_min=0.0, voltage=47.0), ONE, [1.0], dt=WARM)
    assert limits.charge_voltage == Limit(47.0, "charge_stop (temperature module 1)")


def test_a_module_reporting_cvl_0_volts_stops_charge_and_cvl_stays_at_dvl() -> None:
    readings = {1: reading(1, 100.0, charge_voltage_limit=0.0), 2: reading(2, 100.0)}
    limits = bank_limits(Limiter(), 100.0, readings, TWO, [0.5, 0.5], dt=WARM)
    assert limits.charge_current == Limit(0.0, "reported module 1 charge voltage 0 V")
    assert limits.charge_voltage == Limit(48.0, "reported module 1")
    assert limits.discharge_current == Limit(200.0, "rating")


def test_a_module_reporting_0_volts_with_a_high_cell_never_makes_cvl_0() -> None:
    # 0 V - (3.50 - 3.45) V would be negative: CVL at 16 cells x 2.50 V, the lowest voltage the string can have
    limits = bank_limits(Limiter(), 100.0, modules(100.0, 1, voltage=0.0, cell_voltage_max=3.50), ONE, [1.0], dt=WARM)
    assert limits.charge_voltage.value == pytest.approx(40.0)


def test_a_charge_stop_holds_cvl_at_the_voltage_even_under_another_strings_dvl() -> None:
    """A cold morning at 49.5 V: module 1 may not charge (0 degC), module 2 reports DVL 50 V.

    CVL stays at the present 49.5 V, under the bank's DVL of 50 V: above the present voltage, an inverter that
    ignores CCL = 0 would charge the cold module. The floor is the lowest string's DVL (48 V), which only keeps CVL
    from reading as "charge to 0 V"; the bank below its DVL and CVL at its voltage: neither charge nor discharge.
    """
    readings = {
        1: reading(1, 100.0, voltage=49.5, temperature_min=0.0),
        2: reading(2, 100.0, voltage=49.5, discharge_voltage_limit=50.0),
    }
    limits = bank_limits(Limiter(), 100.0, readings, TWO, [0.5, 0.5], dt=WARM)
    assert limits.charge_current.value == 0.0
    assert limits.discharge_voltage == Limit(50.0, "reported module 2")
    assert limits.charge_voltage.value == pytest.approx(49.5)
    assert limits.charge_voltage.bound_by.startswith("charge_stop")


# -- a bank the master cannot vouch for ---------------------------------------------------------------------------


def test_a_stopped_bank_gets_no_current_and_cvl_at_its_voltage() -> None:
    limits = Limiter().stopped("no module online", string(0.0), 48.0)
    reason = "no module online"
    assert limits == Limits(Limit(0.0, reason), Limit(0.0, reason), Limit(53.0, reason), Limit(48.0, reason))


def test_with_no_voltage_known_cvl_is_the_last_known_voltage_else_dvl() -> None:
    limiter = Limiter()
    assert limiter.stopped("starting", None, 48.0).charge_voltage == Limit(48.0, "starting")
    bank_limits(limiter, 100.0, modules(100.0, 1, voltage=52.4), ONE, [1.0], dt=WARM)
    assert limiter.stopped("no module online", None, 48.0).charge_voltage == Limit(52.4, "no module online")
    zero = Electrical(0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 100.0)  # 0 V is no voltage
    assert limiter.stopped("no module online", zero, 48.0).charge_voltage == Limit(52.4, "no module online")
    limiter.stopped("no module online", Electrical(51.0, 0.0, 60.0, 100.0, 60.0, 98.0, 100.0), 48.0)
    assert limiter.stopped("no module online", None, 48.0).charge_voltage.value == 51.0


def test_after_a_stop_the_limits_ramp_up_from_zero() -> None:
    limiter = Limiter()
    bank_limits(limiter, 100.0, modules(100.0, 1), ONE, [1.0], dt=WARM)
    limiter.stopped("1 modules online, min_online is 2", string(0.0), 48.0)
    limits = bank_limits(limiter, 100.1, modules(100.1, 1), ONE, [1.0])
    assert pair(limits.charge_current) == (1.0, "slew_rate")
    assert pair(limits.discharge_current) == (1.0, "slew_rate")
