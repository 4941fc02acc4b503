"""One table of descriptions drives the Modbus plain map, the MQTT state fields and Home Assistant discovery.

Each `Field` names a value by its path in the JSON payload (`gateway.payload.bank_dict` / `module_dict`), with
its unit, Home Assistant classes and Modbus register type and scale. Adding a metric is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RegisterType = Literal["u16", "s16", "u32", "s32"]


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


def _v(key: str, path: str, name: str, scale: float = 0.01, register: RegisterType = "u16") -> Field:
    return Field(key, path, name, "V", "voltage", register=register, scale=scale, precision=3 if scale < 0.01 else 2)


def _a(key: str, path: str, name: str, register: RegisterType = "s16") -> Field:
    return Field(key, path, name, "A", "current", register=register, scale=0.1, precision=1)


def _t(key: str, path: str, name: str) -> Field:
    return Field(key, path, name, "°C", "temperature", register="s16", scale=0.1, precision=1)


def _e(key: str, path: str, name: str) -> Field:
    """Lifetime energy, kWh (Modbus: Wh in a u32): Home Assistant's Energy dashboard takes the pair of a bank or a
    module as battery in and out, which asks for device class energy and state class total_increasing."""
    return Field(
        key, path, name, "kWh", "energy", state_class="total_increasing", register="u32", scale=0.001, precision=3
    )


def _n(key: str, path: str, name: str, register: RegisterType = "u16") -> Field:
    """A module or cell number: no unit, and no long-term statistics in Home Assistant."""
    return Field(key, path, name, None, None, state_class=None, register=register, icon="mdi:numeric")


BANK_FIELDS: tuple[Field, ...] = (
    _v("voltage", "voltage", "Voltage"),
    _a("current", "current", "Current"),
    Field("power", "power", "Power", "W", "power", register="s32", scale=1.0, precision=0),
    Field("soc", "soc", "State of charge", "%", "battery", register="u16", scale=0.1, precision=1),
    Field("soh", "soh", "State of health", "%", None, register="u16", scale=0.1, precision=1, icon="mdi:heart-pulse"),
    Field("remaining_ah", "remaining_ah", "Remaining capacity", "Ah", None, scale=0.1, precision=1),
    Field("full_ah", "full_ah", "Full capacity", "Ah", None, scale=0.1, precision=1),
    _a("charge_current_limit", "limits.charge_current.value", "Charge current limit", "u16"),
    _a("discharge_current_limit", "limits.discharge_current.value", "Discharge current limit", "u16"),
    _v("charge_voltage_limit", "limits.charge_voltage.value", "Charge voltage limit"),
    _v("discharge_voltage_limit", "limits.discharge_voltage.value", "Discharge voltage limit"),
    _v("cell_voltage_max", "cell_voltage_max.value", "Max cell voltage", 0.001),
    _n("cell_voltage_max_module", "cell_voltage_max.module", "Max cell voltage module"),
    _n("cell_voltage_max_cell", "cell_voltage_max.cell", "Max cell voltage cell"),
    _v("cell_voltage_min", "cell_voltage_min.value", "Min cell voltage", 0.001),
    _n("cell_voltage_min_module", "cell_voltage_min.module", "Min cell voltage module"),
    _n("cell_voltage_min_cell", "cell_voltage_min.cell", "Min cell voltage cell"),
    _v("cell_voltage_delta", "cell_voltage_delta", "Cell voltage delta", 0.001),
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
    Field("charge_enable", "flags.charge_enable", "Charge enabled", device_class="battery_charging", state_class=None),
    Field("discharge_enable", "flags.discharge_enable", "Discharge enabled", device_class="power", state_class=None),
    Field("force_charge", "flags.force_charge", "Force charge", state_class=None, icon="mdi:battery-alert"),
    Field("full_charge", "flags.full_charge", "Full charge request", state_class=None, icon="mdi:battery-sync"),
    Field("valid", "valid", "Data valid", device_class=None, state_class=None, icon="mdi:check-decagram"),
)
"""Boolean bank values: HA binary sensors, bits of the Modbus flags register (in this order)."""

MODULE_FIELDS: tuple[Field, ...] = (
    _v("voltage", "voltage", "Voltage"),
    _a("current", "current", "Current"),
    Field("soc", "soc", "State of charge", "%", "battery", scale=0.1, precision=1),
    Field("soh", "soh", "State of health", "%", None, scale=0.1, precision=1, icon="mdi:heart-pulse"),
    _v("cell_voltage_max", "cell_voltage_max", "Max cell voltage", 0.001),
    _v("cell_voltage_min", "cell_voltage_min", "Min cell voltage", 0.001),
    _v("cell_voltage_delta", "cell_voltage_delta", "Cell voltage delta", 0.001),
    _t("temperature_max", "temperature_max", "Max temperature"),
    _t("temperature_min", "temperature_min", "Min temperature"),
    _t("power_stage_temperature", "power_stage_temperature", "Power stage temperature"),
    _a("charge_current_limit", "limits.charge_current.value", "Charge current limit", "u16"),
    _a("discharge_current_limit", "limits.discharge_current.value", "Discharge current limit", "u16"),
    Field("share", "share", "Current share", None, None, scale=0.001, precision=3, icon="mdi:call-split"),
    Field("remaining_ah", "remaining_ah", "Remaining capacity", "Ah", None, scale=0.1, precision=1),
    Field("full_ah", "full_ah", "Full capacity", "Ah", None, scale=0.1, precision=1),
    Field("cycle_count", "cycle_count", "Cycle count", None, None, state_class="total_increasing", icon="mdi:counter"),
    _e("charged_energy", "energy.charged_kwh", "Charged energy"),
    _e("discharged_energy", "energy.discharged_kwh", "Discharged energy"),
)
"""Numeric values of one module, in Modbus per-module block order (share is a fraction 0..1 in JSON; new ones go
at the end)."""
