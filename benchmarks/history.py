"""history: what keeping the history costs, from a replayed simulated day of 2 modules (quick: 10 minutes of it).

The day (candump .log, generated once into benchmarks/.cache/, about 2 minutes) charges at 20 A and has a day's
trouble: a module drops out for a minute every few hours (module offline and alarm raised, then module back and
alarm cleared). It is replayed with `--history` into a fresh file: on the log's clock, in the live writer's
batches (one transaction per second of log with the events, the counters every 3 s, the master's memory when it
changes), so the file grows as a live gateway's would over that day.

Measured:
- replay frames/s with the history written; baseline: the same replay without it;
- the database per module per year: a day's rows are too few to move a file that grows by whole pages, so the
  day's events and daily samples are copied, shifted by a day each time, until the file holds a year of such
  days; (its size - the size of a history that holds no day) / modules. Events older than `retention_days` (365)
  are pruned, so a year is also the size it keeps; the fixed part (schema, a bank's counters) is in the details;
- bytes the history writes per day (WAL appends and checkpoints; what an SD card wears with, at most: the kernel
  coalesces the appends of the seconds between two writebacks), for the bank (they hardly grow with its modules:
  the counters of 16 modules fit in one page): the process's written bytes (/proc/self/io `wchar`) during the
  replay with the history minus during the one without.
"""

from __future__ import annotations

import datetime
import sqlite3
import tempfile
from pathlib import Path

from benchmarks import common
from benchmarks.common import Options, Row
from gateway import config
from gateway.history.store import Reader, Store
from gateway.replay import replay

MODULES = 2
DAY = 86_400.0
DROPS = ("drop:1@300=60", "drop:2@7200=60", "drop:1@21600=60", "drop:2@43200=60", "drop:1@64800=60")
"""A minute's drop-out every few hours (the first at 5 min, so the quick run sees one)."""


def written() -> int | None:
    """Bytes this process has passed to write() so far (Linux), or None."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("wchar:")))


def a_year_of(db: Path, seconds: float) -> tuple[int, int]:
    """Fill `db` (which holds `seconds` of history) up to a year by copying its events (shifted by `seconds` each
    time) and its daily samples (shifted by a day); the rows it then holds."""
    connection = sqlite3.connect(db)
    columns = "t, event, level, code, modules, detail, value"
    events = connection.execute(f"SELECT {columns} FROM events").fetchall()
    samples = connection.execute(
        "SELECT scope, day, t, soh, capacity_ah, resistance_mohm, cell_spread_max, cycle_count FROM daily"
    ).fetchall()
    with connection:
        for k in range(1, round(365 * DAY / seconds)):
            connection.executemany(
                f"INSERT INTO events ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(row[0] + k * seconds, *row[1:]) for row in events],
            )
        for k in range(1, 365):
            connection.executemany(
                "INSERT OR IGNORE INTO daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(row[0], shifted(row[1], k), row[2] + k * DAY, *row[3:]) for row in samples],
            )
    rows = connection.execute("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM daily)").fetchone()[0]
    connection.close()
    return db.stat().st_size, rows


def shifted(day: str, days: int) -> str:
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=days)).isoformat()


def run(opts: Options) -> list[Row]:
    seconds = opts.pick(600.0, DAY)
    log = common.cached_log(modules=MODULES, seconds=seconds, current=20.0, faults=DROPS)
    cfg = config.parse({"gateway": {"log_level": "warning"}})
    before = written()
    plain = replay(log, cfg)
    plain_bytes = None if before is None else (written() or 0) - before
    common.progress(f"history: without {plain.summary()}")
    with tempfile.TemporaryDirectory(prefix="bench-history-") as directory:
        empty = Path(directory) / "empty.sqlite"
        store = Store(empty)
        store.begin(0.0)
        store.close()
        fixed = empty.stat().st_size
        db = Path(directory) / "history.sqlite"
        before = written()
        kept = replay(log, cfg, history=db)
        history_bytes = None if before is None else (written() or 0) - before
        size = db.stat().st_size
        with Reader(db) as reader:
            events = len(reader.events())
            daily = len(reader.daily())
        year, year_rows = a_year_of(db, seconds)
    common.progress(f"history: with {kept.summary()}")
    days = seconds / DAY
    per_year = (year - fixed) / MODULES / 1e6
    details = {
        "log": log.name,
        "log_seconds": seconds,
        "modules": MODULES,
        "database_bytes_after_the_log": size,
        "events": events,
        "daily_rows": daily,
        "database_bytes_after_a_year": year,
        "rows_after_a_year": year_rows,
        "fixed_bytes": fixed,
        "bytes_per_row": (year - fixed) / max(1, year_rows),
    }
    rows = [
        Row(
            "history",
            "replay with the history written",
            kept.frames / kept.wall,
            "frames/s",
            plain.frames / plain.wall,
            "the same replay without it",
            None,
            details,
        ),
        Row("history", "database per module per year", per_year, "MB"),
    ]
    if history_bytes is not None and plain_bytes is not None:
        per_day = (history_bytes - plain_bytes) / days / 1e6
        rows.append(Row("history", "written per day (WAL and checkpoints)", max(0.0, per_day), "MB"))
    return rows
