"""What the master tells each module (MasterCommand): may it stay connected, charge, discharge, balance."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import LimitsSection
from gateway.master.model import BankSnapshot, Lifecycle, Limits, MasterCommand


def commands(
    snapshot: BankSnapshot, per_module: Mapping[int, Limits], limits: LimitsSection
) -> tuple[MasterCommand, ...]:
    """One command per module: only an online module may connect, and it may charge (discharge) only when the bank
    may and its own limit allows; while charging near the top, the bank's lowest cell is the balancing target."""
    vmax, vmin = snapshot.cell_voltage_max, snapshot.cell_voltage_min
    charging = snapshot.current is not None and snapshot.current > limits.rest_current
    target = 0.0
    if snapshot.valid and charging and vmax and vmin and vmax.value > limits.balance_target_threshold:
        target = vmin.value
    flags = snapshot.flags
    out = []
    for a, view in snapshot.modules.items():
        permit = view.lifecycle is Lifecycle.ONLINE
        own = per_module.get(a)
        out.append(
            MasterCommand(
                address=a,
                connect_permit=permit,
                charge_allowed=permit and flags.charge_enable and own is not None and own.charge_current.value > 0.0,
                discharge_allowed=permit
                and flags.discharge_enable
                and own is not None
                and own.discharge_current.value > 0.0,
                balancing_allowed=view.lifecycle in (Lifecycle.ONLINE, Lifecycle.PENDING),
                isolate_reason=view.isolate_reason,
                balance_target_voltage=target if permit else 0.0,
                fan_duty=snapshot.fan_duty,
            )
        )
    return tuple(out)
