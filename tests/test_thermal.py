"""The thermal view, driven directly: stack layers by position (bottom = 1), the top-minus-bottom gradient, heat
accumulation in the middle (more than 5 degC above the mean of the outer modules), and the fan duty (0 % at 30 degC,
100 % at 45 degC, rounded up)."""

from __future__ import annotations

import pytest

from gateway.master import thermal
from gateway.master.alarms import Condition
from gateway.master.model import AlarmCode, Level

from helpers.factories import configured

FAN = configured().limits.fan_duty


def hot(temperatures: dict[int, float], layers: dict[int, list[int]], delta: float = 5.0) -> list[tuple[int, float]]:
    """The middle modules running hot, with their excess to 1 mdegC."""
    return [(a, round(excess, 3)) for a, excess in thermal.heat_accumulation(temperatures, layers, delta)]


def test_layers_by_position_bottom_first_default_position_is_the_address() -> None:
    assert thermal.by_position({3: 29.0, 1: 25.0, 2: 37.5}, {}) == {1: [1], 2: [2], 3: [3]}
    # configured positions: module 7 at the bottom, 5 on top, 6 and 8 side by side in the middle
    layers = thermal.by_position({5: 30.0, 6: 31.0, 7: 20.0, 8: 32.0}, {5: 3, 6: 2, 7: 1, 8: 2})
    assert layers == {1: [7], 2: [6, 8], 3: [5]}
    assert list(layers) == [1, 2, 3]


def test_only_modules_with_a_temperature_make_layers() -> None:
    assert thermal.by_position({1: 25.0, 3: 29.0}, {1: 1, 2: 2, 3: 3}) == {1: [1], 3: [3]}


def test_the_gradient_is_top_minus_bottom() -> None:
    temperatures = {1: 25.0, 2: 37.5, 3: 29.0}
    assert thermal.gradient(temperatures, thermal.by_position(temperatures, {})) == pytest.approx(4.0)  # 29 - 25
    # a cooler top: negative
    temperatures = {1: 30.0, 2: 28.0}
    assert thermal.gradient(temperatures, thermal.by_position(temperatures, {})) == pytest.approx(-2.0)
    # two modules at the bottom: their mean, (20 + 22) / 2 = 21; 30 - 21 = 9
    temperatures = {1: 20.0, 2: 22.0, 3: 30.0}
    assert thermal.gradient(temperatures, thermal.by_position(temperatures, {1: 1, 2: 1, 3: 2})) == pytest.approx(9.0)


def test_no_gradient_with_one_layer() -> None:
    assert thermal.gradient({1: 25.0}, {1: [1]}) is None
    assert thermal.gradient({1: 25.0, 2: 35.0}, {1: [1, 2]}) is None
    assert thermal.gradient({}, {}) is None


def test_a_middle_module_over_5_degrees_above_the_outer_ones_accumulates_heat() -> None:
    temperatures = {1: 25.0, 2: 37.5, 3: 29.0}
    layers = thermal.by_position(temperatures, {})
    # outer mean (25 + 29) / 2 = 27; 37.5 - 27 = 10.5
    assert hot(temperatures, layers) == [(2, 10.5)]
    assert list(thermal.conditions(temperatures, layers, 5.0)) == [
        Condition(AlarmCode.HEAT_ACCUMULATION, Level.WARNING, 2, "module 2 10.5 degC above the outer ones", 10.5)
    ]
    assert list(thermal.conditions(temperatures, layers, 11.0)) == []  # the threshold is configurable


def test_exactly_5_degrees_above_is_not_over() -> None:
    temperatures = {1: 25.0, 2: 32.0, 3: 29.0}  # 32 - 27 = 5
    assert list(thermal.conditions(temperatures, thermal.by_position(temperatures, {}), 5.0)) == []


def test_the_outer_mean_is_over_the_outer_modules() -> None:
    """Bottom 20 and 22 degC, top 30: the outer mean is (20 + 22 + 30) / 3 = 24, so 29.1 degC is 5.1 over (over the
    mean of the layers, 25.5, it would be 3.6)."""
    temperatures = {1: 20.0, 2: 22.0, 3: 29.1, 4: 30.0}
    layers = thermal.by_position(temperatures, {1: 1, 2: 1, 3: 2, 4: 3})
    assert hot(temperatures, layers) == [(3, 5.1)]


def test_every_middle_module_is_checked_and_the_outer_ones_never() -> None:
    temperatures = {1: 40.0, 2: 25.0, 3: 36.0, 4: 24.0, 5: 20.0}  # outer mean (40 + 20) / 2 = 30
    layers = thermal.by_position(temperatures, {})
    assert hot(temperatures, layers) == [(3, 6.0)]


def test_no_heat_accumulation_with_fewer_than_3_layers() -> None:
    temperatures = {1: 20.0, 2: 40.0}
    assert hot(temperatures, thermal.by_position(temperatures, {})) == []
    temperatures = {1: 20.0, 2: 40.0, 3: 20.0}
    assert hot(temperatures, {1: [1], 2: [2, 3]}) == []


@pytest.mark.parametrize(
    ("temperature", "duty"),
    [
        (None, 0),  # no module reports a temperature
        (25.0, 0),
        (30.0, 0),
        (31.0, 7),  # 100 x 1/15 = 6.67, rounded up
        (37.5, 50),
        (44.0, 94),  # 100 x 14/15 = 93.3, rounded up
        (45.0, 100),
        (60.0, 100),
    ],
)
def test_fan_duty_follows_the_highest_temperature(temperature: float | None, duty: int) -> None:
    assert thermal.fan_duty(FAN, temperature) == duty


def test_fan_duty_follows_the_configured_table() -> None:
    table = configured(limits={"fan_duty": [[20.0, 10.0], [30.0, 60.0]]}).limits.fan_duty
    assert thermal.fan_duty(table, 15.0) == 10
    assert thermal.fan_duty(table, 25.0) == 35  # 10 + 50 x 5/10
    assert thermal.fan_duty(table, 40.0) == 60
