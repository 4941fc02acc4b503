"""The events the dashboard lists: the gateway's events (the history's kind), numbered, levelled and filtered."""

from __future__ import annotations

from gateway.changes import changes
from gateway.events import EventJournal, EventSource
from gateway.history.events import Event, EventLevel, from_change

from helpers.factories import master, reading, run


def raised(t: float, code: str, level: EventLevel, *modules: int) -> Event:
    return Event(t=t, event="alarm raised", level=level, code=code, modules=modules)


def test_each_event_is_numbered_and_listed_newest_first() -> None:
    journal = EventJournal()
    source: EventSource = journal  # the protocol the dashboard reads
    journal.record(Event(t=10.0, event="module offline", level="warning", code="communication_lost", modules=(3,)))
    journal.record(raised(11.5, "module_comm_lost", "warning", 3))
    journal.record(raised(11.5, "cell_over_voltage", "protection", 2))
    journal.record(Event(t=11.5, event="alarm cleared", code="cell_over_voltage"))
    events = source.events()
    assert [e.id for e in events] == [4, 3, 2, 1]
    assert source.last_id == 4
    assert [e.event.level for e in events] == ["info", "protection", "warning", "warning"]
    assert events[-1].as_dict() == {
        "id": 1,
        "t": 10.0,
        "time": "1970-01-01T00:00:10.000Z",
        "event": "module offline",
        "level": "warning",
        "code": "communication_lost",
        "modules": [3],
        "detail": "",
        "value": None,
    }


def test_filters_by_module_level_and_position() -> None:
    journal = EventJournal()
    journal.record(Event(t=1.0, event="module online", modules=(1,)))
    journal.record(raised(2.0, "module_comm_lost", "warning", 2))
    journal.record(raised(3.0, "cell_over_voltage", "protection", 1, 2))
    assert [e.id for e in journal.events(module=1)] == [3, 1]
    assert [e.id for e in journal.events(module=2)] == [3, 2]
    assert [e.id for e in journal.events(level="warning")] == [3, 2]
    assert [e.id for e in journal.events(level="protection")] == [3]
    assert [e.id for e in journal.events(after=1)] == [3, 2]
    assert [e.id for e in journal.events(limit=1)] == [3]


def test_the_journal_keeps_the_newest_events() -> None:
    journal = EventJournal(size=3)
    for t in range(5):
        journal.record(raised(float(t), "heat_accumulation", "warning", t))
    assert [e.id for e in journal.events()] == [5, 4, 3]
    assert journal.description == "since the gateway started (the last 3)"


def test_the_history_s_events_go_first_and_are_numbered_before_the_new_ones() -> None:
    """At start the journal is seeded with the history's latest events: a restart does not empty the page."""
    journal = EventJournal(size=4)
    journal.record(Event(t=100.0, event="gateway start"))
    journal.seed([Event(t=float(t), event="module online", modules=(t,)) for t in range(1, 4)])
    assert [(e.id, e.event.event, e.event.t) for e in journal.events()] == [
        (4, "gateway start", 100.0),
        (3, "module online", 3.0),
        (2, "module online", 2.0),
        (1, "module online", 1.0),
    ]
    assert journal.description == "from the history, then since the gateway started (the last 4)"
    journal.record(Event(t=101.0, event="bank valid"))
    assert [e.id for e in journal.events()] == [5, 4, 3, 2], "the oldest goes when full"


def test_a_master_run_journals_what_the_service_records() -> None:
    m = master()
    journal = EventJournal()
    before = run(m, 0.0, 4.0, lambda t: {a: reading(a, t) for a in (1, 2)}).snapshot
    for i in range(1, 60):
        t = 4.0 + 0.1 * i
        after = m.step(t, {1: reading(1, t), 2: reading(2, 4.0)}).snapshot  # module 2 silent from 4 s
        for change in changes(before, after):
            journal.record(from_change(change, t))
        before = after
    offline = [e.event for e in journal.events(module=2)]
    assert {(e.event, e.level) for e in offline} >= {("module offline", "warning")}
    assert any(e.code == "module_comm_lost" and e.modules == (2,) for e in offline)
