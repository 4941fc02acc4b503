"""The master's memory across a restart: `Master.memory` exports it, `Master.restore` takes it back before the first
step. Each rule keeps what it must (flags: the last full charge; admission: isolations with their reason and the
hold-off served; limits.Shares: the learned current shares), and a restart no longer resets or forgets it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.master.admission import Admission
from gateway.master.flags import Requests
from gateway.master.limits import Shares
from gateway.master.master import Master
from gateway.master.model import IsolateReason, Isolation, Lifecycle, Memory

from helpers.factories import bank, configured, reading, run

DAY = 86_400.0
CFG = configured(bank={"strings": [[1], [2]], "isolation_holdoff": 300.0}, limits={"full_charge_interval": 1.0})


def test_the_full_charge_interval_runs_on_across_a_restart() -> None:
    """Started at 0 and never full: after a restart at 23 h the request comes at 24 h, not 24 h after the
    restart; a master that forgot would wait another day."""
    before = Master(CFG)
    run(before, 0.0, 10.0, bank(1, 2))
    memory = before.memory(10.0)
    assert memory.last_full_charge == 0.0
    restarted, forgetful = Master(CFG), Master(CFG)
    restarted.restore(memory, 23 * 3600.0)
    assert not run(restarted, 23 * 3600.0, DAY - 60.0, bank(1, 2), step=60.0).snapshot.flags.full_charge
    assert run(restarted, DAY, DAY + 10.0, bank(1, 2)).snapshot.flags.full_charge
    assert not run(forgetful, 23 * 3600.0, DAY + 10.0, bank(1, 2), step=60.0).snapshot.flags.full_charge


def test_a_last_full_charge_in_the_future_counts_from_now() -> None:
    """A clock that went back (no RTC, NTP not yet synced) must not put the last full charge ahead of now."""
    requests = Requests()
    requests.restore(5_000.0, now=1_000.0)
    assert requests.export() == 1_000.0
    requests.restore(None, now=2_000.0)  # nothing stored: keeps what it has
    assert requests.export() == 1_000.0


def test_an_isolated_module_stays_isolated_for_the_rest_of_its_hold_off() -> None:
    """Module 2 reports a protection at 5 s and is isolated; 60 s later the gateway restarts (after an hour of
    downtime, by the clock). The module is healthy again, yet it stays isolated with its reason until 240 s of
    hold-off are served, then it rejoins through admission; a master that forgot admits it at once."""
    before = Master(CFG)
    run(before, 0.0, 5.0, bank(1, 2))
    isolated = run(before, 5.1, 5.1, lambda t: {1: reading(1, t), 2: reading(2, t, protections=1)})
    assert isolated.snapshot.modules[2].lifecycle is Lifecycle.ISOLATED
    run(before, 5.2, 65.1, bank(1, 2))
    memory = before.memory(65.1)
    [isolation] = memory.isolations
    assert isolation == Isolation(
        module=2, reason="protection: CellOverVoltage", isolate_reason=IsolateReason.FAULT, held=isolation.held
    )
    assert isolation.held == pytest.approx(60.0)
    start = 3_665.0
    restarted, forgetful = Master(CFG), Master(CFG)
    restarted.restore(memory, start)
    view = run(restarted, start, start + 10.0, bank(1, 2)).snapshot.modules[2]
    assert view.lifecycle is Lifecycle.ISOLATED
    assert view.reason == "protection: CellOverVoltage (re-admission in 230 s)"
    assert view.isolate_reason is IsolateReason.FAULT
    assert run(restarted, start + 10.1, start + 239.9, bank(1, 2)).snapshot.modules[2].lifecycle is Lifecycle.ISOLATED
    assert run(restarted, start + 240.0, start + 241.0, bank(1, 2)).snapshot.modules[2].lifecycle is Lifecycle.ONLINE
    assert run(forgetful, start, start + 10.0, bank(1, 2)).snapshot.modules[2].lifecycle is Lifecycle.ONLINE


def test_isolations_export_what_they_served_and_restore_counts_from_now() -> None:
    admission = Admission(frozenset({"status"}))
    admission.restore(
        (Isolation(module=4, reason="first to reach the cutoff", isolate_reason=IsolateReason.FAULT, held=100.0),),
        now=50.0,
    )
    assert admission.export(80.0) == (
        Isolation(module=4, reason="first to reach the cutoff", isolate_reason=IsolateReason.FAULT, held=130.0),
    )
    assert admission.readmit(4)
    assert admission.export(90.0) == ()


def test_learned_shares_apply_when_their_string_rejoins() -> None:
    """Module 1 took 75 % of the current before the restart. After it, both strings are admitted again at 3 s:
    module 1 starts from its learned 0.75 (and decays towards the measured half), not from the capacity's 0.5,
    so the discharge limit starts at 100 / 0.75 A, not at 200 A."""
    before = Master(CFG)
    unequal = lambda t: {1: reading(1, t, current=-30.0), 2: reading(2, t, current=-10.0)}  # noqa: E731
    run(before, 0.0, 10.0, unequal)
    memory = before.memory(10.0)
    assert dict(memory.shares) == {(1,): pytest.approx(0.75), (2,): pytest.approx(0.25)}
    restarted, forgetful = Master(CFG), Master(CFG)
    restarted.restore(memory, 1_000.0)
    rejoined = run(restarted, 1_000.0, 1_003.0, bank(1, 2)).snapshot
    assert rejoined.modules[1].share == pytest.approx(0.75, abs=0.01)
    assert run(forgetful, 1_000.0, 1_003.0, bank(1, 2)).snapshot.modules[1].share == 0.5


def test_shares_export_learned_ones_not_used_yet_and_clamp_what_they_restore() -> None:
    shares = Shares()
    shares.restore([((1,), 1.7), ((2, 3), -0.2)])
    assert shares.export() == (((1,), 1.0), ((2, 3), 0.0))


def test_a_master_restores_what_it_exported() -> None:
    before = Master(CFG)
    run(before, 0.0, 5.0, bank(1, 2))
    run(before, 5.1, 5.1, lambda t: {1: reading(1, t, current=-20.0), 2: reading(2, t, protections=1)})
    memory = before.memory(20.0)
    after = Master(CFG)
    after.restore(memory, 100.0)
    again = after.memory(100.0)
    assert again.isolations[0].held == pytest.approx(memory.isolations[0].held)
    assert replace(again, isolations=memory.isolations) == memory
    assert [(i.module, i.reason, i.isolate_reason) for i in again.isolations] == [
        (2, "protection: CellOverVoltage", IsolateReason.FAULT)
    ]
    assert Master(CFG).memory(0.0) == Memory()
