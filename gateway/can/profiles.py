"""The module profiles: what a kind of BMS speaks, as one row of data each.

A row names its DBC under `dbc/`, the signal map from its signal names to ours, its bitrate and addressing, the
request frames it must be polled with, whether it takes our MasterCommand, and the groups of values it provides.
A bus entry (`[[can.modules]]`) selects a row with `profile = "..."`; its own keys override the row's. A new
profile is a DBC and a row here: the codec, the store, the poll schedule and the simulator read only the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.can.addressing import Addressing


@dataclass(frozen=True, slots=True)
class Poll:
    """A request frame the gateway sends on the bus every `period` s; a BMS that answers only when asked."""

    can_id: int
    data: bytes = bytes(8)
    period: float = 1.0
    extended: bool = False
    addressed: bool = False
    """Sent once per module address of the bus, the ID built by the bus's addressing (`can_id` at address 0)."""
    answers: tuple[str, ...] = ()
    """The DBC messages a BMS sends in reply (the simulator answers with these)."""


@dataclass(frozen=True, slots=True)
class ModuleProfile:
    name: str
    dbc: str
    """Under the shipped `dbc/` directory."""
    bitrate: int
    addressing: Addressing
    signal_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    polls: tuple[Poll, ...] = ()
    commands: bool = False
    """The BMS takes our MasterCommand (only our own protocol does)."""
    provides: frozenset[str] = frozenset()
    """The groups of values the BMS sends (see `gateway.can.codec.SCALARS`); the master applies no rule whose
    inputs a profile never provides, and takes the module's own limits as authoritative instead."""
    summary: str = ""
    verified: str = ""
    """What the DBC was checked against: a capture, or a second public source."""


OURS = ModuleProfile(
    name="module",
    dbc="module.dbc",
    bitrate=500_000,
    addressing=Addressing(),
    commands=True,
    provides=frozenset(
        {
            "status",
            "limits",
            "cells",
            "temperatures",
            "cell_voltages",
            "cell_temperatures",
            "alarms",
            "info",
            "capacity",
        }
    ),
    summary="our module protocol (module-can.md): 0x400..0x500 + address, MasterCommand 0x380 + address",
    verified="the published protocol page, bit for bit (tests/test_dbc.py)",
)

PROFILES: Mapping[str, ModuleProfile] = MappingProxyType({p.name: p for p in (OURS,)})
"""Every module profile by name; `gateway.config.ModuleProfileName` lists the same names (a test keeps them equal)."""


def profile(name: str) -> ModuleProfile:
    return PROFILES[name]
