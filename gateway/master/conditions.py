"""Alarm conditions of the bank as a whole and of how its modules fit together.

Lost modules (a protection when the bank cannot run without them), the stack limit, a current-sensor mismatch in
a series string, a silent inverter, and mismatch: firmware other than the bank's majority, or SOH, capacity or
cycle counts spread too far (aged modules belong in another bank). Each mismatch note names its module.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence

from gateway.master.admission import Membership
from gateway.master.alarms import Condition
from gateway.master.inputs import TickInput
from gateway.master.model import AlarmCode, IsolateReason, Level, Lifecycle, ModuleReading


def bank_conditions(tick: TickInput, membership: Membership, inverter_timeout: float) -> Iterator[Condition]:
    bank, health, readings, now = tick.bank, membership.health, tick.readings, tick.now
    lost = [a for a, h in health.items() if h.lifecycle is Lifecycle.OFFLINE]
    if lost and not tick.starting:
        online = len(membership.online)
        fatal = online == 0 or online < bank.min_online or any(set(s) & set(lost) for s in membership.broken)
        level = Level.PROTECTION if fatal else Level.WARNING
        yield from (Condition(AlarmCode.MODULE_COMM_LOST, level, a, f"module {a}: {health[a].reason}") for a in lost)
    for a, h in health.items():
        if h.isolate_reason is IsolateReason.STACK_LIMIT:
            yield Condition(AlarmCode.STACK_LIMIT, Level.WARNING, a, f"max_modules is {bank.max_modules}")
    for string in membership.strings:
        if len(string) < 2:  # one module: one current sensor, nothing to compare it with
            continue
        # Only modules that are talking: a silent one's last current is old news, not a second sensor.
        currents = [
            current
            for a in string
            if health[a].lifecycle is not Lifecycle.OFFLINE and (current := _current(readings.get(a))) is not None
        ]
        if len(currents) == len(string):
            spread = max(currents) - min(currents)
            if spread > tick.limits.sensor_mismatch / 100.0 * bank.rated_charge_current:
                detail = f"current spread {spread:.1f} A in one string"
                yield from (Condition(AlarmCode.SENSOR_MISMATCH, Level.WARNING, a, detail) for a in string)
    inverter = tick.inverter
    if inverter is not None and inverter.timeout is not None:
        inverter_timeout = inverter.timeout
    if inverter is not None and inverter_timeout > 0 and now - inverter.last_seen > inverter_timeout:
        yield Condition(
            AlarmCode.INVERTER_COMM_LOST, Level.WARNING, None, f"no frame for {now - inverter.last_seen:.0f} s"
        )


def mismatch(tick: TickInput, fresh: Sequence[ModuleReading], membership: Membership) -> dict[int, list[str]]:
    """Mismatch notes per module: rejected modules' reasons, then firmware, SOH, capacity and cycle-count spreads."""
    bank, health = tick.bank, membership.health
    notes: dict[int, list[str]] = {}
    for a, h in health.items():
        if h.lifecycle is Lifecycle.REJECTED:
            notes.setdefault(a, []).append(h.reason)
    pool = [r for r in fresh if health[r.address].lifecycle is not Lifecycle.REJECTED]
    firmwares = [r.firmware for r in pool if r.firmware is not None]
    if bank.firmware_mismatch and firmwares:
        majority = max(set(firmwares), key=lambda f: (firmwares.count(f), f))
        for r in pool:
            if r.firmware is not None and r.firmware != majority:
                note = f"firmware {_version(r.firmware)} differs from the bank's {_version(majority)}"
                notes.setdefault(r.address, []).append(note)
    spreads: tuple[tuple[str, list[tuple[float, int]], Callable[[float, float], bool]], ...] = (
        ("SOH", [(r.soh, r.address) for r in pool if r.soh is not None], lambda lo, hi: hi - lo > bank.soh_spread),
        (
            "capacity",
            [(c, r.address) for r in pool if (c := r.full_capacity or r.nominal_capacity)],
            lambda lo, hi: hi > lo * (1.0 + bank.capacity_spread / 100.0),
        ),
        (
            "cycle count",
            [(r.cycle_count, r.address) for r in pool if r.cycle_count is not None],
            lambda lo, hi: hi - lo > bank.cycle_spread,
        ),
    )
    for what, values, too_far in spreads:
        if len(values) > 1:
            (lo, lo_a), (hi, hi_a) = min(values), max(values)
            if too_far(lo, hi):
                # Name the outlier: the end farther from the median (both ends when equally far).
                median = statistics.median(v for v, _ in values)
                for value, a in ((lo, lo_a), (hi, hi_a)):
                    if abs(value - median) >= max(median - lo, hi - median):
                        notes.setdefault(a, []).append(f"{what} {value:g} vs bank median {median:g}")
    return notes


def mismatch_conditions(notes: dict[int, list[str]]) -> Iterator[Condition]:
    for a, texts in notes.items():
        yield from (Condition(AlarmCode.MODULE_MISMATCH, Level.WARNING, a, f"module {a}: {text}") for text in texts)


def _current(reading: ModuleReading | None) -> float | None:
    return None if reading is None else reading.current


def _version(firmware: tuple[int, int, int]) -> str:
    return ".".join(map(str, firmware))
