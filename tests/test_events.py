"""The events the dashboard lists: the journal of changes since start, numbered, levelled and filtered."""

from __future__ import annotations

from gateway.changes import Change, changes
from gateway.events import EventJournal, EventSource
from gateway.master.model import Level, Lifecycle

from helpers.factories import master, reading, run


def raised(code: str, level: Level, *modules: int) -> Change:
    return Change(event="alarm raised", severity="warning", code=code, level=level, modules=modules)


def test_each_change_becomes_a_numbered_event_with_its_level() -> None:
    journal = EventJournal()
    source: EventSource = journal  # the protocol a history store implements too
    journal.record(10.0, [Change(event="module offline", severity="warning", module=3, lifecycle=Lifecycle.OFFLINE)])
    journal.record(
        11.5,
        [
            raised("module_comm_lost", Level.WARNING, 3),
            raised("cell_over_voltage", Level.PROTECTION, 2),
            Change(event="alarm cleared", severity="info", code="cell_over_voltage", level=Level.PROTECTION),
        ],
    )
    events = source.events()
    assert [e.id for e in events] == [4, 3, 2, 1]
    assert source.last_id == 4
    assert [e.level for e in events] == ["info", "protection", "warning", "warning"]
    assert events[-1].as_dict() == {
        "id": 1,
        "t": 10.0,
        "time": "1970-01-01T00:00:10.000Z",
        "event": "module offline",
        "level": "warning",
        "module": 3,
        "modules": [],
        "code": "",
        "lifecycle": "offline",
        "reason": "",
        "was": "",
        "detail": "",
    }


def test_filters_by_module_level_and_position() -> None:
    journal = EventJournal()
    journal.record(1.0, [Change(event="module online", severity="info", module=1, lifecycle=Lifecycle.ONLINE)])
    journal.record(2.0, [raised("module_comm_lost", Level.WARNING, 2)])
    journal.record(3.0, [raised("cell_over_voltage", Level.PROTECTION, 1, 2)])
    assert [e.id for e in journal.events(module=1)] == [3, 1]
    assert [e.id for e in journal.events(module=2)] == [3, 2]
    assert [e.id for e in journal.events(level="warning")] == [3, 2]
    assert [e.id for e in journal.events(level="protection")] == [3]
    assert [e.id for e in journal.events(after=1)] == [3, 2]
    assert [e.id for e in journal.events(limit=1)] == [3]


def test_the_journal_keeps_the_newest_events() -> None:
    journal = EventJournal(size=3)
    for t in range(5):
        journal.record(float(t), [raised("heat_accumulation", Level.WARNING, t)])
    assert [e.id for e in journal.events()] == [5, 4, 3]
    assert journal.description == "since the gateway started (the last 3)"


def test_a_master_run_journals_what_the_service_logs() -> None:
    m = master()
    journal = EventJournal()
    before = run(m, 0.0, 4.0, lambda t: {a: reading(a, t) for a in (1, 2)}).snapshot
    for i in range(1, 60):
        t = 4.0 + 0.1 * i
        after = m.step(t, {1: reading(1, t), 2: reading(2, 4.0)}).snapshot  # module 2 silent from 4 s
        journal.record(t, changes(before, after))
        before = after
    offline = journal.events(module=2)
    assert {(e.event, e.lifecycle) for e in offline} >= {("module offline", "offline")}
    assert any(e.code == "module_comm_lost" and e.modules == (2,) for e in offline)
