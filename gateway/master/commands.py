"""What the master tells each module (MasterCommand): may it stay connected, charge, discharge, balance."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import LimitsSection
from gateway.master.memo import Memo
from gateway.master.model import BankSnapshot, Lifecycle, Limits, MasterCommand


def commands(
    snapshot: BankSnapshot,
    per_module: Mapping[int, Limits],
    limits: LimitsSection,
    *,
    memo: Memo[MasterCommand] | None = None,
) -> tuple[MasterCommand, ...]:
    """One command per module: only an online module may connect, and it may charge (discharge) only when the bank
    may and its own limit allows; while charging near the top, the bank's lowest cell is the balancing target.
    With `memo` (the master's), a module's command is redone only when its inputs changed."""
    memo = Memo() if memo is None else memo
    vmax, vmin = snapshot.cell_voltage_max, snapshot.cell_voltage_min
    charging = snapshot.current is not None and snapshot.current > limits.rest_current
    target = 0.0
    if snapshot.valid and charging and vmax and vmin and vmax.value > limits.balance_target_threshold:
        target = vmin.value
    flags, fan_duty = snapshot.flags, snapshot.fan_duty
    out = []
    for a, view in snapshot.modules.items():
        own = per_module.get(a)
        inputs = (
            view.lifecycle,
            view.isolate_reason,
            own,
            flags.charge_enable,
            flags.discharge_enable,
            target,
            fan_duty,
        )
        command = memo.get(a, inputs)
        if command is None:
            permit = view.lifecycle is Lifecycle.ONLINE
            command = MasterCommand(
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
                fan_duty=fan_duty,
            )
            memo.put(a, inputs, command)
        out.append(command)
    return tuple(out)
