"""The docs are part of the feature: every config key, alarm code and snapshot field is documented."""

from __future__ import annotations

import dataclasses
import sqlite3
import typing
from pathlib import Path

import pytest

from gateway import config, payload
from gateway.history import schema
from gateway.master.model import AlarmCode

from helpers.factories import bank, master, run
from helpers.hints import table

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def leaf_keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(section, key within the section) for every config key."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in config.NOT_KEYS or "where" in f.metadata:
            continue
        hint = table(hints[f.name])
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            section = f"{prefix}.{f.name}" if prefix else f.name
            out += leaf_keys(hint, section)
        else:
            out.append((prefix, f.name))
    return out


def section_text(section: str) -> str:
    """A section's table in the reference; `[[can.modules]]` documents its `polls` in its own table."""
    top = "can.modules" if section.startswith("can.modules") else section.removesuffix(".tls")
    heading = f"**`[[{top}]]`**" if f"**`[[{top}]]`**" in README else f"**`[{top}]`**"
    start = README.index(heading)
    end = README.find("**`[", start + 5)
    return README[start : end if end > 0 else None]


@pytest.mark.parametrize(("section", "key"), leaf_keys(config.Config))
def test_every_config_key_is_in_the_reference(section: str, key: str) -> None:
    text = section_text(section)
    name = f"tls.{key}" if section.endswith(".tls") else key
    assert f"`{name}`" in text, f"[{section}] {key} is missing from the README's configuration reference"


def ranges(cls: type, prefix: str = "") -> list[tuple[str, str, config.Range]]:
    """(section, key, range) for every config key that has a range."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = table(hints[f.name])
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += ranges(hint, f"{prefix}.{f.name}" if prefix else f.name)
        elif "range" in f.metadata:
            out.append((prefix, f.name, f.metadata["range"]))
    return out


@pytest.mark.parametrize(("section", "key", "limits"), ranges(config.Config))
def test_every_range_is_in_the_reference(section: str, key: str, limits: config.Range) -> None:
    row = next(line for line in section_text(section).splitlines() if f"`{key}`" in line)
    assert limits.span in row, f"[{section}] {key}: the README's row does not state the range {limits.span}"


@pytest.mark.parametrize("code", list(AlarmCode))
def test_every_alarm_code_is_documented(code: str) -> None:
    assert f"`{code}`" in README


def test_every_snapshot_field_is_documented() -> None:
    snapshot = run(master(), 0.0, 5.0, bank(1)).snapshot
    fields = payload.snapshot_dict(snapshot)
    for key in fields:
        assert f"`{key}`" in README, key
    for key in fields["modules"]["1"]:
        assert f"`{key}`" in README, key


def schema_columns() -> dict[str, list[str]]:
    """Table -> columns of the history's current schema, from SQLite itself."""
    db = sqlite3.connect(":memory:")
    for script in schema.MIGRATIONS:
        db.executescript(script)
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")] for table in tables}


@pytest.mark.parametrize(("table", "columns"), sorted(schema_columns().items()))
def test_every_history_table_and_column_is_documented(table: str, columns: list[str]) -> None:
    start = README.index("**Schema**")
    row = next(line for line in README[start:].splitlines() if line.startswith(f"| `{table}` |"))
    missing = [c for c in columns if f"`{c}`" not in row]
    assert not missing, f"the README's schema row of {table} misses {missing}"
