"""Events as the history keeps them: one `Event` per change, made from values by pure functions.

The journal and the history say the same thing: a snapshot change becomes the event of the same name ("module
offline", "alarm raised", ...), with its code (the alarm code, or why a module is where it is), its level, the
modules it names, its detail and the measured value where there is one. The gateway's own events (start and stop,
reloads, edge failures, operator actions) are made here too, so every row has one shape.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.changes import Change
from gateway.master.model import IsolateReason, Level

EventLevel = Literal["info", "warning", "protection"]
LEVELS: tuple[EventLevel, ...] = ("info", "warning", "protection")
"""From least to most severe: `events --level warning` shows warning and protection."""
UNCLEAN = "previous run ended without a clean stop"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One row of the history's event log."""

    t: float
    """Seconds since the Unix epoch (the log's clock in replay)."""
    event: str
    """What happened: "alarm raised", "module offline", "gateway start", ..."""
    level: EventLevel = "info"
    code: str = ""
    """The alarm code; why a module is where it is (its isolate reason); the edge; the operator's channel."""
    modules: tuple[int, ...] = ()
    detail: str = ""
    value: float | None = None
    """The measured value behind an alarm (degC, V, A), where it has one."""


def from_change(change: Change, t: float) -> Event:
    """The event of one snapshot change at `t` (the snapshot's time)."""
    level: EventLevel = change.severity
    if change.level is Level.PROTECTION and change.severity == "warning":
        level = "protection"
    if change.module is not None:
        reason = change.reason
        if change.was:
            reason = f"{reason} (was {change.was})" if reason else f"was {change.was}"
        code = "" if change.isolate_reason is IsolateReason.NONE else change.isolate_reason.name.lower()
        return Event(t=t, event=change.event, level=level, code=code, modules=(change.module,), detail=reason)
    detail = change.detail or change.reason
    if change.was_modules:
        detail = f"{detail} (was modules {', '.join(map(str, change.was_modules))})".lstrip()
    elif change.was and change.code:
        detail = f"{detail} (was {change.was})".lstrip()
    return Event(
        t=t,
        event=change.event,
        level=level,
        code=str(change.code),
        modules=change.modules,
        detail=detail,
        value=change.value,
    )


def started(t: float, *, version: str, source: str, unclean: bool, last_seen: float | None = None) -> Event:
    """The gateway started; `unclean` when the history shows the previous run never stopped cleanly (killed,
    crashed, power cut), with the last time it wrote."""
    detail = f"version {version}, {source}"
    if unclean:
        seen = "" if last_seen is None else f", last written {iso(last_seen)}"
        detail = f"{UNCLEAN}{seen}; {detail}"
    return Event(t=t, event="gateway start", level="warning" if unclean else "info", detail=detail)


def stopped(t: float, reason: str) -> Event:
    return Event(t=t, event="gateway stop", detail=reason)


def reloaded(t: float, changed: Sequence[str], kept: Sequence[str]) -> Event:
    """A config reload: what changed (`key: old -> new`), and what waits for a restart."""
    detail = "; ".join(changed) if changed else "no change"
    if kept:
        detail += f"; needs a restart: {', '.join(kept)}"
    return Event(t=t, event="config reloaded", detail=detail)


def reload_refused(t: float, problems: Sequence[str]) -> Event:
    return Event(t=t, event="config reload refused", level="warning", detail="; ".join(problems))


def edge_failed(t: float, edge: str, error: str) -> Event:
    return Event(t=t, event="edge failed", level="warning", code=edge, detail=error)


def operator(t: float, action: str, *, source: str, done: bool, detail: str, module: int | None = None) -> Event:
    """An operator action (`readmit`, `full_charge`) from `source` (mqtt, modbus, cli) and what came of it."""
    return Event(
        t=t,
        event=f"operator {action.replace('_', ' ')}",
        level="info" if done else "warning",
        code=source,
        modules=() if module is None else (module,),
        detail=detail,
    )


def iso(t: float) -> str:
    """`t` as ISO 8601 UTC with milliseconds: 2024-05-01T12:00:03.123Z."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event (`events --json`, the MQTT events topic)."""
    return {
        "t": round(event.t, 3),
        "time": iso(event.t),
        "event": event.event,
        "level": event.level,
        "code": event.code,
        "modules": list(event.modules),
        "detail": event.detail,
        "value": None if event.value is None else round(event.value, 3),
    }
