"""What changed between two consecutive snapshots, as journal lines: one `Change` per event, nothing when steady.

The master stays pure and says nothing; the service compares each snapshot with the one before and logs the
differences, so the journal shows a module going offline once and coming back once, an alarm raised once and
cleared once. Only transitions count: a pending module's reason (its SOC gap) or an alarm's detail (the value
now) changes every tick and is shown with the transition, not logged on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.master.model import Alarm, BankSnapshot, IsolateReason, Level, Lifecycle, ModuleView

Severity = Literal["info", "warning"]
"""The journal level: warning for what takes something away (offline, isolated, a new alarm), info for the rest."""

_LOST: frozenset[Lifecycle] = frozenset({Lifecycle.OFFLINE, Lifecycle.ISOLATED, Lifecycle.REJECTED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One event between two snapshots, e.g. "module offline" for module 3 with "no ModuleStatus for 3.1 s"."""

    event: str
    severity: Severity
    module: int | None = None
    lifecycle: Lifecycle | None = None
    reason: str = ""
    """Why the bank is not valid, or why a module is where it is (the module view's reason)."""
    was: str = ""
    """The module's lifecycle or the alarm's level before."""
    isolate_reason: IsolateReason = IsolateReason.NONE
    code: str = ""
    level: Level | None = None
    """The alarm's level (after the change; before it, for a cleared alarm)."""
    modules: tuple[int, ...] = ()
    was_modules: tuple[int, ...] = ()
    detail: str = ""
    value: float | None = None
    """The alarm's measured value, where it has one (for the history; the journal line has it in `detail`)."""

    def fields(self) -> dict[str, Any]:
        """The key-value pairs of the journal line: only those that say something."""
        values: dict[str, Any] = {
            "module": self.module,
            "lifecycle": None if self.lifecycle is None else str(self.lifecycle),
            "reason": self.reason,
            "was": self.was,
            "isolate_reason": self.isolate_reason.name.lower() if self.isolate_reason else "",
            "code": self.code,
            "level": None if self.level is None else str(self.level),
            "modules": list(self.modules),
            "was_modules": list(self.was_modules),
            "detail": self.detail,
        }
        return {key: value for key, value in values.items() if value not in (None, "", [])}


def changes(before: BankSnapshot, after: BankSnapshot) -> list[Change]:
    """The events from `before` to `after`: bank validity, module lifecycles, alarms; [] when nothing changed."""
    if before is after:
        return []
    out: list[Change] = []
    if (before.valid, before.reason) != (after.valid, after.reason):
        out.append(
            Change(event="bank valid", severity="info")
            if after.valid
            else Change(event="bank not valid", severity="warning", reason=after.reason)
        )
    if before.modules is not after.modules:
        out.extend(_modules(before, after))
    if before.alarms != after.alarms:
        out.extend(_alarms(before.alarms, after.alarms))
    return out


def _modules(before: BankSnapshot, after: BankSnapshot) -> list[Change]:
    out = []
    old = before.modules
    for address, view in after.modules.items():
        was = old.get(address)
        if was is None:
            out.append(_module("module appeared", address, view))
        elif was.lifecycle is not view.lifecycle:
            out.append(_module(f"module {view.lifecycle}", address, view, was=was.lifecycle))
    out.extend(
        Change(event="module removed", severity="info", module=address, was=str(old[address].lifecycle))
        for address in sorted(old.keys() - after.modules.keys())
    )
    return out


def _module(event: str, address: int, view: ModuleView, *, was: Lifecycle | None = None) -> Change:
    return Change(
        event=event,
        severity="warning" if view.lifecycle in _LOST else "info",
        module=address,
        lifecycle=view.lifecycle,
        reason=view.reason,
        was="" if was is None else str(was),
        isolate_reason=view.isolate_reason,
    )


def _alarms(before: tuple[Alarm, ...], after: tuple[Alarm, ...]) -> list[Change]:
    """One alarm per code: raised, its level changed, the modules it names changed (a second module hits the
    same threshold), cleared."""
    out = []
    old = {a.code: a for a in before}
    for alarm in after:
        was = old.pop(alarm.code, None)
        if was is None:
            out.append(_alarm("alarm raised", "warning", alarm))
        elif was.level is not alarm.level:
            severity: Severity = "warning" if alarm.level is Level.PROTECTION else "info"
            out.append(_alarm("alarm level changed", severity, alarm, was=str(was.level)))
        elif was.modules != alarm.modules:
            severity = "warning" if set(alarm.modules) - set(was.modules) else "info"
            out.append(_alarm("alarm modules changed", severity, alarm, was_modules=was.modules))
    out.extend(_alarm("alarm cleared", "info", alarm, detail=False) for alarm in old.values())
    return out


def _alarm(
    event: str,
    severity: Severity,
    alarm: Alarm,
    *,
    was: str = "",
    was_modules: tuple[int, ...] = (),
    detail: bool = True,
) -> Change:
    """The alarm as it is now; a cleared alarm without its detail (the last value seen, not why it cleared)."""
    return Change(
        event=event,
        severity=severity,
        code=alarm.code,
        level=alarm.level,
        was=was,
        modules=alarm.modules,
        was_modules=was_modules,
        detail=alarm.detail if detail else "",
        value=alarm.value if detail else None,
    )
