from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.can.addressing import KEYS
from gateway.errors import ConfigError

from helpers.hints import table

PROTOCOLS = ", ".join(repr(name) for name in typing.get_args(config.InverterProtocol))


def test_empty_file_is_a_working_config_for_the_typical_module(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("")
    cfg = config.load(path)
    assert cfg.gateway.id == "stack1"
    assert cfg.can.modules[0].interface == "virtual"
    assert cfg.can.modules[0].rate == 500_000
    assert cfg.can.modules[0].address_plan.mask == 0x1F
    assert cfg.can.inverter.protocol == "pylontech"
    assert cfg.can.inverter.period == 1.0
    assert cfg.bank.cells_in_series == 16
    assert cfg.bank.module_timeout == 3.0
    assert cfg.bank.rated_charge_current == cfg.bank.rated_discharge_current == 100.0
    assert cfg.limits.charge_cell_voltage == ((3.40, 100.0), (3.45, 50.0), (3.50, 10.0), (3.55, 0.0))
    assert (cfg.modbus.host, cfg.modbus.port, cfg.modbus.unit_id) == ("127.0.0.1", 5020, 1)
    rtu = cfg.modbus_rtu
    assert (rtu.enabled, rtu.port, rtu.baudrate, rtu.unit_id, rtu.map, rtu.primo, rtu.heartbeat_timeout) == (
        False, None, 9600, 21, "byd", False, 300.0,
    )  # fmt: skip
    assert (cfg.mqtt.base_topic, cfg.mqtt.discovery_prefix) == ("bms", "homeassistant")
    assert cfg.source == path


def test_values_are_typed_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "gateway.toml"
    path.write_text(
        """
[gateway]
id = "garage"
[can.modules]
dbc = "vendor.dbc"
address_mask = 0x0F
signal_map = { PackV = "ModuleVoltage" }
[bank]
strings = [[1, 2], [3, 4]]
positions = { 1 = 1, 2 = 2, 3 = 1, 4 = 2 }
rated_charge_current = 50
[limits]
charge_soc = [[90, 100], [100, 10]]
[mqtt]
username = "bms"
password_file = "/etc/bms-gateway/mqtt.pass"
"""
    )
    cfg = config.load(path)
    assert cfg.gateway.id == "garage"
    assert cfg.can.modules[0].dbc == tmp_path / "conf" / "vendor.dbc"
    assert cfg.can.modules[0].address_plan.mask == 0x0F
    assert dict(cfg.can.modules[0].signal_map) == {"PackV": "ModuleVoltage"}
    assert cfg.bank.strings == ((1, 2), (3, 4))
    assert dict(cfg.bank.positions) == {1: 1, 2: 2, 3: 1, 4: 2}
    assert cfg.bank.rated_charge_current == 50.0
    assert isinstance(cfg.bank.rated_charge_current, float)
    assert cfg.limits.charge_soc == ((90.0, 100.0), (100.0, 10.0))
    assert cfg.mqtt.password_file == Path("/etc/bms-gateway/mqtt.pass")


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return info.value.problems


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    found = problems(
        """
colour = "red"
[bank]
strigns = [[1]]
max_modules = "many"
min_online = 0
positions = { top = 3 }
[limits]
charge_soc = [[99, 20], [95, 100]]
cell_over_voltage = [3.7, 3.6]
fan_duty = [[30, 0], [45, 180]]
[modbus]
port = 70000
[mqtt]
qos = 3
base_topic = "bms/#"
tls = { cert_file = "c.pem" }
[can.inverter]
protocol = "growatt"
""",
        tmp_path,
    )
    assert found == [
        "colour: unknown key",
        f"can.inverter.protocol: must be one of {PROTOCOLS}, got 'growatt'",
        "bank.strigns: unknown key (did you mean 'strings'?)",
        "bank.max_modules: must be an integer, got a string ('many')",
        "bank.positions.top: keys must be integers",
        "bank.min_online: must be within 1..max_modules",
        "limits.charge_soc: x values must be strictly increasing",
        "limits.fan_duty: percent values must be within 0..100",
        "limits.cell_over_voltage: the warning threshold must not be above the protection threshold",
        "modbus.port: must be within 0..65535, got 70000",
        "mqtt.tls.cert_file: cert_file and key_file go together",
        "mqtt.qos: must be within 0..2, got 3",
        "mqtt.base_topic: must be a topic without wildcards or leading/trailing '/'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[bank]\nstrings = [[1, 2], [2]]", "bank.strings[1]: module address 2 appears twice"),
        ("[bank]\nstrings = [[0]]", "bank.strings[0]: module address 0 is outside 1..31"),
        ("[bank]\nstrings = [[1], []]", "bank.strings[1]: a string needs at least one module"),
        ("[bank]\nmax_modules = 2\nmin_online = 1\nstrings = [[1], [2], [3]]", "bank.strings: 3 modules configured"),
        ("[bank]\ncells_in_series = 60", "bank.cells_in_series: must be within 1..48"),
        ("[bank]\nmodule_timeout = 0", "bank.module_timeout: must be within 1..60 s"),
        ("[gateway]\nid = 'a/b'", "gateway.id: must be non-empty"),
        ("[limits]\ncharge_voltage_per_cell = 3.9", "limits.charge_voltage_per_cell: must be within"),
        ("[limits]\ncharge_soc = [[95, 100, 1]]", "limits.charge_soc[0]: must be an array of 2 values, got 3"),
        ("[limits]\ncharge_soc = 5", "limits.charge_soc: must be an array, got an integer (5)"),
        ("[can.inverter]\nperiod = 30", "can.inverter.period: must be within 0.05..10 s"),
        ("[can]\nmodules = 3", "can.modules: must be a table or an array of tables, got an integer (3)"),
        ("[mqtt]\nenabled = 'yes'", "mqtt.enabled: must be true or false, got a string ('yes')"),
        ("[mqtt]\npassword_file = 'p'", "mqtt.password_file: needs mqtt.username"),
        ("[can.modules]\nbitrate = 5e5", "can.modules.bitrate: must be an integer, got a number (500000.0)"),
        ("[modbus_rtu]\nenabled = true", "modbus_rtu.port: needs the serial device when enabled, e.g. /dev/ttyUSB0"),
        ("[modbus_rtu]\nmap = 'sunspec'", "modbus_rtu.map: must be one of 'byd', got 'sunspec'"),
        ("[modbus_rtu]\nheartbeat_timeout = 60", "modbus_rtu.heartbeat_timeout: must be 0 (off) or within 120..3600 s"),
    ],
)
def test_single_problems(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(text, tmp_path)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("mask", "addresses"),
    [(0x1, range(1, 2)), (0x0F, range(1, 16)), (0x1F, range(1, 32)), (0x3F, range(1, 32)), (0xFF, range(1, 32))],
)
def test_module_addresses_come_from_the_address_mask(mask: int, addresses: range) -> None:
    assert config.parse({"can": {"modules": {"address_mask": mask}}}).can.modules[0].addresses == addresses


@pytest.mark.parametrize("mask", [0, -1, 0x18, 0x1E, 0x21, 0x1FF, 0x400, 0x7FF])
def test_an_address_mask_must_be_a_low_bit_mask(mask: int) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"can": {"modules": {"address_mask": mask}}})
    assert info.value.problems == [
        f"can.modules.address_mask: must be a low-bit mask 2**n - 1 within 0x1..0xff, got {mask:#x}"
    ]


def test_bank_addresses_must_fit_the_address_mask() -> None:
    raw = {"can": {"modules": {"address_mask": 0x0F}}, "bank": {"strings": [[1, 15], [16]], "positions": {"16": 2}}}
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    assert info.value.problems == [
        "bank.strings[1]: module address 16 is outside 1..15 (can.modules)",
        "bank.positions.16: module address 16 is outside 1..15 (can.modules)",
    ]
    raw["can"] = {"modules": {"address_mask": 0x1F}}
    assert config.parse(raw).bank.strings == ((1, 15), (16,))
    with pytest.raises(ConfigError, match=r"bank.positions.32: module address 32 is outside 1..31"):
        config.parse({"can": {"modules": {"address_mask": 0x3F}}, "bank": {"positions": {"32": 1}}})


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bank\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_effective_config_round_trips() -> None:
    cfg = config.parse({"bank": {"strings": [[1, 2]], "positions": {"1": 2}}, "mqtt": {"username": "bms"}})
    plain = config.to_toml_dict(cfg)
    assert plain["bank"]["strings"] == [[1, 2]]
    assert plain["bank"]["positions"] == {"1": 2}
    assert "password_file" not in plain["mqtt"]
    assert "source" not in plain
    assert config.parse(plain) == cfg


def nested(key: str, value: Any) -> dict[str, Any]:
    """`{"bank": {"tick": value}}` for "bank.tick"."""
    *sections, name = key.split(".")
    raw: dict[str, Any] = {name: value}
    for section in reversed(sections):
        raw = {section: raw}
    return raw


TABLE_2_4 = ([[[2.0, 100], [4.0, 0]]], [[[1.99, 100], [4.0, 0]], [[2.0, 100], [4.01, 0]]])
TABLE_TEMPERATURE = ([[[-40, 0], [125, 0]]], [[[-40.1, 0], [125, 0]], [[-40, 0], [125.1, 0]]])
TABLE_SOC = ([[[0, 100], [100, 0]]], [[[-0.1, 100], [100, 0]], [[0, 100], [100.1, 0]]])
RISING_2_4 = ([[2.0, 2.0], [4.0, 4.0]], [[1.99, 2.0], [2.0, 4.01]])
FALLING_2_4 = ([[2.0, 2.0], [4.0, 2.0]], [[4.01, 2.0], [2.0, 1.99]])
RISING_TEMPERATURE = ([[-40, 125]], [[-40.1, 0], [0, 125.1]])
FALLING_TEMPERATURE = ([[125, -40]], [[125.1, 0], [0, -40.1]])

BOUNDARIES: dict[str, tuple[list[Any], list[Any]]] = {
    "can.modules.bitrate": ([5_000, 1_000_000], [4_999, 1_000_001]),
    "can.modules.address_mask": ([0x1, 0xFF], [0x0, 0x1FF]),
    "can.modules.address_shift": ([0, 21], [-1, 22]),
    "can.modules.address_width": ([1, 8], [0, 9]),
    "can.modules.address_stride": ([1, 256], [0, 257]),
    "can.modules.address": ([1, 31], [0, 32]),
    "can.modules.address_offset": ([0, 30], [-1, 31]),
    "can.modules.address_count": ([1, 31], [0, 32]),
    "can.modules.polls.id": ([0, 0x7FF], [-1, 0x2000_0000]),
    "can.modules.polls.data": ([[0, 255]], [[256], [-1]]),
    "can.modules.polls.period": ([0.05, 60], [0.049, 60.1]),
    "can.modules.polls.address_shift": ([0, 28], [-1, 29]),
    "can.modules.command_period": ([0.1, 10], [0.099, 10.01]),
    "can.inverter.bitrate": ([5_000, 1_000_000], [4_999, 1_000_001]),
    "can.inverter.period": ([0.05, 10], [0.049, 10.01]),
    "can.inverter.inverter_timeout": ([0, 1, 3600], [-1, 0.5, 3601]),
    "can.inverter.id_suffix": ([0, 15], [-1, 16]),
    "can.inverter.battery_id": ([0, 15], [-1, 16]),
    "bank.max_modules": ([1, 31], [0, 32]),
    "bank.module_timeout": ([1, 60], [0.99, 60.1]),
    "bank.frozen_counter_frames": ([2, 100], [1, 101]),
    "bank.cells_in_series": ([1, 48], [0, 49]),
    "bank.rated_charge_current": ([1, 1000], [0.9, 1000.1]),
    "bank.rated_discharge_current": ([1, 1000], [0.9, 1000.1]),
    "bank.capacity_ah": ([1, 6553.5], [0.9, 6553.6]),
    "bank.positions": ([{"1": 1}, {"1": 31}], [{"1": 0}, {"1": 32}]),
    "bank.tick": ([0.01, 1], [0.0099, 1.01, 1e-9, 1e12]),
    "bank.admission_soc_window": ([0.5, 100], [0.49, 100.1, -3]),
    "bank.admission_voltage_window": ([0.05, 100], [0.049, 100.1]),
    "bank.isolation_holdoff": ([0, 86_400], [-0.1, 86_401]),
    "bank.offline_hold": ([0, 3600], [-0.1, 3601]),
    "bank.cutoff_first_count": ([1, 1_000_000], [0, 1_000_001]),
    "bank.soh_spread": ([0, 100], [-0.1, 100.1]),
    "bank.capacity_spread": ([0, 100], [-0.1, 100.1]),
    "bank.cycle_spread": ([0, 100_000], [-1, 100_001]),
    "limits.charge_cell_voltage": TABLE_2_4,
    "limits.discharge_cell_voltage": TABLE_2_4,
    "limits.charge_temperature": TABLE_TEMPERATURE,
    "limits.discharge_temperature": TABLE_TEMPERATURE,
    "limits.charge_soc": TABLE_SOC,
    "limits.discharge_soc": TABLE_SOC,
    "limits.fan_duty": TABLE_TEMPERATURE,
    "limits.charge_voltage_per_cell": ([3.01, 3.65], [1.99, 3.66]),  # above discharge_voltage_per_cell (3.00)
    "limits.discharge_voltage_per_cell": ([2.0, 3.44], [1.99, 3.66]),  # below charge_voltage_per_cell (3.45)
    "limits.slew_rate": ([0.1, 10_000], [0.09, 10_001]),
    "limits.share_threshold": ([0, 100], [-0.1, 100.1]),
    "limits.share_smoothing": ([0.1, 600], [0.09, 601]),
    "limits.force_charge_soc": ([0, 100], [-0.1, 100.1, 200]),
    "limits.force_charge_cell_voltage": ([2.0, 3.65], [1.99, 3.66]),
    "limits.full_charge_interval": ([0, 1, 365], [-1, 0.5, 366]),
    "limits.full_charge_soc": ([50, 100], [49.9, 100.1]),
    "limits.balance_target_threshold": ([2.0, 3.65], [1.99, 3.66]),
    "limits.cell_over_voltage": RISING_2_4,
    "limits.cell_under_voltage": FALLING_2_4,
    "limits.pack_over_voltage": RISING_2_4,
    "limits.pack_under_voltage": FALLING_2_4,
    "limits.charge_over_temperature": RISING_TEMPERATURE,
    "limits.discharge_over_temperature": RISING_TEMPERATURE,
    "limits.charge_under_temperature": FALLING_TEMPERATURE,
    "limits.discharge_under_temperature": FALLING_TEMPERATURE,
    "limits.over_current": ([[50, 1000]], [[49, 100], [100, 1001]]),
    "limits.cell_imbalance": ([[0.005, 1.0]], [[0.004, 0.1], [0.1, 1.01]]),
    "limits.rest_current": ([0, 1000], [-0.1, 1000.1]),
    "limits.heat_accumulation": ([0.5, 50], [0.4, 50.1]),
    "limits.sensor_mismatch": ([0, 100], [-0.1, 100.1]),
    "limits.voltage_hysteresis": ([0, 0.5], [-0.01, 0.51]),
    "limits.temperature_hysteresis": ([0, 20], [-0.1, 20.1]),
    "limits.alarm_hold": ([0.1, 3600], [0.09, 3601]),
    "modbus.port": ([0, 65535], [-1, 65536]),
    "modbus.unit_id": ([1, 247], [0, 248]),
    "modbus.max_clients": ([1, 256], [0, 257]),
    "modbus.idle_timeout": ([1.0, 3600.0], [0.5, 3601.0]),
    "modbus_rtu.baudrate": ([1200, 115_200], [1199, 115_201]),
    "modbus_rtu.unit_id": ([1, 247], [0, 248]),
    "modbus_rtu.heartbeat_timeout": ([0, 120, 3600], [-1, 119.9, 3601]),
    "mqtt.port": ([1, 65535], [0, 65536]),
    "mqtt.interval": ([0.1, 3600], [0.09, 3601]),
    "mqtt.qos": ([0, 2], [-1, 3]),
    "metrics.port": ([0, 65535], [-1, 65536]),
    "web.port": ([0, 65535], [-1, 65536]),
    "history.retention_days": ([1, 36_500], [0, 36_501]),
    "sparkplug.interval": ([0.1, 3600], [0.09, 3601]),
    "sparkplug.deadband": ([0, 1000], [-0.1, 1000.1]),
    "sparkplug.port": ([1, 65535], [0, 65536]),
}
"""Every number key: values just inside its range (accepted) and just outside (refused, naming the key)."""


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [(key, v, True) for key, (inside, _) in BOUNDARIES.items() for v in inside]
    + [(key, v, False) for key, (_, outside) in BOUNDARIES.items() for v in outside],
)
def test_range_boundaries(key: str, value: Any, accepted: bool) -> None:
    if accepted:
        config.parse(nested(key, value))
        return
    with pytest.raises(ConfigError) as info:
        config.parse(nested(key, value))
    assert any(p.startswith(key) and "within" in p for p in info.value.problems), info.value.problems


def number_keys(cls: Any, prefix: str = "") -> list[str]:
    """Every key whose value is or holds numbers."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(optional) == 1:
            hint = optional[0]  # unset (None): the default of whatever reads it
        key = f"{prefix}{f.name}"
        hint = table(hint)
        if dataclasses.is_dataclass(hint):
            out += number_keys(hint, f"{key}.")
        elif hint in (int, float) or (
            typing.get_origin(hint) in (tuple, Mapping) and hint not in (Mapping[str, str], tuple[str, ...])
        ):
            out.append(key)
    return out


def test_every_number_key_has_a_range_and_a_boundary_row() -> None:
    """A new number key needs a range (or its own check) and rows in BOUNDARIES."""
    keys = set(number_keys(config.Config))
    addressing = {key for keys in KEYS.values() for key in keys} - {"address_signal"}
    addressing |= {"address_offset", "address_count"}  # checked by `Addressing.problems`
    own_checks = {"bank.strings", "bank.min_online", *(f"can.modules.{key}" for key in addressing)}
    ranged = {key for key in keys if _field(key).metadata.get("range")}
    assert keys - ranged == own_checks
    assert keys - {"bank.strings", "bank.min_online"} == BOUNDARIES.keys()


def _field(key: str) -> dataclasses.Field[Any]:
    cls: Any = config.Config
    *sections, name = key.split(".")
    for section in sections:
        cls = table(typing.get_type_hints(cls)[section])
    return next(f for f in dataclasses.fields(cls) if f.name == name)


@pytest.mark.parametrize(
    ("key", "value", "found"),
    [
        ("gateway.id", "stack\x001", "'\\x00' at position 5"),
        ("gateway.name", "bms\tgateway", "'\\t' at position 3"),
        ("mqtt.base_topic", "bms\x7f", "'\\x7f' at position 3"),
        ("can.modules.dbc", "v\x00.dbc", "'\\x00' at position 1"),
    ],
)
def test_control_characters_are_refused(key: str, value: str, found: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(nested(key, value))
    assert info.value.problems == [f"{key}: must not contain control characters, got {found}"]


def test_a_file_nested_too_deeply_is_not_valid_toml(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [f"{path}: not valid TOML: arrays or tables nested too deeply"]
