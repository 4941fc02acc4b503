"""Fault injection: what can go wrong with a module, when, and what it does to the module at a given time.

A fault is a value (`Fault`), written in code or parsed from the CLI form `KIND:MODULE[@T][=VALUE]`; `effects`
turns a module's faults into what they change at one moment, so the simulator never reasons about timing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

from gateway.config import SHIPPED_ADDRESS_MASK, module_addresses
from gateway.master.model import ALARM_BITS

Kind = Literal["drop", "freeze", "overheat", "cell_high", "soc_offset", "firmware", "protection", "warning", "fault"]
KINDS: tuple[str, ...] = get_args(Kind)
CELL_DRIFT = 10.0
"""Seconds over which an injected high cell drifts from its own voltage to the target."""

_SPEC = re.compile(r"^(?P<kind>\w+):(?P<module>\d+)(?:@(?P<at>[^=]+))?(?:=(?P<value>.+))?$")
_VERSION = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected fault: `kind` hits module `module` from `at` seconds after the simulation's start.

    `value` by kind: drop: seconds until the module comes back (None = never); overheat: degC; cell_high: V;
    soc_offset: percentage points at start; firmware: "X.Y.Z"; protection/warning: an alarm bit name
    (CellOverVoltage, ...); fault: the FaultCode (1..65535); freeze: None.
    """

    kind: Kind
    module: int
    at: float = 0.0
    value: float | str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(f"fault {self.kind}:{self.module}: {problem}")

    def active(self, t: float) -> bool:
        """Whether the fault acts at `t` seconds after start."""
        if t < self.at:
            return False
        return not (self.kind == "drop" and self.value is not None and t >= self.at + float(self.value))


@dataclass(frozen=True, slots=True)
class Effects:
    """What a module's active faults change at one moment."""

    dropped: bool = False
    frozen: bool = False
    heat_target: float | None = None
    cell_high: tuple[float, float] | None = None
    """(target V, progress 0..1 of the drift towards it)."""
    firmware: tuple[int, int, int] | None = None
    warnings: int = 0
    protections: int = 0
    fault_code: int = 0


NONE = Effects()


def parse_fault(spec: str) -> Fault:
    """Parse `KIND:MODULE[@T][=VALUE]`, e.g. `drop:3@10=5` or `protection:1@30=CellOverVoltage`."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"fault {spec!r}: expected KIND:MODULE[@T][=VALUE], e.g. overheat:5@20=65")
    kind, module, at, value = match.group("kind", "module", "at", "value")
    if kind not in KINDS:
        raise ValueError(f"fault {spec!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    try:
        seconds = 0.0 if at is None else float(at)
    except ValueError:
        raise ValueError(f"fault {spec!r}: time {at!r} is not a number of seconds") from None
    parsed: float | str | None = value
    if value is not None and kind in {"drop", "overheat", "cell_high", "soc_offset", "fault"}:
        try:
            parsed = int(value) if kind == "fault" else float(value)
        except ValueError:
            raise ValueError(f"fault {spec!r}: value {value!r} is not a number") from None
    return Fault(kind=kind, module=int(module), at=seconds, value=parsed)  # type: ignore[arg-type]


def version(text: str) -> tuple[int, int, int]:
    """`"1.4.2"` -> (1, 4, 2); ValueError unless three numbers 0..255."""
    match = _VERSION.match(text)
    if match is None or max(int(n) for n in match.groups()) > 255:
        raise ValueError(f"firmware {text!r} is not X.Y.Z with numbers 0..255")
    major, minor, patch = (int(n) for n in match.groups())
    return major, minor, patch


def effects(faults: Sequence[Fault], t: float) -> Effects:
    """The combined effect of `faults` (all of one module) at `t` seconds after start; later faults win."""
    active = [f for f in faults if f.active(t)]
    if not active:
        return NONE
    dropped = frozen = False
    heat_target: float | None = None
    cell_high: tuple[float, float] | None = None
    firmware: tuple[int, int, int] | None = None
    warnings = protections = fault_code = 0
    for fault in active:
        kind, value = fault.kind, fault.value
        if kind == "drop":
            dropped = True
        elif kind == "freeze":
            frozen = True
        elif kind == "overheat":
            heat_target = float(value)  # type: ignore[arg-type]
        elif kind == "cell_high":
            cell_high = (float(value), min(1.0, (t - fault.at) / CELL_DRIFT))  # type: ignore[arg-type]
        elif kind == "firmware":
            firmware = version(str(value))
        elif kind == "warning":
            warnings |= 1 << ALARM_BITS.index(str(value))
        elif kind == "protection":
            protections |= 1 << ALARM_BITS.index(str(value))
        elif kind == "fault":
            fault_code = int(value)  # type: ignore[arg-type]
    return Effects(dropped, frozen, heat_target, cell_high, firmware, warnings, protections, fault_code)


def _problem(fault: Fault) -> str | None:
    """Why `fault` cannot be simulated, or None."""
    kind, value = fault.kind, fault.value
    if kind not in KINDS:
        return f"unknown kind (one of {', '.join(KINDS)})"
    addresses = module_addresses(SHIPPED_ADDRESS_MASK)
    if fault.module not in addresses:
        return f"module address must be within {addresses[0]}..{addresses[-1]}"
    if not (math.isfinite(fault.at) and fault.at >= 0):
        return "time must be a finite number of seconds >= 0"
    if kind == "soc_offset" and fault.at:
        return "soc_offset applies from the start; it takes no @T"
    if kind == "freeze":
        return None if value is None else "freeze takes no value"
    if kind == "drop":
        return None if value is None or (_number(value, 0.0, math.inf) and value > 0) else "duration must be > 0 s"
    if value is None:
        return "needs a value (=VALUE)"
    if kind == "overheat":
        return None if _number(value, -40.0, 125.0) else "temperature must be within -40..125 degC"
    if kind == "cell_high":
        return None if _number(value, 0.0, 5.0) else "cell voltage must be within 0..5 V"
    if kind == "soc_offset":
        return None if _number(value, -100.0, 100.0) else "SOC offset must be within -100..100 points"
    if kind == "firmware":
        try:
            version(str(value))
        except ValueError as err:
            return str(err)
        return None
    if kind in {"protection", "warning"}:
        return None if value in ALARM_BITS else f"unknown alarm bit {value!r} (one of {', '.join(ALARM_BITS)})"
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    return None if ok else "fault code must be an integer within 1..65535"


def _number(value: object, low: float, high: float) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
