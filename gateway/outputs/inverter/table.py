"""The profile table: every family's rows, by name. `bms-gateway inverters`, the README and docs/inverter.md are
generated from it, and `can.inverter.protocol` takes its names."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from gateway.config import InverterBusSection
from gateway.errors import ConfigError
from gateway.outputs.inverter import (
    byd_hvs,
    goodwe_lv,
    growatt_hv,
    growatt_lv,
    pylon_hv,
    pylon_lv,
    sofar,
    solax,
    sungrow,
)
from gateway.outputs.inverter.profiles import Options, Profile

FAMILIES = (pylon_lv, goodwe_lv, growatt_lv, pylon_hv, sofar, byd_hvs, solax, growatt_hv, sungrow)
"""The family modules, in the order of the docs."""

PROFILES: Mapping[str, Profile] = MappingProxyType({row.name: row for family in FAMILIES for row in family.ROWS})
"""Every profile, by `can.inverter.protocol` name."""
ALIASES: Mapping[str, str] = MappingProxyType({"sma": "sma-lv"})
"""Old names that still work."""
OPTION_KEYS = tuple(f.name for f in dataclasses.fields(Options))
"""The `[can.inverter]` keys that are profile options."""


def profile(name: str) -> Profile:
    """The profile a `can.inverter.protocol` names (an alias included)."""
    return PROFILES[ALIASES.get(name, name)]


def options(config: InverterBusSection, row: Profile) -> Options:
    """The profile's options: its defaults, overridden by the keys `[can.inverter]` sets. A key set to something
    other than its default for a profile that does not honour it is refused (it would silently do nothing)."""
    problems: list[str] = []
    values = {}
    for key in OPTION_KEYS:
        value = getattr(config, key)
        if value is None:
            continue
        if key in row.options:
            values[key] = value
        elif value != getattr(Options(), key):
            honour = sorted(p.name for p in PROFILES.values() if key in p.options)
            problems.append(f"can.inverter.{key}: applies to {', '.join(honour)} only, not to {row.name}")
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(row.defaults, **values)


def names() -> tuple[str, ...]:
    """Every name `can.inverter.protocol` accepts (config.InverterProtocol must list the same)."""
    return (*PROFILES, *ALIASES)
