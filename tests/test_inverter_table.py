"""The profile table as a whole: its names are the config's, every row is complete and consistent with its DBC,
options are refused where they do nothing, and the README and docs/inverter.md are generated from it."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError
from gateway.master.model import empty_snapshot
from gateway.outputs.inverter import ALIASES, PROFILES, Mode, Schedule, frames
from gateway.outputs.inverter.codec import load
from gateway.outputs.inverter.docs import update

ROOT = Path(__file__).parents[1]


def test_the_config_takes_every_profile_and_alias() -> None:
    assert set(typing.get_args(config.InverterProtocol)) == set(PROFILES) | set(ALIASES)
    assert set(ALIASES.values()) <= set(PROFILES)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_row_is_complete_and_matches_its_dbc(name: str) -> None:
    row = PROFILES[name]
    db = load(row.dbc)
    messages = {m.frame_id: m for m in db.messages}
    assert row.parts, "a profile sends something"
    for frame_id, _ in row.parts:
        assert frame_id in row.builders, hex(frame_id)
        assert frame_id in messages, hex(frame_id)
        assert messages[frame_id].is_extended_frame == row.extended, hex(frame_id)
    assert row.expects, "every profile names the inverter frames it expects"
    assert row.timeout > 0
    assert row.wiring.brands and row.wiring.menu and row.sources
    if row.mode is Mode.REQUEST:
        assert not row.groups, "request/response: nothing unasked"
    if row.mode is Mode.HANDSHAKE:
        assert row.cyclic_in is not None or not row.groups, "handshake: nothing before the inverter speaks"
    if row.mode is Mode.BROADCAST:
        assert row.groups and row.cyclic_in is None
    for sim in row.sim:
        assert sim.can_id in row.expects, hex(sim.can_id)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_part_encodes_even_from_an_empty_snapshot(name: str) -> None:
    """The snapshot of a gateway that knows nothing yet: every field unknown, not valid."""
    row = PROFILES[name]
    sent = frames(empty_snapshot(0.0, discharge_voltage=48.0), row, parts=row.parts)
    assert len(sent) == len(row.parts)
    assert all(f.extended == row.extended for f in sent)


def inverter(**keys: typing.Any) -> config.InverterBusSection:
    return config.parse({"can": {"inverter": keys}}).can.inverter


def test_an_option_a_profile_does_not_honour_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        Schedule(inverter(protocol="pylontech", byte_order="big"), bank=config.BankSection())
    assert info.value.problems == ["can.inverter.byte_order: applies to pylon-hv only, not to pylontech"]
    with pytest.raises(ConfigError) as info:
        Schedule(inverter(protocol="victron", deye_soc_workaround=True), bank=config.BankSection())
    assert info.value.problems == ["can.inverter.deye_soc_workaround: applies to byd-hvs, deye-lv only, not to victron"]
    # Set to its default, a key does nothing either way: accepted.
    Schedule(inverter(protocol="victron", deye_soc_workaround=False, id_suffix=0), bank=config.BankSection())


def test_the_readme_and_the_docs_are_generated_from_the_table() -> None:
    for path in (ROOT / "README.md", ROOT / "docs" / "inverter.md"):
        text = path.read_text(encoding="utf-8")
        assert update(text) == text, f"run: python -m gateway.outputs.inverter README.md docs/inverter.md ({path.name})"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in PROFILES:
        assert f"| `{name}`" in readme, name
