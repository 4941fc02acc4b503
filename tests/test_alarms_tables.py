"""The fast paths of the master agree with the full rules they shortcut."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.master.alarms import module_conditions, quiet
from gateway.master.tables import interpolate

from helpers.factories import reading

CFG = config.parse({})


@settings(max_examples=2000, deadline=None)
@given(
    vmin=st.floats(2.3, 3.8),
    spread=st.floats(0.0, 0.3),
    tmin=st.floats(-30.0, 70.0),
    tspread=st.floats(0.0, 10.0),
    voltage=st.floats(40.0, 62.0),
    current=st.floats(-200.0, 200.0),
    bits=st.sampled_from([0, 0, 0, 1, 1 << 13]),
)
def test_a_quiet_module_has_no_alarm_condition(
    vmin: float, spread: float, tmin: float, tspread: float, voltage: float, current: float, bits: int
) -> None:
    r = reading(
        1,
        0.0,
        cell_voltage_min=vmin,
        cell_voltage_max=vmin + spread,
        temperature_min=tmin,
        temperature_max=tmin + tspread,
        voltage=voltage,
        current=current,
        warnings=bits,
    )
    conditions = list(module_conditions(r, CFG.bank, CFG.limits, {}))
    assert quiet(r, CFG.bank, CFG.limits) == (conditions == [])


TABLE = st.lists(st.tuples(st.floats(-100, 100), st.floats(0, 100)), min_size=1, max_size=6).map(
    lambda points: tuple(sorted({x: (x, y) for x, y in points}.values()))
)


@given(table=TABLE, x=st.floats(-200, 200))
def test_interpolation_is_piecewise_linear_and_flat_beyond_the_ends(table: config.Table, x: float) -> None:
    y = interpolate(table, x)
    if x <= table[0][0]:
        assert y == table[0][1]
    elif x >= table[-1][0]:
        assert y == table[-1][1]
    else:
        (x0, y0), (x1, y1) = next((a, b) for a, b in itertools.pairwise(table) if a[0] <= x < b[0])
        assert min(y0, y1) - 1e-9 <= y <= max(y0, y1) + 1e-9
        assert abs(y - (y0 + (y1 - y0) * (x - x0) / (x1 - x0))) < 1e-9
    for px, py in table:
        assert interpolate(table, px) == py
