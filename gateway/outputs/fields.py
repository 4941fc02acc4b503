"""One table of descriptions drives the Modbus plain map, the MQTT state fields and Home Assistant discovery.

Each `Field` names a value by its path in the JSON payload (`gateway.payload.bank_dict` / `module_dict`), with
its unit, Home Assistant classes, category and display precision, and Modbus register type and scale. Adding a
metric is one entry here. `Button`s are the operator commands (`gateway.outputs.mqtt.execute`) as Home Assistant
buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RegisterType = Literal["u16", "s16", "u32", "s32"]
Category = Literal["diagnostic", "config"]
"""Home Assistant's entity_category. Entities with one stay off HA's default dashboards and are listed under the
device's "Diagnostic" or "Configuration" heading. Sensors and binary sensors may only be "diagnostic"."""
DIAGNOSTIC: Category = "diagnostic"


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    """Stable id: HA unique-id suffix, Modbus map name."""
    path: str
    """Dotted path in the bank or module JSON payload."""
    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    register: RegisterType = "u16"
    scale: float = 1.0
    """Register value = round(value / scale): 0.01 means the register counts hundredths."""
    precision: int | None = None
    """Display precision for Home Assistant."""
    icon: str | None = None
    category: Category | None = None
    """Home Assistant entity_category: `DIAGNOSTIC` for what is not a user-facing measurement (numbers of modules
    and cells, validity, current share, cycle count, limits, firmware); None for the bank's and modules' values."""


def _v(
    key: str,
    path: str,
    name: str,
    scale: float = 0.01,
    register: RegisterType = "u16",
    *,
    precision: int = 2,
    category: Category | None = None,
) -> Field:
    """A voltage: 2 decimals in Home Assistant (10 mV: a bank's or a module's voltage)."""
    return Field(
        key, path, name, "V", "voltage", register=register, scale=scale, precision=precision, category=category
    )


def _cell(key: str, path: str, name: str) -> Field:
    """A cell voltage: millivolt registers, 3 decimals in Home Assistant."""
    return _v(key, path, name, 0.001, precision=3)


def _a(key: str, path: str, name: str, register: RegisterType = "s16", *, category: Category | None = None) -> Field:
    """A current: 0.1 A registers, 1 decimal in Home Assistant."""
    return Field(key, path, name, "A", "current", register=register, scale=0.1, precision=1, category=category)


def _t(key: str, path: str, name: str) -> Field:
    """A temperature: 0.1 degC registers, 1 decimal in Home Assistant."""
    return Field(key, path, name, "°C", "temperature", register="s16", scale=0.1, precision=1)


def _e(key: str, path: str, name: str) -> Field:
    """Lifetime energy, kWh (Modbus: Wh in a u32): Home Assistant's Energy dashboard takes the pair of a bank or a
    module as battery in and out, which asks for device class energy and state class total_increasing."""
    return Field(
        key, path, name, "kWh", "energy", state_class="total_increasing", register="u32", scale=0.001, precision=3
    )


def _n(key: str, path: str, name: str, register: RegisterType = "u16") -> Field:
    """An index: a module address, a cell or sensor number. Deliberately no unit and no state class, so Home
    Assistant keeps no long-term statistics of it (a mean of module numbers means nothing) and draws its history
    as steps; diagnostic."""
    return Field(
        key, path, name, None, None, state_class=None, register=register, icon="mdi:numeric", category=DIAGNOSTIC
    )


BANK_FIELDS: tuple[Field, ...] = (
    _v("voltage", "voltage", "Voltage"),
    _a("current", "current", "Current"),
    Field("power", "power", "Power", "W", "power", register="s32", scale=1.0, precision=0),
    Field("soc", "soc", "State of charge", "%", "battery", register="u16", scale=0.1, precision=1),
    Field("soh", "soh", "State of health", "%", None, register="u16", scale=0.1, precision=1, icon="mdi:heart-pulse"),
    Field("remaining_ah", "remaining_ah", "Remaining capacity", "Ah", None, scale=0.1, precision=1),
    Field("full_ah", "full_ah", "Full capacity", "Ah", None, scale=0.1, precision=1),
    _a("charge_current_limit", "limits.charge_current.value", "Charge current limit", "u16", category=DIAGNOSTIC),
    _a(
        "discharge_current_limit",
        "limits.discharge_current.value",
        "Discharge current limit",
        "u16",
        category=DIAGNOSTIC,
    ),
    _v("charge_voltage_limit", "limits.charge_voltage.value", "Charge voltage limit", category=DIAGNOSTIC),
    _v("discharge_voltage_limit", "limits.discharge_voltage.value", "Discharge voltage limit", category=DIAGNOSTIC),
    _cell("cell_voltage_max", "cell_voltage_max.value", "Max cell voltage"),
    _n("cell_voltage_max_module", "cell_voltage_max.module", "Max cell voltage module"),
    _n("cell_voltage_max_cell", "cell_voltage_max.cell", "Max cell voltage cell"),
    _cell("cell_voltage_min", "cell_voltage_min.value", "Min cell voltage"),
    _n("cell_voltage_min_module", "cell_voltage_min.module", "Min cell voltage module"),
    _n("cell_voltage_min_cell", "cell_voltage_min.cell", "Min cell voltage cell"),
    _cell("cell_voltage_delta", "cell_voltage_delta", "Cell voltage delta"),
    _t("temperature_max", "temperature_max.value", "Max temperature"),
    _n("temperature_max_module", "temperature_max.module", "Max temperature module"),
    _t("temperature_min", "temperature_min.value", "Min temperature"),
    _n("temperature_min_module", "temperature_min.module", "Min temperature module"),
    Field("fan_duty", "fan_duty", "Fan duty", "%", None, scale=1.0, precision=0, icon="mdi:fan"),
    _e("charged_energy", "energy.charged_kwh", "Charged energy"),
    _e("discharged_energy", "energy.discharged_kwh", "Discharged energy"),
)
"""Numeric bank values, in Modbus plain-map order (new ones go at the end: the addresses before stay)."""

BANK_FLAGS: tuple[Field, ...] = (
    # What the gateway permits the inverter, not what the battery does: no device class (battery_charging would
    # read "Charging" / "Not charging"), so Home Assistant shows On / Off under a name that says "allowed".
    Field("charge_enable", "flags.charge_enable", "Charge allowed", state_class=None, icon="mdi:battery-arrow-up"),
    Field(
        "discharge_enable",
        "flags.discharge_enable",
        "Discharge allowed",
        state_class=None,
        icon="mdi:battery-arrow-down",
    ),
    Field("force_charge", "flags.force_charge", "Force charge", state_class=None, icon="mdi:battery-alert"),
    Field("full_charge", "flags.full_charge", "Full charge request", state_class=None, icon="mdi:battery-sync"),
    Field("valid", "valid", "Data valid", state_class=None, icon="mdi:check-decagram", category=DIAGNOSTIC),
)
"""Boolean bank values: HA binary sensors, bits of the Modbus flags register (in this order)."""

MODULE_FIELDS: tuple[Field, ...] = (
    _v("voltage", "voltage", "Voltage"),
    _a("current", "current", "Current"),
    Field("soc", "soc", "State of charge", "%", "battery", scale=0.1, precision=1),
    Field("soh", "soh", "State of health", "%", None, scale=0.1, precision=1, icon="mdi:heart-pulse"),
    _cell("cell_voltage_max", "cell_voltage_max", "Max cell voltage"),
    _cell("cell_voltage_min", "cell_voltage_min", "Min cell voltage"),
    _cell("cell_voltage_delta", "cell_voltage_delta", "Cell voltage delta"),
    _t("temperature_max", "temperature_max", "Max temperature"),
    _t("temperature_min", "temperature_min", "Min temperature"),
    _t("power_stage_temperature", "power_stage_temperature", "Power stage temperature"),
    _a("charge_current_limit", "limits.charge_current.value", "Charge current limit", "u16", category=DIAGNOSTIC),
    _a(
        "discharge_current_limit",
        "limits.discharge_current.value",
        "Discharge current limit",
        "u16",
        category=DIAGNOSTIC,
    ),
    Field(
        "share",
        "share",
        "Current share",
        None,
        None,
        scale=0.001,
        precision=3,
        icon="mdi:call-split",
        category=DIAGNOSTIC,
    ),
    Field("remaining_ah", "remaining_ah", "Remaining capacity", "Ah", None, scale=0.1, precision=1),
    Field("full_ah", "full_ah", "Full capacity", "Ah", None, scale=0.1, precision=1),
    Field(
        "cycle_count",
        "cycle_count",
        "Cycle count",
        None,
        None,
        state_class="total_increasing",
        icon="mdi:counter",
        category=DIAGNOSTIC,
    ),
    _e("charged_energy", "energy.charged_kwh", "Charged energy"),
    _e("discharged_energy", "energy.discharged_kwh", "Discharged energy"),
)
"""Numeric values of one module, in Modbus per-module block order (share is a fraction 0..1 in JSON; new ones go
at the end)."""

MODULE_TEXT: tuple[Field, ...] = (
    Field("firmware", "firmware", "Firmware", state_class=None, icon="mdi:chip", category=DIAGNOSTIC),
)
"""Text values of one module: Home Assistant sensors without unit, classes or precision (HA would refuse a text
state on a numeric sensor); not in the Modbus map, which carries numbers."""


@dataclass(frozen=True, slots=True)
class Button:
    """An operator command as a Home Assistant button: pressing it publishes `payload` to `command/<command>`.

    Offered only with `[mqtt] commands = true`, which is when the gateway subscribes to those topics.
    """

    key: str
    """Stable id: HA unique-id suffix (not shared with a Field of the same device)."""
    command: str
    """The command, as `gateway.outputs.mqtt.execute` knows it."""
    name: str
    payload: str = "1"
    """What a press publishes; "{address}" is the module's address on a module's button."""
    icon: str | None = None
    category: Category | None = None


BANK_BUTTONS: tuple[Button, ...] = (
    Button("request_full_charge", "full_charge", "Request full charge", icon="mdi:battery-sync"),
)
MODULE_BUTTONS: tuple[Button, ...] = (
    # "config": lifting an isolation is a deliberate maintenance act, kept off the default dashboards where it
    # could be pressed in passing; the module's device page lists it under "Configuration".
    Button("readmit", "readmit", "Readmit", payload="{address}", icon="mdi:restore", category="config"),
)
