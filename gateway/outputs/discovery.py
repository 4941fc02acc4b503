"""MQTT topic names and Home Assistant discovery payloads: pure functions of the config and `fields.py`.

Nothing here does I/O, so the whole HA surface (which entities, which classes, which templates) is checked by
plain unit tests; `gateway.outputs.mqtt` only moves these messages to the broker.

Layout: one HA device for the bank (node `bms_<id>`) and one per module (node `bms_<id>_module_<address>`, linked
to the bank with `via_device`). Every entity reads one of the gateway's JSON state topics through a value
template (buttons publish to its command topics instead), and uses the gateway's retained status topic for
availability. What each entity is (name, unit, classes, category, precision) comes from `fields.py`; this module
only maps those descriptions onto Home Assistant's keys.

`python -m gateway.outputs.discovery docs/mqtt.md README.md` rewrites the entity table in the docs.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.master.model import AlarmCode, ModuleReading
from gateway.outputs import generated
from gateway.outputs.fields import (
    BANK_BUTTONS,
    BANK_FIELDS,
    BANK_FLAGS,
    MODULE_BUTTONS,
    MODULE_FIELDS,
    MODULE_TEXT,
    Button,
    Field,
)

ONLINE = b"online"
OFFLINE = b"offline"
MODULE_MANUFACTURER = "Unknown"
"""The module CAN protocol carries no vendor: the placeholder HA shows as a module's manufacturer."""
MODULE_MODEL = "Battery module"
"""A module's model before its ModuleInfo arrives; then e.g. "Battery module 16S 100 Ah"."""


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

    def command(self, name: str) -> str:
        """Where operator command `name` is published (see `gateway.outputs.mqtt.execute`)."""
        return f"{self.command_prefix}{name}"

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


def _common(config: Config, name: str, unique_id: str, device: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": unique_id,
        "availability_topic": Topics.of(config).status,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": device,
        "origin": {"name": "bms-gateway", "sw_version": __version__},
    }


def _optional(payload: dict[str, Any], **values: Any) -> dict[str, Any]:
    """`payload` with the keys whose values are not None."""
    payload.update((k, v) for k, v in values.items() if v is not None)
    return payload


def _sensor(config: Config, f: Field, node: str, state_topic: str, device: dict[str, Any]) -> dict[str, Any]:
    payload = _common(config, f.name, f"{node}_{f.key}", device)
    payload["state_topic"] = state_topic
    payload["value_template"] = _template(f.path)
    return _optional(
        payload,
        unit_of_measurement=f.unit,
        device_class=f.device_class,
        state_class=f.state_class,
        suggested_display_precision=f.precision,
        icon=f.icon,
        entity_category=f.category,
    )


def _binary(config: Config, f: Field, node: str, state_topic: str, device: dict[str, Any]) -> dict[str, Any]:
    payload = _common(config, f.name, f"{node}_{f.key}", device)
    payload["state_topic"] = state_topic
    payload["value_template"] = _template(f.path, binary=True)
    return _optional(payload, device_class=f.device_class, icon=f.icon, entity_category=f.category)


def _button(config: Config, b: Button, node: str, device: dict[str, Any], address: int | None = None) -> dict[str, Any]:
    """A button that publishes its command, not retained (a retained command is refused: see `execute`)."""
    payload = _common(config, b.name, f"{node}_{b.key}", device)
    payload["command_topic"] = Topics.of(config).command(b.command)
    payload["payload_press"] = b.payload.format(address=address)
    payload["qos"] = config.mqtt.qos
    payload["retain"] = False
    return _optional(payload, icon=b.icon, entity_category=b.category)


def _alarm(config: Config, code: AlarmCode, node: str, device: dict[str, Any]) -> dict[str, Any]:
    """A problem sensor for one alarm code; its attributes are that alarm's entry (level, modules, since, detail)."""
    topic = Topics.of(config).alarms
    name = code.replace("_", " ").capitalize() + " alarm"
    payload = _common(config, name, f"{node}_alarm_{code}", device)
    payload["state_topic"] = topic
    payload["value_template"] = f"{{{{ 'ON' if '{code}' in value_json | map(attribute='code') | list else 'OFF' }}}}"
    payload["device_class"] = "problem"
    payload["json_attributes_topic"] = topic
    payload["json_attributes_template"] = (
        f"{{{{ ((value_json | selectattr('code', 'equalto', '{code}') | list) + [{{}}]) | first | tojson }}}}"
    )
    return payload


def _config_topic(config: Config, component: str, node: str, object_id: str) -> str:
    return f"{config.mqtt.discovery_prefix}/{component}/{node}/{object_id}/config"


@dataclass(frozen=True, slots=True)
class ModuleIdentity:
    """What a module's ModuleInfo says about the module itself: its HA device's model and software version."""

    firmware: str | None
    cells_in_series: int | None
    nominal_capacity: float | None

    @classmethod
    def of(cls, reading: ModuleReading) -> ModuleIdentity | None:
        """The identity in `reading`, or None before its ModuleInfo has arrived."""
        identity = cls(
            ".".join(map(str, reading.firmware)) if reading.firmware else None,
            reading.cells_in_series,
            reading.nominal_capacity,
        )
        return None if identity == cls(None, None, None) else identity

    @property
    def model(self) -> str:
        """E.g. "Battery module 16S 100 Ah": what the module protocol tells of the model."""
        parts = [MODULE_MODEL]
        if self.cells_in_series:
            parts.append(f"{self.cells_in_series}S")
        if self.nominal_capacity:
            parts.append(f"{self.nominal_capacity:g} Ah")
        return " ".join(parts)


def bank_device(config: Config) -> dict[str, Any]:
    """The bank's HA device: the gateway itself, with its version (and a link to its dashboard, if configured)."""
    device = {
        "identifiers": [bank_node(config)],
        "name": config.gateway.name,
        "manufacturer": "bms-gateway",
        "model": "Master BMS",
        "sw_version": __version__,
    }
    return _optional(device, configuration_url=config.mqtt.configuration_url)


def module_device(config: Config, address: int, identity: ModuleIdentity | None = None) -> dict[str, Any]:
    """A module's HA device, under the bank's; `identity` (its ModuleInfo) gives the model and firmware."""
    device = {
        "identifiers": [module_node(config, address)],
        "name": f"{config.gateway.name} module {address}",
        "manufacturer": MODULE_MANUFACTURER,
        "model": MODULE_MODEL if identity is None else identity.model,
        "via_device": bank_node(config),
    }
    return _optional(device, sw_version=None if identity is None else identity.firmware)


def bank_configs(config: Config) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every bank entity: values, flags, one sensor per alarm code, and the
    bank's buttons when commands are on."""
    node, device, topics = bank_node(config), bank_device(config), Topics.of(config)
    out = {
        _config_topic(config, "sensor", node, f.key): _sensor(config, f, node, topics.bank, device) for f in BANK_FIELDS
    }
    for f in BANK_FLAGS:
        out[_config_topic(config, "binary_sensor", node, f.key)] = _binary(config, f, node, topics.bank, device)
    for code in AlarmCode:
        out[_config_topic(config, "binary_sensor", node, f"alarm_{code}")] = _alarm(config, code, node, device)
    for b in BANK_BUTTONS if config.mqtt.commands else ():
        out[_config_topic(config, "button", node, b.key)] = _button(config, b, node, device)
    return out


def module_configs(config: Config, address: int, identity: ModuleIdentity | None = None) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for one module's entities: its values (`MODULE_FIELDS`, `MODULE_TEXT`)
    and, when commands are on, its buttons."""
    node, device, state = (
        module_node(config, address),
        module_device(config, address, identity),
        Topics.of(config).module(address),
    )
    out = {
        _config_topic(config, "sensor", node, f.key): _sensor(config, f, node, state, device)
        for f in MODULE_FIELDS + MODULE_TEXT
    }
    for b in MODULE_BUTTONS if config.mqtt.commands else ():
        out[_config_topic(config, "button", node, b.key)] = _button(config, b, node, device, address)
    return out


def _offering_all(config: Config) -> Config:
    """`config` with every optional entity offered (the buttons)."""
    return replace(config, mqtt=replace(config.mqtt, commands=True))


def module_topics(config: Config, address: int) -> list[str]:
    """Every discovery topic a module may have, buttons included: what removing the module clears."""
    return list(module_configs(_offering_all(config), address))


def withdrawn(config: Config, address: int | None = None) -> list[str]:
    """The discovery topics of the bank (`address` None) or of a module that `config` does not offer: the buttons
    while commands are off. The publisher clears them, so switching commands off removes the buttons from HA."""
    if address is None:
        offered, possible = bank_configs(config), bank_configs(_offering_all(config))
    else:
        offered, possible = module_configs(config, address), module_configs(_offering_all(config), address)
    return [topic for topic in possible if topic not in offered]


# -- docs ----------------------------------------------------------------------------------------------------

DOCS_COMMAND = "python -m gateway.outputs.discovery docs/mqtt.md README.md"
"""The generated part of docs/mqtt.md and README.md (the same part in both): the entity list."""
_DOCS_HEAD = (
    "| entity | device | name | unit | device class | state class | category | precision |",
    "|---|---|---|---|---|---|---|---|",
)


def entity_id(component: str, payload: dict[str, Any]) -> str:
    """The entity id Home Assistant gives a new entity: its domain, then the slug of "<device name> <name>"."""
    text = unicodedata.normalize("NFKD", f"{payload['device']['name']} {payload['name']}")
    slug = re.sub(r"[^a-z0-9]+", "_", text.encode("ascii", "ignore").decode().lower()).strip("_")
    return f"{component}.{slug}"


def entity_rows(configs: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown table row per discovery config (topic -> payload): the entity as Home Assistant shows it."""
    rows = []
    for topic, p in configs.items():
        component = topic.split("/")[-4]
        cells = (
            f"`{entity_id(component, p)}`",
            p["device"]["name"],
            p["name"],
            p.get("unit_of_measurement", ""),
            p.get("device_class", ""),
            p.get("state_class", ""),
            p.get("entity_category", ""),
            str(p.get("suggested_display_precision", "")),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def markdown() -> str:
    """The generated entity table: the bank's entities and module 1's (every module has the same set), for a
    gateway with the default name and `[mqtt] commands = true` (the buttons exist only then)."""
    config = _offering_all(Config())
    configs = {**bank_configs(config), **module_configs(config, 1)}
    return "\n".join([*_DOCS_HEAD, *entity_rows(configs)])


def update_docs(text: str) -> str:
    """`text` (docs/mqtt.md, README.md) with its generated part replaced by the current one."""
    return generated.splice(text, DOCS_COMMAND, markdown())


def main(argv: list[str]) -> None:
    """Rewrite the generated part of each docs file given."""
    for path in argv:
        generated.rewrite(Path(path), DOCS_COMMAND, markdown())


if __name__ == "__main__":
    main(sys.argv[1:])
