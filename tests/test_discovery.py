"""Home Assistant discovery payloads, checked against HA's MQTT discovery rules (helpers/home_assistant.py).

The checker knows the device/state classes and units we use, from HA's sensor and binary sensor docs; a class
it does not know fails, so adding a field with a new class to fields.py means teaching the checker first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import __version__, config
from gateway.errors import ConfigError
from gateway.master.model import AlarmCode, empty_snapshot
from gateway.outputs import discovery
from gateway.outputs.discovery import ModuleIdentity, Topics
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, MODULE_TEXT
from gateway.outputs.mqtt import execute
from gateway.payload import alarm_dict, bank_dict, module_dict

from helpers.factories import bank, master, reading, run
from helpers.home_assistant import TOPIC, energy_dashboard_problems, fleet_problems, ha_problems, numeric

ROOT = Path(__file__).parents[1]


def all_configs(cfg: config.Config, addresses: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    configs = discovery.bank_configs(cfg)
    for address in addresses:
        configs.update(discovery.module_configs(cfg, address))
    return configs


def test_bank_and_module_configs_satisfy_home_assistant() -> None:
    configs = all_configs(config.parse({}), (1, 2, 16))
    assert fleet_problems(configs) == []
    matches = [TOPIC.match(t) for t in configs]
    assert all(matches), configs
    components = Counter(m["component"] for m in matches if m)
    assert components == {
        "sensor": len(BANK_FIELDS) + 3 * (len(MODULE_FIELDS) + len(MODULE_TEXT)),
        "binary_sensor": len(BANK_FLAGS) + len(AlarmCode),
    }  # no buttons: commands are off by default


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"unit_of_measurement": "%"}, "unit '%' is not valid for device_class voltage"),
        ({"state_class": "total_increasing"}, "state_class total_increasing is not valid"),
        ({"device_class": "voltage_ish"}, "unknown to the checker"),
        ({"icon": "fan"}, "is not mdi:"),
        ({"colour": 1}, "unknown key colour"),
        ({"entity_category": "config"}, "entity_category 'config' is invalid for a sensor"),
        ({"entity_category": "system"}, "entity_category 'system' is invalid"),
        ({"suggested_display_precision": True}, "suggested_display_precision True"),
        ({"suggested_display_precision": "2"}, "suggested_display_precision '2'"),
        ({"suggested_display_precision": -1}, "suggested_display_precision -1"),
        ({"command_topic": "bms/stack1/command/full_charge"}, "unknown key command_topic"),
        ({"device": {"identifiers": ["bms_stack1"], "sw_version": 1}}, "device sw_version 1 is not a string"),
        ({"device": {"identifiers": ["x"], "configuration_url": "ftp://gw"}}, "configuration_url 'ftp://gw'"),
        ({"device": {"identifiers": ["x"], "colour": "red"}}, "unknown device key colour"),
    ],
)
def test_the_checker_refuses_what_home_assistant_refuses(change: dict[str, Any], problem: str) -> None:
    topic = "homeassistant/sensor/bms_stack1/voltage/config"
    payload = {**discovery.bank_configs(config.parse({}))[topic], **change}
    assert any(problem in p for p in ha_problems(topic, payload)), ha_problems(topic, payload)
    assert ha_problems("homeassistant/sensor/bms.stack1/voltage/config", payload) != []


@pytest.mark.parametrize(
    ("topic", "change", "problem"),
    [
        ("binary_sensor/bms_stack1/charge_enable", {"device_class": "battery_charging"}, "device_class"),
        ("binary_sensor/bms_stack1/valid", {"entity_category": "config"}, "invalid for a binary_sensor"),
        ("binary_sensor/bms_stack1/valid", {"suggested_display_precision": 1}, "unknown key"),
        ("button/bms_stack1/request_full_charge", {"command_topic": None}, "missing command_topic"),
        ("button/bms_stack1/request_full_charge", {"state_topic": "bms/stack1/bank"}, "unknown key state_topic"),
        ("button/bms_stack1/request_full_charge", {"payload_press": 1}, "payload_press 1 is not a string"),
        ("button/bms_stack1/request_full_charge", {"device_class": "problem"}, "button device_class"),
        ("button/bms_stack1/request_full_charge", {"retain": "no"}, "retain 'no'"),
        ("button/bms_stack1/request_full_charge", {"command_topic": "bms/#"}, "not a topic one can publish to"),
        ("button/bms_stack1/request_full_charge", {"entity_category": "system"}, "invalid for a button"),
    ],
)
def test_the_checker_knows_binary_sensors_and_buttons(topic: str, change: dict[str, Any], problem: str) -> None:
    configs = discovery.bank_configs(config.parse({"mqtt": {"commands": True}}))
    topic = f"homeassistant/{topic}/config"
    assert ha_problems(topic, configs[topic]) == []
    payload = {k: v for k, v in {**configs[topic], **change}.items() if v is not None}
    assert any(problem in p for p in ha_problems(topic, payload)), ha_problems(topic, payload)


def _by_key(configs: dict[str, dict[str, Any]], node: str) -> dict[str, dict[str, Any]]:
    """Object id -> payload of the configs of one HA device (node)."""
    return {topic.split("/")[-2]: p for topic, p in configs.items() if topic.split("/")[-3] == node}


def test_the_flags_say_allowed_and_carry_no_class_that_says_otherwise() -> None:
    """Charge/discharge enable is what the inverter is permitted, not what the battery does: HA's battery_charging
    class would show "Charging" / "Not charging", and power "On" for "power detected"."""
    bank_entities = _by_key(discovery.bank_configs(config.parse({})), "bms_stack1")
    for key, name in (("charge_enable", "Charge allowed"), ("discharge_enable", "Discharge allowed")):
        assert bank_entities[key]["name"] == name
        assert "device_class" not in bank_entities[key]
        assert bank_entities[key]["value_template"].startswith("{{ 'ON' if value_json.flags")
    classes = {
        p.get("device_class") for t, p in discovery.bank_configs(config.parse({})).items() if "/binary_sensor/" in t
    }
    assert classes == {None, "problem"}


DIAGNOSTIC_BANK = {
    "charge_current_limit",
    "discharge_current_limit",
    "charge_voltage_limit",
    "discharge_voltage_limit",
    "cell_voltage_max_module",
    "cell_voltage_max_cell",
    "cell_voltage_min_module",
    "cell_voltage_min_cell",
    "temperature_max_module",
    "temperature_min_module",
    "valid",
}
DIAGNOSTIC_MODULE = {"charge_current_limit", "discharge_current_limit", "share", "cycle_count", "firmware"}


def test_what_is_no_user_facing_measurement_is_diagnostic() -> None:
    """The issue's list, written out here rather than read from fields.py: module and cell numbers, data valid,
    current share, cycle count, the limits, per-module firmware. Everything else is on the dashboards."""
    cfg = config.parse({"mqtt": {"commands": True}})
    bank_entities = _by_key(discovery.bank_configs(cfg), "bms_stack1")
    module = _by_key(discovery.module_configs(cfg, 1), "bms_stack1_module_1")
    categories = {key: p.get("entity_category") for key, p in bank_entities.items()}
    assert {key for key, c in categories.items() if c == "diagnostic"} == DIAGNOSTIC_BANK
    assert {key for key, c in categories.items() if c not in (None, "diagnostic")} == set()
    categories = {key: p.get("entity_category") for key, p in module.items()}
    assert {key for key, c in categories.items() if c == "diagnostic"} == DIAGNOSTIC_MODULE
    assert {key: c for key, c in categories.items() if c not in (None, "diagnostic")} == {"readmit": "config"}


def test_display_precision_follows_the_unit() -> None:
    """3 decimals for cell voltages, 2 for the bank's and a module's voltages, 1 for currents and temperatures."""
    cfg = config.parse({})
    configs = {**discovery.bank_configs(cfg), **discovery.module_configs(cfg, 1)}
    expected = {"V": 2, "A": 1, "°C": 1}
    checked: Counter[tuple[str, bool]] = Counter()
    for topic, p in configs.items():
        unit = p.get("unit_of_measurement")
        if unit not in expected:
            continue
        cell = topic.split("/")[-2].startswith("cell_voltage_")
        assert p["suggested_display_precision"] == (3 if cell else expected[unit]), topic
        checked[(unit, cell)] += 1
    assert checked == {("V", True): 6, ("V", False): 4, ("A", False): 6, ("°C", False): 5}


def test_index_numbers_have_no_unit_and_no_state_class() -> None:
    """Deliberate (fields.py `_n`): HA keeps no long-term statistics of module or cell numbers."""
    bank_entities = _by_key(discovery.bank_configs(config.parse({})), "bms_stack1")
    indexes = {key: p for key, p in bank_entities.items() if key.endswith(("_module", "_cell"))}
    assert len(indexes) == 6
    for key, p in indexes.items():
        assert not {"unit_of_measurement", "state_class", "device_class"} & p.keys(), key
        assert p["entity_category"] == "diagnostic"


def test_module_devices_carry_what_module_info_says() -> None:
    cfg = config.parse({})
    identity = ModuleIdentity.of(reading(3, 0.0, firmware=(2, 0, 11), cells_in_series=15, nominal_capacity=280.0))
    assert identity == ModuleIdentity("2.0.11", 15, 280.0)
    device = discovery.module_device(cfg, 3, identity)
    assert device == {
        "identifiers": ["bms_stack1_module_3"],
        "name": "bms-gateway module 3",
        "manufacturer": "Unknown",  # the module protocol carries no vendor: the documented placeholder
        "model": "Battery module 15S 280 Ah",
        "sw_version": "2.0.11",
        "via_device": "bms_stack1",
    }
    unknown = reading(3, 0.0, firmware=None, cells_in_series=None, nominal_capacity=None)
    assert ModuleIdentity.of(unknown) is None  # no ModuleInfo yet
    before = discovery.module_device(cfg, 3, None)
    assert (before["model"], "sw_version" in before) == ("Battery module", False)
    configs = discovery.module_configs(cfg, 3, identity)
    assert {json.dumps(p["device"]) for p in configs.values()} == {json.dumps(device)}
    assert fleet_problems({**discovery.bank_configs(cfg), **configs}) == []


def test_the_bank_device_carries_the_gateway_version_and_a_dashboard_link_only_when_configured() -> None:
    plain = discovery.bank_device(config.parse({}))
    assert plain["sw_version"] == __version__
    assert "configuration_url" not in plain
    cfg = config.parse({"mqtt": {"configuration_url": "http://gateway.local:8080/"}})
    assert discovery.bank_device(cfg)["configuration_url"] == "http://gateway.local:8080/"
    assert fleet_problems(discovery.bank_configs(cfg)) == []
    with pytest.raises(ConfigError, match="mqtt.configuration_url: must be an http"):
        config.parse({"mqtt": {"configuration_url": "gateway.local"}})


class Actions:
    """The master's operator actions, recorded (module 3 is isolated)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def readmit(self, address: int) -> bool:
        self.calls.append(("readmit", address))
        return address == 3

    def request_full_charge(self) -> None:
        self.calls.append(("full_charge",))


def test_buttons_are_the_commands_mqtt_accepts_and_only_with_commands_on() -> None:
    off = config.parse({"gateway": {"id": "g7"}})
    assert not any("/button/" in t for t in {**discovery.bank_configs(off), **discovery.module_configs(off, 3)})
    cfg = config.parse({"gateway": {"id": "g7"}, "mqtt": {"commands": True, "qos": 1}})
    configs = {**discovery.bank_configs(cfg), **discovery.module_configs(cfg, 3)}
    buttons = {t: p for t, p in configs.items() if "/button/" in t}
    assert set(buttons) == {
        "homeassistant/button/bms_g7/request_full_charge/config",
        "homeassistant/button/bms_g7_module_3/readmit/config",
    }
    assert fleet_problems(configs) == []
    full, readmit = buttons.values()
    assert (full["command_topic"], full["payload_press"]) == ("bms/g7/command/full_charge", "1")
    assert (readmit["command_topic"], readmit["payload_press"]) == ("bms/g7/command/readmit", "3")
    assert {(p["retain"], p["qos"]) for p in buttons.values()} == {(False, 1)}  # a retained command is refused
    actions = Actions()
    for p in buttons.values():  # what a press publishes is a command the gateway executes
        name = p["command_topic"].removeprefix(Topics.of(cfg).command_prefix)
        assert execute(actions, name, p["payload_press"], addresses=cfg.can.modules[0].addresses)[0]
    assert actions.calls == [("full_charge",), ("readmit", 3)]
    # With commands off, the publisher clears the buttons a previous run may have offered.
    assert discovery.withdrawn(off) == ["homeassistant/button/bms_g7/request_full_charge/config"]
    assert discovery.withdrawn(off, 3) == ["homeassistant/button/bms_g7_module_3/readmit/config"]
    assert discovery.withdrawn(cfg) == discovery.withdrawn(cfg, 3) == []
    assert "homeassistant/button/bms_g7_module_3/readmit/config" in discovery.module_topics(off, 3)


def test_modules_are_devices_linked_to_the_bank() -> None:
    cfg = config.parse({"gateway": {"id": "shed.1", "name": "Shed battery"}})
    module = discovery.module_configs(cfg, 3)
    topic = "homeassistant/sensor/bms_shed_1_module_3/voltage/config"
    assert topic in module
    device = module[topic]["device"]
    assert device["identifiers"] == ["bms_shed_1_module_3"]
    assert device["via_device"] == "bms_shed_1"
    assert device["name"] == "Shed battery module 3"
    assert module[topic]["state_topic"] == "bms/shed.1/module/3"
    assert module[topic]["availability_topic"] == "bms/shed.1/status"
    assert fleet_problems({**discovery.bank_configs(cfg), **module}) == []


def test_topics_follow_the_config() -> None:
    cfg = config.parse({"gateway": {"id": "g7"}, "mqtt": {"base_topic": "site/batteries", "discovery_prefix": "ha"}})
    topics = Topics.of(cfg)
    assert (topics.status, topics.bank, topics.alarms, topics.modules) == (
        "site/batteries/g7/status",
        "site/batteries/g7/bank",
        "site/batteries/g7/alarms",
        "site/batteries/g7/modules",
    )
    assert (topics.module(4), topics.cells(4), topics.commands, topics.command_result) == (
        "site/batteries/g7/module/4",
        "site/batteries/g7/cells/4",
        "site/batteries/g7/command/#",
        "site/batteries/g7/command/result",
    )
    assert discovery.birth_topic(cfg) == "ha/status"
    assert all(t.startswith("ha/") for t in discovery.bank_configs(cfg))
    assert fleet_problems(discovery.bank_configs(cfg), prefix="ha") == []


Render = Callable[[str, Any], str]


@pytest.fixture
def render() -> Render:
    """Render a template like HA does (a sandboxed Jinja environment with `value_json`)."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()
    return lambda template, value_json: str(env.from_string(template).render(value_json=value_json))


def _numeric_or_none(text: str) -> bool:
    if text == "None":  # HA's "unknown"
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_templates_render_values_and_unknowns(render: Render) -> None:
    """Every template against real payloads, valid and empty: a number or "None", ON/OFF, an attribute dict."""
    cfg = config.parse({"bank": {"strings": [[1], [2]]}})
    m = master(bank={"strings": [[1], [2]]})
    imbalance = run(m, 0.0, 5.0, lambda t: {1: reading(1, t, cell_voltage_max=3.45, cell_voltage_min=3.30)}).snapshot
    healthy = run(master(), 0.0, 5.0, bank(1, 2)).snapshot
    assert "cell_imbalance" in [a.code for a in imbalance.alarms]
    assert imbalance.modules[2].limits is None  # never seen: nested parts are null
    configs = all_configs(cfg, (1, 2))
    for snapshot in (empty_snapshot(0.0), healthy, imbalance):
        alarms = json.loads(json.dumps([alarm_dict(a) for a in snapshot.alarms]))
        states = {Topics.of(cfg).bank: json.loads(json.dumps(bank_dict(snapshot))), Topics.of(cfg).alarms: alarms}
        for address, view in snapshot.modules.items():
            states[Topics.of(cfg).module(address)] = json.loads(json.dumps(module_dict(view, snapshot.t)))
        for topic, payload in configs.items():
            if payload["state_topic"] not in states:
                continue
            value = render(payload["value_template"], states[payload["state_topic"]])
            if "/binary_sensor/" in topic:
                assert value in {"ON", "OFF"}, (topic, value)
            elif numeric(payload):
                assert _numeric_or_none(value), (topic, value)
            else:  # a text sensor: HA refuses text on a sensor with a unit, a class or a precision
                assert not value.startswith("{"), (topic, value)
            if "json_attributes_template" in payload:
                attributes = json.loads(render(payload["json_attributes_template"], alarms))
                assert isinstance(attributes, dict)
    bank_state = json.loads(json.dumps(bank_dict(imbalance)))
    alarm = discovery.bank_configs(cfg)["homeassistant/binary_sensor/bms_stack1/alarm_cell_imbalance/config"]
    assert render(alarm["value_template"], bank_state["alarms"]) == "ON"
    assert json.loads(render(alarm["json_attributes_template"], bank_state["alarms"]))["modules"] == [1]
    voltage = discovery.bank_configs(cfg)["homeassistant/sensor/bms_stack1/cell_voltage_max/config"]
    assert render(voltage["value_template"], bank_state) == "3.45"
    firmware = discovery.module_configs(cfg, 1)["homeassistant/sensor/bms_stack1_module_1/firmware/config"]
    module_state = json.loads(json.dumps(module_dict(imbalance.modules[1], imbalance.t)))
    assert render(firmware["value_template"], module_state) == "1.4.2"
    assert render(firmware["value_template"], json.loads(json.dumps(module_dict(imbalance.modules[2], 0.0)))) == "None"


@pytest.mark.parametrize("doc", ["docs/mqtt.md", "README.md"])
def test_the_docs_entity_list_is_generated_from_what_is_published(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert discovery.update_docs(text) == text, f"run: {discovery.DOCS_COMMAND}"


def test_the_entity_ids_are_the_ones_home_assistant_derives() -> None:
    """HA's entity id: the slug of "<device name> <entity name>" (both lowercased, runs of other characters `_`)."""
    configs = discovery.bank_configs(config.parse({"gateway": {"name": "Shed Battery #2"}, "mqtt": {"commands": True}}))
    ids = {discovery.entity_id(t.split("/")[1], p) for t, p in configs.items()}
    assert {"sensor.shed_battery_2_state_of_charge", "binary_sensor.shed_battery_2_charge_allowed"} <= ids
    assert "button.shed_battery_2_request_full_charge" in ids


def test_the_energy_sensors_qualify_for_the_energy_dashboard() -> None:
    """Lifetime energy in and out, per bank and per module: what HA's Energy dashboard takes as a battery."""
    cfg = config.parse({})
    configs = all_configs(cfg, (1, 2))
    energy = {t: p for t, p in configs.items() if p.get("device_class") == "energy"}
    assert sorted(t.split("/")[-2] for t in energy) == ["charged_energy"] * 3 + ["discharged_energy"] * 3
    for topic, payload in energy.items():
        assert energy_dashboard_problems(topic, payload) == []
        assert (payload["unit_of_measurement"], payload["state_class"]) == ("kWh", "total_increasing")
    bank = energy["homeassistant/sensor/bms_stack1/charged_energy/config"]
    assert bank["value_template"] == "{{ value_json.energy.charged_kwh if value_json.energy is not none else none }}"
    assert bank["state_topic"] == "bms/stack1/bank"
    module = energy["homeassistant/sensor/bms_stack1_module_2/discharged_energy/config"]
    assert module["state_topic"] == "bms/stack1/module/2"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"state_class": "measurement"}, "state_class measurement is not valid for device_class energy"),
        ({"unit_of_measurement": "W"}, "unit 'W' is not valid for device_class energy"),
        ({"device_class": "power", "unit_of_measurement": "W"}, "the Energy dashboard needs energy"),
    ],
)
def test_the_checker_refuses_energy_sensors_the_dashboard_would_not_take(change: dict[str, Any], problem: str) -> None:
    topic = "homeassistant/sensor/bms_stack1/charged_energy/config"
    payload = {**discovery.bank_configs(config.parse({}))[topic], **change}
    assert any(problem in p for p in energy_dashboard_problems(topic, payload)), energy_dashboard_problems(
        topic, payload
    )
