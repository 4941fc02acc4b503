"""The live terminal view of the stack, as installers picture it: modules by stack position, top first.

`view` renders from the JSON payloads (`payload.bank_dict` / `module_dict`), so the same picture comes from a
gateway in this process (demo) or from a running one over MQTT; in this process it shows the inverter side too
(`inverter_dict`: the profile, the handshake, the requests seen and the last answer). Times arrive as ISO 8601
UTC and are shown in the terminal's local time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.master.model import InverterInfo
from gateway.outputs.inverter import State

STATE_STYLE = {"online": "green", "pending": "yellow", "isolated": "red", "offline": "bright_black", "rejected": "red"}


def _num(value: Any, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def _heat(value: float | None) -> Text:
    if value is None:
        return Text("-")
    style = "blue" if value < 10 else "green" if value < 35 else "yellow" if value < 45 else "bold red"
    return Text(f"{value:.1f}°C", style=style)


def _bar(soc: float | None, width: int = 10) -> Text:
    if soc is None:
        return Text("-")
    filled = round(max(0.0, min(100.0, soc)) / 100 * width)
    style = "red" if soc < 10 else "yellow" if soc < 30 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="bright_black") + Text(f" {soc:5.1f}%")


def _limit(limits: Mapping[str, Any] | None, key: str, unit: str) -> str:
    limit = (limits or {}).get(key)
    if not limit:
        return "-"
    return f"{limit['value']:.1f} {unit} ({limit['bound_by']})"


def _local(iso: Any) -> datetime | None:
    """An ISO 8601 time from a payload in the local time zone; None when absent or not a time."""
    try:
        return datetime.fromisoformat(iso).astimezone()
    except (TypeError, ValueError):
        return None


def _since(iso: Any, now: datetime | None) -> str:
    """ "since 14:03:22" (local time), with the date when it is not the snapshot's day; empty when unknown."""
    moment = _local(iso)
    if moment is None:
        return ""
    same_day = now is not None and moment.date() == now.date()
    return f"since {moment:%H:%M:%S}" if same_day else f"since {moment:%Y-%m-%d %H:%M:%S}"


def inverter_dict(state: State, now: float, info: InverterInfo | None) -> dict[str, Any]:
    """What the live view shows of the inverter side: the profile and its mode, the handshake's state, the requests
    seen and the last answer (ages in seconds at `now`), and when the inverter was last heard."""

    def age(t: float | None) -> float | None:
        return None if t is None else round(now - t, 1)

    return {
        "protocol": state.protocol,
        "mode": state.mode,
        "session": state.session,
        "paired": state.paired,
        "requests": state.requests,
        "last_request": age(state.last_request),
        "answers": state.answers,
        "last_answer": age(state.last_answer),
        "failsafe": state.reason,
        "name": None if info is None else info.name,
        "heard": None if info is None else age(info.last_seen),
    }


def _inverter_line(inverter: Mapping[str, Any]) -> Text:
    line = Text(f"inverter {inverter['protocol']} ({inverter['mode']})")
    if inverter.get("name"):
        line.append(f" {inverter['name']}")
    heard = inverter.get("heard")
    line.append("  never heard" if heard is None else f"  heard {heard:.1f} s ago", style="" if heard else "yellow")
    paired = inverter.get("paired")
    if paired is not None:
        line.append(
            f"  {'paired' if paired else 'not paired'} ({inverter['session']})", style="green" if paired else "yellow"
        )
    if inverter["mode"] != "broadcast" or inverter.get("requests"):
        line.append(f"  requests {inverter['requests']}")
        last = inverter.get("last_answer")
        line.append(f", answers {inverter['answers']}" + ("" if last is None else f", last {last:.1f} s ago"))
    if inverter.get("failsafe"):
        line.append(f"  fail-safe: {inverter['failsafe']}", style="red")
    return line


def view(
    bank: Mapping[str, Any], modules: Mapping[int, Mapping[str, Any]], inverter: Mapping[str, Any] | None = None
) -> RenderableType:
    """One frame of the live view (`inverter`: `inverter_dict`, when the gateway runs in this process)."""
    valid = bank.get("valid")
    head = Text()
    head.append(" VALID " if valid else " NOT VALID ", style="bold white on green" if valid else "bold white on red")
    if not valid:
        head.append(f" {bank.get('reason', '')}", style="red")
    head.append(
        f"  {_num(bank.get('voltage'), '.2f', ' V')}  {_num(bank.get('current'), '+.1f', ' A')}  "
        f"SOC {_num(bank.get('soc'), '.1f', ' %')}  SOH {_num(bank.get('soh'), '.0f', ' %')}  "
        f"fan {bank.get('fan_duty', 0)} %"
    )
    limits = bank.get("limits") or {}
    lines = Table.grid(padding=(0, 2))
    lines.add_row("charge", _limit(limits, "charge_current", "A"), _limit(limits, "charge_voltage", "V"))
    lines.add_row("discharge", _limit(limits, "discharge_current", "A"), _limit(limits, "discharge_voltage", "V"))
    flags = bank.get("flags") or {}
    lines.add_row("flags", " ".join(k for k, v in flags.items() if v) or "none", "")

    table = Table(expand=False, header_style="bold")
    for column in ("pos", "module", "state", "SOC", "V", "A", "share", "temp", "cell min/max", "Δ mV", "limits A"):
        table.add_column(column, justify="right" if column not in {"state", "SOC"} else "left")
    ordered = sorted(modules.items(), key=lambda item: (-(item[1].get("position") or item[0]), item[0]))
    for address, m in ordered:
        state = m.get("state", "?")
        reason = m.get("reason") or ""
        lim = m.get("limits") or {}
        charge = (lim.get("charge_current") or {}).get("value")
        discharge = (lim.get("discharge_current") or {}).get("value")
        delta = m.get("cell_voltage_delta")
        table.add_row(
            str(m.get("position", "")),
            str(address),
            Text(state + (f": {reason}" if reason else ""), style=STATE_STYLE.get(state, "")),
            _bar(m.get("soc")),
            _num(m.get("voltage"), ".2f"),
            _num(m.get("current"), "+.1f"),
            _num(m.get("share"), ".2f"),
            _heat(m.get("temperature_max")),
            f"{_num(m.get('cell_voltage_min'), '.3f')}/{_num(m.get('cell_voltage_max'), '.3f')}",
            _num(None if delta is None else delta * 1000, ".0f"),
            f"{_num(charge, '.0f')}/{_num(discharge, '.0f')}",
        )
    alarms = bank.get("alarms") or []
    now = _local(bank.get("t"))
    alarm_lines = [
        Text(
            f"{a['level'].upper():10} {a['code']}  modules {a['modules']}  {_since(a.get('since'), now)}  "
            f"{a.get('detail', '')}",
            style="bold red" if a["level"] == "protection" else "yellow",
        )
        for a in alarms
    ] or [Text("no alarms", style="green")]
    parts: list[RenderableType] = [head, lines]
    if inverter is not None:
        parts.append(_inverter_line(inverter))
    return Group(*parts, table, *alarm_lines)


async def follow_mqtt(host: str, port: int, base: str, gateway_id: str, *, refresh: float = 1.0) -> None:
    """Render the live view of a running gateway from its MQTT topics until cancelled."""
    import aiomqtt  # noqa: PLC0415 - only this command needs MQTT
    from rich.live import Live  # noqa: PLC0415

    prefix = f"{base}/{gateway_id}"
    bank: dict[str, Any] = {}
    modules: dict[int, dict[str, Any]] = {}
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{prefix}/bank")
        await client.subscribe(f"{prefix}/module/+")
        with Live(view(bank, modules), refresh_per_second=1 / refresh) as live:
            async for message in client.messages:
                topic = str(message.topic)
                try:
                    data = json.loads(message.payload) if message.payload else None
                except (ValueError, TypeError):
                    continue
                if topic == f"{prefix}/bank" and isinstance(data, dict):
                    bank = data
                elif topic.startswith(f"{prefix}/module/"):
                    address = int(topic.rsplit("/", 1)[1])
                    if isinstance(data, dict):
                        modules[address] = data
                    else:
                        modules.pop(address, None)
                live.update(view(bank, modules))
                await asyncio.sleep(0)
