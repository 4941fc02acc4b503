"""What `bms-gateway events` and `bms-gateway history` print: pure functions from stored values to text and JSON."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.history.counters import BANK, Counters, Daily, Peak
from gateway.history.events import Event, iso
from gateway.master.model import Memory

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def since(text: str, now: float) -> float:
    """`2h` (ago: s, m, h, d, w) or an ISO 8601 time (UTC unless it names its offset) as seconds since the epoch;
    ValueError for anything else."""
    match = _SPAN.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: not a span like 2h, 30m, 7d nor an ISO time like 2024-05-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def event_line(e: Event) -> str:
    modules = f" [{','.join(map(str, e.modules))}]" if e.modules else ""
    parts = [iso(e.t), f"{e.level:<10}", e.event + modules]
    if e.code:
        parts.append(e.code)
    if e.detail:
        parts.append(e.detail)
    return "  ".join(parts)


def scope_name(scope: int) -> str:
    return "bank" if scope == BANK else f"module {scope}"


def _peak(peak: Peak | None) -> dict[str, Any] | None:
    return None if peak is None else {"value": round(peak.value, 3), "t": round(peak.t, 3), "time": iso(peak.t)}


def _time(t: float | None) -> str | None:
    return None if t is None else iso(t)


def counters_dict(c: Counters) -> dict[str, Any]:
    return {
        "charged_ah": round(c.charged_ah, 3),
        "discharged_ah": round(c.discharged_ah, 3),
        "charged_kwh": round(c.charged_wh / 1000.0, 3),
        "discharged_kwh": round(c.discharged_wh / 1000.0, 3),
        "cycles": round(c.cycles, 3),
        "hours_above_45c": round(c.seconds_hot / 3600.0, 3),
        "hours_below_0c": round(c.seconds_cold / 3600.0, 3),
        "cell_voltage_max": _peak(c.cell_voltage_max),
        "cell_voltage_min": _peak(c.cell_voltage_min),
        "temperature_max": _peak(c.temperature_max),
        "temperature_min": _peak(c.temperature_min),
        "since": _time(c.since),
        "updated": _time(c.updated),
    }


def daily_dict(d: Daily) -> dict[str, Any]:
    return {
        "day": d.day,
        "soh": d.soh,
        "capacity_ah": d.capacity_ah,
        "resistance_mohm": d.resistance_mohm,
        "cell_spread_max_mv": None if d.cell_spread_max is None else round(d.cell_spread_max * 1000.0, 1),
        "cycle_count": d.cycle_count,
    }


def memory_dict(memory: Memory) -> dict[str, Any]:
    return {
        "last_full_charge": _time(memory.last_full_charge),
        "isolations": [
            {
                "module": i.module,
                "reason": i.reason,
                "isolate_reason": i.isolate_reason.name.lower(),
                "hold_off_served_s": round(i.held, 1),
            }
            for i in memory.isolations
        ],
        "shares": [{"string": list(string), "share": round(share, 4)} for string, share in memory.shares],
    }


def history_dict(
    counters: Mapping[int, Counters], daily: Iterable[tuple[int, Daily]], memory: Memory, meta: Mapping[str, str]
) -> dict[str, Any]:
    """The whole `history --json` document: counters and daily samples by scope ("bank", "1", ...), the memory."""
    days: dict[str, list[dict[str, Any]]] = {}
    for scope, sample in daily:
        days.setdefault(_key(scope), []).append(daily_dict(sample))
    return {
        "counters": {_key(scope): counters_dict(c) for scope, c in sorted(counters.items())},
        "daily": days,
        "memory": memory_dict(memory),
        "running": meta.get("running") == "1",
    }


def _key(scope: int) -> str:
    return "bank" if scope == BANK else str(scope)


def _range(low: Peak | None, high: Peak | None, unit: str, digits: int) -> str:
    if low is None or high is None:
        return "none seen"
    return f"{low.value:.{digits}f} {unit} ({iso(low.t)}) .. {high.value:.{digits}f} {unit} ({iso(high.t)})"


def counters_lines(scope: int, c: Counters) -> list[str]:
    return [
        f"{scope_name(scope)}:",
        f"  charged     {c.charged_wh / 1000.0:12.3f} kWh  {c.charged_ah:12.3f} Ah",
        f"  discharged  {c.discharged_wh / 1000.0:12.3f} kWh  {c.discharged_ah:12.3f} Ah",
        f"  equivalent full cycles {c.cycles:.2f}; {c.seconds_hot / 3600.0:.2f} h above 45 degC, "
        f"{c.seconds_cold / 3600.0:.2f} h below 0 degC",
        f"  cell voltage {_range(c.cell_voltage_min, c.cell_voltage_max, 'V', 3)}",
        f"  temperature  {_range(c.temperature_min, c.temperature_max, 'degC', 1)}",
        f"  counted from {_time(c.since) or '-'} to {_time(c.updated) or '-'}",
    ]


def daily_lines(samples: Sequence[tuple[int, Daily]]) -> list[str]:
    if not samples:
        return []
    out = ["", "daily samples:", "  scope      day         SOH %  capacity Ah  resistance mOhm  max spread mV  cycles"]
    for scope, d in samples:
        spread = "" if d.cell_spread_max is None else f"{d.cell_spread_max * 1000.0:.0f}"
        out.append(
            f"  {scope_name(scope):<10} {d.day}  {_n(d.soh, 1):>5}  {_n(d.capacity_ah, 1):>11}  "
            f"{_n(d.resistance_mohm, 2):>15}  {spread:>13}  {'' if d.cycle_count is None else d.cycle_count:>6}"
        )
    return out


def memory_lines(memory: Memory) -> list[str]:
    last = _time(memory.last_full_charge) or "never"
    out = ["", "the master's memory:", f"  last full charge {last}"]
    out += [
        f"  module {i.module} isolated: {i.reason} ({i.isolate_reason.name.lower()}, {i.held:.0f} s of hold-off served)"
        for i in memory.isolations
    ]
    if memory.shares:
        shares = ", ".join(f"{'-'.join(map(str, s))}: {v:.3f}" for s, v in memory.shares)
        out.append(f"  learned current shares {shares}")
    return out


def _n(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"
