"""The history database: a synchronous `Store` for its one writer, a read-only `Reader` for the command line.

Both are plain blocking sqlite3: the service runs the `Store` in a thread of its own (gateway.history.writer) and
replay runs it in line on the log's clock. The database is in WAL mode: a reader never blocks the writer, a kill
loses no committed transaction, and `synchronous = NORMAL` keeps a commit to one write of the log (a power cut may
lose the last commits, never the file). Each batch is one transaction: events, counters, daily samples and the
master's memory go in together or not at all.

Every failure (a missing directory, a read-only or corrupt file, a full disk, a schema from a newer release) is a
`HistoryError` naming the file and the reason.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import GatewayError
from gateway.history import schema
from gateway.history.counters import Counters, Daily, Peak
from gateway.history.events import LEVELS, Event, EventLevel
from gateway.master.model import IsolateReason, Isolation, Memory

BUSY_TIMEOUT = 1.0
"""Seconds a write waits for a lock (a reader's checkpoint, an operator's backup) before it fails."""
WAL_LIMIT = 4 * 1024 * 1024
"""Bytes the write-ahead log is cut back to after a checkpoint."""


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


class HistoryError(GatewayError):
    """The history database cannot be used (opened, read or written); the message names the file and why."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a run starts from: the stored counters, each scope's latest daily sample, the master's memory, and
    whether the previous run stopped cleanly."""

    counters: Mapping[int, Counters] = field(default_factory=_empty)
    daily: Mapping[int, Daily] = field(default_factory=_empty)
    memory: Memory = field(default_factory=Memory)
    unclean: bool = False
    """The previous run never wrote its clean stop: it was killed, crashed or lost power."""
    last_seen: float | None = None
    """The last time the history holds (an event or a counted sample): about when the previous run ended."""
    migrated: tuple[int, int] = (schema.VERSION, schema.VERSION)
    """Schema version found, and now."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One transaction: what the writer hands the store once a second."""

    t: float
    events: tuple[Event, ...] = ()
    counters: Mapping[int, Counters] = field(default_factory=_empty)
    daily: Mapping[int, Daily] = field(default_factory=_empty)
    memory: Memory | None = None
    """None: unchanged since the last batch."""
    clean: bool = False
    """The run stops cleanly with this batch."""
    prune_before: float | None = None
    """Delete the events before this time."""


def _wrap(path: Path, err: Exception) -> HistoryError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return HistoryError(f"{path}: {reason}")


@contextmanager
def _errors(path: Path) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError, schema.SchemaError) as err:
        raise _wrap(path, err) from err
    except (ValueError, KeyError, TypeError) as err:  # a stored value we could not have written
        raise HistoryError(f"{path}: unreadable value: {err!r}") from err


class Store:
    """The writer's connection. Open it, `load` what the last run left, `begin` this run, `write` batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.parent.is_dir():
            raise HistoryError(f"{path}: the directory {path.parent} does not exist")
        with _errors(path):
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
        try:
            with _errors(path):
                self._db.execute("PRAGMA journal_mode = WAL").fetchone()
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
                self.migrated = schema.migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def load(self) -> Loaded:
        with _errors(self.path):
            db = self._db
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            counters = {row[0]: _counters(row[1:]) for row in db.execute(f"SELECT {_COUNTER_COLUMNS} FROM counters")}
            daily = {
                row[0]: _daily(row[1:])
                for row in db.execute(
                    f"SELECT {_DAILY_COLUMNS} FROM daily JOIN "
                    "(SELECT scope, max(day) AS day FROM daily GROUP BY scope) USING (scope, day)"
                )
            }
            memory = _memory(db, meta)
            last_seen = db.execute(
                "SELECT max(t) FROM (SELECT max(updated) AS t FROM counters UNION ALL SELECT max(t) FROM events)"
            ).fetchone()[0]
        return Loaded(
            counters=MappingProxyType(counters),
            daily=MappingProxyType(daily),
            memory=memory,
            unclean=meta.get("running") == "1",
            last_seen=last_seen,
            migrated=self.migrated,
        )

    def begin(self, t: float, events: Sequence[Event] = ()) -> None:
        """Mark this run as running (until a batch with `clean`) and write its first events; this is also the
        first write, so a file that cannot be written fails here, at start."""
        with self._transaction():
            self._meta(running="1", started=repr(t))
            self._events(events)

    def write(self, batch: Batch) -> None:
        with self._transaction():
            db = self._db
            self._events(batch.events)
            if batch.counters:
                db.executemany(
                    f"INSERT OR REPLACE INTO counters ({_COUNTER_COLUMNS}) VALUES ({_marks(18)})",
                    [(scope, *_counter_row(c)) for scope, c in batch.counters.items()],
                )
            if batch.daily:
                db.executemany(
                    f"INSERT OR REPLACE INTO daily ({_DAILY_COLUMNS}) VALUES ({_marks(8)})",
                    [(scope, *_daily_row(d)) for scope, d in batch.daily.items()],
                )
            if batch.memory is not None:
                self._store_memory(batch.memory, batch.t)
            if batch.prune_before is not None:
                db.execute("DELETE FROM events WHERE t < ?", (batch.prune_before,))
            if batch.clean:
                self._meta(running="0", stopped=repr(batch.t))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with _errors(self.path):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

    def _meta(self, **values: str) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    def _events(self, events: Sequence[Event]) -> None:
        if events:
            self._db.executemany(
                "INSERT INTO events (t, event, level, code, modules, detail, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.t, e.event, e.level, e.code, json.dumps(list(e.modules)), e.detail, e.value) for e in events],
            )

    def _store_memory(self, memory: Memory, t: float) -> None:
        db = self._db
        last = "" if memory.last_full_charge is None else repr(memory.last_full_charge)
        self._meta(last_full_charge=last)
        db.execute("DELETE FROM isolations")
        db.executemany(
            "INSERT INTO isolations (module, reason, isolate_reason, held, saved) VALUES (?, ?, ?, ?, ?)",
            [(i.module, i.reason, i.isolate_reason.name.lower(), i.held, t) for i in memory.isolations],
        )
        db.execute("DELETE FROM shares")
        db.executemany(
            "INSERT INTO shares (string, share) VALUES (?, ?)",
            [(json.dumps(list(string)), share) for string, share in memory.shares],
        )


class Reader:
    """A read-only view of a history database, for `bms-gateway events` and `history` (never writes, never
    migrates; a running gateway goes on writing meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise HistoryError(f"{path}: no such file")
        with _errors(path):
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            with _errors(path):
                found = schema.version(self._db)
        except BaseException:
            self._db.close()
            raise
        problem = None
        if found == 0:
            problem = "not a bms-gateway history (no schema version)"
        elif found > schema.VERSION:
            problem = f"schema version {found} is newer than this gateway knows"
        if problem is not None:
            self._db.close()
            raise HistoryError(f"{path}: {problem}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def events(
        self,
        *,
        since: float | None = None,
        module: int | None = None,
        level: EventLevel | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events in time order (the last `limit` of them), filtered by time, module and least level."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("t >= ?")
            args.append(since)
        if module is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(events.modules) WHERE json_each.value = ?)")
            args.append(module)
        if level is not None:
            levels = LEVELS[LEVELS.index(level) :]
            where.append(f"level IN ({_marks(len(levels))})")
            args.extend(levels)
        query = "SELECT t, event, level, code, modules, detail, value FROM events"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY t DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with _errors(self.path):
            rows = self._db.execute(query, args).fetchall()
        return [
            Event(t=t, event=event, level=lvl, code=code, modules=tuple(json.loads(mods)), detail=detail, value=value)
            for t, event, lvl, code, mods, detail, value in reversed(rows)
        ]

    def counters(self) -> dict[int, Counters]:
        with _errors(self.path):
            rows = self._db.execute(f"SELECT {_COUNTER_COLUMNS} FROM counters ORDER BY scope").fetchall()
        return {row[0]: _counters(row[1:]) for row in rows}

    def daily(self, scope: int | None = None) -> list[tuple[int, Daily]]:
        query = f"SELECT {_DAILY_COLUMNS} FROM daily"
        args: list[int] = []
        if scope is not None:
            query += " WHERE scope = ?"
            args.append(scope)
        with _errors(self.path):
            rows = self._db.execute(query + " ORDER BY scope, day", args).fetchall()
        return [(row[0], _daily(row[1:])) for row in rows]

    def meta(self) -> dict[str, str]:
        with _errors(self.path):
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def memory(self) -> Memory:
        with _errors(self.path):
            return _memory(self._db, self.meta())


# -- rows -----------------------------------------------------------------------------------------------------

_PEAKS = ("cell_voltage_max", "cell_voltage_min", "temperature_max", "temperature_min")
_COUNTER_COLUMNS = ", ".join(
    (
        "scope",
        "charged_ah",
        "discharged_ah",
        "charged_wh",
        "discharged_wh",
        "cycles",
        "seconds_hot",
        "seconds_cold",
        *(f"{name}{suffix}" for name in _PEAKS for suffix in ("", "_t")),
        "since",
        "updated",
    )
)
_DAILY_COLUMNS = "scope, day, t, soh, capacity_ah, resistance_mohm, cell_spread_max, cycle_count"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _counter_row(c: Counters) -> tuple[Any, ...]:
    peaks: list[float | None] = []
    for peak in (c.cell_voltage_max, c.cell_voltage_min, c.temperature_max, c.temperature_min):
        peaks += (None, None) if peak is None else (peak.value, peak.t)
    return (
        c.charged_ah,
        c.discharged_ah,
        c.charged_wh,
        c.discharged_wh,
        c.cycles,
        c.seconds_hot,
        c.seconds_cold,
        *peaks,
        c.since,
        c.updated,
    )


def _counters(row: Sequence[Any]) -> Counters:
    def peak(i: int) -> Peak | None:
        value, t = row[7 + 2 * i], row[8 + 2 * i]
        return None if value is None or t is None else Peak(value, t)

    return Counters(
        charged_ah=row[0],
        discharged_ah=row[1],
        charged_wh=row[2],
        discharged_wh=row[3],
        cycles=row[4],
        seconds_hot=row[5],
        seconds_cold=row[6],
        cell_voltage_max=peak(0),
        cell_voltage_min=peak(1),
        temperature_max=peak(2),
        temperature_min=peak(3),
        since=row[15],
        updated=row[16],
    )


def _daily_row(d: Daily) -> tuple[Any, ...]:
    return (d.day, d.t, d.soh, d.capacity_ah, d.resistance_mohm, d.cell_spread_max, d.cycle_count)


def _daily(row: Sequence[Any]) -> Daily:
    day, t, soh, capacity, resistance, spread, cycles = row
    return Daily(
        day=day,
        t=t,
        soh=soh,
        capacity_ah=capacity,
        resistance_mohm=resistance,
        cell_spread_max=spread,
        cycle_count=cycles,
    )


def _memory(db: sqlite3.Connection, meta: Mapping[str, str]) -> Memory:
    last = meta.get("last_full_charge") or None
    isolations = tuple(
        Isolation(module=module, reason=reason, isolate_reason=IsolateReason[why.upper()], held=held)
        for module, reason, why, held in db.execute(
            "SELECT module, reason, isolate_reason, held FROM isolations ORDER BY module"
        )
    )
    shares = tuple(
        (tuple(json.loads(string)), share) for string, share in db.execute("SELECT string, share FROM shares")
    )
    return Memory(last_full_charge=None if last is None else float(last), isolations=isolations, shares=shares)
