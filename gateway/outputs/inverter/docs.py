"""The docs the profile table writes: the README's profile and wiring tables, docs/inverter.md's alarm tables and
sources, and `bms-gateway inverters [PROFILE]`. Each Markdown table sits between generated-part markers; a test
compares each file with its regeneration (`python -m gateway.outputs.inverter README.md docs/inverter.md`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from cantools.database.can import Message

from gateway.master.model import AlarmCode, Level
from gateway.outputs import generated
from gateway.outputs.alarm_table import COLUMNS, NotSent, PylonBits
from gateway.outputs.inverter.encode import codec_of
from gateway.outputs.inverter.profiles import Group, Mode, Profile, Rule
from gateway.outputs.inverter.table import ALIASES, FAMILIES, PROFILES

COMMAND = "python -m gateway.outputs.inverter README.md docs/inverter.md"


def _ids(frame_ids: list[int], offset: int = 0) -> str:
    counts: dict[int, int] = {}
    for frame_id in frame_ids:
        counts[frame_id] = counts.get(frame_id, 0) + 1
    return " ".join(f"0x{i + offset:X}" + (f"×{n}" if n > 1 else "") for i, n in counts.items())


def _period(group: Group, row: Profile) -> str:
    if group.on_change:
        return "when it changes"
    period = group.period or row.period
    return "every `can.inverter.period` (1 s)" if period is None else f"every {period:g} s"


def _rule(rule: Rule) -> str:
    parts = _ids([frame_id for frame_id, _ in rule.parts]) or "nothing"
    when = "" if rule.when is None else f" ({'/'.join(sorted(rule.when))})"
    then = "" if rule.then is None else f", then {rule.then}"
    spacing = f", {rule.spacing:g} s apart" if rule.spacing else ""
    return f"{rule.name}{when}: `{rule.trigger.describe()}` → {parts}{spacing}{then}"


def sends(row: Profile) -> str:
    """What the profile sends, in words: its groups with their periods, then its answers."""
    out = [f"{_ids([i for i, _ in g.parts], row.defaults.id_offset)} {_period(g, row)}" for g in row.groups]
    if row.cyclic_in is not None and row.groups:
        out[0] = f"once {'/'.join(sorted(row.cyclic_in))}: " + out[0]
    out += [_rule(rule) for rule in row.rules]
    return "; ".join(out)


def _options(row: Profile) -> str:
    if not row.options:
        return ""
    values = {key: getattr(row.defaults, key) for key in sorted(row.options)}
    shown = {key: str(value).lower() if isinstance(value, bool) else repr(value) for key, value in values.items()}
    return ", ".join(f"`{key}` ({value})" for key, value in shown.items())


def profile_table() -> str:
    """The README's profile table: one row per profile."""
    rows = [
        "| `protocol` | mode | sends | hears (silence before `inverter_comm_lost`) | options | notes |",
        "|---|---|---|---|---|---|",
    ]
    alias = {v: k for k, v in ALIASES.items()}
    for row in PROFILES.values():
        name = f"`{row.name}`" + (f" (alias `{alias[row.name]}`)" if row.name in alias else "")
        bits = "29-bit" if row.extended else "11-bit"
        hears = f"{_ids(sorted(row.expects))} ({row.timeout:g} s)"
        rows.append(f"| {name} | {row.mode.value}, {bits} | {sends(row)} | {hears} | {_options(row)} | {row.notes} |")
    return "\n".join(rows)


def wiring_table() -> str:
    """The README's wiring notes: which profile, bitrate, termination and the inverter's menu setting."""
    rows = ["| inverter | `protocol` | bitrate | termination | inverter setting |", "|---|---|---|---|---|"]
    for row in PROFILES.values():
        w = row.wiring
        rows.append(f"| {w.brands} | `{row.name}` | {w.bitrate // 1000} kbit/s | {w.termination} | {w.menu} |")
    return "\n".join(rows)


def sources_table() -> str:
    """docs/inverter.md: what each profile's frame facts were checked against."""
    rows = ["| `protocol` | DBC | frame facts checked against |", "|---|---|---|"]
    rows += [f"| `{r.name}` | [`{r.dbc}`](../dbc/inverters/{r.dbc}) | {r.sources} |" for r in PROFILES.values()]
    return "\n".join(rows)


def pylon_alarm_markdown() -> str:
    """The Pylon LV alarm table: `PYLONTECH` in its order, then what an invalid snapshot raises."""
    column = COLUMNS["pylontech"]
    rows = ["| alarm code | 0x359 bit | 0x35A pair |", "|---|---|---|"]
    for code, mapped in column.items():
        if isinstance(mapped, NotSent):
            rows.append(f"| `{code}` | none | none |")
        else:
            assert isinstance(mapped, PylonBits)
            bit = "none (0x359 has no such bit)" if mapped.bit is None else f"`{mapped.bit}`"
            rows.append(f"| `{code}` | {bit} | `{mapped.pair}` |")
    rows.append("| (snapshot not valid) | `InternalError`, protection | `BmsInternal`, alarm |")
    return "\n".join(rows)


def alarm_markdown(column_name: str) -> str:
    """An inverter column: each code's signal at protection and at warning level, or why it is not sent."""
    column = COLUMNS[column_name]
    rows = ["| alarm code | protection | warning |", "|---|---|---|"]
    reasons: dict[str, int] = {}
    for code in AlarmCode:
        mapped = column[code]
        if isinstance(mapped, NotSent):
            n = reasons.setdefault(mapped.reason, len(reasons) + 1)
            rows.append(f"| `{code}` | not sent ({n}) | not sent ({n}) |")
            continue
        at = {level: mapped.signals(level) for level in Level}  # type: ignore[attr-defined]
        cells = [", ".join(f"`{s}`" for s in at[level]) or "none" for level in (Level.PROTECTION, Level.WARNING)]
        rows.append(f"| `{code}` | {cells[0]} | {cells[1]} |")
    notes = [f"({n}) {reason}." for reason, n in reasons.items()]
    return "\n".join([*rows, "", *notes])


def inverter_columns() -> list[str]:
    """The alarm columns the profiles use, in table order (each once)."""
    return list(dict.fromkeys(row.alarm_column for row in PROFILES.values()))


def sections() -> Mapping[str, Callable[[], str]]:
    """Every generated part, by its marker's label."""
    parts: dict[str, Callable[[], str]] = {
        "profiles": profile_table,
        "wiring": wiring_table,
        "sources": sources_table,
        "alarms pylontech": pylon_alarm_markdown,
    }
    for name in inverter_columns():
        if name != "pylontech":
            parts[f"alarms {name}"] = lambda name=name: alarm_markdown(name)  # type: ignore[misc]
    return parts


def marker(label: str) -> str:
    return f"{COMMAND} [{label}]"


def update(text: str) -> str:
    """`text` with every generated part it holds replaced by the current one."""
    for label, body in sections().items():
        if generated.begin(marker(label)) in text:
            text = generated.splice(text, marker(label), body())
    return text


def rewrite(paths: list[Path]) -> None:
    for path in paths:
        path.write_text(update(path.read_text(encoding="utf-8")), encoding="utf-8")


# -- bms-gateway inverters ---------------------------------------------------------------------------------------


def listing() -> str:
    """`bms-gateway inverters`: one line per profile."""
    width = max(len(name) for name in PROFILES)
    lines = [f"{row.name:<{width}}  {row.mode.value:<17} {row.wiring.brands}" for row in PROFILES.values()]
    lines += [f"{alias:<{width}}  alias of {name}" for alias, name in ALIASES.items()]
    return "\n".join(lines)


def _signal(message: Message) -> list[str]:
    out = []
    for s in message.signals:
        order = "LE" if s.byte_order == "little_endian" else "BE"
        sign = "s" if s.is_signed else "u"
        scale = "" if (s.scale, s.offset) == (1, 0) else f" ×{s.scale:g}" + (f" {s.offset:+g}" if s.offset else "")
        unit = f" {s.unit}" if s.unit else ""
        out.append(f"      {s.name}: bit {s.start}, {sign}{s.length} {order}{scale}{unit}")
    return out


def frame_table(name: str) -> str:
    """`bms-gateway inverters PROFILE`: the profile's row and every frame it sends, signal by signal."""
    row = PROFILES[ALIASES.get(name, name)]
    encoder = codec_of(row, row.defaults)
    family = next(f for f in FAMILIES if row in f.ROWS)
    lines = [
        f"{row.name}: {row.mode.value}, {'29' if row.extended else '11'}-bit IDs, {row.wiring.bitrate // 1000} kbit/s,"
        f" dbc/inverters/{row.dbc} ({family.__name__.rsplit('.', 1)[-1]}.py)",
        f"  sends: {sends(row)}",
        f"  hears: {_ids(sorted(row.expects))}; inverter_comm_lost after {row.timeout:g} s of silence",
    ]
    if row.options:
        lines.append(f"  options: {_options(row)}")
    if row.notes:
        lines.append(f"  notes: {row.notes}")
    lines.append(f"  wiring: {row.wiring.brands}; {row.wiring.termination}; inverter: {row.wiring.menu}")
    lines.append("  frames:")
    for frame_id in dict.fromkeys(frame_id for frame_id, _ in row.parts):
        message = encoder.messages[frame_id]
        lines.append(f"    0x{frame_id + row.defaults.id_offset:X} {message.name}, DLC {message.length}")
        lines += _signal(message)
    if row.mode is Mode.REQUEST:
        lines.append("  never sends anything unasked")
    return "\n".join(lines)
