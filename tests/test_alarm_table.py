"""The alarm table: every code decided in every protocol column, and every bit one its protocol defines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import pytest

from gateway.can import dbc
from gateway.master.model import AlarmCode, Level
from gateway.outputs import alarm_table
from gateway.outputs.alarm_table import (
    COLUMNS,
    MODBUS_BIT,
    PYLONTECH,
    SUNSPEC_EVT1,
    SUNSPEC_STRING_EVT1,
    Bits,
    Evt,
    Evt1,
    NotSent,
    PylonBits,
)
from gateway.outputs.inverter import PROFILES, Profile
from gateway.outputs.inverter.codec import load
from gateway.outputs.sunspec_models import MODELS


def undecided(column: Mapping[AlarmCode, object]) -> list[AlarmCode]:
    """Codes a column neither maps nor marks NotSent: absent, or None."""
    return [code for code in AlarmCode if column.get(code) is None]


@pytest.mark.parametrize("name", list(COLUMNS))
def test_every_column_decides_every_code(name: str) -> None:
    column = COLUMNS[name]
    assert undecided(column) == [], f"column {name!r}: map these codes or mark them NotSent"
    assert set(column) == set(AlarmCode)
    assert all(isinstance(code, AlarmCode) for code in column)


def test_the_check_catches_a_missing_or_empty_code() -> None:
    missing: dict[AlarmCode, object] = {c: m for c, m in PYLONTECH.items() if c is not AlarmCode.STACK_LIMIT}
    empty: dict[AlarmCode, object] = {**PYLONTECH, AlarmCode.CELL_IMBALANCE: None}
    assert undecided(missing) == [AlarmCode.STACK_LIMIT]
    assert undecided(empty) == [AlarmCode.CELL_IMBALANCE]


def test_every_column_of_the_module_is_checked() -> None:
    """A new column must be in COLUMNS, so the checks above cover it."""
    keyed_by_code = [
        value
        for value in vars(alarm_table).values()
        if isinstance(value, Mapping) and value and all(isinstance(k, AlarmCode) for k in value)
    ]
    assert {id(c) for c in keyed_by_code} == {id(c) for c in COLUMNS.values()}


def test_modbus_and_sunspec_carry_every_code() -> None:
    """NotSent is for inverter protocols only: Modbus and SunSpec clients see the whole bank."""
    assert all(isinstance(bit, int) for bit in MODBUS_BIT.values())
    assert all(isinstance(evt, Evt) for evt in (*SUNSPEC_EVT1.values(), *SUNSPEC_STRING_EVT1.values()))


def test_unmapped_codes_say_why() -> None:
    for column in COLUMNS.values():
        for value in column.values():
            if isinstance(value, NotSent):
                assert value.reason.strip()


# -- Modbus ---------------------------------------------------------------------------------------------------


def test_modbus_bits_are_unique_and_in_enum_order() -> None:
    assert [MODBUS_BIT[code] for code in AlarmCode] == list(range(len(AlarmCode)))  # bit n = n-th member
    assert max(MODBUS_BIT.values()) < 32  # `alarms` and `protections` are u32


# -- SunSpec --------------------------------------------------------------------------------------------------


def symbols(model: int, point: str) -> dict[str, int]:
    """The symbols pysunspec2 defines for a bitfield point of a model (in its top group or a nested one)."""
    model_json = resources.files("sunspec2") / "models" / "json" / f"model_{model}.json"
    group = json.loads(model_json.read_text())["group"]

    def find(g: dict[str, Any]) -> dict[str, Any] | None:
        found = next((p for p in g.get("points", []) if p["name"] == point), None)
        return found or next((f for sub in g.get("groups", []) if (f := find(sub)) is not None), None)

    found = find(group)
    assert found is not None, (model, point)
    return {s["name"]: s["value"] for s in found["symbols"] if not s["name"].startswith("RESERVED")}


def test_evt1_is_model_802s_symbols() -> None:
    assert {e.name: e.value for e in Evt1} == symbols(802, "Evt1")
    evt1 = next(p for p in MODELS[802].points if p.name == "Evt1")
    assert (evt1.type, evt1.size) == ("bitfield32", 2)
    assert all(0 <= e.value < 32 for e in Evt1)


@pytest.mark.parametrize(
    ("column", "models"),
    [(SUNSPEC_EVT1, ((802, "Evt1"),)), (SUNSPEC_STRING_EVT1, ((803, "StrEvt1"), (804, "Evt1")))],
    ids=["802", "803/804"],
)
def test_sunspec_bits_are_defined_events_of_their_level(
    column: Mapping[AlarmCode, Evt], models: tuple[tuple[int, str], ...]
) -> None:
    """Every bit is a symbol of the model's Evt1 (never a reserved bit, so 803/804 never get 24), and an alarm
    bit is never a warning symbol nor a warning bit an alarm symbol."""
    for model, point in models:
        defined = symbols(model, point)
        for code, evt in column.items():
            for bit in evt:
                assert defined.get(bit.name) == bit.value, (model, code, bit)
            assert not evt.protection.name.endswith("_WARNING"), code
            assert not evt.warning.name.endswith("_ALARM"), code


def test_strings_differ_from_the_bank_only_where_803_and_804_reserve_the_bit() -> None:
    differ = {code for code in AlarmCode if SUNSPEC_STRING_EVT1[code] != SUNSPEC_EVT1[code]}
    assert differ == {code for code, evt in SUNSPEC_EVT1.items() if Evt1.CURRENT_IMBALANCE_WARNING in evt}


# -- inverter CAN: the Pylontech family -----------------------------------------------------------------------


def test_pylontech_names_are_signals_of_the_dbc() -> None:
    db = dbc.load(None, "inverters/pylontech.dbc", "can.inverter")
    bits = {s.name for s in db.get_message_by_frame_id(0x359).signals}
    pairs = {s.name for s in db.get_message_by_frame_id(0x35A).signals}
    for code, mapped in PYLONTECH.items():
        if isinstance(mapped, NotSent):
            continue
        if mapped.bit is not None:
            assert {f"Protection{mapped.bit}", f"Warning{mapped.bit}"} <= bits, code
        assert {f"Alarm{mapped.pair}", f"Warning{mapped.pair}"} <= pairs, code


# -- inverter CAN: every profile's column ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_inverter_profile_has_a_column_whose_names_are_signals_of_its_dbc(profile: Profile) -> None:
    """Every code mapped or NotSent (the checks above, for every column in COLUMNS) and every signal it names is
    a 1-bit flag or a 2-bit pair of the profile's own DBC."""
    column = COLUMNS[profile.alarm_column]
    signals = {s.name: s for m in load(profile.dbc).messages for s in m.signals}
    named = 0
    for code, mapped in column.items():
        if isinstance(mapped, NotSent):
            continue
        assert isinstance(mapped, PylonBits | Bits), (profile.name, code, mapped)
        for level in Level:
            for name in mapped.signals(level):
                assert name in signals, (profile.name, code, name)
                assert signals[name].length in (1, 2), name
                named += 1
    assert named or all(isinstance(m, NotSent) for m in column.values())
