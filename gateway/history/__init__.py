"""History that survives restarts, in SQLite (stdlib `sqlite3`): events, lifetime counters, the master's memory.

- `events`: one `Event` per change (alarms, module life cycle, operator actions, start and stop, reloads, edge
  failures), made from values by pure functions.
- `counters`: `Lifetime`, the pure integrator of charged and discharged Ah and Wh, cycles, time hot and cold,
  extremes and the daily ageing sample, which the core runs on every snapshot.
- `schema` and `store`: the database (WAL, versioned schema, migrations) behind a synchronous `Store` for the one
  writer and a read-only `Reader` for the command line.
- `writer`: `HistoryWriter`, the service's edge: one thread owns the connection, one task hands it a batch a
  second; a tick never waits on the disk, and a broken disk costs history, never protection.
"""
