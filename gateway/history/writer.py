"""The history's edge in the running gateway: one thread owns the database, one task hands it a batch a second.

The master's path never touches the disk: a tick appends its events to a list and updates the counters in
memory (gateway.core). Once a second the writer task collects the events, the counters that changed (every
`COUNTER_PERIOD` seconds) and the master's memory (when it changed) into one `Batch` and gives it to the thread,
which writes it in one transaction; while a batch is being written nothing else is handed over, and events wait
(at most `MAX_PENDING`). A kill therefore loses the events of the last second and the counters of the last
`COUNTER_PERIOD` seconds at most, and nothing committed.

A broken disk costs history, never protection. Whatever stops the database (a missing directory, a read-only or
corrupt file, a full disk, writes that hang for `STALL` seconds, a schema from a newer release) is logged once;
the core then raises `history_unavailable` and the gateway runs on without history until it is restarted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.clock import Clock
from gateway.history.counters import DAY, Lifetime
from gateway.history.events import Event
from gateway.history.store import Batch, HistoryError, Loaded, Store
from gateway.logs import get
from gateway.master.model import Memory

log = get("gateway.history")

PERIOD = 1.0
"""Seconds between batches."""
COUNTER_PERIOD = 3.0
"""Seconds between writes of the counters (a kill loses at most this, plus one batch's write)."""
MEMORY_REFRESH = 60.0
"""Seconds after which the master's memory is written even if only the hold-off served has grown."""
FULL_STEP = 600.0
"""Seconds by which a later last full charge makes the memory worth writing at once (else at the refresh): a
restart that lost the last minute of it starts the 30-day interval a minute early."""
OPEN_TIMEOUT = 5.0
"""Seconds the start waits for the database to open before it goes on without history."""
STALL = 30.0
"""Seconds a batch may take before the disk counts as hung."""
CLOSE_TIMEOUT = 2.0
"""Seconds the last batch may take on a clean stop."""
MAX_PENDING = 10_000
"""Events kept while a batch is being written; beyond, the oldest are dropped (and counted)."""

T = TypeVar("T")


class Source(Protocol):
    """What the writer reads from the core between ticks (on the event loop)."""

    @property
    def lifetime(self) -> Lifetime: ...

    def memory(self, now: float) -> Memory: ...


def _memory_key(memory: Memory, now: float) -> Hashable:
    """What makes the memory worth writing again: everything but the hold-off served, which grows every second
    (it is refreshed every `MEMORY_REFRESH` s); shares to 0.01 and the last full charge to `FULL_STEP` (it moves
    with every tick while the bank is full), finer steps wait for the refresh."""
    isolations = tuple((i.module, i.reason, i.isolate_reason, round(now - i.held)) for i in memory.isolations)
    shares = tuple((s, round(v, 2)) for s, v in memory.shares)
    full = None if memory.last_full_charge is None else memory.last_full_charge // FULL_STEP
    return full, isolations, shares


@dataclass(slots=True)
class Pending:
    """What the next batch will hold, and when counters, memory and pruning are due: the batching rules, shared by
    the live writer and replay (which runs them on the log's clock)."""

    retention_days: int
    events: list[Event] = field(default_factory=list)
    dropped: int = 0
    """Events dropped because too many waited."""
    _counters_at: float | None = None
    _memory_at: float | None = None
    _memory_key: Hashable = None
    _prune_at: float | None = None

    def add(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > MAX_PENDING:
            del self.events[0]
            self.dropped += 1

    def batch(self, t: float, source: Source, *, final: bool = False) -> Batch | None:
        """The batch due at `t`, or None when there is nothing to write; `final` takes everything (a clean stop,
        the end of a log)."""
        events = tuple(self.events)
        self.events.clear()
        counters: dict[int, Any] = {}
        daily: dict[int, Any] = {}
        if final or self._counters_at is None or t - self._counters_at >= COUNTER_PERIOD:
            counters, daily = source.lifetime.take()
            self._counters_at = t
        memory: Memory | None = None
        now = source.memory(t)
        key = _memory_key(now, t)
        if final or key != self._memory_key or self._memory_at is None or t - self._memory_at >= MEMORY_REFRESH:
            memory, self._memory_key, self._memory_at = now, key, t
        prune = None
        if self._prune_at is None or t >= self._prune_at:
            prune, self._prune_at = t - self.retention_days * DAY, t + DAY
        if not (events or counters or daily or memory or prune is not None or final):
            return None
        return Batch(t, events, counters, daily, memory, clean=final, prune_before=prune)


class _Thread:
    """One daemon thread running jobs in order (a hung disk must not keep the process from exiting)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, job))
        return future

    def stop(self) -> None:
        """End the thread after the jobs already submitted."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as err:  # handed to the loop, which decides
                future.set_exception(err)


class HistoryWriter:
    """The database behind one thread, fed by one task. `open` before the master's first tick, `add` events from
    the loop, `run` the task until cancelled (which writes the last batch and marks the stop clean)."""

    def __init__(
        self, path: Path, *, retention_days: int, clock: Clock, on_problem: Callable[[str], None] | None = None
    ) -> None:
        self.path = path
        self._clock = clock
        self._on_problem = on_problem
        self._pending = Pending(retention_days)
        self._thread: _Thread | None = None
        self._store: Store | None = None
        self.problem: str | None = None
        """Why the history is unavailable (None while it works)."""
        self.batches = 0
        self.events = 0
        """Batches and events written."""

    @property
    def available(self) -> bool:
        return self.problem is None and self._store is not None

    @property
    def dropped(self) -> int:
        return self._pending.dropped

    async def open(self, first: Callable[[Loaded], Sequence[Event]]) -> Loaded | None:
        """Open (create, migrate) the database in the writer's thread and start this run in it, with the events
        `first` makes of what the last run left; None, logged once, when the history is unavailable."""
        t = self._clock()
        self._thread = _Thread("history-writer")

        def job() -> tuple[Store, Loaded]:
            store = Store(self.path)
            try:
                loaded = store.load()
                store.begin(t, first(loaded))
            except BaseException:
                store.close()
                raise
            return store, loaded

        opening = self._thread.submit(job)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                store, loaded = await asyncio.shield(asyncio.wrap_future(opening))
        except TimeoutError:
            self._thread.submit(lambda: _close_late(opening))
            self.fail(f"{self.path}: did not open within {OPEN_TIMEOUT:g} s (the disk hangs?)")
            return None
        except HistoryError as err:
            self.fail(str(err))
            return None
        except Exception as err:  # a bug must not stop the gateway: it runs on without history
            self.fail(f"{self.path}: {err!r}", exc_info=err)
            return None
        self._store = store
        before, after = loaded.migrated
        log.info(
            "history open", path=str(self.path), schema=after, **({"migrated_from": before} if before != after else {})
        )
        return loaded

    def add(self, event: Event) -> None:
        """Queue an event for the next batch (the master's loop; O(1), never waits)."""
        if self.problem is None:
            self._pending.add(event)

    async def run(self, source: Source, last: Callable[[], Event | None]) -> None:
        """Hand a batch to the thread every `PERIOD` s until cancelled; then write the last one, with the event
        `last` makes (the stop, unless it was recorded already), and mark the run's stop clean. Never raises but
        CancelledError."""
        if not self.available:
            return
        loop = asyncio.get_running_loop()
        writing: asyncio.Future[None] | None = None
        since = 0.0
        try:
            while True:
                await asyncio.sleep(PERIOD)
                if writing is not None:
                    if not writing.done():
                        if loop.time() - since > STALL:
                            self.fail(f"{self.path}: a write has not finished in {STALL:g} s (the disk hangs?)")
                            return
                        continue
                    if not self._written(writing):
                        return
                    writing = None
                batch = self._pending.batch(self._clock(), source)
                if batch is not None:
                    writing, since = self._write(batch), loop.time()
        except asyncio.CancelledError:
            await self._close(source, last, writing)
            raise
        except Exception as err:  # a bug: history stops, protection goes on
            self.fail(f"{self.path}: {err!r}", exc_info=err)

    def _write(self, batch: Batch) -> asyncio.Future[None]:
        assert self._thread is not None
        assert self._store is not None
        store = self._store
        self.batches += 1
        self.events += len(batch.events)
        return asyncio.wrap_future(self._thread.submit(lambda: store.write(batch)))

    def _written(self, writing: asyncio.Future[None]) -> bool:
        """Whether the batch went in; a failure makes the history unavailable."""
        err = writing.exception()
        if err is None:
            return True
        self.fail(str(err) if isinstance(err, HistoryError) else f"{self.path}: {err!r}")
        return False

    async def _close(
        self, source: Source, last: Callable[[], Event | None], writing: asyncio.Future[None] | None
    ) -> None:
        """The clean stop: the batch in flight, the last one (the stop event, every counter, the memory), close."""
        thread, store = self._thread, self._store
        if thread is None or store is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if writing is not None:
                    await asyncio.wait({writing})
                    if not self._written(writing):
                        return
                if self.problem is None:
                    if (event := last()) is not None:
                        self._pending.add(event)
                    batch = self._pending.batch(self._clock(), source, final=True)
                    assert batch is not None
                    await asyncio.wait({done := self._write(batch)})
                    if self._written(done):
                        log.info("history closed", path=str(self.path), batches=self.batches, events=self.events)
        except TimeoutError:
            log.warning("history: the last batch was not written in time", path=str(self.path), seconds=CLOSE_TIMEOUT)
        finally:
            self._store = None
            thread.submit(store.close)
            thread.stop()

    def fail(self, problem: str, *, exc_info: BaseException | None = None) -> None:
        """Log the problem once, raise the alarm through `on_problem`, and stop writing for this run."""
        if self.problem is not None:
            return
        self.problem = problem
        self._pending.events.clear()
        log.error(
            "history unavailable; the gateway carries on without it until restarted",
            path=str(self.path),
            error=problem,
            exc_info=exc_info,
        )
        if self._on_problem is not None:
            self._on_problem(problem)
        thread, store, self._store = self._thread, self._store, None
        if thread is not None:
            if store is not None:
                thread.submit(store.close)
            thread.stop()


def _close_late(opening: concurrent.futures.Future[tuple[Store, Loaded]]) -> None:
    """In the writer's thread, after the open the start gave up on: close the database if it did open."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()
