"""Module frames through the DBC codec into module state: decoded values, rejections, never garbage."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import can
import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.can import dbc
from gateway.can.addressing import Addressing
from gateway.can.bus import DecodingListener, open_bus
from gateway.can.codec import ModuleCodec
from gateway.can.ingest import ModuleStore
from gateway.errors import BusError, ConfigError

DB = dbc.load(None, "module.dbc", "can.modules.dbc")
RANGES = {
    s.name: (s.minimum, s.maximum)
    for m in DB.messages
    for s in m.signals
    if s.minimum is not None and s.maximum is not None
}


def encode(name: str, address: int, **values: float) -> tuple[int, bytes]:
    message = DB.get_message_by_name(name)
    full = {s.name: values.get(s.name, 0) for s in message.signals if s.name in values or not s.multiplexer_ids}
    return message.frame_id + address, bytes(message.encode(full, strict=False))


def status(address: int, **values: float) -> tuple[int, bytes]:
    base = {"ModuleVoltage": 53.12, "ModuleCurrent": -12.3, "SOC": 75.0, "SOH": 98, "ModuleState": 3, "AliveCounter": 5}
    return encode("ModuleStatus", address, **{**base, **values})


@pytest.fixture
def store() -> ModuleStore:
    return ModuleStore(ModuleCodec(DB))


def confirm(store: ModuleStore, *addresses: int, t: float = 0.0) -> None:
    """Two ModuleStatus frames with the AliveCounter advancing by one: the store then counts the module."""
    for a in addresses:
        store.feed(*status(a, AliveCounter=3), t=t)
        store.feed(*status(a, AliveCounter=4), t=t)


def test_status_frame_decodes_into_the_module_state(store: ModuleStore) -> None:
    store.feed(*status(3, AliveCounter=4), t=9.9)
    store.feed(*status(3), t=10.0)
    r = store.readings()[3]
    assert (r.voltage, r.current, r.soc, r.soh, r.module_state, r.alive) == pytest.approx(
        (53.12, -12.3, 75.0, 98, 3, 5)
    )
    assert r.seen == {"status": 10.0}
    assert r.first_seen == 9.9
    assert store.counters["decoded"] == 2


def test_a_module_counts_once_its_alive_counter_advances(store: ModuleStore) -> None:
    """Garbage decodes too: one frame, or frames whose counter does not step by one, make no module."""
    store.feed(*encode("CellSummary", 7, CellVoltageMax=3.3, CellVoltageMin=3.2, CellCount=16), t=0.0)
    store.feed(*status(7, AliveCounter=9), t=0.1)
    store.feed(*status(7, AliveCounter=2), t=0.2)
    store.feed(*status(7, AliveCounter=2), t=0.3)
    assert store.readings() == {}
    store.feed(*status(7, AliveCounter=3), t=0.4)
    assert set(store.readings()) == {7}
    store.feed(*status(8, AliveCounter=15), t=0.5)
    store.feed(*status(8, AliveCounter=0), t=0.6)  # the 4-bit counter wraps
    assert set(store.readings()) == {7, 8}


def test_every_message_kind_lands_in_its_fields(store: ModuleStore) -> None:
    frames = [
        encode(
            "ModuleLimits",
            2,
            ChargeCurrentLimit=80.5,
            DischargeCurrentLimit=100,
            ChargeVoltageLimit=55.2,
            DischargeVoltageLimit=48.0,
        ),
        encode(
            "CellSummary",
            2,
            CellVoltageMax=3.412,
            CellVoltageMin=3.301,
            CellVoltageMaxIndex=7,
            CellVoltageMinIndex=12,
            BalancingCellCount=2,
            CellCount=16,
        ),
        encode(
            "Temperatures",
            2,
            TemperatureMax=31.4,
            TemperatureMin=-2.5,
            TemperatureMaxIndex=3,
            TemperatureMinIndex=1,
            PowerStageTemperature=40.1,
        ),
        encode(
            "CellVoltages",
            2,
            CellGroup=1,
            Cell04Voltage=3.331,
            Cell05Voltage=3.332,
            Cell06Voltage=3.333,
            Cell04Balancing=0,
            Cell05Balancing=1,
            Cell06Balancing=0,
        ),
        encode(
            "CellTemperatures",
            2,
            SensorGroup=0,
            Temp01=25,
            Temp02=26,
            Temp03=-40,
            Temp04=215,
            Temp05=215,
            Temp06=215,
            Temp07=215,
        ),
        encode("Alarms", 2, WarnCellImbalance=1, ProtChargeOverTemperature=1, FaultCode=77),
        encode(
            "ModuleInfo",
            2,
            FirmwareMajor=1,
            FirmwareMinor=4,
            FirmwarePatch=2,
            CellsInSeries=16,
            NominalCapacity=100.0,
            CycleCount=321,
        ),
        encode("ModuleCapacity", 2, RemainingCapacity=61.3, FullChargeCapacity=98.7, InternalResistance=2.35),
    ]
    confirm(store, 2, t=-1.0)
    for i, frame in enumerate(frames):
        store.feed(*frame, t=float(i))
    r = store.readings()[2]
    assert (r.charge_current_limit, r.discharge_current_limit) == (80.5, 100.0)
    assert (r.charge_voltage_limit, r.discharge_voltage_limit) == (55.2, 48.0)
    assert (r.cell_voltage_max, r.cell_voltage_min, r.cell_voltage_max_index, r.cell_voltage_min_index) == (
        3.412,
        3.301,
        7,
        12,
    )
    assert (r.balancing_cells, r.cell_count) == (2, 16)
    assert (r.temperature_max, r.temperature_min, r.power_stage_temperature) == pytest.approx((31.4, -2.5, 40.1))
    assert r.cell_voltages[3:6] == (3.331, 3.332, 3.333)
    assert r.cell_voltages[0] is None
    assert len(r.cell_voltages) == 16
    assert r.cell_balancing[3:6] == (False, True, False)
    # raw 255 is "no sensor", never 215 degC
    assert r.cell_temperatures == (25, 26, -40)
    assert r.warnings == 1 << 10
    assert r.protections == 1 << 4
    assert r.fault_code == 77
    assert r.firmware == (1, 4, 2)
    assert (r.cells_in_series, r.nominal_capacity, r.cycle_count) == (16, 100.0, 321)
    assert (r.remaining_capacity, r.full_capacity, r.internal_resistance) == pytest.approx((61.3, 98.7, 2.35))
    assert set(r.seen) == {
        "status",
        "limits",
        "cells",
        "temperatures",
        "cell_voltages",
        "cell_temperatures",
        "alarms",
        "info",
        "capacity",
    }


def test_alarm_bits_clear_again(store: ModuleStore) -> None:
    confirm(store, 1)
    store.feed(*encode("Alarms", 1, ProtCellOverVoltage=1, WarnOther=1), t=0.0)
    assert (store.readings()[1].warnings, store.readings()[1].protections) == (1 << 15, 1)
    store.feed(*encode("Alarms", 1), t=1.0)
    assert (store.readings()[1].warnings, store.readings()[1].protections) == (0, 0)


def test_alive_counter_repeats_are_counted(store: ModuleStore) -> None:
    for t, counter in enumerate([1, 2, 3, 3, 3, 3]):
        store.feed(*status(1, AliveCounter=counter), t=float(t))
    assert store.readings()[1].alive_repeats == 3
    store.feed(*status(1, AliveCounter=4), t=9.0)
    assert store.readings()[1].alive_repeats == 0


@pytest.mark.parametrize(
    ("can_id", "data", "kind"),
    [
        (0x123, bytes(8), "unknown_id"),
        (0x400, status(1)[1], "bad_address"),
        (0x401, status(1)[1][:7], "bad_length"),
        (0x401, status(1)[1] + b"\0", "bad_length"),
        (0x481, bytes([16, 0, 0, 0, 0, 0, 0, 0]), "bad_multiplexer"),
        (0x4A1, bytes([4, 0, 0, 0, 0, 0, 0, 0]), "bad_multiplexer"),
        (0x401, bytes.fromhex("1414 85ff e903 6212"), "out_of_range"),  # SOC 100.1 %
        (0x401, bytes.fromhex("1414 85ff ee02 6217"), "out_of_range"),  # ModuleState 7
        (0x381, bytes(8), "master_command"),
    ],
)
def test_bad_frames_are_counted_by_kind_and_change_nothing(
    store: ModuleStore, can_id: int, data: bytes, kind: str
) -> None:
    confirm(store, 1)
    before = store.readings()[1]
    store.feed(can_id, data, t=1.0)
    assert store.rejected == {kind: 1}
    assert store.readings()[1] is before


def test_extended_id_is_not_a_module_frame(store: ModuleStore) -> None:
    store.on_message(can.Message(arbitration_id=0x401, data=status(1)[1], is_extended_id=True), 0.0)
    store.on_message(can.Message(arbitration_id=0x401, is_error_frame=True), 0.0)
    assert store.rejected == {"unknown_id": 1, "error_frame": 1}
    assert store.readings() == {}


def test_unchanged_module_yields_the_same_reading_object(store: ModuleStore) -> None:
    confirm(store, 1, 2)
    first = store.readings()
    store.feed(*status(2, SOC=80.0), t=0.1)
    second = store.readings()
    assert second[1] is first[1]
    assert second[2] is not first[2]
    assert second[2].soc == 80.0


def test_urgent_callback_on_protective_changes(store: ModuleStore) -> None:
    calls: list[int] = []
    store.on_urgent = lambda: calls.append(1)
    summary = {"CellVoltageMaxIndex": 1, "CellVoltageMinIndex": 2, "CellCount": 16}
    store.feed(*encode("CellSummary", 1, CellVoltageMax=3.35, CellVoltageMin=3.30, **summary), t=0.0)
    assert calls == []
    store.feed(*encode("CellSummary", 1, CellVoltageMax=3.56, CellVoltageMin=3.30, **summary), t=0.2)
    assert calls == [1]
    store.feed(*encode("CellSummary", 1, CellVoltageMax=3.55, CellVoltageMin=3.30, **summary), t=0.4)
    assert calls == [1]  # improving: no hurry
    store.feed(*encode("Alarms", 1, ProtCellOverVoltage=1), t=0.5)
    assert calls == [1, 1]


def test_user_dbc_with_a_signal_map(tmp_path: Path) -> None:
    path = tmp_path / "vendor.dbc"
    path.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'
        "BO_ 1600 PackData: 8 BMS\n"
        ' SG_ PackV : 0|16@1+ (0.1,0) [0|1000] "V" Vector__XXX\n'
        ' SG_ PackI : 16|16@1- (0.1,0) [-500|500] "A" Vector__XXX\n'
        ' SG_ StateOfCharge : 32|8@1+ (1,0) [0|100] "%" Vector__XXX\n'
        ' SG_ Life : 40|4@1+ (1,0) [0|15] "" Vector__XXX\n'
    )
    db = dbc.load(path, "module.dbc", "can.modules.dbc")
    codec = ModuleCodec(
        db,
        addressing=Addressing(mask=0x0F),
        signal_map={"PackV": "ModuleVoltage", "PackI": "ModuleCurrent", "StateOfCharge": "SOC", "Life": "AliveCounter"},
    )
    store = ModuleStore(codec)
    message = db.get_message_by_name("PackData")
    for life in (1, 2):
        store.feed(1600 + 4, message.encode({"PackV": 51.2, "PackI": -3.5, "StateOfCharge": 64, "Life": life}), t=0.0)
    r = store.readings()[4]
    assert (r.voltage, r.current, r.soc, r.alive) == (51.2, -3.5, 64, 2)
    assert codec.required_groups == {"status"}


def test_a_mask_that_gives_two_messages_one_base_id_is_refused() -> None:
    """Under 0x3F the shipped bases (0x20 apart) pair up: 0x421 would be module 33's ModuleStatus, not module 1's
    ModuleLimits, and ModuleLimits would be gone."""
    with pytest.raises(ConfigError) as info:
        ModuleCodec.from_config(config.parse({"can": {"modules": {"address_mask": 0x3F}}}).can.modules[0])
    first = info.value.problems[0]
    assert first.startswith("can.modules.address_mask: 0x3f gives ModuleStatus (0x400) and ModuleLimits (0x420)")
    assert "frame 0x421 could be ModuleLimits of module 1 or ModuleStatus of module 33" in first
    assert first.endswith("needs a mask of at most 0x1f")
    assert any("CellSummary (0x440) and Temperatures (0x460)" in p for p in info.value.problems)
    assert ModuleCodec.from_config(config.parse({}).can.modules[0]).addresses == range(1, 32)


def test_addresses_come_from_the_mask_and_stop_at_31(tmp_path: Path) -> None:
    path = tmp_path / "vendor.dbc"
    path.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'
        "BO_ 1536 PackData: 8 BMS\n"
        ' SG_ PackV : 0|16@1+ (0.1,0) [0|1000] "V" Vector__XXX\n'
        ' SG_ StateOfCharge : 16|8@1+ (1,0) [0|100] "%" Vector__XXX\n'
    )
    db = dbc.load(path, "module.dbc", "can.modules.dbc")
    store = ModuleStore(
        ModuleCodec(db, addressing=Addressing(mask=0x3F), signal_map={"PackV": "ModuleVoltage", "StateOfCharge": "SOC"})
    )
    data = db.get_message_by_name("PackData").encode({"PackV": 51.2, "StateOfCharge": 64})
    for address in (0, 1, 31, 32, 33, 63):
        store.feed(1536 + address, data, t=0.0)
    assert sorted(store.readings()) == [1, 31]
    assert store.rejected == {"bad_address": 4}


def test_signal_map_mistakes_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ModuleCodec(DB, signal_map={"Nope": "ModuleVoltage", "SOC": "StateOfCharge"})
    assert info.value.problems == [
        "can.modules.signal_map.SOC: 'StateOfCharge' is not a signal of the module protocol",
        "can.modules.signal_map.Nope: the DBC has no signal of that name",
    ]


@settings(max_examples=3000, deadline=None)
@given(
    can_id=st.one_of(st.integers(0, 0x7FF), st.sampled_from([m.frame_id + a for m in DB.messages for a in (0, 1, 31)])),
    data=st.binary(min_size=0, max_size=8),
    extended=st.booleans(),
)
def test_random_frames_never_raise_and_never_store_impossible_values(can_id: int, data: bytes, extended: bool) -> None:
    store = ModuleStore(ModuleCodec(DB))
    store.feed(can_id, data, 0.0, extended=extended)
    assert store.received == 1
    assert store.decoded + sum(store.rejected.values()) == 1
    for r in store.readings().values():
        for name, value in (
            ("ModuleVoltage", r.voltage),
            ("ModuleCurrent", r.current),
            ("SOC", r.soc),
            ("SOH", r.soh),
            ("ModuleState", r.module_state),
            ("CellVoltageMax", r.cell_voltage_max),
            ("TemperatureMax", r.temperature_max),
            ("TemperatureMin", r.temperature_min),
            ("ChargeCurrentLimit", r.charge_current_limit),
        ):
            if value is not None:
                low, high = RANGES[name]
                assert low <= value <= high and math.isfinite(value), (name, value)
        assert all(v is None or 0 <= v <= 5 for v in r.cell_voltages)
        assert all(v is None or -40 <= v <= 125 for v in r.cell_temperatures)


def test_frames_over_a_real_virtual_bus(channel: str) -> None:
    store = ModuleStore(ModuleCodec(DB))
    rx = open_bus("virtual", channel, 500_000)
    tx = open_bus("virtual", channel, 500_000)
    listener = DecodingListener(store.on_message, clock=time.monotonic)
    notifier = can.Notifier(rx, [listener])
    try:
        for address in (1, 2, 3):
            for counter in (1, 2):
                can_id, data = status(address, SOC=50.0 + address, AliveCounter=counter)
                tx.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
        tx.send(can.Message(arbitration_id=0x7FF, data=b"\x01", is_extended_id=False))
        deadline = time.monotonic() + 5
        while store.received < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        notifier.stop()
        rx.shutdown()
        tx.shutdown()
    assert {a: r.soc for a, r in store.readings().items()} == {1: 51.0, 2: 52.0, 3: 53.0}
    assert store.rejected == {"unknown_id": 1}


def test_bus_errors_reach_the_listener() -> None:
    failed = threading.Event()
    listener = DecodingListener(lambda m, t: None, clock=time.monotonic, on_failure=lambda e: failed.set())
    listener.on_error(can.CanOperationError("interface down"))
    assert failed.is_set()
    assert isinstance(listener.error, can.CanOperationError)


def test_open_bus_reports_a_bad_interface() -> None:
    with pytest.raises(BusError, match="cannot open CAN interface 'nosuch'"):
        open_bus("nosuch", "can0", 500_000)


def test_frames_are_read_by_code_generated_from_the_cantools_database() -> None:
    """cantools loads the DBC and is the reference (tests/test_compiled.py); frames go through generated code."""
    assert isinstance(DB, cantools.database.can.Database)
    plan = ModuleCodec(DB).plans[0x400]
    assert plan.read.__code__.co_filename == "<decoder of ModuleStatus, generated from the DBC>"


def test_extremes_from_cells_only_count_the_modules_cells(tmp_path: Path) -> None:
    """A DBC without CellSummary: min/max come from the cells, never from unused slots sent as 0 V."""
    text = dbc.shipped("module.dbc").read_text()
    start = text.index("BO_ 1088 CellSummary")
    end = text.index("BO_ 1120 Temperatures")
    path = tmp_path / "nosummary.dbc"
    path.write_text(text[:start] + text[end:])
    db = dbc.load(path, "module.dbc", "can.modules.dbc")
    store = ModuleStore(ModuleCodec(db))
    message = db.get_message_by_name("CellVoltages")
    values = {"CellGroup": 5, "Cell16Voltage": 3.31, "Cell17Voltage": 0.0, "Cell18Voltage": 0.0}
    values |= {f"Cell{n}Balancing": 0 for n in (16, 17, 18)}
    confirm(store, 1)
    store.feed(0x481, message.encode(values), t=0.0)
    info = db.get_message_by_name("ModuleInfo")
    store.feed(
        0x4E1,
        info.encode(
            {
                "FirmwareMajor": 1,
                "FirmwareMinor": 0,
                "FirmwarePatch": 0,
                "CellsInSeries": 16,
                "NominalCapacity": 100,
                "CycleCount": 1,
            }
        ),
        t=0.0,
    )
    r = store.readings()[1]
    assert len(r.cell_voltages) == 16
    assert r.cell_voltage_min == r.cell_voltage_max == pytest.approx(3.31)
    assert r.cell_voltage_min_index == 16
