"""dbc/module.dbc against the published protocol page (docs/module-can.md), row by row.

The page is the contract a module vendor implements; the test reads its tables, so a change to either the page
or the DBC that breaks the match fails here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cantools
import pytest

from gateway.can import dbc
from gateway.errors import ConfigError

PAGE = Path(__file__).parents[1] / "docs" / "module-can.md"
SIGNAL = re.compile(r"`?(\w+)`? \((\d+), (\d+), ([us])([^)]*)\)")


@dataclass(frozen=True)
class Row:
    base: int
    name: str
    period: str
    signals: str


@dataclass(frozen=True)
class Expected:
    start: int
    length: int
    signed: bool
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None


def page_rows() -> list[Row]:
    rows = []
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("0x"):
            rows.append(Row(int(cells[0], 16), cells[1], cells[2], cells[3]))
    return rows


def alarm_order() -> list[str]:
    text = PAGE.read_text()
    block = text[text.index("Alarm bit order") :].split("So bit 0")[0]
    return [name for _, name in re.findall(r"(\d+) (\w+)", block.split("X =", 1)[1])]


def plain_signals(row: Row) -> dict[str, Expected]:
    out = {}
    for name, start, length, kind, rest in SIGNAL.findall(row.signals):
        extra = [p.strip() for p in rest.lstrip(",:").split(",")]
        scale, unit = 1.0, None
        if extra and re.fullmatch(r"[\d.]+", extra[0]):
            scale = float(extra[0])
            unit = extra[1].split(";")[0].strip() if len(extra) > 1 else None
        out[name] = Expected(int(start), int(length), kind == "s", scale, 0.0, unit)
    return out


def expected_signals(row: Row) -> dict[str, Expected]:
    """Every signal the page defines for a row, expanding the multiplexed and alarm rows from their prose."""
    if row.name == "CellVoltages":
        out = {}
        for g in range(16):
            for k, start in enumerate((8, 24, 40)):
                out[f"Cell{3 * g + k + 1:02d}Voltage"] = Expected(start, 16, False, 0.001, 0.0, "V")
                out[f"Cell{3 * g + k + 1:02d}Balancing"] = Expected(56 + k, 1, False)
        return out
    if row.name == "CellTemperatures":
        return {
            f"Temp{7 * g + k + 1:02d}": Expected(8 + 8 * k, 8, False, 1.0, -40.0, "degC")
            for g in range(4)
            for k in range(7)
        }
    out = plain_signals(row)
    if row.name == "Alarms":
        for n, name in enumerate(alarm_order()):
            out[f"Warn{name}"] = Expected(n, 1, False)
            out[f"Prot{name}"] = Expected(16 + n, 1, False)
    return out


@pytest.fixture(scope="module")
def db() -> cantools.database.can.Database:
    return dbc.load(None, "module.dbc", "can.modules.dbc")


ROWS = page_rows()


def test_page_has_every_message() -> None:
    names = {r.name for r in ROWS}
    assert names == {
        "ModuleStatus",
        "ModuleLimits",
        "CellSummary",
        "Temperatures",
        "CellVoltages",
        "CellTemperatures",
        "Alarms",
        "ModuleInfo",
        "ModuleCapacity",
        "MasterCommand",
    }
    assert len(alarm_order()) == 16


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_message_matches_page(db: cantools.database.can.Database, row: Row) -> None:
    message = db.get_message_by_name(row.name)
    assert message.frame_id == row.base
    assert message.length == 8
    assert not message.is_extended_frame
    period = re.search(r"(\d+) (ms|s)\b", row.period)
    assert period, row.period
    number, unit = period.groups()
    assert message.cycle_time == int(number) * (1 if unit == "ms" else 1000)
    expected = expected_signals(row)
    actual = {s.name: s for s in message.signals if not s.is_multiplexer}
    assert set(actual) == set(expected)
    for name, want in expected.items():
        s = actual[name]
        assert (s.start, s.length, s.is_signed, s.byte_order) == (
            want.start,
            want.length,
            want.signed,
            "little_endian",
        ), name
        assert (float(s.scale), float(s.offset)) == (want.scale, want.offset), name
        assert (s.unit or None) == want.unit, name


def test_multiplexing(db: cantools.database.can.Database) -> None:
    cells = db.get_message_by_name("CellVoltages")
    mux = cells.get_signal_by_name("CellGroup")
    assert (mux.is_multiplexer, mux.start, mux.length) == (True, 0, 8)
    for n in range(1, 49):
        assert cells.get_signal_by_name(f"Cell{n:02d}Voltage").multiplexer_ids == [(n - 1) // 3]
        assert cells.get_signal_by_name(f"Cell{n:02d}Balancing").multiplexer_ids == [(n - 1) // 3]
    temps = db.get_message_by_name("CellTemperatures")
    sensor = temps.get_signal_by_name("SensorGroup")
    assert (sensor.is_multiplexer, sensor.start, sensor.length) == (True, 0, 8)
    for n in range(1, 29):
        signal = temps.get_signal_by_name(f"Temp{n:02d}")
        assert signal.multiplexer_ids == [(n - 1) // 7]
        assert signal.choices is not None
        assert dict(signal.choices) == {255: "NoSensor"}


def test_value_tables(db: cantools.database.can.Database) -> None:
    text = PAGE.read_text()
    line = text.split("ModuleState values:")[1].split("\n")[0]
    states = {int(v): n for v, n in re.findall(r"(\d) (\w+)", line)}
    choices = db.get_message_by_name("ModuleStatus").get_signal_by_name("ModuleState").choices
    assert choices is not None
    assert {k: str(v) for k, v in choices.items()} == states
    reasons = {int(v): n for v, n in re.findall(r"(\d) (\w+)", text.split("enum: ")[1].split(")")[0])}
    choices = db.get_message_by_name("MasterCommand").get_signal_by_name("IsolateReason").choices
    assert choices is not None
    assert {k: str(v) for k, v in choices.items()} == reasons


def test_known_frame_decodes(db: cantools.database.can.Database) -> None:
    status = db.get_message_by_name("ModuleStatus")
    values = status.decode(bytes.fromhex("1414 85ff ee02 6212"), decode_choices=False)
    assert values == {
        "ModuleVoltage": 51.4,
        "ModuleCurrent": -12.3,
        "SOC": 75.0,
        "SOH": 98,
        "ModuleState": 2,
        "AliveCounter": 1,
    }


def test_duplicate_frame_ids_are_refused(tmp_path: Path) -> None:
    text = dbc.shipped("module.dbc").read_text()
    twin = text.replace("BO_ 1056 ModuleLimits", "BO_ 1024 ModuleLimits")
    path = tmp_path / "twin.dbc"
    path.write_text(twin)
    with pytest.raises(ConfigError, match="more than once: 0x400"):
        dbc.load(path, "module.dbc", "can.modules.dbc")


def test_missing_and_broken_files_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="can.modules.dbc: no such file"):
        dbc.load(tmp_path / "nope.dbc", "module.dbc", "can.modules.dbc")
    bad = tmp_path / "bad.dbc"
    bad.write_text("BO_ this is not a dbc")
    with pytest.raises(ConfigError, match="can.modules.dbc: .* not a valid DBC"):
        dbc.load(bad, "module.dbc", "can.modules.dbc")
