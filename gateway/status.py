"""`bms-gateway status`: a compact summary of a running gateway from its metrics, with a scriptable exit code."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

EXIT_UNREACHABLE = 3


@dataclass(slots=True)
class Status:
    level: int = 0
    valid: bool = False
    values: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    modules: dict[str, int] = field(default_factory=dict)
    alarms: dict[str, int] = field(default_factory=dict)
    step_failures: int = 0
    """Master steps that raised since the gateway started (each one sent the fail-safe set)."""

    def lines(self) -> list[str]:
        words = {0: "OK", 1: "WARNING", 2: "PROTECTION"}
        v = self.values
        head = f"{words.get(self.level, '?')}: bank {'valid' if self.valid else 'NOT VALID'}"
        if "bms_bank_voltage_volts" in v:
            head += f", {v['bms_bank_voltage_volts']:.2f} V {v.get('bms_bank_current_amperes', 0):+.1f} A"
        if "bms_bank_soc_percent" in v:
            head += f", SOC {v['bms_bank_soc_percent']:.1f} %"
        out = [head]
        lim = self.limits
        if lim:
            out.append(
                f"limits: charge {lim.get('charge_current', 0):.1f} A / {lim.get('charge_voltage', 0):.2f} V, "
                f"discharge {lim.get('discharge_current', 0):.1f} A / {lim.get('discharge_voltage', 0):.2f} V"
            )
        out.append("modules: " + (", ".join(f"{n} {state}" for state, n in self.modules.items() if n) or "none"))
        active = [f"{code} ({'protection' if lvl == 2 else 'warning'})" for code, lvl in self.alarms.items() if lvl]
        out.append("alarms: " + (", ".join(active) if active else "none"))
        if self.step_failures:
            out.append(f"master: {self.step_failures} steps failed since start (see the journal)")
        return out


def parse(text: str) -> Status:
    """The summary of a scrape; ValueError when it is not a gateway's (no `bms_bank_valid`).

    A bank the gateway cannot vouch for counts as a protection: the inverter is being stopped (fail-safe set).
    """
    status = Status()
    seen_valid = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "bms_alarm_level":
                status.level = int(value)
            elif name == "bms_bank_valid":
                status.valid = bool(value)
                seen_valid = True
            elif name == "bms_limit":
                status.limits[labels["limit"]] = value
            elif name == "bms_modules":
                status.modules[labels["state"]] = int(value)
            elif name == "bms_alarm":
                status.alarms[labels["code"]] = int(value)
            elif name == "bms_edge_events_total" and labels == {"edge": "master", "event": "step_failures"}:
                status.step_failures = int(value)
            elif name.startswith("bms_"):
                status.values[name] = value
    if not seen_valid:
        raise ValueError("no bms_bank_valid metric: not a bms-gateway metrics endpoint")
    if not status.valid:
        status.level = max(status.level, 2)
    return status


def fetch(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode()


def run(url: str) -> tuple[int, list[str]]:
    """(exit code, lines): 0 ok, 1 warning, 2 protection, 3 gateway not reachable."""
    try:
        status = parse(fetch(url))
    except (urllib.error.URLError, OSError, ValueError) as err:
        return EXIT_UNREACHABLE, [f"UNKNOWN: cannot read {url}: {err}"]
    return status.level, status.lines()
