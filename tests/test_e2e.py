"""Simulator -> gateway -> inverter, end to end, in one process on python-can `virtual` buses.

The real parts only: the `Gateway` of gateway.service built from a config, the module simulator sending on its own
bus instance of the module channel (`run_on_bus`), and taps (bus instances of their own) that record what crosses
each bus with the bus's timestamps. Frames to the inverter are decoded with cantools from dbc/inverters/pylontech.dbc.

Time: the inverter period is shortened to 0.5 s (the default is 1 s) and the cadence is watched over six sets
(3 s of real time), so that a set that goes out up to a quarter of a second late on a busy machine still passes
"no gap over 1.5 periods". `bank.module_timeout` is 1.5 s so that start-up and the silence check take seconds; the
slew rate is raised so that the limits settle at once and can be compared with the snapshot exactly. In the main
test the master ticks every 0.5 s (TICK), longer than the 100 ms the fast path has: only the master's wake-up on
an urgent frame can meet that bound, not the next regular tick.
Nothing is timed with sleeps: every step waits for a condition, with a timeout; the only durations asserted are
the behaviour itself, measured on bus timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Sequence

import can
import cantools
import pytest
from cantools.database.can import Database

from gateway.can import dbc
from gateway.can.bus import open_bus
from gateway.master.model import Lifecycle, ModuleState
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault

from helpers.buses import (
    MODULE_TIMEOUT,
    PERIOD,
    PROFILE,
    ROOT,
    decode,
    is_failsafe_limits,
    is_id,
    make_config,
    online,
    running,
    sets,
    simulating,
    tapped,
    until,
)

MODULE: Database = cantools.database.load_file(ROOT / "dbc" / "module.dbc", strict=True)  # type: ignore[assignment]
TICK = 0.5
COMMAND_BASE = 0x380
CELL_SUMMARY = MODULE.get_message_by_name("CellSummary")
MASTER_COMMAND = MODULE.get_message_by_name("MasterCommand")


# -- the tests ----------------------------------------------------------------------------------------------------


async def test_stack_to_inverter_cadence_values_fast_path_and_fail_safe(channel: str) -> None:
    cfg = make_config(channel, bank={"tick": TICK})
    gateway = Gateway(cfg)
    sim = Simulator(modules=4, current=10.0, seed=7)
    module_channel, inverter_channel = cfg.can.modules[0].channel, cfg.can.inverter.channel
    async with (
        tapped(module_channel) as modules,
        tapped(inverter_channel) as inverter,
        running(gateway),
        simulating(module_channel, sim) as simulator,
    ):
        # Start-up: the bank forms once every module has reported for module_timeout, limits settle at once.
        await until(lambda: online(gateway) == (1, 2, 3, 4), within=10.0, what="four modules online")
        position, _ = await inverter.wait(
            lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] > 0, within=5.0
        )

        # Cadence: every frame of the profile once per period, in order, no gap over 1.5 periods. Six sets are
        # due in [t0, t0 + 5.5 periods); each may be up to half a period late without failing.
        position, first = await inverter.wait(is_id(0x351), after=position + 1)
        fast_before = gateway.publisher.fast_sends if gateway.publisher else 0
        window_end = first.timestamp + 5.5 * PERIOD
        await inverter.wait(lambda m: m.timestamp >= window_end, after=position, within=10.0)
        fast = (gateway.publisher.fast_sends if gateway.publisher else 0) - fast_before
        window = [m for m in inverter.since(position) if m.timestamp < window_end]
        for can_id in PROFILE:
            stamps = [m.timestamp for m in window if m.arbitration_id == can_id]
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            assert max(gaps) <= 1.5 * PERIOD, (hex(can_id), gaps)
            assert 6 <= len(stamps) <= 6 + fast, (hex(can_id), len(stamps), fast)
        assert len(sets(window)) * len(PROFILE) == len(window), "every set is whole and in the profile's order"

        # Values: the next whole set against the snapshot it was made from (the latest, give or take a tick).
        position, _ = await inverter.wait(is_id(0x351), after=inverter.mark())
        await inverter.wait(is_id(0x35E), after=position)
        snapshot = gateway.hub.latest
        received = sets(inverter.since(position))[0]
        limits = decode(received[0x351])
        lim = snapshot.limits
        assert snapshot.valid
        assert lim.charge_current.value - 0.1 < limits["ChargeCurrentLimit"] <= lim.charge_current.value
        assert lim.discharge_current.value - 0.1 < limits["DischargeCurrentLimit"] <= lim.discharge_current.value
        assert lim.charge_voltage.value - 0.1 < limits["ChargeVoltageLimit"] <= lim.charge_voltage.value
        assert lim.discharge_voltage.value <= limits["DischargeVoltageLimit"] < lim.discharge_voltage.value + 0.1
        assert limits["ChargeCurrentLimit"] > 100  # four 100 A modules in parallel, none derated
        soc = decode(received[0x355])
        assert soc["StateOfCharge"] == pytest.approx(snapshot.soc, abs=0.6)
        assert soc["StateOfHealth"] == pytest.approx(snapshot.soh, abs=0.6)
        status = decode(received[0x356])
        assert snapshot.voltage is not None and snapshot.temperature_max is not None
        assert status["BatteryVoltage"] == pytest.approx(snapshot.voltage, abs=0.05)
        assert status["BatteryCurrent"] == pytest.approx(snapshot.current, abs=0.15)
        assert status["BatteryTemperature"] == pytest.approx(snapshot.temperature_max.value, abs=0.15)
        # ... and the snapshot is the simulated stack's: four modules in parallel carrying 10 A.
        truth = [sim.module(a) for a in (1, 2, 3, 4)]
        assert snapshot.current == pytest.approx(10.0, abs=0.5)
        assert snapshot.voltage == pytest.approx(sum(m.voltage for m in truth) / 4, abs=0.1)
        requests = decode(received[0x35C])
        assert (requests["ChargeEnable"], requests["DischargeEnable"]) == (1, 1)

        # Fast path: a cell over-voltage on the module bus reaches the inverter as CCL = 0 within 100 ms. The tick
        # is longer than that (TICK), so only the master's wake-up on an urgent frame can make it. The frame goes
        # out right after a tick and right after the simulator's own CellSummary of module 1 (which would
        # overwrite it 0.2 s later), so that without the wake-up the test fails every time, not by chance.
        mark = modules.mark()
        async with asyncio.timeout(10.0):
            while True:
                mark, _ = await modules.wait(is_id(CELL_SUMMARY.frame_id + 1), after=mark)
                mark += 1
                if gateway.clock() - gateway.hub.latest.t < 0.1:
                    break
        inverter_mark = inverter.mark()
        last = next(m for m in reversed(inverter.since()) if m.arbitration_id == 0x351)
        assert decode(last)["ChargeCurrentLimit"] > 0
        high = CELL_SUMMARY.encode(
            {
                "CellVoltageMax": 3.60,
                "CellVoltageMin": 3.30,
                "CellVoltageMaxIndex": 3,
                "CellVoltageMinIndex": 9,
                "BalancingCellCount": 1,
                "CellCount": 16,
            }
        )
        injected = can.Message(arbitration_id=CELL_SUMMARY.frame_id + 1, data=high, is_extended_id=False)
        with open_bus("virtual", module_channel, 500_000) as injector:
            injector.send(injected)
        _, seen = await modules.wait(lambda m: m.arbitration_id == injected.arbitration_id and m.data == high)
        _, frame = await inverter.wait(
            lambda m: m.arbitration_id == 0x351 and decode(m)["ChargeCurrentLimit"] == 0,
            after=inverter_mark,
            within=5.0,
        )
        assert 0 <= frame.timestamp - seen.timestamp <= 0.100

        # All modules silent: within module_timeout (+ a tick and a fast send) the inverter gets the fail-safe set.
        simulator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulator
        silent_from = max(m.timestamp for m in modules.since() if not COMMAND_BASE <= m.arbitration_id < 0x3A0)
        position, failsafe = await inverter.wait(is_failsafe_limits, after=inverter_mark, within=10.0)
        assert failsafe.timestamp - silent_from <= MODULE_TIMEOUT + 1.0
        await inverter.wait(is_id(0x35E), after=position)
        whole = sets(inverter.since(position))[0]
        assert decode(whole[0x359])["ProtectionInternalError"] == 1
        requests = decode(whole[0x35C])
        assert (requests["ChargeEnable"], requests["DischargeEnable"]) == (0, 0)
        assert gateway.hub.latest.reason == "no module online"


def permits(frames: Sequence[can.Message]) -> dict[int, int]:
    """Module address -> ConnectPermit of the last MasterCommand to it in `frames`."""
    out = {}
    for m in frames:
        if COMMAND_BASE < m.arbitration_id < COMMAND_BASE + 0x20:
            out[m.arbitration_id - COMMAND_BASE] = int(dbc.decode(MASTER_COMMAND, bytes(m.data))["ConnectPermit"])
    return out


async def test_master_commands_admit_matching_modules_and_hold_back_a_mismatched_one(channel: str) -> None:
    cfg = make_config(channel)
    gateway = Gateway(cfg)
    sim = Simulator(modules=3, current=20.0, seed=3, faults=[parse_fault("soc_offset:3=20")])
    module_channel = cfg.can.modules[0].channel
    async with tapped(module_channel) as modules, running(gateway), simulating(module_channel, sim):
        await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules 1 and 2 online")
        snapshot = gateway.hub.latest
        assert snapshot.addresses(Lifecycle.PENDING) == (3,)
        why = re.fullmatch(r"SOC (\d+\.\d) % vs bank (\d+\.\d) % \(window 5 %\)", snapshot.modules[3].reason)
        assert why is not None, snapshot.modules[3].reason
        assert float(why[1]) - float(why[2]) > 15

        # A whole round of MasterCommands from now on: permit for the online modules, none for the pending one.
        mark = modules.mark()
        await modules.wait(lambda m: COMMAND_BASE < m.arbitration_id < COMMAND_BASE + 0x20, after=mark)
        round_start = modules.mark()
        await until(lambda: set(permits(modules.since(round_start))) == {1, 2, 3}, within=3.0, what="a whole round")
        assert permits(modules.since(round_start)) == {1: 1, 2: 1, 3: 0}

        # The simulator honours it: module 3's contactor is open, it carries nothing and says so on the bus;
        # the bank current flows through modules 1 and 2.
        assert not sim.module(3).connected and sim.module(1).connected and sim.module(2).connected
        assert sim.module(3).current == 0.0
        await until(lambda: gateway.hub.latest.modules[3].reading.current == 0.0, within=3.0, what="module 3 at 0 A")
        reported = gateway.hub.latest.modules
        assert reported[3].reading.module_state == ModuleState.ISOLATED
        first, second = reported[1].reading.current, reported[2].reading.current
        assert first is not None and second is not None
        assert first + second == pytest.approx(20.0, abs=0.3)
        assert gateway.hub.latest.current == pytest.approx(20.0, abs=0.3)
