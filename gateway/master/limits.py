"""Coordinated limits: each module's effective limits, then strings (series), then the bank (parallel).

The rule that holds everything together: no module is ever asked for more than its own effective limit.
A series string carries one current, so its limit is its weakest module's. Parallel strings share the bank
current by their resistance, so the bank limit is min over strings of (string limit / string share): the string
that takes the largest share relative to its limit binds. Every value carries the rule that bound it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.config import BankSection, LimitsSection
from gateway.master.model import Limit, ModuleLimits, ModuleReading
from gateway.master.tables import factor


def module_limits(
    reading: ModuleReading, bank: BankSection, limits: LimitsSection, *, reported: bool = True
) -> ModuleLimits:
    """min(reported limit, rating) x every derating factor; an unknown input derates to zero.

    `reported` says the module's DBC carries its own current limits: a missing one then counts as 0, not as
    "no limit" (for a DBC without limits, the rating alone is in force).
    """
    a = reading.address
    charge = _derated(
        reading.charge_current_limit if reported else bank.rated_charge_current,
        bank.rated_charge_current,
        a,
        (
            ("cell_voltage", factor(limits.charge_cell_voltage, reading.cell_voltage_max)),
            ("temperature", _temperature_factor(limits.charge_temperature, reading)),
            ("soc", factor(limits.charge_soc, reading.soc)),
        ),
    )
    discharge = _derated(
        reading.discharge_current_limit if reported else bank.rated_discharge_current,
        bank.rated_discharge_current,
        a,
        (
            ("cell_voltage", factor(limits.discharge_cell_voltage, reading.cell_voltage_min)),
            ("temperature", _temperature_factor(limits.discharge_temperature, reading)),
            ("soc", factor(limits.discharge_soc, reading.soc)),
        ),
    )
    # Voltages: the module's own if they are tighter, always within [cells x DVL per cell, cells x CVL per cell].
    # A reported CVL below that floor is not a voltage to charge to (0 V would read as "charge to 0 V"): the
    # module is telling us not to charge it, so its charge current is 0 and its CVL stays at the floor.
    cells = bank.cells_in_series
    cvl = Limit(cells * limits.charge_voltage_per_cell, "charge_voltage_per_cell")
    dvl = Limit(cells * limits.discharge_voltage_per_cell, "discharge_voltage_per_cell")
    reported_cvl, reported_dvl = reading.charge_voltage_limit, reading.discharge_voltage_limit
    if reported_cvl is not None and reported_cvl < cvl.value:
        cvl = Limit(max(reported_cvl, dvl.value), f"reported module {a}")
        if reported_cvl < dvl.value:
            charge = Limit(0.0, f"reported module {a} charge voltage {reported_cvl:g} V")
    if reported_dvl is not None and reported_dvl > dvl.value:
        dvl = Limit(min(reported_dvl, cvl.value), f"reported module {a}")
    return ModuleLimits(charge, discharge, cvl, dvl)


def _temperature_factor(table: tuple[tuple[float, float], ...], reading: ModuleReading) -> float:
    return min(factor(table, reading.temperature_max), factor(table, reading.temperature_min))


def _derated(reported: float | None, rating: float, address: int, factors: tuple[tuple[str, float], ...]) -> Limit:
    if reported is None:
        return Limit(0.0, f"no reported limit module {address}")
    if reported >= rating:
        value, bound = rating, f"rating module {address}"
    else:
        value, bound = max(reported, 0.0), f"reported module {address}"
    lowest = 1.0
    for rule, f in factors:
        value *= f
        if f < lowest:
            lowest, bound = f, f"{rule} module {address}"
    return Limit(value, bound)


def string_limits(modules: Sequence[ModuleLimits]) -> ModuleLimits:
    """A series string: the weakest module's currents; voltages add up (named after a module that reported
    its own voltage limit, if any did)."""
    if len(modules) == 1:
        return modules[0]
    return ModuleLimits(
        charge_current=min((m.charge_current for m in modules), key=_value),
        discharge_current=min((m.discharge_current for m in modules), key=_value),
        charge_voltage=_sum(m.charge_voltage for m in modules),
        discharge_voltage=_sum(m.discharge_voltage for m in modules),
    )


def _sum(limits: Iterable[Limit]) -> Limit:
    limits = list(limits)
    bound = next((x.bound_by for x in limits if x.bound_by.startswith("reported")), limits[0].bound_by)
    return Limit(sum(x.value for x in limits), bound)


def _value(limit: Limit) -> float:
    return limit.value


def parallel_current(limits: Sequence[Limit], shares: Sequence[float], names: Sequence[str]) -> Limit:
    """Bank current limit of parallel strings: min(limit_i / share_i), capped at the sum of the limits.

    `names` names each string for the "current_share" rule (its first module). A string whose limit is not
    reduced by any rule but whose share binds is reported as "current_share module N".
    """
    total = sum(limit.value for limit in limits)
    best = Limit(total, limits[0].bound_by if len(limits) == 1 else "sum of module limits")
    if len(limits) > 1 and all(limit.bound_by.startswith("rating") for limit in limits):
        best = Limit(total, "rating")
    for limit, share, name in zip(limits, shares, names, strict=True):
        if share <= 0.0:
            continue
        value = limit.value / share
        if value < best.value:
            reduced = not limit.bound_by.startswith("rating")
            best = Limit(value, limit.bound_by if reduced or len(limits) == 1 else f"current_share {name}")
    return best
