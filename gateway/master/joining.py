"""May module N join the bank now, and if not, what is missing and what to do: the expansion assistant's answer.

Pure and read-only: it takes the master's latest snapshot and the bank's config and asks the master's own rules,
never a copy of them. Where the module stands (online, pending, offline, isolated, rejected, and why) is what the
master decided this tick; the SOC and voltage gaps are `admission.gaps` against `admission.reference`, the
windows the master admits by; whether a module not on the bus yet would have a place is `admission.placement`,
the topology the master builds; mismatch warnings (firmware, SOH, capacity, cycles) are the master's notes on the
module. This module only adds words: what to do about each, and how long the bank takes to come to the module.
"""

from __future__ import annotations

import enum
import math

from gateway.config import BankSection
from gateway.master.admission import STARTING, Gap, gaps, placement, reference
from gateway.master.model import BankSnapshot, Electrical, IsolateReason, Lifecycle
from gateway.values import frozen

RESTING = 0.5
"""A, below which the bank is at rest: its SOC does not move towards a waiting module."""


class Verdict(enum.StrEnum):
    """The answer to "may I connect module N now?"."""

    ONLINE = "online"
    """It is in the bank."""
    JOINS = "joins"
    """It matches the bank: the master admits it at its next tick."""
    WAIT = "wait"
    """Not yet: a gap to close (SOC, voltage), or it is still reporting."""
    ATTENTION = "attention"
    """Offline or isolated: something to fix first."""
    NEVER = "never"
    """It cannot join this bank as configured (cell count, not in `bank.strings`, stack limit)."""
    UNKNOWN = "unknown"
    """It is not on the bus yet: what it must match is listed."""


@frozen
class Item:
    """One thing missing (or to know) before module N joins, and what to do about it."""

    kind: str
    """soc, voltage, cells, not_configured, stack_limit, offline, isolated, waiting, starting, string, not_seen,
    no_bank, target (what a module not seen yet must match), firmware, soh, capacity, cycles, mismatch."""
    text: str
    action: str
    blocking: bool = True
    """False for a warning: the module may join, but someone should know."""


@frozen
class Eta:
    """When the bank's SOC comes within the window of a waiting module's SOC, at the present current."""

    target: float
    """The bank SOC (%) at which the module joins."""
    hours: float | None
    """None when the bank does not move towards it (at rest, or moving away)."""
    current: float
    power: float

    def __str__(self) -> str:
        if self.hours is None:
            if abs(self.current) < RESTING:
                return f"the bank is at rest: it does not come to {self.target:.0f} % on its own"
            moving = "charging" if self.current > 0 else "discharging"
            return f"the bank is {moving} ({_kw(self.power)}), away from {self.target:.0f} %"
        return (
            f"the bank reaches {self.target:.0f} % in about {_duration(self.hours)} at the present power "
            f"({_kw(self.power)})"
        )


@frozen
class JoinCheck:
    address: int
    verdict: Verdict
    summary: str
    state: Lifecycle | None
    """The module's lifecycle with the master; None when it has not been seen."""
    reason: str
    """The master's reason for that state."""
    items: tuple[Item, ...]
    module: Electrical | None
    """SOC and voltage of the module's string, when it reports them."""
    bank: Electrical | None
    """What it must match: the admitted strings together (or, while the bank forms, the reference string)."""
    soc_window: float
    voltage_window: float
    eta: Eta | None = None

    @property
    def can_join(self) -> bool:
        return self.verdict in (Verdict.ONLINE, Verdict.JOINS)


def join_check(snapshot: BankSnapshot, bank: BankSection, address: int) -> JoinCheck:
    """The expansion assistant's answer for module `address` in the bank of `snapshot`."""
    view = snapshot.modules.get(address)
    online = [s for s in snapshot.strings if s and all(_state(snapshot, a) is Lifecycle.ONLINE for a in s)]
    candidates = {
        s: snapshot.string_values[s]
        for s in snapshot.strings
        if s in snapshot.string_values and all(_state(snapshot, a) is Lifecycle.PENDING for a in s)
    }
    ref = reference([snapshot.string_values[s] for s in online if s in snapshot.string_values], candidates, bank)
    string = next((s for s in snapshot.strings if address in s), ())
    mine = snapshot.string_values.get(string)
    seen = view is not None and "status" in view.reading.seen
    state = view.lifecycle if view is not None and seen else None
    reason = view.reason if view is not None and seen else "never seen"

    def answer(verdict: Verdict, summary: str, items: tuple[Item, ...], eta: Eta | None = None) -> JoinCheck:
        return JoinCheck(
            address=address,
            verdict=verdict,
            summary=summary,
            state=state,
            reason=reason,
            items=items,
            module=mine,
            bank=ref,
            soc_window=bank.admission_soc_window,
            voltage_window=bank.admission_voltage_window,
            eta=eta,
        )

    if view is None or state is None:
        return answer(*_not_seen(snapshot, bank, address, ref))
    warnings = tuple(_warning(address, note) for note in view.mismatch if note != reason)
    if state is Lifecycle.ONLINE:
        return answer(Verdict.ONLINE, f"Module {address} is in the bank.", warnings)
    if state is Lifecycle.REJECTED:
        item = _rejected(address, reason, bank)
        return answer(Verdict.NEVER, f"Module {address} cannot join this bank: {item.text}.", (item, *warnings))
    if state is Lifecycle.ISOLATED:
        item = _isolated(address, reason, view.isolate_reason, bank)
        if view.isolate_reason is IsolateReason.STACK_LIMIT:
            return answer(Verdict.NEVER, f"Module {address} cannot join this bank: {item.text}.", (item, *warnings))
        return answer(Verdict.ATTENTION, f"Module {address} is isolated: {reason}.", (item, *warnings))
    if state is Lifecycle.OFFLINE:
        return answer(Verdict.ATTENTION, f"Module {address} is offline: {reason}.", (_offline(address, reason),))
    # Pending: still reporting, the gateway starting, the rest of its series string missing, or a gap to close.
    if reason.startswith("waiting for"):
        item = Item(
            "waiting",
            f"module {address} is {reason}",
            "wait a few seconds: every module sends each of its messages at least once a second",
        )
        return answer(Verdict.WAIT, f"Module {address} is {reason}.", (item,))
    others = [a for a in string if a != address and _state(snapshot, a) is not Lifecycle.PENDING]
    if others:
        item = Item(
            "string",
            f"its series string {'-'.join(map(str, string))} is not complete",
            f"connect and switch on module{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} too",
        )
        return answer(Verdict.WAIT, f"Module {address} waits: {item.text}.", (item,))
    if snapshot.reason == STARTING or mine is None or ref is None:
        item = Item(
            "starting",
            "the gateway is starting: every module reports before the bank forms",
            f"wait {bank.module_timeout:g} s",
        )
        return answer(Verdict.WAIT, f"Module {address} waits: {item.text}.", (item,))
    missing = gaps(mine, ref, bank)
    if not missing:
        summary = f"Module {address} matches the bank: the master connects it at its next tick."
        return answer(Verdict.JOINS, summary, warnings)
    eta = _eta(missing, ref)
    items = tuple(_gap(address, gap, eta) for gap in missing)
    summary = f"Module {address} may not join yet: {_gap_words(missing[0])}."
    return answer(Verdict.WAIT, summary, (*items, *warnings), eta)


def _state(snapshot: BankSnapshot, address: int) -> Lifecycle | None:
    view = snapshot.modules.get(address)
    return None if view is None else view.lifecycle


def _not_seen(
    snapshot: BankSnapshot, bank: BankSection, address: int, ref: Electrical | None
) -> tuple[Verdict, str, tuple[Item, ...]]:
    """A module that has not reported yet: is there a place for it, and what must it match once connected?"""
    readings = {a: v.reading for a, v in snapshot.modules.items() if "status" in v.reading.seen}
    place = placement(address, readings, bank)
    if place is not None:
        if place.isolate_reason is IsolateReason.STACK_LIMIT:
            item = _isolated(address, place.reason, place.isolate_reason, bank)
        else:
            item = _rejected(address, place.reason, bank)
        return Verdict.NEVER, f"Module {address} cannot join this bank: {item.text}.", (item,)
    seen = Item(
        "not_seen",
        f"module {address} has not been seen on the module bus",
        f"connect its CAN cable, set its address to {address} and switch it on; it stays disconnected (pending) "
        "until it matches the bank, then the master connects it",
    )
    if ref is None:
        nobody = Item(
            "no_bank",
            "no module is online yet",
            "the first modules that report and match each other form the bank",
            blocking=False,
        )
        return Verdict.UNKNOWN, f"Module {address} is not on the bus yet, and no bank has formed.", (seen, nobody)
    soc = _soc_span(ref.soc - bank.admission_soc_window, ref.soc + bank.admission_soc_window, bank.admission_soc_window)
    volts = f"{ref.voltage - bank.admission_voltage_window:.1f}–{ref.voltage + bank.admission_voltage_window:.1f}"
    target = Item(
        "target",
        f"to join now it needs a SOC of {soc} % and a voltage of {volts} V (the bank: {ref.soc:.1f} %, "
        f"{ref.voltage:.2f} V)",
        f"charge or discharge module {address} on its own to {soc} % before connecting it",
        blocking=False,
    )
    summary = f"Module {address} is not on the bus yet: to join now it needs {soc} % SOC and {volts} V."
    return Verdict.UNKNOWN, summary, (seen, target)


def _rejected(address: int, reason: str, bank: BankSection) -> Item:
    if reason == "not in bank.strings":
        return Item(
            "not_configured",
            f"module {address} is not in [bank] strings",
            f"add module {address} to [bank] strings (as a string of its own, or in series where it belongs) and "
            "restart the gateway",
        )
    return Item(
        "cells",
        reason,
        f"a module of another cell count cannot join a bank of {bank.cells_in_series}-cell modules: use it in a "
        "bank of its own kind",
    )


def _isolated(address: int, reason: str, why: IsolateReason, bank: BankSection) -> Item:
    if why is IsolateReason.STACK_LIMIT:
        return Item(
            "stack_limit",
            f"the stack is full: max_modules is {bank.max_modules}",
            f"a stack holds at most the {bank.max_modules} modules its manufacturer validated; start a second bank "
            "for more (raise [bank] max_modules only within the manufacturer's limit)",
        )
    return Item(
        "isolated",
        f"module {address} is isolated: {reason}",
        f"find and clear the cause on module {address}; it rejoins through admission after [bank] "
        f"isolation_holdoff ({bank.isolation_holdoff:g} s), or at once when an operator readmits it",
    )


def _offline(address: int, reason: str) -> Item:
    if reason.startswith("AliveCounter frozen"):
        action = f"module {address}'s BMS seems hung: switch it off and on"
    else:
        action = f"check module {address}'s CAN cable, termination, address ({address}) and power"
    return Item("offline", f"module {address} is offline: {reason}", action)


_WARNINGS = (
    ("firmware", "firmware", "update module {a} to the bank's firmware, or the bank's modules to its own"),
    ("SOH", "soh", "an aged module belongs in a separate bank: it would set the bank's limits"),
    ("capacity", "capacity", "modules of other capacities belong in separate banks"),
    ("cycle count", "cycles", "an aged module belongs in a separate bank: it would set the bank's limits"),
)


def _warning(address: int, note: str) -> Item:
    for prefix, kind, action in _WARNINGS:
        if note.startswith(prefix):
            return Item(kind, f"module {address}: {note}", action.format(a=address), blocking=False)
    return Item("mismatch", f"module {address}: {note}", "check the module against the bank", blocking=False)


def _gap_words(gap: Gap) -> str:
    direction = "above" if gap.value > gap.bank else "below"
    if gap.quantity == "soc":
        return f"its SOC is {abs(gap.value - gap.bank):.1f} % {direction} the bank's"
    return f"its voltage is {abs(gap.value - gap.bank):.2f} V {direction} the bank's"


def _gap(address: int, gap: Gap, eta: Eta | None) -> Item:
    verb = "discharge" if gap.value > gap.bank else "charge"
    if gap.quantity == "soc":
        action = f"{verb} module {address} to {_soc_span(gap.low, gap.high, gap.window)} % before connecting it"
        if eta is not None:
            action += f", or wait: it joins by itself once the bank is within {gap.window:g} %, and {eta}"
        return Item("soc", str(gap), action)
    return Item(
        "voltage",
        str(gap),
        f"{verb} module {address} to {gap.low:.1f}–{gap.high:.1f} V before connecting it (its voltage follows its "
        "SOC: matching the SOC usually closes this gap)",
    )


def _eta(missing: tuple[Gap, ...], bank: Electrical) -> Eta | None:
    """How long the bank takes to come within the SOC window of the module, at the present current."""
    soc = next((g for g in missing if g.quantity == "soc"), None)
    if soc is None:
        return None
    above = soc.value > soc.bank
    target = soc.value - soc.window if above else soc.value + soc.window
    current, power = bank.current, bank.current * bank.voltage
    towards = current > RESTING if above else current < -RESTING
    hours = None
    if towards and bank.full_ah > 0:
        hours = abs(target - bank.soc) / 100.0 * bank.full_ah / abs(current)
    return Eta(target, hours if hours is not None and math.isfinite(hours) else None, current, power)


def _soc_span(low: float, high: float, window: float) -> str:
    """A SOC window's ends within 0..100 %, rounded inwards: whole percents for a wide window, tenths for a
    narrow one."""
    low, high = max(0.0, round(low, 1)), min(100.0, round(high, 1))  # as a reader sees the bank's SOC
    if window >= 2.0:
        return f"{math.ceil(low):.0f}–{math.floor(high):.0f}"
    return f"{math.ceil(low * 10) / 10:.1f}–{math.floor(high * 10) / 10:.1f}"


def _duration(hours: float) -> str:
    if hours < 1.0:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48.0:
        return f"{hours:.1f} h"
    return f"{hours / 24:.0f} days"


def _kw(watts: float) -> str:
    return f"{abs(watts) / 1000:.1f} kW {'charging' if watts > 0 else 'discharging'}"
