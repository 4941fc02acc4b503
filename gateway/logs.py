"""structlog set-up (console on a TTY, JSON lines for journald) and burst-limited logging of repeated problems."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog once, and route the stdlib logs of python-can, pymodbus and aiomqtt through it."""
    stream = stream or sys.stderr
    json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # The libraries are chatty at INFO (pymodbus logs every connection); keep their warnings.
    for name in ("can", "pymodbus", "aiomqtt", "asyncio"):
        logging.getLogger(name).setLevel(max(_LEVELS[level], logging.WARNING))


def get(name: str) -> Any:
    return structlog.stdlib.get_logger(name)


@dataclass(slots=True)
class _Burst:
    started: float
    last: float
    count: int


class BurstLog:
    """Log a repeated problem once when a burst starts and once, with its count, when it has gone quiet.

    A babbling module or a bad cable can produce thousands of bad frames a second; the log must show that it
    happened and how much, not every frame.
    """

    def __init__(
        self,
        log: Any,
        event: str,
        *,
        quiet: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        level: str = "warning",
    ) -> None:
        self._log = log
        self._level = level
        self._event = event
        self._quiet = quiet
        self._clock = clock
        self._bursts: dict[Any, _Burst] = {}

    def __call__(self, kind: Any, **details: Any) -> None:
        now = self._clock()
        burst = self._bursts.get(kind)
        if burst is not None and now - burst.last < self._quiet:
            burst.last = now
            burst.count += 1
            return
        if burst is not None:
            self._ended(kind, burst)
        self._bursts[kind] = _Burst(now, now, 1)
        getattr(self._log, self._level)(self._event, kind=kind, **details)

    def flush(self) -> None:
        """Report the bursts that have gone quiet (call it now and then, e.g. from a housekeeping tick)."""
        now = self._clock()
        for kind, burst in list(self._bursts.items()):
            if now - burst.last >= self._quiet:
                self._ended(kind, burst)
                del self._bursts[kind]

    def _ended(self, kind: Any, burst: _Burst) -> None:
        if burst.count > 1:
            seconds = round(burst.last - burst.started, 3)
            log = getattr(self._log, self._level)
            log(f"{self._event}: burst ended", kind=kind, count=burst.count, seconds=seconds)
