"""What Home Assistant accepts in an MQTT discovery message: a small checker of HA's discovery rules.

The checker knows the device/state classes and units we use, from HA's sensor and binary sensor docs; a class
it does not know fails, so adding a field with a new class to fields.py means teaching the checker first. The
rest follows HA's MQTT schemas (`homeassistant/components/mqtt/`: sensor.py, binary_sensor.py, button.py and
the device schema in schemas.py): what each platform accepts, what it requires, and the values it refuses. HA
drops unknown keys without a word, and refuses the whole entity for a bad value, so both are problems here.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

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
BINARY_DEVICE_CLASSES = {"problem"}
"""The binary sensor classes we use. `battery_charging` ("Charging") and `power` are deliberately not among them:
the flags say what is allowed, not what the battery does (issue 17)."""
BUTTON_DEVICE_CLASSES = {"identify", "restart", "update"}
ENTITY_CATEGORIES = {
    "sensor": {"diagnostic"},  # HA: "Entity category config is invalid for sensors"
    "binary_sensor": {"diagnostic"},
    "button": {"config", "diagnostic"},
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
"""HA's MQTT device schema; every value but the identifiers and connections is a string."""

COMMON_KEYS = {
    "name",
    "unique_id",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "origin",
    "icon",
    "entity_category",
    "json_attributes_topic",
    "json_attributes_template",
}
STATE_KEYS = {"state_topic", "value_template", "device_class"}
ALLOWED_KEYS = {
    "sensor": COMMON_KEYS | STATE_KEYS | {"unit_of_measurement", "state_class", "suggested_display_precision"},
    "binary_sensor": COMMON_KEYS | STATE_KEYS | {"payload_on", "payload_off"},
    "button": COMMON_KEYS | {"command_topic", "command_template", "payload_press", "qos", "retain", "device_class"},
}
REQUIRED_KEYS = {
    "sensor": {"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"},
    "binary_sensor": {"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"},
    "button": {"name", "unique_id", "command_topic", "availability_topic", "device"},
}


def _device_problems(topic: str, device: Any) -> list[str]:
    if not isinstance(device, dict):
        return [f"{topic}: device is not an object"]
    problems = [f"{topic}: unknown device key {key}" for key in sorted(device.keys() - DEVICE_KEYS)]
    if not device.get("identifiers") or not all(isinstance(i, str) for i in device["identifiers"]):
        problems.append(f"{topic}: device needs identifiers")
    for key, value in device.items():
        if key not in {"identifiers", "connections"} and not isinstance(value, str):
            problems.append(f"{topic}: device {key} {value!r} is not a string")
    if "configuration_url" in device:
        url = urlsplit(str(device["configuration_url"]))
        if url.scheme not in {"http", "https", "homeassistant"} or not url.netloc:
            problems.append(f"{topic}: device configuration_url {device['configuration_url']!r} is not a URL HA takes")
    return problems


def _button_problems(topic: str, payload: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(payload.get("payload_press", "PRESS"), str):
        problems.append(f"{topic}: payload_press {payload['payload_press']!r} is not a string")
    if payload.get("device_class") is not None and payload["device_class"] not in BUTTON_DEVICE_CLASSES:
        problems.append(f"{topic}: button device_class {payload['device_class']!r}")
    if payload.get("qos", 0) not in {0, 1, 2}:
        problems.append(f"{topic}: qos {payload['qos']!r}")
    if not isinstance(payload.get("retain", False), bool):
        problems.append(f"{topic}: retain {payload['retain']!r} is not a boolean")
    if any(c in payload.get("command_topic", "#") for c in "#+"):
        problems.append(f"{topic}: command_topic is not a topic one can publish to")
    return problems


def ha_problems(topic: str, payload: dict[str, Any], prefix: str = "homeassistant") -> list[str]:
    """What Home Assistant would refuse (or silently drop) in one discovery message; empty when it is fine."""
    problems: list[str] = []
    match = TOPIC.match(topic)
    if match is None or match["prefix"] != prefix:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = match["component"]
    if component not in ALLOWED_KEYS:
        return [f"{topic}: component {component} not checked"]
    problems += [f"{topic}: missing {key}" for key in sorted(REQUIRED_KEYS[component] - payload.keys())]
    problems += [f"{topic}: unknown key {key}" for key in sorted(payload.keys() - ALLOWED_KEYS[component])]
    problems += _device_problems(topic, payload.get("device", {}))
    if "icon" in payload and not payload["icon"].startswith("mdi:"):
        problems.append(f"{topic}: icon {payload['icon']!r} is not mdi:")
    category = payload.get("entity_category")
    if category is not None and category not in ENTITY_CATEGORIES[component]:
        problems.append(f"{topic}: entity_category {category!r} is invalid for a {component}")
    if component == "button":
        return problems + _button_problems(topic, payload)
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
    if precision is not None and (type(precision) is not int or precision < 0):  # HA: cv.positive_int, no bool
        problems.append(f"{topic}: suggested_display_precision {precision!r}")
    return problems


def numeric(payload: dict[str, Any]) -> bool:
    """Whether HA expects a number from this sensor: with a unit, a state class, a display precision or a device
    class (then a text state is an error in HA's log and the entity shows unknown)."""
    keys = ("unit_of_measurement", "state_class", "suggested_display_precision", "device_class")
    return any(payload.get(key) is not None for key in keys)


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
