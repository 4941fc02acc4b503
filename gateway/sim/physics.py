"""Physics-light model of LiFePO4 modules: just enough for a master BMS to see what real stacks do.

Open-circuit voltage from a table (flat mid-range, steep at both ends), coulomb counting per cell, a linear
internal resistance and one thermal node per module cooled towards ambient. Parallel strings share the bank
current so that their terminal voltages match, which is why a module with a lower resistance carries more.
Everything here is pure arithmetic on plain values; the simulator owns time and the protocol.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

OCV_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 2.90),
    (3.0, 3.05),
    (10.0, 3.20),
    (20.0, 3.25),
    (35.0, 3.285),
    (50.0, 3.30),
    (65.0, 3.315),
    (80.0, 3.33),
    (90.0, 3.34),
    (95.0, 3.36),
    (97.0, 3.38),
    (99.0, 3.45),
    (100.0, 3.55),
)
"""(SOC %, cell open-circuit voltage V) of a LiFePO4 cell; linear in between."""
_OCV_SOCS = tuple(soc for soc, _ in OCV_CURVE)

RATED_CURRENT = 100.0
"""A module's own charge and discharge limit (A), before its taper near full and empty."""
CHARGE_VOLTAGE_PER_CELL = 3.45
DISCHARGE_VOLTAGE_PER_CELL = 3.00
BALANCE_FROM = 3.40
"""A module bleeds its highest cell once that cell is above this voltage (V)."""

HEAT_CAPACITY = 600.0
"""J/K of one module's thermal node: far less than a real module's, so that minutes show what hours would."""
COOLING_OUTER = 5.0
COOLING_MIDDLE = 2.0
"""W/K to ambient at the ends and in the middle of the stack: the middle runs warmer under load."""
OVERHEAT_RATE = 2.0
"""degC/s at which an injected overheat drives a module towards its target temperature."""
POWER_STAGE_RISE = 0.05
"""degC per A by which the power stage runs above the cells."""


def ocv(soc: float) -> float:
    """Open-circuit voltage of one cell at `soc` percent (clamped to the curve's ends)."""
    i = bisect_right(_OCV_SOCS, soc)
    if i == 0:
        return OCV_CURVE[0][1]
    if i == len(OCV_CURVE):
        return OCV_CURVE[-1][1]
    (s0, v0), (s1, v1) = OCV_CURVE[i - 1], OCV_CURVE[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


def share_current(total: float, ocvs: Sequence[float], resistances: Sequence[float]) -> list[float]:
    """Currents of parallel strings that carry `total` together with one terminal voltage OCV_s + I_s * R_s.

    Closed form of the linear model: V = (total + sum(OCV_s / R_s)) / sum(1 / R_s), I_s = (V - OCV_s) / R_s.
    Strings at different OCVs circulate current even when `total` is 0, as real ones do.
    """
    if not ocvs:
        return []
    conductances = [1.0 / r for r in resistances]
    voltage = (total + sum(o * g for o, g in zip(ocvs, conductances, strict=True))) / sum(conductances)
    return [(voltage - o) * g for o, g in zip(ocvs, conductances, strict=True)]


def cooling(position: int, count: int) -> float:
    """Conductance to ambient (W/K) of the module at stack `position` (1..count): outer ones cool best."""
    if count == 1:
        return COOLING_OUTER
    edge = abs(2.0 * (position - 1) / (count - 1) - 1.0)
    return COOLING_MIDDLE + (COOLING_OUTER - COOLING_MIDDLE) * edge


def current_limits(soc: float) -> tuple[float, float]:
    """(charge, discharge) limit in A: the rated current, tapering to 20 % over the last 10 % of SOC."""
    charge = RATED_CURRENT * (1.0 - 0.08 * max(0.0, soc - 90.0))
    discharge = RATED_CURRENT * (1.0 - 0.08 * max(0.0, 10.0 - soc))
    return max(charge, 0.2 * RATED_CURRENT), max(discharge, 0.2 * RATED_CURRENT)


class ModuleModel:
    """One module's physical state: per-cell SOC and capacity, internal resistance, one thermal node."""

    __slots__ = ("capacities", "cell_resistance", "conductance", "ocv", "resistance", "socs", "temperature")

    def __init__(
        self,
        *,
        socs: Sequence[float],
        capacities: Sequence[float],
        resistance: float,
        conductance: float,
        temperature: float,
    ) -> None:
        self.socs = [min(max(s, 0.0), 100.0) for s in socs]
        self.capacities = list(capacities)
        self.resistance = resistance
        """Ohm, the whole module; each cell gets an equal share."""
        self.cell_resistance = resistance / len(self.socs)
        self.conductance = conductance
        self.temperature = temperature
        self.ocv = [ocv(s) for s in self.socs]
        """Per-cell open-circuit voltages, kept in step with `socs`."""

    @property
    def soc(self) -> float:
        return sum(self.socs) / len(self.socs)

    @property
    def full_capacity(self) -> float:
        """Ah the series string of cells can hold: its smallest cell's."""
        return min(self.capacities)

    def step(self, current: float, dt: float, ambient: float, heat_target: float | None) -> None:
        """Integrate `dt` seconds at `current` A (+ = charging); `heat_target` overrides the thermal model."""
        if current:
            charge = current * dt / 36.0  # A*s -> percent of 1 Ah
            socs = [s + charge / c for s, c in zip(self.socs, self.capacities, strict=True)]
            self.socs = [0.0 if s < 0.0 else 100.0 if s > 100.0 else s for s in socs]
            self.ocv = [ocv(s) for s in self.socs]
        if heat_target is None:
            heat = current * current * self.resistance - self.conductance * (self.temperature - ambient)
            self.temperature += heat * dt / HEAT_CAPACITY
        else:
            step = OVERHEAT_RATE * dt
            self.temperature = min(max(heat_target, self.temperature - step), self.temperature + step)

    def terminal(self, current: float) -> list[float]:
        """Cell terminal voltages at `current` A."""
        drop = current * self.cell_resistance
        return [v + drop for v in self.ocv]
