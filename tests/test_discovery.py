"""Home Assistant discovery payloads, checked against HA's MQTT discovery rules (helpers/home_assistant.py).

The checker knows the device/state classes and units we use, from HA's sensor and binary sensor docs; a class
it does not know fails, so adding a field with a new class to fields.py means teaching the checker first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from gateway import config
from gateway.master.model import AlarmCode, empty_snapshot
from gateway.outputs import discovery
from gateway.outputs.discovery import Topics
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS
from gateway.payload import alarm_dict, bank_dict, module_dict

from helpers.factories import bank, master, reading, run
from helpers.home_assistant import TOPIC, energy_dashboard_problems, fleet_problems, ha_problems


def all_configs(cfg: config.Config, addresses: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    configs = discovery.bank_configs(cfg)
    for address in addresses:
        configs.update(discovery.module_configs(cfg, address))
    return configs


def test_bank_and_module_configs_satisfy_home_assistant() -> None:
    configs = all_configs(config.parse({}), (1, 2, 16))
    assert fleet_problems(configs) == []
    components = Counter(TOPIC.match(t)["component"] for t in configs)  # type: ignore[index]
    assert components == {
        "sensor": len(BANK_FIELDS) + 3 * len(MODULE_FIELDS),
        "binary_sensor": len(BANK_FLAGS) + len(AlarmCode),
    }


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"unit_of_measurement": "%"}, "unit '%' is not valid for device_class voltage"),
        ({"state_class": "total_increasing"}, "state_class total_increasing is not valid"),
        ({"device_class": "voltage_ish"}, "unknown to the checker"),
        ({"icon": "fan"}, "is not mdi:"),
        ({"colour": 1}, "unknown key colour"),
    ],
)
def test_the_checker_refuses_what_home_assistant_refuses(change: dict[str, Any], problem: str) -> None:
    topic = "homeassistant/sensor/bms_stack1/voltage/config"
    payload = {**discovery.bank_configs(config.parse({}))[topic], **change}
    assert any(problem in p for p in ha_problems(topic, payload))
    assert ha_problems("homeassistant/sensor/bms.stack1/voltage/config", payload) != []


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
            else:
                assert _numeric_or_none(value), (topic, value)
            if "json_attributes_template" in payload:
                attributes = json.loads(render(payload["json_attributes_template"], alarms))
                assert isinstance(attributes, dict)
    bank_state = json.loads(json.dumps(bank_dict(imbalance)))
    alarm = discovery.bank_configs(cfg)["homeassistant/binary_sensor/bms_stack1/alarm_cell_imbalance/config"]
    assert render(alarm["value_template"], bank_state["alarms"]) == "ON"
    assert json.loads(render(alarm["json_attributes_template"], bank_state["alarms"]))["modules"] == [1]
    voltage = discovery.bank_configs(cfg)["homeassistant/sensor/bms_stack1/cell_voltage_max/config"]
    assert render(voltage["value_template"], bank_state) == "3.45"


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
