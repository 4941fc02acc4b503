"""Module profiles end to end without a bus: the addressing a config may declare, each profile's frames decoded
into readings, its decoder fuzzed, polls on schedule, and a replayed log to the bank's limits in numbers."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import cli, config
from gateway.can import dbc
from gateway.can.codec import ModuleCodec
from gateway.can.ingest import ModuleStore
from gateway.can.polls import PollSchedule
from gateway.can.profiles import PROFILES
from gateway.core import Core
from gateway.errors import ConfigError
from gateway.master.limits import module_limits
from gateway.master.model import BankSnapshot
from gateway.replay import replay
from gateway.sim import Simulator
from gateway.sim.bus import translated, write_log
from gateway.sim.profiled import Translator, bus_entries

from helpers.factories import reading

OTHERS = ("pylon-lv-battery", "pylon-hv-battery", "jk-bms-can", "daly-can")


def test_the_config_names_every_profile() -> None:
    assert set(PROFILES) == set(cli.PROFILE_NAMES)


# -- check-config: addressing a bus cannot have ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (
            [{"channel": "a"}, {"channel": "b", "profile": "pylon-lv-battery", "address": 3}],
            "can.modules[1]: module addresses 3 overlap can.modules[0]'s 1..31 (both carry 3)",
        ),
        (
            [{"channel": "a", "address_count": 4}, {"channel": "b", "address_offset": 3, "address_count": 2}],
            "can.modules[1]: module addresses 3..4 overlap can.modules[0]'s 1..4 (both carry 3..4)",
        ),
        ([{"channel": "a"}, {"channel": "a", "address": 9}], "can.modules[1]: uses the channel of can.modules[0]"),
        ({"address_stride": 0}, "can.modules.address_stride: must be within 1..256 IDs per module, got 0"),
        ({"address": 40}, "can.modules.address: must be within 1..31, got 40"),
        ({"profile": "pylon-lv-battery"}, "can.modules.address: the pylon-lv-battery profile carries one battery"),
        ({"address_width": 9}, "can.modules.address_width: must be within 1..8 bits, got 9"),
        ({"address_shift": 24, "address_width": 8}, "can.modules.address_shift: must be within 0..21"),
        (
            {"address_offset": 20, "address_count": 20},
            "can.modules.address_count: must be within 1..12 from address 20",
        ),
        (
            {"addressing": "mask", "address_stride": 2},
            "can.modules.address_stride: belongs to addressing = 'stride', this bus has 'mask'",
        ),
        ({"address": 2, "address_count": 2}, "can.modules.address_count: does not apply to addressing = 'fixed'"),
        ({"addressing": "signal"}, "can.modules.address_signal: needs the name of the payload signal"),
    ],
)
def test_check_config_refuses_colliding_and_impossible_addressing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], modules: Any, expected: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(_toml(modules))
    assert cli.main(["check-config", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"bms-gateway: {expected}" in err, err


def test_addressing_that_gives_two_messages_one_frame_id_is_refused_naming_the_key() -> None:
    """module.dbc's messages are 0x20 apart: a field of 8 bits from bit 0 maps them all onto one base ID."""
    bus = config.parse({"can": {"modules": {"address_width": 8}}}).can.modules[0]
    with pytest.raises(ConfigError) as info:
        ModuleCodec.from_config(bus)
    assert info.value.problems[0].startswith("can.modules.address_shift: ModuleStatus (0x400) and ModuleLimits")


def test_a_stride_that_runs_one_module_into_the_next_message_is_refused() -> None:
    bus = config.parse({"can": {"modules": {"address_stride": 2, "commands": False}}}).can.modules[0]
    with pytest.raises(ConfigError) as info:
        ModuleCodec.from_config(bus)
    assert info.value.problems[0] == (
        "can.modules.address_stride: frame 0x422 could be ModuleLimits of module 1 or ModuleStatus of module 17"
    )


def _toml(modules: Any) -> str:
    if isinstance(modules, dict):
        return "[can.modules]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in modules.items())
    return "".join("[[can.modules]]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in entry.items()) for entry in modules)


def _value(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)


# -- addressing routes frames --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "keys", "frame", "address"),
    [
        ("pylon-lv-battery", {"address": 7}, (0x356, False), 7),
        ("pylon-hv-battery", {}, (0x4210, True), 1),  # a lone tower: nibble 0 is module 1
        ("pylon-hv-battery", {}, (0x4213, True), 4),
        ("jk-bms-can", {}, (0x2F4, False), 1),  # DIP 0
        ("jk-bms-can", {}, (0x18F128F6, True), 3),  # DIP 2, a 29-bit frame
        ("daly-can", {}, (0x18904001, True), 1),
        ("daly-can", {"address_offset": 8}, (0x18904001, True), 9),
    ],
)
def test_each_profile_routes_a_frame_id_to_its_module(
    profile: str, keys: dict[str, Any], frame: tuple[int, bool], address: int
) -> None:
    codec = ModuleCodec.from_config(config.parse({"can": {"modules": {"profile": profile, **keys}}}).can.modules[0])
    plan, found = codec.routes[frame[0]]
    assert found == address
    assert plan.extended is frame[1]


def test_a_payload_signal_can_name_the_module(tmp_path: Path) -> None:
    path = tmp_path / "signal.dbc"
    path.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'
        "BO_ 1536 Pack: 8 BMS\n"
        ' SG_ PackV : 0|16@1+ (0.1,0) [0|1000] "V" Vector__XXX\n'
        ' SG_ StateOfCharge : 16|8@1+ (1,0) [0|100] "%" Vector__XXX\n'
        ' SG_ Battery : 56|8@1+ (1,0) [0|15] "" Vector__XXX\n'
    )
    raw = {
        "dbc": str(path),
        "address_signal": "Battery",
        "address_offset": 1,
        "commands": False,
        "signal_map": {"PackV": "ModuleVoltage", "StateOfCharge": "SOC"},
    }
    store = ModuleStore(ModuleCodec.from_config(config.parse({"can": {"modules": raw}}).can.modules[0]))
    store.feed(1536, bytes([0x10, 0x02, 55, 0, 0, 0, 0, 4]), 1.0)
    store.feed(1536, bytes([0x20, 0x02, 60, 0, 0, 0, 0, 15]), 1.0)  # battery 15 is module 16
    store.feed(1536, bytes([0x20, 0x02, 60, 0, 0, 0, 0, 16]), 1.0)  # 16 is beyond the signal's range
    readings = store.readings()
    assert sorted(readings) == [5, 16]
    assert (readings[5].voltage, readings[5].soc) == pytest.approx((52.8, 55))
    assert store.counters["out_of_range"] == 1


# -- each profile: simulated module -> frames -> readings ----------------------------------------------------------


def _profile_config(profile: str, modules: int, **bank: Any) -> config.Config:
    entries = bus_entries(profile, modules, interface="virtual", channel="modules")
    return config.parse(
        {"can": {"modules": entries}, "bank": {"module_timeout": 3.0, **bank}, "limits": {"slew_rate": 1000.0}}
    )


def _simulated_into(core: Core, sent: config.Config, read: config.Config) -> Simulator:
    """6 s of two simulated modules (20 A) in the frames of `sent`'s buses, fed to `core`, each frame to the bus of
    `read` its channel names; the simulator, for the truth."""
    sim = Simulator(modules=2, current=20.0, seed=3)
    translators = [Translator(bus, index=i) for i, bus in enumerate(sent.can.modules)]
    channels = {bus.channel: i for i, bus in enumerate(read.can.modules)}
    for msg in translated(sim, translators, 6.0):
        assert isinstance(msg.channel, str)
        core.feed(msg, msg.timestamp, channels[msg.channel])
    return sim


@pytest.mark.parametrize("profile", OTHERS)
def test_round_trip_from_the_simulator_to_readings(profile: str) -> None:
    cfg = _profile_config(profile, 2)
    core = Core(cfg, now=0.0)
    sim = _simulated_into(core, cfg, cfg)
    readings = core.store.readings()
    assert sorted(readings) == [1, 2]
    assert core.store.counters["decoded"] == core.store.counters["received"] > 0
    for a in (1, 2):
        r, truth = readings[a], sim.module(a)
        assert r.voltage == pytest.approx(truth.voltage, abs=0.11)  # 0.1 V resolution (Pylon LV: 0.01 V)
        assert r.current == pytest.approx(truth.current, abs=0.11)
        assert r.soc == pytest.approx(truth.soc, abs=1.0)
        assert r.temperature_max == pytest.approx(truth.temperature, abs=1.5)
        if profile == "pylon-lv-battery":
            assert (r.charge_permitted, r.discharge_permitted) == (1, 1)
        else:
            assert r.cell_voltage_max == pytest.approx(max(truth.cell_voltages), abs=0.002)
            assert r.cell_voltage_min == pytest.approx(min(truth.cell_voltages), abs=0.002)
        if "cell_voltages" in PROFILES[profile].provides:  # every cell, none beyond the module's own
            assert r.cell_voltages == pytest.approx(truth.cell_voltages, abs=0.002)
        if profile == "daly-can":  # JK's sensors are T1, T2, MOS, T4, T5: the simulator's four never fill them
            assert r.cell_temperatures == pytest.approx([truth.temperature] * 4, abs=1.5)


@pytest.mark.parametrize("profile", OTHERS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_frames_never_crash_a_profile_decoder_nor_raise_a_limit(profile: str, data: st.DataObject) -> None:
    """Frames with known IDs (and some random ones) and random payloads: the store never raises, keeps only
    plausible values, and no module's limit exceeds its rating."""
    cfg = _profile_config(profile, 2)
    codec = ModuleCodec.from_config(cfg.can.modules[0])
    store = ModuleStore(codec)
    ids = sorted(codec.routes)
    for _ in range(data.draw(st.integers(1, 30))):
        can_id = data.draw(st.sampled_from(ids) | st.integers(0, (1 << 29) - 1))
        payload = data.draw(st.binary(min_size=0, max_size=8))
        extended = data.draw(st.booleans())
        store.on_message(can.Message(arbitration_id=can_id, data=payload, is_extended_id=extended), 1.0)
    for r in store.readings().values():
        own = module_limits(r, cfg.bank, cfg.limits)
        assert 0.0 <= own.charge_current.value <= cfg.bank.rated_charge_current
        assert 0.0 <= own.discharge_current.value <= cfg.bank.rated_discharge_current
        assert r.soc is None or 0.0 <= r.soc <= 100.0


# -- polls ---------------------------------------------------------------------------------------------------------


def test_daly_is_polled_per_module_with_its_address_in_the_request_id() -> None:
    bus = config.parse({"can": {"modules": {"profile": "daly-can", "address_count": 2}}}).can.modules[0]
    schedule = PollSchedule(0, bus.poll_frames, bus.address_plan)
    first = schedule.due(0.0)
    assert [hex(f.can_id) for f in first] == [
        hex(0x18000040 | data_id << 16 | n << 8)
        for data_id in (0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x98, 0x50)
        for n in (1, 2)
    ]
    assert all(f.extended and f.data == bytes(8) for f in first)
    assert schedule.due(0.5) == []
    each_second = {f.can_id >> 16 & 0xFF for f in schedule.due(0.9995)}  # a tick a hair early still counts
    assert each_second == {0x90, 0x91, 0x92, 0x93, 0x95, 0x98}
    later = [f.can_id >> 16 & 0xFF for t in range(2, 11) for f in schedule.due(float(t))]
    assert later.count(0x94) == 2 and later.count(0x50) == 0  # every 10 s; every 60 s
    assert later.count(0x95) == 18 and later.count(0x96) == 4  # each module: every 1 s; every 5 s


def test_a_bus_that_reopens_is_polled_at_the_next_tick_not_a_period_later() -> None:
    """The service calls `repoll` when a module bus (re)opens: the polls due while it was closed went nowhere, and
    a Daly's 0x94 (cell and sensor counts, every 10 s) or 0x50 (capacity, every 60 s) would wait that long."""
    buses = [{"channel": "a", "address_count": 4}, {"channel": "b", "profile": "daly-can", "address_offset": 5}]
    cfg = config.parse({"can": {"modules": buses}})
    core = Core(cfg, now=0.0)

    def polled(t: float) -> set[int]:
        return {f.can_id >> 16 & 0xFF for f in core.tick(t).frames if f.bus == 1 and f.extended}

    assert {0x94, 0x50} <= polled(0.0)
    assert polled(3.0) & {0x94, 0x50} == set()
    core.repoll(0)  # another bus: nothing changes here
    assert polled(3.1) & {0x94, 0x50} == set()
    core.repoll(1)
    assert {0x90, 0x94, 0x50} <= polled(3.2)
    assert polled(4.1) & {0x94, 0x50} == set()  # and on from there: 0x94 next at 13.2
    assert 0x94 in polled(13.2)


def test_pylon_hv_is_polled_once_for_every_tower_on_the_bus() -> None:
    bus = config.parse({"can": {"modules": {"profile": "pylon-hv-battery"}}}).can.modules[0]
    frames = PollSchedule(0, bus.poll_frames, bus.address_plan).due(0.0)
    assert [(f.can_id, f.data[0], f.extended) for f in frames] == [(0x4200, 0, True), (0x4200, 2, True)]


# -- Daly: cells and sensors, three and seven a frame ---------------------------------------------------------------


def _daly_answer(data_id: int, data: bytes, module: int = 1) -> can.Message:
    return can.Message(arbitration_id=0x18004000 | data_id << 16 | module, data=data, is_extended_id=True)


def _daly_cells(volts: list[float]) -> list[can.Message]:
    """0x95: three cells a frame, frame n in byte 0; the cells of the last frame past the count are zeros."""
    mv = [round(v * 1000) for v in volts] + [0, 0]
    return [
        _daly_answer(0x95, bytes([n + 1]) + struct.pack(">HHH", *mv[3 * n : 3 * n + 3]) + b"\0")
        for n in range(-(-len(volts) // 3))
    ]


def _daly_store() -> ModuleStore:
    bus = config.parse({"can": {"modules": {"profile": "daly-can"}}}).can.modules[0]
    store = ModuleStore(ModuleCodec.from_config(bus))
    store.on_message(_daly_answer(0x90, struct.pack(">HHHH", 528, 0, 30000, 500)), 1.0)  # 52.8 V, 0 A, 50 %
    return store


DALY_STATUS = bytes([16, 4, 0, 0, 0]) + struct.pack(">H", 321) + b"\0"
"""0x94: 16 cells, 4 temperature sensors, 321 cycles."""
DALY_SENSORS = bytes([1, 60, 61, 62, 63, 0, 0, 0])
"""0x96 frame 1: sensors 1-4 at 20..23 degC, slots 5-7 empty (raw 0: -40 degC on the wire)."""


def test_daly_cell_and_sensor_frames_give_every_cell_voltage_and_temperature() -> None:
    store = _daly_store()
    store.on_message(_daly_answer(0x94, DALY_STATUS), 1.0)
    for msg in _daly_cells([3.301 + 0.001 * i for i in range(16)]):
        store.on_message(msg, 1.0)
    store.on_message(_daly_answer(0x96, DALY_SENSORS), 1.0)
    assert store.rejected.total() == 0
    r = store.readings()[1]
    assert (r.cell_count, r.sensor_count, r.cycle_count) == (16, 4, 321)
    assert len(r.cell_voltages) == 16  # frame 6's cells 17 and 18 (zeros) are not cells
    assert r.cell_voltages[6] == pytest.approx(3.307)  # cell 7: frame 3, first slot
    assert r.cell_voltages[15] == pytest.approx(3.316)
    assert r.cell_temperatures[2] == 22  # sensor 3


def test_a_daly_with_four_sensors_reports_four_and_never_its_empty_slots_at_minus_40() -> None:
    """A Daly fills the 0x96 slots past its sensor count with raw 0, -40 degC: as a sensor, that would stop charging
    (under-temperature). Only as many sensors as 0x94 counts are ever shown, and none before it has counted them."""
    store = _daly_store()
    store.on_message(_daly_answer(0x96, DALY_SENSORS), 1.0)  # before the first 0x94
    assert store.readings()[1].cell_temperatures == ()
    store.on_message(_daly_answer(0x94, DALY_STATUS), 2.0)
    r = store.readings()[1]
    assert r.cell_temperatures == (20, 21, 22, 23)
    assert -40 not in r.cell_temperatures


def test_sensors_past_the_count_never_reach_the_temperature_rules(tmp_path: Path) -> None:
    """A BMS that sends per-sensor temperatures and a sensor count but no extremes: the master's temperatures are
    derived from the sensors, and a -40 degC empty slot among them would zero the charge limit."""
    path = tmp_path / "counted.dbc"
    temps = "".join(f' SG_ Temp0{n} m1 : {8 * n}|8@1+ (1,-40) [-40|215] "degC" Vector__XXX\n' for n in range(1, 8))
    path.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'
        "BO_ 1536 Pack: 8 BMS\n"
        ' SG_ ModuleVoltage : 0|16@1+ (0.01,0) [0|200] "V" Vector__XXX\n'
        ' SG_ SOC : 16|8@1+ (1,0) [0|100] "%" Vector__XXX\n'
        ' SG_ TemperatureSensorCount : 24|8@1+ (1,0) [0|7] "" Vector__XXX\n'
        ' SG_ Cell01Voltage : 32|16@1+ (0.001,0) [0|5] "V" Vector__XXX\n\n'
        "BO_ 1537 Sensors: 8 BMS\n"
        ' SG_ Frame M : 0|8@1+ (1,0) [1|1] "" Vector__XXX\n' + temps
    )
    raw = {"dbc": str(path), "addressing": "fixed", "address": 1, "commands": False}
    cfg = config.parse({"can": {"modules": raw}, "bank": {"rated_charge_current": 200.0}})
    store = ModuleStore(ModuleCodec.from_config(cfg.can.modules[0]))
    store.feed(1536, struct.pack("<HBBH", 5280, 50, 4, 3300) + bytes(2), 1.0)  # 52.8 V, 50 %, 4 sensors, 3.3 V
    store.feed(1537, DALY_SENSORS, 1.0)
    r = store.readings()[1]
    assert r.cell_temperatures == (20, 21, 22, 23)
    assert (r.temperature_min, r.temperature_min_index) == (20, 1)
    limits = module_limits(r, cfg.bank, cfg.limits)
    assert (limits.charge_current.value, limits.charge_current.bound_by) == (200.0, "rating module 1")


def test_the_simulated_daly_answers_with_a_frame_per_three_cells_and_per_seven_sensors() -> None:
    """16 cells: frames 1..6, cells 17 and 18 zeros; 4 sensors: frame 1, slots 5-7 raw 0. As a Daly answers."""
    translator = Translator(_profile_config("daly-can", 1).can.modules[0])
    sim = Simulator(modules=1, current=0.0, seed=1)  # 16 cells, 4 sensors
    for msg in sim.advance(until=1.2):
        translator.take(msg)

    def ask(data_id: int) -> list[can.Message]:
        poll = can.Message(arbitration_id=0x18000040 | data_id << 16 | 1 << 8, data=bytes(8), is_extended_id=True)
        return translator.answer(poll)

    cells = ask(0x95)
    assert {m.arbitration_id for m in cells} == {0x18954001}
    assert [m.data[0] for m in cells] == [1, 2, 3, 4, 5, 6]
    truth = sim.module(1).cell_voltages
    assert struct.unpack(">H", cells[2].data[1:3])[0] == pytest.approx(truth[6] * 1000, abs=1.0)  # cell 7
    assert cells[5].data[3:7] == bytes(4)
    (sensors,) = ask(0x96)
    assert sensors.data[0] == 1 and all(20 < t - 40 < 30 for t in sensors.data[1:5])
    assert sensors.data[5:] == bytes(3)
    (status,) = ask(0x94)
    assert tuple(status.data[:2]) == (16, 4)


# -- a replayed log to the bank's limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "own", "bound"),
    [
        # The batteries report 100 A at 50 % SOC; the Pylontech LV sends no cell data, so its own limit is
        # authoritative (rating 200 A).
        ("pylon-lv-battery", 100.0, "reported module {a}: module's own limit, no cell data"),
        ("pylon-hv-battery", 100.0, "reported module {a}"),
        # No limits of their own: the 200 A rating, with every derating rule (cells at 3.3 V, 25 degC: 100 %).
        ("jk-bms-can", 200.0, "rating module {a}"),
        ("daly-can", 200.0, "rating module {a}"),
    ],
)
def test_replay_of_each_profile_to_bank_limits(tmp_path: Path, profile: str, own: float, bound: str) -> None:
    """Two modules in parallel: each at its own limit, the bank at min(limit / share), at most their sum."""
    cfg = _profile_config(profile, 2, rated_charge_current=200.0, rated_discharge_current=200.0)
    log = tmp_path / "traffic.log"
    sim = Simulator(modules=2, current=0.0, seed=5)
    translators = [Translator(bus, index=i) for i, bus in enumerate(cfg.can.modules)]
    assert write_log(log, sim, 10.0, translators) > 0
    result = replay(log, cfg)
    s = result.last
    assert s is not None and s.valid, s and s.reason
    assert not any(result.rejected.values())
    assert sorted(s.modules) == [1, 2]
    shares = []
    for a in (1, 2):
        limits, share = s.modules[a].limits, s.modules[a].share
        assert limits is not None and share is not None
        assert (limits.charge_current.value, limits.charge_current.bound_by) == (own, bound.format(a=a))
        shares.append(share)
        r = s.modules[a].reading
        if "cell_voltages" in PROFILES[profile].provides:  # 16 cells each
            assert len(r.cell_voltages) == 16 and all(v is not None and 3.2 < v < 3.4 for v in r.cell_voltages)
        if profile == "daly-can":  # and 4 sensors
            assert len(r.cell_temperatures) == 4 and all(t is not None and 20 < t < 30 for t in r.cell_temperatures)
    assert sum(shares) == pytest.approx(1.0)
    expected = min(2 * own, own / max(shares))
    assert s.limits.charge_current.value == pytest.approx(expected)
    assert s.limits.discharge_current.value == pytest.approx(expected)


# -- modules that send less ----------------------------------------------------------------------------------------

NO_CELLS = frozenset({"cell_voltage_max", "cell_voltage_min", "temperature_min"})
"""What a Pylontech LV battery never sends (its codec's `absent`)."""


def test_a_module_without_cell_data_is_bounded_by_its_own_limit() -> None:
    cfg = config.parse({"bank": {"rated_charge_current": 200.0}})
    r = reading(
        1,
        0.0,
        absent=NO_CELLS,
        cell_voltage_max=None,
        cell_voltage_min=None,
        temperature_min=None,
        charge_permitted=1,
        discharge_permitted=1,
    )
    own = module_limits(r, cfg.bank, cfg.limits)
    assert (own.charge_current.value, own.charge_current.bound_by) == (
        100.0,
        "reported module 1: module's own limit, no cell data",
    )


def test_data_a_profile_provides_that_goes_missing_still_derates_to_zero() -> None:
    cfg = config.parse({})
    missing_temperature = reading(1, 0.0, absent=NO_CELLS, temperature_max=None, temperature_min=None)
    assert module_limits(missing_temperature, cfg.bank, cfg.limits).charge_current.value == 0.0
    missing_cells = reading(1, 0.0, cell_voltage_max=None)  # our protocol sends cells: missing is unknown
    limits = module_limits(missing_cells, cfg.bank, cfg.limits)
    assert (limits.charge_current.value, limits.charge_current.bound_by) == (0.0, "cell_voltage module 1")


def test_the_codec_says_what_each_profile_never_sends() -> None:
    def absent(profile: str, **keys: Any) -> frozenset[str]:
        bus = config.parse({"can": {"modules": {"profile": profile, **keys}}}).can.modules[0]
        return ModuleCodec.from_config(bus).absent

    permits = {"charge_permitted", "discharge_permitted"}  # a veto only some BMSs send: never waited for
    assert absent("module") == permits
    assert absent("pylon-lv-battery", address=1) == NO_CELLS
    assert absent("pylon-hv-battery") == set()  # its 0x4280 carries both permits, as codes
    # Without limits of their own, nothing stands in for the cell rules: only the limits are absent (rating).
    assert absent("jk-bms-can") == absent("daly-can") == {"charge_current_limit", "discharge_current_limit"} | permits


Frames = dict[str, dict[str, float]]
"""Message name -> its signals' values."""
PERMITTED: dict[str, tuple[str, Frames, Callable[[int], Frames]]] = {
    # profile: (its DBC, the frames of a healthy battery, the frame that allows (1) or forbids (0) charging)
    "pylon-lv-battery": (
        "modules/pylon_lv_battery.dbc",
        {
            "BatteryLimits": {
                "ChargeVoltageLimit": 53.2,
                "ChargeCurrentLimit": 100.0,
                "DischargeCurrentLimit": 100.0,
                "DischargeVoltageLimit": 46.0,
            },
            "StateOfCharge": {"SOC": 50, "SOH": 100},
            "BatteryStatus": {"ModuleVoltage": 52.0, "ModuleCurrent": 0.0, "BatteryTemperature": 25.0},
        },
        lambda charge: {"RequestFlags": {"ChargeEnable": charge, "DischargeEnable": 1}},
    ),
    "pylon-hv-battery": (
        "modules/pylon_hv_battery.dbc",
        {
            "EnsembleStatus": {"ModuleVoltage": 52.0, "ModuleCurrent": 0.0, "BmsTemperature": 25.0, "SOC": 50},
            "Limits": {
                "ChargeVoltageLimit": 53.2,
                "DischargeVoltageLimit": 46.0,
                "ChargeCurrentLimit": 100.0,
                "DischargeCurrentLimit": 100.0,
            },
            "CellVoltages": {"CellVoltageMax": 3.3, "CellVoltageMin": 3.2, "CellVoltageMaxIndex": 1},
            "CellTemperatures": {"TemperatureMax": 25.0, "TemperatureMin": 24.0, "TemperatureMaxIndex": 1},
            "Status": {"BasicStatus": 3},
        },
        # 0x4280: 0xAA forbids, anything else allows (0x55 included: only 0xAA is the code).
        lambda charge: {"Forbidden": {"ChargeForbidden": 0x55 if charge else 0xAA, "DischargeForbidden": 0}},
    ),
}


@pytest.mark.parametrize("profile", sorted(PERMITTED))
def test_a_battery_that_forbids_charging_gets_no_charge_current(profile: str) -> None:
    """The battery's own BMS says no (Pylontech LV 0x35C ChargeEnable = 0, HV 0x4280 = 0xAA), whatever its current
    limit says; the bank's charge limit is 0 with the reason, discharge goes on. Allowed again, the current is back."""
    cfg = _profile_config(profile, 1, rated_charge_current=200.0, rated_discharge_current=200.0)
    name, healthy, permit = PERMITTED[profile]
    db = dbc.load(None, name, "test")
    core = Core(cfg, now=0.0)
    addressing = cfg.can.modules[0].address_plan

    def frames(t: float, charge: int) -> list[can.Message]:
        out = []
        for message_name, signals in {**healthy, **permit(charge)}.items():
            message = db.get_message_by_name(message_name)
            data = message.encode({s.name: signals.get(s.name, 0) for s in message.signals}, strict=False)
            can_id = addressing.frame_id(message.frame_id, 1)
            out.append(can.Message(timestamp=t, arbitration_id=can_id, data=data, is_extended_id=can_id > 0x7FF))
        return out

    def run(start: float, stop: float, charge: int) -> BankSnapshot:
        t = start
        while t < stop:
            for msg in frames(t, charge):
                core.feed(msg, t, 0)
            snapshot = core.tick(t).snapshot
            t = round(t + 0.5, 3)
        return snapshot

    allowed = run(0.0, 6.0, charge=1)
    assert allowed.valid, allowed.reason
    assert allowed.modules[1].reading.charge_permitted == 1
    assert allowed.limits.charge_current.value == pytest.approx(100.0)
    forbidden = run(6.0, 8.0, charge=0)
    assert forbidden.modules[1].reading.charge_permitted == 0
    assert forbidden.limits.charge_current.value == 0.0
    assert forbidden.modules[1].limits is not None
    assert forbidden.modules[1].limits.charge_current.bound_by == "module 1 forbids charging"
    assert forbidden.limits.discharge_current.value == pytest.approx(100.0)
    again = run(8.0, 12.0, charge=1)
    assert again.limits.charge_current.value == pytest.approx(100.0)


@pytest.mark.parametrize(("raw", "permitted"), [(0xAA, 0), (0x00, 1), (0x55, 1), (0xFF, 1), (0xAB, 1)])
def test_a_pylon_hv_permit_is_forbidden_only_at_0xaa(raw: int, permitted: int) -> None:
    bus = config.parse({"can": {"modules": {"profile": "pylon-hv-battery"}}}).can.modules[0]
    store = ModuleStore(ModuleCodec.from_config(bus))
    store.feed(0x4210, struct.pack("<HHHBB", 520, 30000, 1250, 50, 100), 1.0, extended=True)  # 52 V, 0 A
    store.feed(0x4280, bytes([raw, 0xAA if permitted else 0x00, 0, 0, 0, 0, 0, 0]), 1.0, extended=True)
    assert store.rejected.total() == 0
    r = store.readings()[1]
    assert (r.charge_permitted, r.discharge_permitted) == (permitted, 1 - permitted)


def test_pylontech_clones_that_pad_every_frame_to_8_bytes_are_read_and_ours_are_not_padded() -> None:
    """Pytes, diyBMS and other clones send 0x355/0x356/0x359/0x35C with DLC 8: the extra bytes are ignored. Our own
    protocol keeps its exact lengths: a frame of another length is not one of its messages."""
    pylon = ModuleStore(ModuleCodec.from_config(_profile_config("pylon-lv-battery", 1).can.modules[0]))
    pylon.feed(0x355, bytes([0x1A, 0x00, 0x64, 0x00]) + bytes(4), 1.0)  # SOC 26 %, SOH 100 %, padded
    pylon.feed(0x356, bytes([0x02, 0x13, 0x00, 0x00, 0x4A, 0x01, 0xFF, 0xFF]), 1.0)  # 48.66 V, 0 A, 33.0 degC
    assert (pylon.counters["decoded"], pylon.counters["bad_length"]) == (2, 0)
    r = pylon.readings()[1]
    assert (r.soc, r.soh, r.voltage, r.temperature_max) == pytest.approx((26, 100, 48.66, 33.0))
    pylon.feed(0x355, bytes([0x1A, 0x00]), 2.0)  # cut short: never a reading
    assert pylon.counters["bad_length"] == 1

    ours = ModuleStore(ModuleCodec.from_config(config.parse({}).can.modules[0]))
    ours.feed(0x401, bytes(7), 1.0)
    assert ours.counters["bad_length"] == 1


@pytest.mark.parametrize("profile", ["jk-bms-can", "daly-can"])
def test_invert_current_turns_a_discharge_positive_bms_into_charge_positive(profile: str) -> None:
    """A BMS that counts discharging as positive (the sources disagree on JK and Daly): with `invert_current` the
    gateway reads the charging stack as charging; without it, the same frames read as discharging."""

    def currents(wire_inverted: bool, gateway_inverts: bool) -> list[float | None]:
        entries = [
            {**e, "invert_current": wire_inverted}
            for e in bus_entries(profile, 2, interface="virtual", channel="modules")
        ]
        sim_cfg = config.parse({"can": {"modules": entries}})
        read_cfg = config.parse(
            {
                "can": {"modules": [{**e, "invert_current": gateway_inverts} for e in entries]},
                "bank": {"module_timeout": 3.0},
            }
        )
        core = Core(read_cfg, now=0.0)
        _simulated_into(core, sim_cfg, read_cfg)
        readings = core.store.readings()
        return [readings[a].current for a in (1, 2)]

    charging = currents(wire_inverted=True, gateway_inverts=True)
    assert all(c is not None and c > 5.0 for c in charging), charging
    misread = currents(wire_inverted=True, gateway_inverts=False)
    assert all(c is not None and c < -5.0 for c in misread), misread
    assert currents(wire_inverted=False, gateway_inverts=False) == pytest.approx(charging)
