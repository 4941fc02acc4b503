"""What Home Assistant accepts in an MQTT discovery message: a small checker of HA's discovery rules.

The checker knows the device/state classes and units we use, from HA's sensor and binary sensor docs; a class
it does not know fails, so adding a field with a new class to fields.py means teaching the checker first.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

TOPIC = re.compile(
    r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)

SENSOR_UNITS = {
    "battery": {"%"},
    "current": {"A", "mA"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"},
    "temperature": {"°C", "°F", "K"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
}
"""HA sensor device class -> the units HA accepts for it (only the classes we use)."""
SENSOR_STATE_CLASSES = {device_class: {"measurement"} for device_class in SENSOR_UNITS} | {
    "energy": {"total", "total_increasing"}
}
"""HA sensor device class -> the state classes HA accepts for it (an energy sensor is a meter: a total, never a
measurement)."""
STATE_CLASSES = {"measurement", "total", "total_increasing"}
BINARY_DEVICE_CLASSES = {"battery_charging", "power", "problem"}

COMMON_KEYS = {
    "name",
    "unique_id",
    "state_topic",
    "value_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "origin",
    "device_class",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
}
ALLOWED_KEYS = {
    "sensor": COMMON_KEYS | {"unit_of_measurement", "state_class", "suggested_display_precision"},
    "binary_sensor": COMMON_KEYS | {"payload_on", "payload_off"},
}
REQUIRED_KEYS = {"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"}


def ha_problems(topic: str, payload: dict[str, Any], prefix: str = "homeassistant") -> list[str]:
    """What Home Assistant would refuse (or silently drop) in one discovery message; empty when it is fine."""
    problems: list[str] = []
    match = TOPIC.match(topic)
    if match is None or match["prefix"] != prefix:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = match["component"]
    if component not in ALLOWED_KEYS:
        return [f"{topic}: component {component} not checked"]
    problems += [f"{topic}: missing {key}" for key in sorted(REQUIRED_KEYS - payload.keys())]
    problems += [f"{topic}: unknown key {key}" for key in sorted(payload.keys() - ALLOWED_KEYS[component])]
    device = payload.get("device", {})
    if not device.get("identifiers") or not all(isinstance(i, str) for i in device["identifiers"]):
        problems.append(f"{topic}: device needs identifiers")
    if "icon" in payload and not payload["icon"].startswith("mdi:"):
        problems.append(f"{topic}: icon {payload['icon']!r} is not mdi:")
    if "value_json" not in payload.get("value_template", ""):
        problems.append(f"{topic}: value_template does not read value_json")
    device_class, unit, state_class = (payload.get(k) for k in ("device_class", "unit_of_measurement", "state_class"))
    if component == "binary_sensor":
        if device_class is not None and device_class not in BINARY_DEVICE_CLASSES:
            problems.append(f"{topic}: binary sensor device_class {device_class!r}")
        return problems
    if state_class is not None and state_class not in STATE_CLASSES:
        problems.append(f"{topic}: state_class {state_class!r}")
    if device_class is not None:
        if device_class not in SENSOR_UNITS:
            problems.append(f"{topic}: sensor device_class {device_class!r} unknown to the checker")
        else:
            if unit not in SENSOR_UNITS[device_class]:
                problems.append(f"{topic}: unit {unit!r} is not valid for device_class {device_class}")
            if state_class is not None and state_class not in SENSOR_STATE_CLASSES[device_class]:
                problems.append(f"{topic}: state_class {state_class} is not valid for device_class {device_class}")
    precision = payload.get("suggested_display_precision")
    if precision is not None and (not isinstance(precision, int) or precision < 0):
        problems.append(f"{topic}: suggested_display_precision {precision!r}")
    return problems


def energy_dashboard_problems(topic: str, payload: dict[str, Any]) -> list[str]:
    """What keeps a sensor out of HA's Energy dashboard (battery in/out, grid, solar): it must be an energy meter,
    device class energy, state class total or total_increasing, in a unit of energy; empty when it qualifies."""
    problems = ha_problems(topic, payload)
    if payload.get("device_class") != "energy":
        problems.append(f"{topic}: device_class {payload.get('device_class')!r}, the Energy dashboard needs energy")
    if payload.get("state_class") not in SENSOR_STATE_CLASSES["energy"]:
        problems.append(f"{topic}: state_class {payload.get('state_class')!r} is not a total")
    if payload.get("unit_of_measurement") not in SENSOR_UNITS["energy"]:
        problems.append(f"{topic}: unit {payload.get('unit_of_measurement')!r} is not a unit of energy")
    return problems


def fleet_problems(configs: dict[str, dict[str, Any]], prefix: str = "homeassistant") -> list[str]:
    """ha_problems of every message, plus what only shows across them: unique ids, `via_device` targets."""
    problems = [p for topic, payload in configs.items() for p in ha_problems(topic, payload, prefix)]
    ids = Counter(payload["unique_id"] for payload in configs.values())
    problems += [f"unique_id {uid} used {n} times" for uid, n in ids.items() if n > 1]
    devices = {i for payload in configs.values() for i in payload["device"]["identifiers"]}
    for topic, payload in configs.items():
        via = payload["device"].get("via_device")
        if via is not None and via not in devices:
            problems.append(f"{topic}: via_device {via} is no announced device")
    return problems
