"""MQTT topic names and Home Assistant discovery payloads: pure functions of the config and `fields.py`.

Nothing here does I/O, so the whole HA surface (which entities, which classes, which templates) is checked by
plain unit tests; `gateway.outputs.mqtt` only moves these messages to the broker.

Layout: one HA device for the bank (node `bms_<id>`) and one per module (node `bms_<id>_module_<address>`, linked
to the bank with `via_device`). Every entity reads one of the gateway's JSON state topics through a value
template, and uses the gateway's retained status topic for availability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.master.model import AlarmCode
from gateway.outputs.fields import BANK_FIELDS, BANK_FLAGS, MODULE_FIELDS, Field

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Topics:
    """The gateway's own topics, all under `<base_topic>/<gateway id>/`."""

    root: str

    @classmethod
    def of(cls, config: Config) -> Topics:
        return cls(f"{config.mqtt.base_topic}/{config.gateway.id}")

    @property
    def status(self) -> str:
        """Retained "online"/"offline"; "offline" is also the Last Will."""
        return f"{self.root}/status"

    @property
    def bank(self) -> str:
        return f"{self.root}/bank"

    @property
    def alarms(self) -> str:
        return f"{self.root}/alarms"

    @property
    def events(self) -> str:
        """Retained: the gateway's latest event (gateway.history.events.event_dict)."""
        return f"{self.root}/events"

    @property
    def modules(self) -> str:
        """Retained record of the module addresses announced to HA, so removal works across restarts."""
        return f"{self.root}/modules"

    @property
    def commands(self) -> str:
        """Subscription filter for operator commands."""
        return f"{self.root}/command/#"

    @property
    def command_prefix(self) -> str:
        return f"{self.root}/command/"

    @property
    def command_result(self) -> str:
        return f"{self.root}/command/result"

    def module(self, address: int) -> str:
        return f"{self.root}/module/{address}"

    def cells(self, address: int) -> str:
        return f"{self.root}/cells/{address}"


def birth_topic(config: Config) -> str:
    """Where Home Assistant announces itself ("online") after a restart."""
    return f"{config.mqtt.discovery_prefix}/status"


def _slug(text: str) -> str:
    """HA node and object ids allow only [a-zA-Z0-9_-]."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def bank_node(config: Config) -> str:
    return f"bms_{_slug(config.gateway.id)}"


def module_node(config: Config, address: int) -> str:
    return f"{bank_node(config)}_module_{address}"


def _template(path: str, *, binary: bool = False) -> str:
    """A value template for a dotted payload path that renders "None" (HA: unknown) where any parent is null.

    Binary sensors render ON/OFF (HA's default payloads) so null reads as OFF rather than an unparsable state.
    """
    parts = path.split(".")
    value = "value_json." + path
    guards = " and ".join(f"value_json.{'.'.join(parts[:i])} is not none" for i in range(1, len(parts)))
    if binary:
        condition = f"{guards} and {value}" if guards else value
        return f"{{{{ 'ON' if {condition} else 'OFF' }}}}"
    if not guards:
        return f"{{{{ {value} }}}}"
    return f"{{{{ {value} if {guards} else none }}}}"


def _common(config: Config, name: str, unique_id: str, state_topic: str, device: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "availability_topic": Topics.of(config).status,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": device,
        "origin": {"name": "bms-gateway", "sw_version": __version__},
    }


def _sensor(config: Config, f: Field, node: str, state_topic: str, device: dict[str, Any]) -> dict[str, Any]:
    payload = _common(config, f.name, f"{node}_{f.key}", state_topic, device)
    payload["value_template"] = _template(f.path)
    optional = {
        "unit_of_measurement": f.unit,
        "device_class": f.device_class,
        "state_class": f.state_class,
        "suggested_display_precision": f.precision,
        "icon": f.icon,
    }
    payload.update((k, v) for k, v in optional.items() if v is not None)
    return payload


def _binary(config: Config, f: Field, node: str, state_topic: str, device: dict[str, Any]) -> dict[str, Any]:
    payload = _common(config, f.name, f"{node}_{f.key}", state_topic, device)
    payload["value_template"] = _template(f.path, binary=True)
    payload.update((k, v) for k, v in (("device_class", f.device_class), ("icon", f.icon)) if v is not None)
    return payload


def _alarm(config: Config, code: AlarmCode, node: str, device: dict[str, Any]) -> dict[str, Any]:
    """A problem sensor for one alarm code; its attributes are that alarm's entry (level, modules, detail)."""
    topic = Topics.of(config).alarms
    name = code.replace("_", " ").capitalize() + " alarm"
    payload = _common(config, name, f"{node}_alarm_{code}", topic, device)
    payload["value_template"] = f"{{{{ 'ON' if '{code}' in value_json | map(attribute='code') | list else 'OFF' }}}}"
    payload["device_class"] = "problem"
    payload["json_attributes_topic"] = topic
    payload["json_attributes_template"] = (
        f"{{{{ ((value_json | selectattr('code', 'equalto', '{code}') | list) + [{{}}]) | first | tojson }}}}"
    )
    return payload


def _config_topic(config: Config, component: str, node: str, object_id: str) -> str:
    return f"{config.mqtt.discovery_prefix}/{component}/{node}/{object_id}/config"


def bank_device(config: Config) -> dict[str, Any]:
    return {
        "identifiers": [bank_node(config)],
        "name": config.gateway.name,
        "manufacturer": "bms-gateway",
        "model": "Master BMS",
        "sw_version": __version__,
    }


def module_device(config: Config, address: int) -> dict[str, Any]:
    return {
        "identifiers": [module_node(config, address)],
        "name": f"{config.gateway.name} module {address}",
        "model": "Battery module",
        "via_device": bank_node(config),
    }


def bank_configs(config: Config) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every bank entity: values, flags and one sensor per alarm code."""
    node, device, topics = bank_node(config), bank_device(config), Topics.of(config)
    out = {
        _config_topic(config, "sensor", node, f.key): _sensor(config, f, node, topics.bank, device) for f in BANK_FIELDS
    }
    for f in BANK_FLAGS:
        out[_config_topic(config, "binary_sensor", node, f.key)] = _binary(config, f, node, topics.bank, device)
    for code in AlarmCode:
        out[_config_topic(config, "binary_sensor", node, f"alarm_{code}")] = _alarm(config, code, node, device)
    return out


def module_configs(config: Config, address: int) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for one module's entities (its values from `MODULE_FIELDS`)."""
    node, device, state = (
        module_node(config, address),
        module_device(config, address),
        Topics.of(config).module(address),
    )
    return {
        _config_topic(config, "sensor", node, f.key): _sensor(config, f, node, state, device) for f in MODULE_FIELDS
    }
