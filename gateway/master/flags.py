"""The requests to the inverter: charge and discharge enable, force charge, and the full charge for balancing."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.master.inputs import TickInput
from gateway.master.model import Electrical, Extreme, Flags, Limits


@dataclass(slots=True)
class Requests:
    """The flags, with what the full-charge request remembers: when the bank was last full, an operator's ask."""

    _last_full: float | None = None
    _asked: bool = False

    def export(self) -> float | None:
        """When the bank was last full (or counting began), for the history."""
        return self._last_full

    def restore(self, last_full: float | None, now: float) -> None:
        """Take back the last full charge from before a restart, so the interval runs on instead of starting over;
        never later than `now` (a clock that went back must not put it in the future)."""
        if last_full is not None:
            self._last_full = min(last_full, now)

    def ask_full_charge(self) -> None:
        """Operator action: ask the inverter for a full charge (balancing) until the bank is full."""
        self._asked = True

    def update(
        self, tick: TickInput, valid: bool, limits: Limits, total: Electrical | None, vmin: Extreme | None
    ) -> Flags:
        """Enables follow the limits (on exactly when the limit is above 0); nothing is asked of an invalid bank."""
        lim = tick.limits
        if self._last_full is None:
            self._last_full = tick.now  # the interval counts from the start: a restart is no reason to charge
        if not valid or total is None:
            return Flags()
        if total.soc >= lim.full_charge_soc:
            self._last_full, self._asked = tick.now, False
        interval = lim.full_charge_interval * 86400.0
        due = interval > 0 and tick.now - self._last_full >= interval
        low_cell = vmin is not None and vmin.value < lim.force_charge_cell_voltage
        charging = limits.charge_current.value > 0.0
        return Flags(
            charge_enable=charging,
            discharge_enable=limits.discharge_current.value > 0.0,
            force_charge=charging and (total.soc < lim.force_charge_soc or low_cell),
            full_charge=charging and (due or self._asked),
        )
