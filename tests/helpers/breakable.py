"""A core whose master fails on demand: the real master, with a step that raises while `broken` is set."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core import Core
from gateway.master.master import Master, Tick
from gateway.master.model import InverterInfo, ModuleReading


class Breakable(Master):
    """The real master, whose step raises a ZeroDivisionError while `broken`."""

    broken = False

    def step(self, now: float, readings: Mapping[int, ModuleReading], inverter: InverterInfo | None = None) -> Tick:
        if self.broken:
            raise ZeroDivisionError("float division by zero")
        return super().step(now, readings, inverter)


def breakable(core: Core) -> Breakable:
    core.master = master = Breakable(core.config, required_groups=core.master.required_groups)
    return master
