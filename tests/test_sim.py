"""The module simulator, checked through the gateway's own codec and ingest store as a master would see it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.can import dbc
from gateway.can.codec import ModuleCodec
from gateway.can.ingest import ModuleStore
from gateway.master.model import ALARM_BITS, IsolateReason, MasterCommand, ModuleState
from gateway.sim import Fault, Simulator, parse_fault
from gateway.sim.bus import run_on_bus, write_log

T = TypeVar("T")
CODEC = ModuleCodec(dbc.load(None, "module.dbc", "can.modules.dbc"))
PERIODS = {
    "ModuleStatus": 0.1,
    "ModuleLimits": 1.0,
    "CellSummary": 0.2,
    "Temperatures": 1.0,
    "CellVoltages": 1.0,
    "CellTemperatures": 1.0,
    "Alarms": 1.0,
    "ModuleInfo": 10.0,
    "ModuleCapacity": 1.0,
}


def decoded(messages: list[can.Message]) -> list[tuple[float, str, int, Mapping[str, float]]]:
    """(time, message name, module address, values) of each frame, decoded with the gateway's codec."""
    out = []
    for msg in messages:
        plan, address = CODEC.route(msg.arbitration_id)
        assert plan is not None and address is not None
        out.append((msg.timestamp, plan.message.name, address, dbc.decode(plan.message, msg.data)))
    return out


def known(value: T | None) -> T:
    """A value the test expects the reading to carry."""
    assert value is not None
    return value


def values(messages: list[can.Message], name: str, address: int, signal: str) -> list[tuple[float, float]]:
    """(time, value) of one signal of one module."""
    return [(t, v[signal]) for t, n, a, v in decoded(messages) if n == name and a == address]


def store_of(messages: list[can.Message]) -> ModuleStore:
    store = ModuleStore(CODEC)
    for msg in messages:
        store.on_message(msg, msg.timestamp)
    return store


def command(address: int, *, permit: bool) -> can.Message:
    """A MasterCommand as the gateway encodes it."""
    reason = IsolateReason.NONE if permit else IsolateReason.MANUAL
    cmd = MasterCommand(address, permit, permit, permit, permit, reason, 0.0, 0)
    can_id, data = CODEC.encode_command(cmd, 0)
    return can.Message(arbitration_id=can_id, data=data, is_extended_id=False)


def test_every_frame_decodes_and_every_module_sends_every_message() -> None:
    messages = list(Simulator(modules=4, current=20.0, seed=1).advance(until=12.0))
    store = store_of(messages)
    assert not store.rejected
    assert store.decoded == len(messages)
    assert all(m.dlc == 8 and len(m.data) == 8 and not m.is_extended_id for m in messages)
    seen = {(n, a) for _, n, a, _ in decoded(messages)}
    assert seen == {(n, a) for n in PERIODS for a in range(1, 5)}
    reading = store.readings()[2]
    assert reading.cell_count == reading.cells_in_series == 16
    assert len(reading.cell_voltages) == 16
    assert None not in reading.cell_voltages
    assert len(reading.cell_temperatures) == 4
    assert None not in reading.cell_temperatures
    assert reading.firmware == (1, 4, 2)
    assert (reading.charge_voltage_limit, reading.discharge_voltage_limit) == pytest.approx((55.2, 48.0))


def test_each_message_comes_at_its_period_with_the_modules_spread_over_time() -> None:
    messages = list(Simulator(modules=3, seed=2).advance(until=25.0))
    times: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for msg, (t, name, address, _) in zip(messages, decoded(messages), strict=True):
        times[name, address, msg.data[0] if name in {"CellVoltages", "CellTemperatures"} else 0].append(t)
    for (name, _, _), stamps in times.items():
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert gaps == pytest.approx([PERIODS[name]] * len(gaps)), name
    assert sorted(g for n, a, g in times if n == "CellVoltages" and a == 1) == list(range(6))
    assert [g for n, a, g in times if n == "CellTemperatures" and a == 1] == [0]
    assert [m.timestamp for m in messages] == sorted(m.timestamp for m in messages)
    assert all(0.0 < m.timestamp <= 25.0 for m in messages)
    assert len({times["ModuleStatus", a, 0][0] for a in (1, 2, 3)}) == 3


def test_traffic_depends_on_the_seed_only_not_on_how_it_is_consumed() -> None:
    whole = Simulator(modules=3, current=-40.0, seed=5)
    chunked = Simulator(modules=3, current=-40.0, seed=5)
    expected = [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in whole.advance(until=8.0)]
    got = [
        (m.timestamp, m.arbitration_id, bytes(m.data))
        for k in range(1, 23)
        for m in chunked.advance(until=min(8.0, k * 0.37))
    ]
    assert got == expected
    other = Simulator(modules=3, current=-40.0, seed=6)
    assert [bytes(m.data) for m in other.advance(until=8.0)] != [data for _, _, data in expected]


def test_alive_counter_increments_mod_16() -> None:
    alive = [v for _, v in values(list(Simulator(modules=2).advance(until=5.0)), "ModuleStatus", 2, "AliveCounter")]
    assert len(alive) == 50
    assert all(b == (a + 1) % 16 for a, b in itertools.pairwise(alive))


def test_parallel_modules_share_current_by_resistance() -> None:
    sim = Simulator(modules=4, current=120.0, seed=3)
    messages = list(sim.advance(until=2.0))
    currents = {a: values(messages, "ModuleStatus", a, "ModuleCurrent")[-1][1] for a in range(1, 5)}
    assert sum(currents.values()) == pytest.approx(120.0, abs=0.3)
    assert len(set(currents.values())) > 1
    modules = [sim.module(a) for a in range(1, 5)]
    assert [m.voltage for m in modules] == pytest.approx([modules[0].voltage] * 4, abs=1e-9)
    highest = max(modules, key=lambda m: m.resistance)
    assert min(currents, key=currents.__getitem__) == highest.address
    states = {v for _, v in values(messages, "ModuleStatus", 1, "ModuleState")}
    assert states == {ModuleState.CHARGING}


def test_a_series_string_carries_one_current() -> None:
    sim = Simulator(modules=4, current=-35.0, strings=[[1, 2, 3, 4]])
    messages = list(sim.advance(until=1.0))
    for address in range(1, 5):
        assert values(messages, "ModuleStatus", address, "ModuleCurrent")[-1][1] == pytest.approx(-35.0)
        assert values(messages, "ModuleStatus", address, "ModuleState")[-1][1] == ModuleState.DISCHARGING


@pytest.mark.parametrize(("current", "rises"), [(100.0, True), (-100.0, False)])
def test_soc_follows_the_current(current: float, rises: bool) -> None:
    messages = list(Simulator(modules=2, current=current, soc=50.0).advance(until=60.0))
    soc = [v for _, v in values(messages, "ModuleStatus", 1, "SOC")]
    assert (soc[-1] > soc[0] + 0.5) is rises
    assert (soc[-1] < soc[0] - 0.5) is not rises


def test_cells_differ_by_a_few_millivolts_and_the_curve_is_steep_near_full() -> None:
    mid = store_of(list(Simulator(modules=1, soc=50.0).advance(until=1.0))).readings()[1]
    vmax, vmin = known(mid.cell_voltage_max), known(mid.cell_voltage_min)
    assert 0.0005 <= vmax - vmin <= 0.01
    assert 3.28 <= vmin <= vmax <= 3.32
    assert mid.balancing_cells == 0
    full = store_of(list(Simulator(modules=1, soc=99.5).advance(until=1.0))).readings()[1]
    assert known(full.cell_voltage_max) > 3.45
    assert known(full.balancing_cells) >= 1
    assert full.cell_balancing[known(full.cell_voltage_max_index) - 1]
    balancing = [v for v, b in zip(full.cell_voltages, full.cell_balancing, strict=True) if b]
    assert balancing == pytest.approx([full.cell_voltage_max] * known(full.balancing_cells))
    assert known(full.charge_current_limit) < 100.0
    empty = store_of(list(Simulator(modules=1, soc=1.0).advance(until=1.0))).readings()[1]
    assert known(empty.cell_voltage_min) < 3.1
    assert known(empty.discharge_current_limit) < 100.0


def test_middle_modules_run_warmer_under_load() -> None:
    store = store_of(list(Simulator(modules=5, current=300.0, seed=4, soc=20.0).advance(until=300.0)))
    hottest = {a: known(r.temperature_max) for a, r in store.readings().items()}
    assert min(hottest[2], hottest[3], hottest[4]) > max(hottest[1], hottest[5])
    assert hottest[3] - max(hottest[1], hottest[5]) >= 1.0
    assert all(t > 25.5 for t in hottest.values())


def test_drop_silences_a_module_and_it_may_come_back() -> None:
    faults = [parse_fault("drop:3@4"), parse_fault("drop:2@2=3")]
    messages = list(Simulator(modules=3, faults=faults).advance(until=10.0))
    three = [m.timestamp for m in messages if m.arbitration_id & 0x1F == 3]
    assert three
    assert max(three) < 4.0
    two = [m.timestamp for m in messages if m.arbitration_id & 0x1F == 2]
    assert not [t for t in two if 2.0 <= t < 5.0]
    assert [t for t in two if t >= 5.0]


def test_freeze_repeats_the_alive_counter_while_frames_keep_coming() -> None:
    messages = list(Simulator(modules=2, faults=[parse_fault("freeze:2@1.5")]).advance(until=4.0))
    alive = values(messages, "ModuleStatus", 2, "AliveCounter")
    assert len(alive) == 40
    assert len({v for t, v in alive if t >= 1.5}) == 1
    assert store_of(messages).readings()[2].alive_repeats >= 5


def test_overheat_ramps_the_module_temperature() -> None:
    messages = list(
        Simulator(modules=3, faults=[Fault(kind="overheat", module=2, at=5.0, value=65)]).advance(until=30.0)
    )
    hottest = values(messages, "Temperatures", 2, "TemperatureMax")
    assert all(v < 27 for t, v in hottest if t < 5.0)
    assert hottest[-1][1] > 60.0
    assert max(v for _, v in values(messages, "Temperatures", 1, "TemperatureMax")) < 27


def test_cell_high_drifts_one_cell_to_the_value() -> None:
    messages = list(Simulator(modules=2, faults=[parse_fault("cell_high:2@5=3.62")]).advance(until=16.0))
    highest = values(messages, "CellSummary", 2, "CellVoltageMax")
    assert all(v < 3.35 for t, v in highest if t < 5.0)
    assert highest[-1][1] == pytest.approx(3.62, abs=0.002)
    reading = store_of(messages).readings()[2]
    assert max(v for v in reading.cell_voltages if v is not None) == pytest.approx(3.62, abs=0.002)
    assert reading.balancing_cells == 1
    assert known(store_of(messages).readings()[1].cell_voltage_max) < 3.35


def test_soc_offset_starts_a_module_apart_and_it_gives_charge_to_the_others() -> None:
    sim = Simulator(modules=4, soc=50.0, faults=[parse_fault("soc_offset:4=20")])
    reading = store_of(list(sim.advance(until=0.25))).readings()
    assert reading[4].soc == pytest.approx(70.0, abs=1.0)
    assert reading[1].soc == pytest.approx(50.0, abs=1.0)
    assert known(reading[4].current) < -10.0
    assert sum(known(r.current) for r in reading.values()) == pytest.approx(0.0, abs=0.3)


def test_firmware_fault_reports_another_version() -> None:
    store = store_of(list(Simulator(modules=6, faults=[parse_fault("firmware:6=1.3.0")]).advance(until=1.0)))
    assert store.readings()[6].firmware == (1, 3, 0)
    assert store.readings()[5].firmware == (1, 4, 2)


@pytest.mark.parametrize(("kind", "bit"), [("protection", "CellOverVoltage"), ("warning", "CellImbalance")])
def test_alarm_bits_are_sent_at_once_when_they_appear(kind: str, bit: str) -> None:
    messages = list(Simulator(modules=2, faults=[parse_fault(f"{kind}:1@3={bit}")]).advance(until=5.0))
    signal = f"{'Prot' if kind == 'protection' else 'Warn'}{bit}"
    alarms = values(messages, "Alarms", 1, signal)
    assert 3.0 in [t for t, _ in alarms]
    assert all(v == (t >= 3.0) for t, v in alarms)
    reading = store_of(messages).readings()[1]
    mask = 1 << ALARM_BITS.index(bit)
    assert (reading.protections, reading.warnings) == ((mask, 0) if kind == "protection" else (0, mask))


def test_fault_reports_the_fault_state_and_code() -> None:
    messages = list(Simulator(modules=2, faults=[parse_fault("fault:1@3=1234")]).advance(until=5.0))
    assert (3.0, 1234) in values(messages, "Alarms", 1, "FaultCode")
    states = values(messages, "ModuleStatus", 1, "ModuleState")
    assert all((v == ModuleState.FAULT) == (t >= 3.0) for t, v in states)
    reading = store_of(messages).readings()
    assert (reading[1].fault_code, reading[2].fault_code) == (1234, 0)


def test_connect_permit_0_isolates_a_module_and_the_others_take_the_current() -> None:
    sim = Simulator(modules=3, current=60.0, seed=7)
    list(sim.advance(until=1.0))
    assert all(sim.module(a).connected for a in (1, 2, 3))
    msg = command(2, permit=False)
    assert sim.handle_command(msg.arbitration_id, msg.data)
    reading = store_of(list(sim.advance(until=2.0))).readings()
    assert reading[2].current == 0.0
    assert reading[2].module_state == ModuleState.ISOLATED
    assert known(reading[1].current) + known(reading[3].current) == pytest.approx(60.0, abs=0.2)
    everyone = command(0, permit=False)
    sim.handle_command(everyone.arbitration_id, everyone.data)
    reading = store_of(list(sim.advance(until=3.0))).readings()
    assert [reading[a].current for a in (1, 2, 3)] == [0.0, 0.0, 0.0]
    back = command(2, permit=True)
    sim.handle_command(back.arbitration_id, back.data)
    assert sim.module(2).current == pytest.approx(60.0)


def test_frames_that_are_not_a_command_for_a_simulated_module_are_ignored() -> None:
    sim = Simulator(modules=2)
    msg = command(2, permit=False)
    assert not sim.handle_command(msg.arbitration_id + 3, msg.data)
    assert not sim.handle_command(0x402, msg.data)
    assert not sim.handle_command(msg.arbitration_id, b"\x00")
    assert sim.module(2).connected


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf"])
def test_write_log_round_trips_through_the_log_reader(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"sim{suffix}"
    count = write_log(path, Simulator(modules=2, current=10.0, seed=8), 3.0)
    expected = list(Simulator(modules=2, current=10.0, seed=8).advance(until=3.0))
    with can.LogReader(path) as reader:
        read = list(reader)
    assert count == len(read) == len(expected)
    assert [(m.arbitration_id, bytes(m.data), m.is_extended_id) for m in read] == [
        (m.arbitration_id, bytes(m.data), False) for m in expected
    ]
    offset = read[0].timestamp - expected[0].timestamp
    assert [m.timestamp - offset for m in read] == pytest.approx([m.timestamp for m in expected], abs=1e-5)
    assert not store_of(read).rejected


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("drop:3@10", Fault(kind="drop", module=3, at=10.0)),
        ("drop:3@10=5", Fault(kind="drop", module=3, at=10.0, value=5.0)),
        ("freeze:2@15", Fault(kind="freeze", module=2, at=15.0)),
        ("overheat:5@20=65", Fault(kind="overheat", module=5, at=20.0, value=65.0)),
        ("cell_high:2@5=3.62", Fault(kind="cell_high", module=2, at=5.0, value=3.62)),
        ("soc_offset:4=20", Fault(kind="soc_offset", module=4, value=20.0)),
        ("firmware:6=1.3.0", Fault(kind="firmware", module=6, value="1.3.0")),
        ("protection:1@30=CellOverVoltage", Fault(kind="protection", module=1, at=30.0, value="CellOverVoltage")),
        ("warning:1@30=CellImbalance", Fault(kind="warning", module=1, at=30.0, value="CellImbalance")),
        ("fault:1@30=1234", Fault(kind="fault", module=1, at=30.0, value=1234)),
    ],
)
def test_parse_fault(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "drop",
        "drop:x",
        "melt:3",
        "drop:0",
        "drop:32",
        "drop:3@soon",
        "drop:3@-1",
        "drop:3@nan",
        "drop:3=0",
        "freeze:2=1",
        "overheat:5",
        "overheat:5=hot",
        "overheat:5=200",
        "cell_high:2=7",
        "soc_offset:4@5=20",
        "soc_offset:4=150",
        "firmware:6=1.3",
        "firmware:6=1.3.256",
        "protection:1=Nonsense",
        "warning:1",
        "fault:1=0",
        "fault:1=70000",
        "fault:1=12.5",
    ],
)
def test_parse_fault_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_fault(spec)


def test_simulator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="beyond"):
        Simulator(modules=2, faults=[parse_fault("drop:3")])
    with pytest.raises(ValueError, match="exactly once"):
        Simulator(modules=3, strings=[[1, 2], [2, 3]])
    with pytest.raises(ValueError, match="modules"):
        Simulator(modules=0)
    with pytest.raises(ValueError, match="finite"):
        Simulator(modules=1).current = float("nan")


@settings(max_examples=30, deadline=None)
@given(
    current=st.floats(-3000.0, 3000.0),
    seed=st.integers(0, 2**32),
    soc=st.floats(0.0, 100.0),
    cells=st.integers(1, 48),
    sensors=st.integers(1, 28),
    ambient=st.floats(-40.0, 125.0),
)
def test_every_value_stays_in_its_dbc_range(
    current: float, seed: int, soc: float, cells: int, sensors: int, ambient: float
) -> None:
    sim = Simulator(modules=2, current=current, seed=seed, soc=soc, cells=cells, sensors=sensors, ambient=ambient)
    store = store_of(list(sim.advance(until=12.0)))
    assert not store.rejected
    reading = store.readings()[1]
    assert len(reading.cell_voltages) == cells
    assert len(reading.cell_temperatures) == sensors


class _FastClock:
    """Real time sped up, so that pacing runs without long sleeps."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self._t0) * self._speed


async def test_run_on_bus_sends_in_time_and_obeys_master_commands(channel: str) -> None:
    sim = Simulator(modules=2, current=30.0)
    with (
        can.Bus(interface="virtual", channel=channel) as sim_bus,
        can.Bus(interface="virtual", channel=channel) as gateway,
    ):
        runner = asyncio.create_task(run_on_bus(sim_bus, sim, duration=6.0, clock=_FastClock(20.0)))
        first = await asyncio.to_thread(gateway.recv, 2.0)
        assert first is not None
        gateway.send(command(1, permit=False))
        failed = await runner
        received = [first, *iter(lambda: gateway.recv(0), None)]
    assert failed == 0
    assert sim.time == pytest.approx(6.0)
    assert not sim.module(1).connected
    assert sim.module(2).current == pytest.approx(30.0)
    assert not store_of(received).rejected
    states = [v for _, v in values(received, "ModuleStatus", 1, "ModuleState")]
    assert states[0] == ModuleState.CHARGING
    assert states[-1] == ModuleState.ISOLATED


async def test_run_on_bus_counts_send_errors_and_cancels_cleanly(channel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(msg: can.Message, timeout: float | None = None) -> None:
        raise can.CanOperationError("transmit buffer full")

    with can.Bus(interface="virtual", channel=channel) as bus:
        monkeypatch.setattr(bus, "send", refuse)
        sim = Simulator(modules=1)
        due = len(list(Simulator(modules=1).advance(until=2.0)))
        assert await run_on_bus(bus, sim, duration=2.0, clock=_FastClock(20.0)) == due
        forever = asyncio.create_task(run_on_bus(bus, sim, duration=None, clock=_FastClock(20.0)))
        await asyncio.sleep(0.05)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
    assert sim.time > 2.0
