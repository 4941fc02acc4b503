from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError


def test_empty_file_is_a_working_config_for_the_typical_module(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("")
    cfg = config.load(path)
    assert cfg.gateway.id == "stack1"
    assert cfg.can.modules.interface == "virtual"
    assert cfg.can.modules.bitrate == 500_000
    assert cfg.can.modules.address_mask == 0x1F
    assert cfg.can.inverter.protocol == "pylontech"
    assert cfg.can.inverter.period == 1.0
    assert cfg.bank.cells_in_series == 16
    assert cfg.bank.module_timeout == 3.0
    assert cfg.bank.rated_charge_current == cfg.bank.rated_discharge_current == 100.0
    assert cfg.limits.charge_cell_voltage == ((3.40, 100.0), (3.45, 50.0), (3.50, 10.0), (3.55, 0.0))
    assert (cfg.modbus.host, cfg.modbus.port, cfg.modbus.unit_id) == ("127.0.0.1", 5020, 1)
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
    assert cfg.can.modules.dbc == tmp_path / "conf" / "vendor.dbc"
    assert cfg.can.modules.address_mask == 0x0F
    assert dict(cfg.can.modules.signal_map) == {"PackV": "ModuleVoltage"}
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
        "can.inverter.protocol: must be one of 'pylontech', 'pylontech-1.3', 'victron', 'sma', got 'growatt'",
        "bank.strigns: unknown key (did you mean 'strings'?)",
        "bank.max_modules: must be an integer, got a string ('many')",
        "bank.positions.top: keys must be integers",
        "bank.min_online: must be within 1..max_modules",
        "limits.charge_soc: x values must be strictly increasing",
        "limits.fan_duty: percent values must be within 0..100",
        "limits.cell_over_voltage: the warning threshold must not be above the protection threshold",
        "modbus.port: must be within 0..65535",
        "mqtt.tls.cert_file: cert_file and key_file go together",
        "mqtt.qos: must be 0, 1 or 2",
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
        ("[bank]\nmodule_timeout = 0", "bank.module_timeout: must be positive"),
        ("[gateway]\nid = 'a/b'", "gateway.id: must be non-empty"),
        ("[limits]\ncharge_voltage_per_cell = 3.9", "limits.charge_voltage_per_cell: must be within"),
        ("[limits]\ncharge_soc = [[95, 100, 1]]", "limits.charge_soc[0]: must be an array of 2 values, got 3"),
        ("[limits]\ncharge_soc = 5", "limits.charge_soc: must be an array, got an integer (5)"),
        ("[can.inverter]\nperiod = 30", "can.inverter.period: must be within 0.05..10 s"),
        ("[can]\nmodules = 3", "can.modules: must be a table, got an integer (3)"),
        ("[mqtt]\nenabled = 'yes'", "mqtt.enabled: must be true or false, got a string ('yes')"),
        ("[mqtt]\npassword_file = 'p'", "mqtt.password_file: needs mqtt.username"),
        ("[can.modules]\nbitrate = 5e5", "can.modules.bitrate: must be an integer, got a number (500000.0)"),
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
    assert config.parse({"can": {"modules": {"address_mask": mask}}}).can.modules.addresses == addresses


@pytest.mark.parametrize("mask", [0, -1, 0x18, 0x1E, 0x21, 0x1FF, 0x400, 0x7FF])
def test_an_address_mask_must_be_a_low_bit_mask(mask: int) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"can": {"modules": {"address_mask": mask}}})
    assert info.value.problems == [
        f"can.modules.address_mask: must be a low-bit mask 2**n - 1 within 0x1..0xff (got {mask:#x})"
    ]


def test_bank_addresses_must_fit_the_address_mask() -> None:
    raw = {"can": {"modules": {"address_mask": 0x0F}}, "bank": {"strings": [[1, 15], [16]], "positions": {"16": 2}}}
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    assert info.value.problems == [
        "bank.strings[1]: module address 16 is outside 1..15 (can.modules.address_mask = 0xf)",
        "bank.positions.16: module address 16 is outside 1..15 (can.modules.address_mask = 0xf)",
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
