"""MasterCommand per module, driven directly from a snapshot: only an online module may connect; it may charge
(discharge) when the bank may and its own limit allows; while the bank charges near the top (highest cell over
3.40 V, bank current over 2 A) online modules get the bank's lowest cell as balancing target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from gateway.config import LimitsSection
from gateway.master.commands import commands
from gateway.master.model import (
    BankSnapshot,
    Extreme,
    Flags,
    IsolateReason,
    Lifecycle,
    Limit,
    Limits,
    MasterCommand,
    ModuleView,
    empty_snapshot,
)

from helpers.factories import configured, reading

LIMITS = configured().limits
BOTH = Flags(charge_enable=True, discharge_enable=True)
STATES = {
    Lifecycle.ONLINE: IsolateReason.NONE,
    Lifecycle.PENDING: IsolateReason.NOT_ADMITTED,
    Lifecycle.ISOLATED: IsolateReason.FAULT,
    Lifecycle.OFFLINE: IsolateReason.COMMUNICATION_LOST,
    Lifecycle.REJECTED: IsolateReason.MISMATCH,
}


def view(address: int, lifecycle: Lifecycle = Lifecycle.ONLINE) -> ModuleView:
    return ModuleView(
        reading=reading(address, 10.0),
        lifecycle=lifecycle,
        reason="",
        position=address,
        string=None,
        limits=None,
        share=None,
        isolate_reason=STATES[lifecycle],
    )


def snapshot(
    views: Sequence[ModuleView],
    *,
    valid: bool = True,
    current: float | None = 20.0,
    vmax: float = 3.42,
    vmin: float | None = 3.36,
    flags: Flags = BOTH,
    fan_duty: int = 50,
) -> BankSnapshot:
    """A bank charging at 20 A near the top: highest cell 3.42 V (module 1 cell 2), lowest 3.36 V (module 2 cell 5)."""
    return replace(
        empty_snapshot(10.0),
        valid=valid,
        reason="" if valid else "1 modules online, min_online is 2",
        current=current,
        cell_voltage_max=Extreme(vmax, 1, 2),
        cell_voltage_min=None if vmin is None else Extreme(vmin, 2, 5),
        flags=flags,
        fan_duty=fan_duty,
        modules=MappingProxyType({v.reading.address: v for v in views}),
    )


def own(charge: float = 100.0, discharge: float = 100.0) -> Limits:
    return Limits(
        Limit(charge, "test"), Limit(discharge, "test"), Limit(55.2, "charge_voltage_per_cell"), Limit(48.0, "test")
    )


def by_address(
    s: BankSnapshot, per_module: Mapping[int, Limits], limits: LimitsSection = LIMITS
) -> dict[int, MasterCommand]:
    return {c.address: c for c in commands(s, per_module, limits)}


def test_an_online_module_may_connect_charge_discharge_and_balance() -> None:
    s = snapshot([view(1)], current=0.0)
    assert commands(s, {1: own()}, LIMITS) == (
        MasterCommand(
            address=1,
            connect_permit=True,
            charge_allowed=True,
            discharge_allowed=True,
            balancing_allowed=True,
            isolate_reason=IsolateReason.NONE,
            balance_target_voltage=0.0,
            fan_duty=50,
        ),
    )


def test_a_module_charges_only_when_the_bank_and_its_own_limit_allow() -> None:
    views = [view(1), view(2), view(3)]
    per_module = {1: own(charge=0.0), 2: own(discharge=0.0), 3: own()}
    result = by_address(snapshot(views), per_module)
    assert (result[1].charge_allowed, result[1].discharge_allowed) == (False, True)
    assert (result[2].charge_allowed, result[2].discharge_allowed) == (True, False)
    assert (result[3].charge_allowed, result[3].discharge_allowed) == (True, True)
    result = by_address(snapshot(views, flags=Flags(discharge_enable=True)), per_module)
    assert [c.charge_allowed for c in result.values()] == [False, False, False]
    result = by_address(snapshot(views, flags=Flags(charge_enable=True)), per_module)
    assert [c.discharge_allowed for c in result.values()] == [False, False, False]
    # an online module without limits of its own this tick: neither
    result = by_address(snapshot([view(4)]), {})
    assert (result[4].connect_permit, result[4].charge_allowed, result[4].discharge_allowed) == (True, False, False)


@pytest.mark.parametrize(
    ("lifecycle", "balancing"),
    [
        (Lifecycle.PENDING, True),  # may balance while it waits to match the bank
        (Lifecycle.ISOLATED, False),
        (Lifecycle.OFFLINE, False),
        (Lifecycle.REJECTED, False),
    ],
)
def test_a_module_that_is_not_online_may_not_connect(lifecycle: Lifecycle, balancing: bool) -> None:
    result = by_address(snapshot([view(1), view(2, lifecycle)]), {1: own(), 2: own()})
    assert result[2] == MasterCommand(
        address=2,
        connect_permit=False,
        charge_allowed=False,
        discharge_allowed=False,
        balancing_allowed=balancing,
        isolate_reason=STATES[lifecycle],
        balance_target_voltage=0.0,
        fan_duty=50,
    )
    assert result[1].connect_permit


def test_while_charging_near_the_top_the_target_is_the_banks_lowest_cell() -> None:
    result = by_address(snapshot([view(1), view(2), view(3, Lifecycle.PENDING)]), {1: own(), 2: own()})
    assert result[1].balance_target_voltage == 3.36
    assert result[2].balance_target_voltage == 3.36
    assert result[3].balance_target_voltage == 0.0  # not connected: no target


@pytest.mark.parametrize(
    "changes",
    [
        {"vmax": 3.40},  # not above balance_target_threshold
        {"current": 2.0},  # at rest_current: not charging
        {"current": -20.0},  # discharging
        {"current": None},
        {"vmin": None},
        {"valid": False, "flags": Flags()},
    ],
)
def test_no_balancing_target_unless_charging_near_the_top(changes: dict[str, Any]) -> None:
    result = by_address(snapshot([view(1)], **changes), {1: own()})
    assert result[1].balance_target_voltage == 0.0


def test_the_thresholds_are_configurable() -> None:
    limits = configured(limits={"balance_target_threshold": 3.35}).limits
    result = by_address(snapshot([view(1)], vmax=3.38, vmin=3.33), {1: own()}, limits)
    assert result[1].balance_target_voltage == 3.33
    limits = configured(limits={"rest_current": 25.0}).limits
    assert by_address(snapshot([view(1)]), {1: own()}, limits)[1].balance_target_voltage == 0.0


def test_an_invalid_bank_allows_no_current_but_leaves_connect_permit() -> None:
    """Contactors are not opened under load because the master cannot vouch for the bank; the inverter stops."""
    result = by_address(snapshot([view(1)], valid=False, flags=Flags()), {1: own()})
    assert (result[1].connect_permit, result[1].charge_allowed, result[1].discharge_allowed) == (True, False, False)


def test_one_command_per_module_in_the_snapshots_order_each_with_the_fan_duty() -> None:
    s = snapshot([view(3), view(1), view(2, Lifecycle.OFFLINE)], fan_duty=73)
    result = commands(s, {3: own(), 1: own()}, LIMITS)
    assert [c.address for c in result] == [3, 1, 2]
    assert {c.fan_duty for c in result} == {73}
