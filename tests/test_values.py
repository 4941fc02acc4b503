"""`@frozen` values behave as frozen dataclasses do for everything but the cost of building them."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.master.model import Limit, ModuleReading


def test_equal_values_are_equal_and_hash_alike_so_they_serve_as_keys() -> None:
    a = ModuleReading(address=3, voltage=53.2, seen={"status": 1.0})
    b = ModuleReading(address=3, voltage=53.2, seen={"status": 1.0})
    assert a == b
    assert a != dataclasses.replace(a, voltage=53.3)
    assert {Limit(10.0, "rating"): 1}[Limit(10.0, "rating")] == 1
    assert hash(Limit(10.0, "rating")) == hash(Limit(10.0, "rating"))


def test_replace_and_fields_work_as_on_any_dataclass() -> None:
    r = ModuleReading(address=1, soc=50.0)
    assert dataclasses.replace(r, soc=60.0).soc == 60.0
    assert r.soc == 50.0
    assert [f.name for f in dataclasses.fields(r)][:3] == ["address", "voltage", "current"]


def test_a_value_has_no_room_for_a_stray_attribute_and_takes_keywords_only_where_declared() -> None:
    r = ModuleReading(address=1)
    with pytest.raises(AttributeError):
        r.typo = 1  # type: ignore[attr-defined]  # deliberately wrong: slots leave no place for it
    with pytest.raises(TypeError):
        ModuleReading(1)  # type: ignore[call-arg]  # deliberately positional: ModuleReading is keyword-only
