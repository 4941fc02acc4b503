"""Snapshot lines built from cached parts against a fresh `payload.snapshot_dict` + `json.dumps`, byte for byte."""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import payload
from gateway.core import Core
from gateway.master.model import (
    BankSnapshot,
    Energy,
    EnergyTotals,
    IsolateReason,
    Lifecycle,
    Limit,
    Limits,
    ModuleView,
    empty_snapshot,
)
from gateway.sim import Simulator
from gateway.sim.faults import parse_fault
from gateway.snapshot_json import SnapshotLines, dumps

from helpers.factories import configured, reading


def fresh(snapshot: BankSnapshot) -> str:
    """The line from a fresh dict through the same encoder; what it says, the stdlib's `json.dumps` says too, but for
    a NaN or an infinity, which it writes as `null` (valid JSON) where json writes `NaN`."""
    line = dumps(payload.snapshot_dict(snapshot))
    stdlib = json.dumps(payload.snapshot_dict(snapshot))
    assert json.loads(line) == json.loads(stdlib, parse_constant=lambda _: None)
    return line


def test_a_simulated_stack_through_the_core() -> None:
    """Modules joining, one dropping off and coming back, one overheating: every line as a fresh one."""
    cfg = configured(bank={"module_timeout": 2.0})
    faults = [parse_fault("drop:2@4=3"), parse_fault("overheat:3@1=60"), parse_fault("cell_high:1@2=3.6")]
    sim = Simulator(modules=4, cells=16, sensors=4, current=20.0, seed=3, faults=faults)
    core = Core(cfg, now=0.0, inverter_on_module_bus=True)
    lines = SnapshotLines()
    checked = 0
    for msg in sim.advance(until=12.0):
        while core.next_tick <= msg.timestamp:
            snapshot = core.tick(core.next_tick).snapshot
            assert lines.line(snapshot) == fresh(snapshot)
            checked += 1
        core.feed(msg, msg.timestamp)
    assert checked >= 100
    assert len(snapshot.modules) == 4


def view(address: int, t: float, **changes: Any) -> ModuleView:
    limit = Limit(changes.pop("limit", 100.0), "rating")
    default = ModuleView(
        reading=reading(address, t, **{"remaining_capacity": 60.0, **changes.pop("reading", {})}),
        lifecycle=Lifecycle.ONLINE,
        reason="",
        position=address,
        string=address - 1,
        limits=Limits(limit, limit, Limit(56.0, "cell"), Limit(46.0, "cell")),
        share=0.25,
        isolate_reason=IsolateReason.NONE,
    )
    return replace(default, **changes)


VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, 1, 1.0, 3.3, 1e16, 1e-5, float("nan"), float("inf")]),
    st.floats(-1e6, 1e6),
)
CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "reading": st.fixed_dictionaries(
            {},
            optional={
                "voltage": VALUES,
                "current": VALUES,
                "soc": VALUES,
                "cell_voltages": st.lists(VALUES, max_size=4).map(tuple),
                "cell_temperatures": st.lists(VALUES, max_size=2).map(tuple),
                "warnings": st.integers(0, 0xFFFF),
            },
        ),
        "reason": st.sampled_from(["", "pending: SOC 70 % vs bank 50 %", "température ≠ \0age\0", ',"age":1,']),
        "lifecycle": st.sampled_from(list(Lifecycle)),
        "share": VALUES,
        "limit": st.sampled_from([0.0, -0.0, 50.0, 50]),
        "mismatch": st.lists(st.sampled_from(["firmware 1.2.3", "SOH 80 %"]), max_size=2).map(tuple),
    },
)
WH = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 1234.5]), st.floats(0.0, 1e9))
ENERGY = st.one_of(
    st.none(),  # no history read yet
    st.dictionaries(st.integers(1, 4), st.builds(Energy, WH, WH), max_size=4),  # what the core counted per module
)
STEPS = st.lists(
    st.tuples(
        st.floats(0.0, 5.0),  # time goes on
        st.dictionaries(st.integers(1, 4), st.one_of(st.none(), CHANGES), max_size=4),  # None: the module leaves
        ENERGY,
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_cached_parts_give_the_fresh_line_every_time(
    steps: list[tuple[float, dict[int, Any], dict[int, Energy] | None]],
) -> None:
    """Snapshots where some modules keep their view object (a cache hit: only the age and the lifetime energy
    move), some get a new one
    (values that compare equal but print differently: 0.0 and -0.0, 1 and 1.0), some keep their cell tuples,
    some leave and come back."""
    lines = SnapshotLines()
    t = 100.0
    modules: dict[int, ModuleView] = {}
    snapshot = empty_snapshot(t)
    for dt, changes, energy in steps:
        t += dt
        for address, change in changes.items():
            if change is None:
                modules.pop(address, None)
                continue
            new = view(address, t - 0.05 * address, **change)
            old = modules.get(address)
            if old is not None and "reading" in change and "cell_voltages" not in change["reading"]:
                new = replace(new, reading=replace(new.reading, cell_voltages=old.reading.cell_voltages))
            modules[address] = new
        totals = None if energy is None else EnergyTotals(Energy(1.0, 2.0), MappingProxyType(energy))
        snapshot = replace(snapshot, seq=snapshot.seq + 1, t=t, modules=MappingProxyType(dict(modules)), energy=totals)
        assert lines.line(snapshot) == fresh(snapshot)
