"""The core both live and replay drive: its tick cadence, and the safety net around the master.

A master step that raises is a bug; the core must keep protecting the battery. The failures here are injected by
replacing the master's step with one that raises on demand (the defect that once did this, a share of 0, is
fixed and kept as a hypothesis @example); everything else is real: the codec, the store, the schedules.
"""

from __future__ import annotations

from typing import Any

import can
import pytest
import structlog

from gateway import config
from gateway.can.polls import BusFrame
from gateway.core import Core
from gateway.master.model import Level
from gateway.sim import Simulator

from helpers.breakable import breakable
from helpers.factories import GROUPS

CFG = config.parse({"bank": {"module_timeout": 1.0}, "limits": {"slew_rate": 1000.0}})


def run(core: Core, sim: Simulator, until: float) -> Any:
    """Feed the simulator's frames up to `until` and tick on the core's own schedule; the last tick."""
    last = None
    for msg in sim.advance(until=until):
        while core.next_tick <= msg.timestamp:
            last = core.tick(core.next_tick)
        core.feed(msg, msg.timestamp)
    while core.next_tick <= until:
        last = core.tick(core.next_tick)
    return last


def test_ticks_come_every_bank_tick_and_an_urgent_one_in_between_keeps_the_schedule() -> None:
    core = Core(CFG, now=100.0)
    assert core.next_tick == 100.0
    core.tick(100.0)
    assert core.next_tick == pytest.approx(100.1)
    core.tick(100.05)  # urgent: the schedule stays
    assert core.next_tick == pytest.approx(100.1)
    core.tick(100.1)
    assert core.next_tick == pytest.approx(100.2)
    core.tick(105.0)  # late (a busy machine): the next one is a tick from now, not a burst of missed ones
    assert core.next_tick == pytest.approx(105.1)


def test_before_the_first_tick_the_inverter_would_get_zero_currents_and_cvl_at_dvl() -> None:
    s = Core(CFG, now=0.0).latest
    assert not s.valid
    assert (s.limits.charge_current.value, s.limits.discharge_current.value) == (0.0, 0.0)
    assert s.limits.charge_voltage.value == s.limits.discharge_voltage.value == pytest.approx(48.0)


def test_a_master_step_that_raises_sends_the_fail_safe_set_and_the_core_recovers_by_itself() -> None:
    core = Core(CFG, now=0.0)
    master = breakable(core)
    sim = Simulator(modules=2, current=20.0, seed=1)
    healthy = run(core, sim, 10.0).snapshot
    assert healthy.valid and healthy.limits.charge_current.value > 0

    master.broken = True
    with structlog.testing.capture_logs() as logs:
        ticks = [run(core, sim, t) for t in (10.1, 10.2, 11.0, 12.0)]
    for tick in ticks:
        s = tick.snapshot
        assert not s.valid
        assert s.reason == "internal error: ZeroDivisionError"
        assert (s.limits.charge_current.value, s.limits.discharge_current.value) == (0.0, 0.0)
        assert s.limits.charge_voltage.value == pytest.approx(healthy.voltage, abs=0.2)  # held at the bank voltage
        assert not (s.flags.charge_enable or s.flags.discharge_enable)
        (alarm,) = [a for a in s.alarms if a.code == "internal_error"]
        assert alarm.level is Level.PROTECTION
        assert alarm.detail == "master step failed: ZeroDivisionError: float division by zero"
    assert [t.snapshot.seq for t in ticks] == sorted({t.snapshot.seq for t in ticks})  # always newer
    assert core.failures == 20
    # The modules are told not to charge or discharge; their contactors are not opened under load.
    commands = [t.frames for t in ticks if t.frames]
    assert commands
    decoded = [cmd for frames in commands for cmd in _commands(frames)]
    assert decoded and all(not c["ChargeAllowed"] and not c["DischargeAllowed"] for c in decoded)
    assert all(c["ConnectPermit"] for c in decoded)
    failed = [e for e in logs if e["event"] == "master step failed"]
    assert len(failed) == 1  # once per burst, with the traceback
    assert failed[0]["log_level"] == "error"
    assert isinstance(failed[0]["exc_info"], ZeroDivisionError)

    master.broken = False
    with structlog.testing.capture_logs() as logs:
        s = run(core, sim, 12.1).snapshot
    assert s.valid
    assert "internal_error" not in {a.code for a in s.alarms}
    assert s.seq > ticks[-1].snapshot.seq
    assert [e["event"] for e in logs if "succeed" in e["event"]] == ["master steps succeed again"]


def _commands(frames: tuple[BusFrame, ...]) -> list[dict[str, Any]]:
    from gateway.can import dbc  # noqa: PLC0415

    message = dbc.load(None, "module.dbc", "can.modules.dbc").get_message_by_name("MasterCommand")
    out = []
    for frame in frames:
        values = message.decode(frame.data)
        assert isinstance(values, dict)  # MasterCommand is not a container message
        out.append(values)
    return out


def test_frames_of_the_inverter_on_a_shared_bus_go_to_the_link_not_the_store() -> None:
    shared = config.parse({"can": {"inverter": {"channel": "modules"}}})
    core = Core(shared, now=0.0)
    core.feed(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False), 1.0)
    assert core.link.info is not None and core.link.info.last_seen == 1.0
    assert core.store.counters["received"] == 0


def test_every_group_the_factories_fill_is_one_the_core_knows() -> None:
    assert set(GROUPS) >= set(Core(CFG, now=0.0).master.required_groups)
