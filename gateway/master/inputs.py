"""What one tick of the master works on: a frozen value handed from rule to rule, so no rule needs eight
positional arguments and none can change what another sees."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import BankSection, LimitsSection
from gateway.master.model import InverterInfo, ModuleReading
from gateway.values import frozen


@frozen
class TickInput:
    now: float
    dt: float
    """Seconds since the last tick (0 for the first one, never negative)."""
    readings: Mapping[int, ModuleReading]
    inverter: InverterInfo | None
    bank: BankSection
    limits: LimitsSection
    starting: bool
    """Within `bank.module_timeout` of the first tick: modules are still reporting, nothing is admitted yet."""
