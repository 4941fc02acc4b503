"""The history database's schema: one SQL script per version, applied in order (`PRAGMA user_version`).

A database is at version n when the first n scripts of `MIGRATIONS` have run on it; a new version appends a
script that takes version n to n + 1 (ALTER TABLE, CREATE TABLE, data moves), never edits an old one, so a box
with a database from any earlier release is migrated step by step at start. A database from a newer release
than this one is refused rather than written with an old idea of its tables.

Times are seconds since the Unix epoch (the gateway's clock; the log's clock in replay). Module addresses are
1..31; scope 0 is the bank.
"""

from __future__ import annotations

import sqlite3

V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    event TEXT NOT NULL,
    level TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    modules TEXT NOT NULL DEFAULT '[]',
    detail TEXT NOT NULL DEFAULT '',
    value REAL
);
CREATE INDEX events_by_time ON events (t);

CREATE TABLE counters (
    scope INTEGER PRIMARY KEY,
    charged_ah REAL NOT NULL,
    discharged_ah REAL NOT NULL,
    charged_wh REAL NOT NULL,
    discharged_wh REAL NOT NULL,
    cycles REAL NOT NULL,
    seconds_hot REAL NOT NULL,
    seconds_cold REAL NOT NULL,
    cell_voltage_max REAL, cell_voltage_max_t REAL,
    cell_voltage_min REAL, cell_voltage_min_t REAL,
    temperature_max REAL, temperature_max_t REAL,
    temperature_min REAL, temperature_min_t REAL,
    since REAL,
    updated REAL
);

CREATE TABLE daily (
    scope INTEGER NOT NULL,
    day TEXT NOT NULL,
    t REAL NOT NULL,
    soh REAL,
    capacity_ah REAL,
    resistance_mohm REAL,
    cell_spread_max REAL,
    cycle_count INTEGER,
    PRIMARY KEY (scope, day)
) WITHOUT ROWID;

CREATE TABLE isolations (
    module INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    isolate_reason TEXT NOT NULL,
    held REAL NOT NULL,
    saved REAL NOT NULL
);

CREATE TABLE shares (
    string TEXT PRIMARY KEY,
    share REAL NOT NULL
) WITHOUT ROWID;
"""
"""Version 1: events, lifetime counters per scope, daily ageing samples, and the master's memory (isolations,
learned shares; the last full charge is a `meta` key)."""

MIGRATIONS: tuple[str, ...] = (V1,)
"""MIGRATIONS[n] takes a database from version n to n + 1."""
VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database's schema is one this gateway cannot use (written by a newer release)."""


def version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection, migrations: tuple[str, ...] = MIGRATIONS) -> tuple[int, int]:
    """Bring the database up to `len(migrations)`, each step in its own transaction; (version before, after).

    The connection must be in autocommit mode (`isolation_level=None`): each script runs between its own BEGIN
    and COMMIT, so a step that fails leaves the database at the version before it.
    """
    found = version(connection)
    if found > len(migrations):
        raise SchemaError(f"schema version {found} is newer than this gateway knows ({len(migrations)})")
    for n in range(found, len(migrations)):
        try:
            connection.executescript(f"BEGIN;\n{migrations[n]}\nPRAGMA user_version = {n + 1};\nCOMMIT;")
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
    return found, len(migrations)
