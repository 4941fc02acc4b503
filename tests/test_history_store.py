"""The history database on real SQLite files: schema versions and migrations, one batch per transaction, what a
run starts from, the read-only reader and its filters, and the files it must refuse."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.history import schema
from gateway.history.counters import Counters, Daily, Peak
from gateway.history.events import Event
from gateway.history.store import Batch, HistoryError, Reader, Store
from gateway.master.model import IsolateReason, Isolation, Memory

COUNTERS = Counters(
    charged_ah=12.5,
    discharged_ah=10.25,
    charged_wh=650.0,
    discharged_wh=520.0,
    cycles=0.1025,
    seconds_hot=30.0,
    seconds_cold=0.0,
    cell_voltage_max=Peak(3.61, 1_000.5),
    cell_voltage_min=Peak(2.95, 2_000.5),
    temperature_max=Peak(46.0, 3_000.5),
    temperature_min=None,
    since=100.0,
    updated=5_000.0,
)
MEMORY = Memory(
    last_full_charge=1_234.5,
    isolations=(
        Isolation(module=2, reason="protection: CellOverVoltage", isolate_reason=IsolateReason.FAULT, held=42.0),
    ),
    shares=(((1,), 0.55), ((2, 3), 0.45)),
)


def event(t: float, name: str = "alarm raised", **fields: object) -> Event:
    return Event(t=t, event=name, **fields)  # type: ignore[arg-type]


def test_a_new_file_gets_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    assert store.migrated == (0, schema.VERSION)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "events", "counters", "daily", "isolations", "shares"}
    again = Store(path)  # opening again migrates nothing
    assert again.migrated == (schema.VERSION, schema.VERSION)
    again.close()


def test_migrations_run_in_order_and_keep_the_data(tmp_path: Path) -> None:
    """A database of version 1 meets a release with a version 2: the step runs once, in its own transaction, and
    what version 1 stored is still there."""
    path = tmp_path / "history.sqlite"
    store = Store(path)
    store.begin(10.0, [event(10.0, code="cell_over_voltage", modules=(3,), value=3.61)])
    store.close()
    v2 = "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT 'gateway';"
    db = sqlite3.connect(path, isolation_level=None)
    assert schema.migrate(db, (*schema.MIGRATIONS, v2)) == (1, 2)
    assert schema.migrate(db, (*schema.MIGRATIONS, v2)) == (2, 2)
    assert db.execute("SELECT event, code, modules, value, source FROM events").fetchall() == [
        ("alarm raised", "cell_over_voltage", "[3]", 3.61, "gateway")
    ]
    db.close()


def test_a_failed_migration_leaves_the_version_before_it(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    broken = "CREATE TABLE extra (x INTEGER); INSERT INTO nowhere VALUES (1);"
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        schema.migrate(db, (*schema.MIGRATIONS, broken))
    assert schema.version(db) == 1
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    db.close()


def test_a_database_from_a_newer_release_is_refused_not_written(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    with pytest.raises(HistoryError, match=f"schema version {schema.VERSION + 1} is newer"):
        Store(path)
    with pytest.raises(HistoryError, match="newer than this gateway knows"):
        Reader(path)


def test_a_batch_goes_in_whole_and_a_run_starts_from_it(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    first = store.load()
    assert (first.unclean, dict(first.counters), first.memory) == (False, {}, Memory())
    store.begin(100.0, [event(100.0, "gateway start")])
    daily = Daily(day="1970-01-01", t=5_000.0, soh=98.0, capacity_ah=99.5, resistance_mohm=2.5, cell_spread_max=0.012)
    store.write(
        Batch(
            5_000.0,
            events=(event(4_999.5, code="heat_accumulation", level="warning", modules=(2,), value=6.5),),
            counters={0: COUNTERS, 3: COUNTERS},
            daily={3: daily},
            memory=MEMORY,
        )
    )
    store.close()

    again = Store(path)
    loaded = again.load()
    again.close()
    assert loaded.unclean  # begun, never stopped cleanly
    assert loaded.last_seen == 5_000.0  # the newest thing it holds: the counters' last sample
    assert dict(loaded.counters) == {0: COUNTERS, 3: COUNTERS}
    assert dict(loaded.daily) == {3: daily}
    assert loaded.memory == MEMORY


def test_a_clean_stop_is_remembered(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    store.begin(1.0)
    store.write(Batch(2.0, events=(event(2.0, "gateway stop"),), clean=True))
    assert not store.load().unclean
    store.begin(3.0)
    assert store.load().unclean
    store.close()


def test_memory_replaces_what_was_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "history.sqlite")
    store.write(Batch(1.0, memory=MEMORY))
    store.write(Batch(2.0, memory=Memory(last_full_charge=None, isolations=(), shares=(((1,), 1.0),))))
    assert store.load().memory == Memory(last_full_charge=None, isolations=(), shares=(((1,), 1.0),))
    store.close()


def test_the_daily_sample_of_each_scope_is_its_latest_day(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    days = [Daily(day=f"2024-05-0{n}", t=float(n), soh=100.0 - n) for n in (1, 2, 3)]
    for d in days:
        store.write(Batch(d.t, daily={1: d}))
    assert dict(store.load().daily) == {1: days[-1]}
    store.close()
    with Reader(path) as reader:
        assert reader.daily() == [(1, d) for d in days]
        assert reader.daily(2) == []


def test_old_events_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    store.write(Batch(10.0, events=tuple(event(float(t)) for t in range(10))))
    store.write(Batch(11.0, prune_before=5.0))
    store.close()
    with Reader(path) as reader:
        assert [e.t for e in reader.events()] == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_the_reader_filters_by_time_module_and_level_and_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = Store(path)
    found = (
        event(1.0, "module offline", level="warning", modules=(3,)),
        event(2.0, "alarm raised", level="protection", modules=(2, 3), code="cell_over_voltage"),
        event(3.0, "module online", level="info", modules=(13,)),
        event(4.0, "gateway stop", level="info"),
    )
    store.write(Batch(5.0, events=found))
    store.close()
    with Reader(path) as reader:
        assert reader.events() == list(found)
        assert [e.t for e in reader.events(module=3)] == [1.0, 2.0]  # not module 13
        assert [e.t for e in reader.events(level="warning")] == [1.0, 2.0]
        assert [e.t for e in reader.events(level="protection")] == [2.0]
        assert [e.t for e in reader.events(since=2.0)] == [2.0, 3.0, 4.0]
        assert [e.t for e in reader.events(limit=2)] == [3.0, 4.0]


def test_the_reader_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    Store(path).close()
    with Reader(path) as reader, pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._db.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")


def test_the_reader_refuses_what_is_not_a_history(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file"):
        Reader(tmp_path / "missing.sqlite")
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(HistoryError, match="not a bms-gateway history"):
        Reader(empty)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(HistoryError, match="file is not a database"):
        Reader(garbage)


def test_the_store_names_the_file_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r"missing/history.sqlite: the directory .*missing does not exist"):
        Store(tmp_path / "missing" / "history.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x13" * 8192)
    with pytest.raises(HistoryError, match=r"garbage.sqlite: file is not a database"):
        Store(garbage)
