"""The incremental master against a full recompute (hypothesis), tick by tick.

`Master` redoes a rule's per-module work only when that module's reading (by identity), the config (by identity) or
a deadline of a time-based rule changed; `Master(incremental=False)` recomputes everything every tick. On random
histories both must give the same ticks: every field of the snapshot (`bound_by` strings, alarms with their
`since`, module views) and every command, compared by `repr`, so 0.0 and -0.0 or two NaNs count as what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_master_properties import CONFIGS, SETTINGS, any_reading, module_values

from gateway import config
from gateway.master.master import Master
from gateway.master.model import InverterInfo, IsolateReason, Isolation, Memory, ModuleReading

from helpers.factories import reading

ADDRESSES = (1, 2, 3, 4, 5)
RELOADS = [*CONFIGS, config.parse({"bank": {"max_modules": 31}, "limits": {"alarm_hold": 0.5, "slew_rate": 1.0}})]
"""Configs a reload may bring: those of the properties, and one with short holds and a slow slew."""
STEPS = st.one_of(
    st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.1, 1.0, 2.95, 3.0, 3.05, 5.0, 30.5, 301.0]),
    st.floats(-0.5, 400.0),
)
"""Time between ticks: the 10 Hz tick, and jumps across every deadline (timeouts, holds, hold-offs)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One tick of a history: its time, the readings (the same objects as the last step's where a module sent
    nothing new), the inverter, and what happens before it (an operator action or a config reload)."""

    now: float
    readings: dict[int, ModuleReading]
    inverter: InverterInfo | None
    action: str = ""
    reload: int = 0


MEMORIES = st.one_of(
    st.none(),
    st.builds(
        Memory,
        last_full_charge=st.one_of(st.none(), st.floats(0.0, 1e6)),
        isolations=st.lists(
            st.builds(
                Isolation,
                st.sampled_from(ADDRESSES),
                st.just("restored"),
                st.just(IsolateReason.FAULT),
                st.floats(0.0, 400.0),
            ),
            max_size=2,
        ).map(tuple),
        shares=st.lists(st.tuples(st.sampled_from([(1,), (2,), (1, 2)]), st.floats(0.0, 1.0)), max_size=2).map(tuple),
    ),
)
"""What the history may restore before the first step: isolations with their hold-off, learned shares."""


History = tuple[int, Memory | None, list[Step]]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """A config, a restored memory and up to 40 steps. Each module, at each step, keeps its reading (identical
    object), sends a new healthy one (values drawn once per module, so they often repeat), a new one equal to the
    last (another object), anything the DBC can decode, or falls silent."""
    values = {a: draw(module_values()) for a in ADDRESSES}
    now = draw(st.floats(0.0, 1e6))
    readings: dict[int, ModuleReading] = {}
    inverter: InverterInfo | None = None
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        now += draw(STEPS)
        for a in ADDRESSES:
            change = draw(st.sampled_from(["keep", "keep", "healthy", "healthy", "tweak", "copy", "any", "drop"]))
            if change == "healthy":
                readings[a] = reading(a, now, **values[a])
            elif change == "tweak":
                values[a] = {**values[a], **draw(module_values().map(lambda v: {k: v[k] for k in list(v)[:3]}))}
                readings[a] = reading(a, now, **values[a])
            elif change == "copy" and a in readings:
                readings[a] = replace(readings[a])
            elif change == "any":
                readings[a] = draw(any_reading(a, now))
            elif change == "drop":
                readings.pop(a, None)
        if draw(st.integers(0, 9)) == 0:
            inverter = draw(st.one_of(st.none(), st.builds(InverterInfo, st.just("x"), st.just(now))))
        action = draw(st.sampled_from(["", "", "", "", "", "readmit", "full_charge", "reload"]))
        reload = draw(st.integers(0, len(RELOADS) - 1)) if action == "reload" else 0
        steps.append(Step(now, dict(readings), inverter, action, reload))
    return draw(st.integers(0, len(CONFIGS) - 1)), draw(MEMORIES), steps


def run(history: History) -> None:
    index, memory, steps = history
    fast, full = Master(CONFIGS[index]), Master(CONFIGS[index], incremental=False)
    if memory is not None and steps:
        fast.restore(memory, steps[0].now)
        full.restore(memory, steps[0].now)
    for n, step in enumerate(steps):
        for m in (fast, full):
            if step.action == "readmit":
                m.readmit(1 + n % len(ADDRESSES))
            elif step.action == "full_charge":
                m.request_full_charge()
            elif step.action == "reload":
                m.config = RELOADS[step.reload]
        a = fast.step(step.now, step.readings, step.inverter)
        b = full.step(step.now, step.readings, step.inverter)
        assert repr(a) == repr(b), n
        assert repr(fast.memory(step.now)) == repr(full.memory(step.now)), n


@settings(SETTINGS, max_examples=400, print_blob=True)
@given(history=histories())
def test_the_incremental_master_gives_the_ticks_of_a_full_recompute(history: History) -> None:
    run(history)
