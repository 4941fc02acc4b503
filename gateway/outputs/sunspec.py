"""The SunSpec view of a snapshot: models 1, 802, 803, 804 (per string) and 805 (per module) from register 40000.

Pure: `layout(config)` fixes where every model sits (the number of strings, modules and cells comes from the
config, so a client can cache the layout), `image(layout, snapshot)` returns the registers. The point lists come
from the official model definitions (`sunspec_models`, vendored from pysunspec2), so offsets are never typed by
hand: the code names points, the definitions place them. Points we cannot fill read as SunSpec's "not
implemented" values, which the plain map uses too (`encode`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway import __version__
from gateway.config import Config
from gateway.master import aggregate
from gateway.master.model import Alarm, AlarmCode, BankSnapshot, Extreme, Level, Lifecycle, ModuleReading, ModuleView
from gateway.outputs.alarm_table import MODBUS_BIT, SUNSPEC_EVT1, SUNSPEC_STRING_EVT1, Evt
from gateway.outputs.sunspec_models import MODELS, ModelDef, Point

BASE = 40000
"""Address of "SunS", the SunSpec base register (0-based, as on the wire)."""
NOMINAL_CELL_VOLTAGE = 3.2
"""LiFePO4 nominal cell voltage, for the energy and power ratings."""
MAX_CELL_VOLTAGE = 4.0
"""Highest cell voltage a value may show, for choosing voltage scale factors (above any LFP cutoff)."""
CURRENT_HEADROOM = 1.5
"""Currents may reach this multiple of the rated current (the default over-current protection) before clipping."""

_INTEGER_TYPES: dict[str, tuple[int, bool]] = {
    "uint16": (1, False),
    "enum16": (1, False),
    "bitfield16": (1, False),
    "int16": (1, True),
    "sunssf": (1, True),
    "uint32": (2, False),
    "enum32": (2, False),
    "bitfield32": (2, False),
    "int32": (2, True),
}
"""Point type -> (registers, signed). SunSpec's "not implemented" value is the top or the lowest value."""
_PAD = 0x8000
_RANGE = {(1, False): (0, 0xFFFE), (1, True): (-0x7FFF, 0x7FFF), (2, False): (0, 0xFFFFFFFE)}
_RANGE[2, True] = (-0x7FFFFFFF, 0x7FFFFFFF)
_MISSING = {(1, False): (0xFFFF,), (1, True): (0x8000,), (2, False): (0xFFFF, 0xFFFF), (2, True): (0x8000, 0)}

# Enumerations of model 802.
_LOCAL = 1
_LITHIUM_ION = 4
_DISCONNECTED, _INITIALIZING, _CONNECTED, _FAULT = 1, 2, 3, 99
_CONNECT, _DISCONNECT = 1, 2


def encode(value: float | None, size: int, signed: bool) -> tuple[int, ...]:
    """An already scaled value as `size` registers, high word first; None or NaN read as "not implemented".

    Values beyond the type's range saturate short of the "not implemented" value, so a huge reading never
    looks missing and a missing one never looks huge.
    """
    if value is None or not math.isfinite(value):
        return _MISSING[size, signed]
    low, high = _RANGE[size, signed]
    raw = min(high, max(low, round(value)))
    if size == 1:
        return (raw & 0xFFFF,)
    raw &= 0xFFFFFFFF
    return (raw >> 16, raw & 0xFFFF)


def alarm_bits(alarms: Iterable[Alarm], level: Level | None = None) -> int:
    """The plain map's alarm bitfield (`MODBUS_BIT`), for the alarms at `level` (any level if None)."""
    return sum({1 << MODBUS_BIT[a.code] for a in alarms if level is None or a.level is level})


def _events(alarms: Iterable[Alarm], column: Mapping[AlarmCode, Evt]) -> int:
    """Evt1 from `column` (model 802's, or 803/804's), each alarm at its level."""
    bits = 0
    for a in alarms:
        bits |= 1 << column[a.code].at(a.level)
    return bits


def _fit(maximum: float, finest: int, signed: bool) -> int:
    """The finest scale factor (from `finest` up) at which `maximum` still fits the register."""
    limit = 0x7FFF if signed else 0xFFFE
    sf = finest
    while maximum * 10.0**-sf > limit:
        sf += 1
    return sf


class _Op(NamedTuple):
    """How one point is written: precomputed per model, so an image is a loop over values, not definitions."""

    name: str
    """The value's name; "" for a point that always reads `missing` (pads, scale factors, unscalable points)."""
    missing: tuple[int, ...]
    size: int
    signed: bool
    factor: float
    """Multiplies the value into register units (10 ** -scale factor)."""
    text: bool


def _ops(points: Iterable[Point], scale: Mapping[str, int | None]) -> tuple[_Op, ...]:
    ops: list[_Op] = []
    for p in points:
        if p.type == "pad":
            ops.append(_Op("", (_PAD,), 1, False, 1.0, text=False))
        elif p.type == "string":
            ops.append(_Op(p.name, (0,) * p.size, p.size, False, 1.0, text=True))
        else:
            size, signed = _INTEGER_TYPES[p.type]
            missing = encode(None, size, signed)
            if p.type == "sunssf":
                ops.append(_Op("", encode(scale[p.name], size, signed), size, signed, 1.0, text=False))
            elif p.sf is None:
                ops.append(_Op(p.name, missing, size, signed, 1.0, text=False))
            elif (sf := scale[p.sf]) is None:  # a point whose scale factor is not implemented is not either
                ops.append(_Op("", missing, size, signed, 1.0, text=False))
            else:
                ops.append(_Op(p.name, missing, size, signed, 10.0**-sf, text=False))
    return tuple(ops)


@dataclass(frozen=True, slots=True)
class Block:
    """One model instance in the map."""

    model: int
    address: int
    """Absolute address of its ID register."""
    length: int
    """The L register: registers after ID and L."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where every model sits and which scale factors it uses: fixed by the config for the life of the server."""

    shape: tuple[int, ...]
    """Modules per string slot, in string order."""
    strings: tuple[tuple[int, ...], ...] | None
    """The configured strings' module addresses; None in auto mode (slots follow the snapshot's strings)."""
    cells: int
    blocks: tuple[Block, ...]
    size: int
    """Registers from BASE to the end marker included."""
    scale: Mapping[int, Mapping[str, int | None]]
    """Model id -> scale-factor point -> value (None: the points it scales are not implemented)."""
    ops: Mapping[int, tuple[tuple[_Op, ...], tuple[_Op, ...]]]
    """Model id -> how to write its fixed points and its repeating group's points."""
    common: Mapping[str, Any]
    capacity_ah: float
    rated_current: tuple[float, float]
    """(charge, discharge) rated current of one module (one string)."""


def _length(model: ModelDef, repeats: int) -> int:
    fixed = sum(p.size for p in model.points) - 2
    group = sum(p.size for p in model.group.points) if model.group else 0
    return fixed + repeats * group


def layout(config: Config) -> Layout:
    """The SunSpec layout for a config: one 804 per string slot and one 805 per module slot.

    Auto mode (no `bank.strings`) has `max_modules` single-module string slots, filled in address order.
    """
    bank = config.bank
    configured = tuple(tuple(s) for s in bank.strings) or None
    shape = tuple(len(s) for s in configured) if configured else (1,) * bank.max_modules
    cells = bank.cells_in_series
    string_v = max(shape) * cells * MAX_CELL_VOLTAGE
    string_a = max(bank.rated_charge_current, bank.rated_discharge_current) * CURRENT_HEADROOM
    bank_a = string_a * len(shape)
    nominal_v = max(shape) * cells * NOMINAL_CELL_VOLTAGE
    rated_w = len(shape) * max(bank.rated_charge_current, bank.rated_discharge_current) * nominal_v
    counts = [(1, 0), (802, 0), (803, len(shape))]
    counts += [(804, n) for n in shape]
    counts += [(805, cells)] * sum(shape)
    blocks: list[Block] = []
    address = BASE + 2
    for model, repeats in counts:
        length = _length(MODELS[model], repeats)
        blocks.append(Block(model, address, length))
        address += length + 2
    per_string = {"SoC_SF": -1, "SoH_SF": -1, "DoD_SF": None, "CellV_SF": -3, "ModTmp_SF": -1}
    per_string |= {"A_SF": _fit(string_a, -1, True), "V_SF": _fit(string_v, -2, False)}
    scale: dict[int, dict[str, int | None]] = {
        802: {
            "AHRtg_SF": _fit(len(shape) * bank.capacity_ah, -1, False),
            "WHRtg_SF": _fit(len(shape) * bank.capacity_ah * nominal_v, 0, False),
            "WChaDisChaMax_SF": _fit(rated_w, 0, False),
            "DisChaRte_SF": None,
            "SoC_SF": -1,
            "DoD_SF": None,
            "SoH_SF": -1,
            "V_SF": _fit(string_v, -2, False),
            "CellV_SF": -3,
            "A_SF": _fit(bank_a, -1, True),
            "AMax_SF": _fit(bank_a, -1, False),
            "W_SF": _fit(bank_a * string_v, 0, True),
        },
        803: per_string,
        804: per_string,
        805: {
            "SoC_SF": -1,
            "SoH_SF": -1,
            "DoD_SF": None,
            "V_SF": _fit(cells * MAX_CELL_VOLTAGE, -2, False),
            "CellV_SF": -3,
            "Tmp_SF": -1,
        },
    }
    common = {
        "Mn": "bms-gateway",
        "Md": config.gateway.name,
        "Vr": __version__,
        "SN": config.gateway.id,
        "DA": config.modbus.unit_id,
    }
    return Layout(
        shape=shape,
        strings=configured,
        cells=cells,
        blocks=tuple(blocks),
        size=address + 2 - BASE,
        scale=scale,
        ops={
            model: (_ops(d.points, scale.get(model, {})), _ops(d.group.points if d.group else (), scale.get(model, {})))
            for model, d in MODELS.items()
        },
        common=common,
        capacity_ah=bank.capacity_ah,
        rated_current=(bank.rated_charge_current, bank.rated_discharge_current),
    )


def describe(lay: Layout) -> str:
    """The layout as a markdown table (model, address, length), for the docs."""
    names = {1: "Common", 802: "Battery Base", 803: "Lithium-Ion Battery Bank", 804: "Lithium-Ion String"}
    names[805] = "Lithium-Ion Module"
    rows = ["| address | model | name | L (length) |", "|---:|---:|---|---:|", f"| {BASE} | | `SunS` | |"]
    rows += [f"| {b.address} | {b.model} | {names[b.model]} | {b.length} |" for b in lay.blocks]
    end = BASE + lay.size - 2
    rows.append(f"| {end} | 0xFFFF | end marker | 0 |")
    return "\n".join(rows) + "\n"


# -- values --------------------------------------------------------------------------------------------------


def _slots(lay: Layout, s: BankSnapshot) -> tuple[tuple[int | None, ...], ...]:
    """The module address in each string slot and position (None: nobody there)."""
    if lay.strings is not None:
        return lay.strings
    present = [string[0] for string in s.strings]
    return tuple((present[i] if i < len(present) else None,) for i in range(len(lay.shape)))


def _cells(r: ModuleReading) -> int | None:
    return r.cell_count or r.cells_in_series


def _avg_cell_voltage(readings: Sequence[ModuleReading]) -> float | None:
    """Mean cell voltage: module voltages over cell counts (exact for a series string)."""
    known = [(r.voltage, n) for r in readings if r.voltage is not None and (n := _cells(r))]
    return sum(v for v, _ in known) / sum(n for _, n in known) if known else None


def _avg_temperature(readings: Sequence[ModuleReading]) -> float | None:
    temps = [t for r in readings for t in r.cell_temperatures if t is not None]
    return statistics.fmean(temps) if temps else None


def _balancing(readings: Sequence[ModuleReading]) -> int | None:
    counts = [r.balancing_cells for r in readings if r.balancing_cells is not None]
    return sum(counts) if counts else None


def _where(extreme: Extreme | None, slots: Sequence[Sequence[int | None]]) -> tuple[int | None, int | None]:
    """(string, module) numbers from 1 of the module an extreme was found in."""
    if extreme is not None:
        for i, string in enumerate(slots):
            if extreme.module in string:
                return i + 1, string.index(extreme.module) + 1
    return None, None


def _value(e: Extreme | None) -> float | None:
    return None if e is None else e.value


def _module(view: ModuleView | None) -> dict[str, Any]:
    """Model 805 points of one module (model 804's module group uses the same names with "Mod" before them)."""
    if view is None:
        return {}
    r = view.reading
    return {
        "NCell": _cells(r),
        "SoC": r.soc,
        "SoH": r.soh,
        "NCyc": r.cycle_count,
        "V": r.voltage,
        "CellVMax": r.cell_voltage_max,
        "CellVMaxCell": r.cell_voltage_max_index,
        "CellVMin": r.cell_voltage_min,
        "CellVMinCell": r.cell_voltage_min_index,
        "CellVAvg": _avg_cell_voltage([r]),
        "CellTmpMax": r.temperature_max,
        "CellTmpMaxCell": r.temperature_max_index,
        "CellTmpMin": r.temperature_min,
        "CellTmpMinCell": r.temperature_min_index,
        "CellTmpAvg": _avg_temperature([r]),
        "NCellBal": r.balancing_cells,
    }


def _cell_groups(view: ModuleView | None, cells: int) -> list[dict[str, Any]]:
    r = view.reading if view is not None else None
    voltages = r.cell_voltages if r is not None else ()
    balancing = r.cell_balancing if r is not None else ()
    return [
        {
            "CellV": voltages[i] if i < len(voltages) else None,
            "CellSt": int(balancing[i]) if i < len(balancing) else None,
        }
        for i in range(cells)
    ]


def _string(
    lay: Layout, s: BankSnapshot, slot: Sequence[int | None], number: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Model 804 points of one string slot (model 803's string group: the same names with "Str" before them)."""
    views = [s.modules.get(a) if a is not None else None for a in slot]
    present = [v for v in views if v is not None]
    readings = [v.reading for v in present]
    members = {a for a in slot if a is not None}
    alarms = [a for a in s.alarms if members & set(a.modules)]
    members_in_order = tuple(a for a in slot if a is not None)
    electrical = s.string_values.get(members_in_order) if len(members_in_order) == len(slot) else None
    vmax, vmin, tmax, tmin = aggregate.extremes(readings)
    own = (slot,)  # _where(e, own)[1]: the module's position in this string
    values: dict[str, Any] = {
        "Idx": number,
        "NMod": len(slot),
        "St": int(len(present) == len(slot) and all(v.lifecycle is Lifecycle.ONLINE for v in present)),
        "NCellBal": _balancing(readings),
        "SoC": electrical.soc if electrical else None,
        "SoH": electrical.soh if electrical else None,
        "A": electrical.current if electrical else None,
        "V": electrical.voltage if electrical else None,
        "CellVMax": _value(vmax),
        "CellVMaxMod": _where(vmax, own)[1],
        "CellVMin": _value(vmin),
        "CellVMinMod": _where(vmin, own)[1],
        "CellVAvg": _avg_cell_voltage(readings),
        "ModTmpMax": _value(tmax),
        "ModTmpMaxMod": _where(tmax, own)[1],
        "ModTmpMin": _value(tmin),
        "ModTmpMinMod": _where(tmin, own)[1],
        "ModTmpAvg": _avg_temperature(readings),
        "Evt1": _events(alarms, SUNSPEC_STRING_EVT1),
        "Evt2": 0,
        "EvtVnd1": alarm_bits(alarms),
        "EvtVnd2": alarm_bits(alarms, Level.PROTECTION),
    }
    modules = [{f"Mod{k}": v for k, v in _module(view).items()} for view in views]
    return values, modules


def _battery(
    lay: Layout, s: BankSnapshot, slots: Sequence[Sequence[int | None]], readings: Sequence[ModuleReading]
) -> dict[str, Any]:
    """Model 802 points: the bank as the master sees it."""
    strings = len(s.strings)  # the ratings are those of the strings present
    series = max((len(x) for x in s.strings), default=0)
    nominal_v = series * lay.cells * NOMINAL_CELL_VOLTAGE
    if s.seq == 0:
        state = _INITIALIZING
    elif s.valid:
        state = _CONNECTED
    else:
        state = _FAULT if s.worst_level() is Level.PROTECTION else _DISCONNECTED
    lim = s.limits
    vmax_string, vmax_module = _where(s.cell_voltage_max, slots)
    vmin_string, vmin_module = _where(s.cell_voltage_min, slots)
    return {
        "AHRtg": strings * lay.capacity_ah if strings else None,
        "WHRtg": strings * lay.capacity_ah * nominal_v if strings else None,
        "WChaRteMax": strings * lay.rated_current[0] * nominal_v if strings else None,
        "WDisChaRteMax": strings * lay.rated_current[1] * nominal_v if strings else None,
        "SoC": s.soc,
        "SoH": s.soh,
        "LocRemCtl": _LOCAL,
        "Hb": int(s.t) % 0xFFFF,
        "AlmRst": 0,
        "Typ": _LITHIUM_ION,
        "State": state,
        "Evt1": _events(s.alarms, SUNSPEC_EVT1),
        "Evt2": 0,
        "EvtVnd1": alarm_bits(s.alarms),
        "EvtVnd2": alarm_bits(s.alarms, Level.PROTECTION),
        "V": s.voltage,
        "VMax": lim.charge_voltage.value,
        "VMin": lim.discharge_voltage.value,
        "CellVMax": _value(s.cell_voltage_max),
        "CellVMaxStr": vmax_string,
        "CellVMaxMod": vmax_module,
        "CellVMin": _value(s.cell_voltage_min),
        "CellVMinStr": vmin_string,
        "CellVMinMod": vmin_module,
        "CellVAvg": _avg_cell_voltage(readings),
        "A": s.current,
        "AChaMax": lim.charge_current.value,
        "ADisChaMax": lim.discharge_current.value,
        "W": s.power,
        "SetOp": _CONNECT if s.valid else _DISCONNECT,
    }


def _bank(
    s: BankSnapshot,
    slots: Sequence[Sequence[int | None]],
    readings: Sequence[ModuleReading],
    strings: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Model 803 points: the bank's strings side by side."""
    tmax_string, tmax_module = _where(s.temperature_max, slots)
    tmin_string, tmin_module = _where(s.temperature_min, slots)
    values: dict[str, Any] = {
        "NStr": len(slots),
        "NStrCon": sum(x["St"] for x in strings),
        "ModTmpMax": _value(s.temperature_max),
        "ModTmpMaxStr": tmax_string,
        "ModTmpMaxMod": tmax_module,
        "ModTmpMin": _value(s.temperature_min),
        "ModTmpMinStr": tmin_string,
        "ModTmpMinMod": tmin_module,
        "ModTmpAvg": _avg_temperature(readings),
        "NCellBal": _balancing(readings),
    }
    for key in ("V", "A"):
        known = [(x[key], x["Idx"]) for x in strings if x[key] is not None]
        if known:
            values[f"Str{key}Max"], values[f"Str{key}MaxStr"] = max(known)
            values[f"Str{key}Min"], values[f"Str{key}MinStr"] = min(known)
            values[f"Str{key}Avg"] = statistics.fmean(v for v, _ in known)
    return values


# -- registers -----------------------------------------------------------------------------------------------


def _write(out: list[int], ops: tuple[_Op, ...], values: Mapping[str, Any]) -> None:
    for op in ops:
        value = values.get(op.name)
        if value is None:
            out += op.missing
        elif op.text:
            data = str(value).encode()[: 2 * op.size].ljust(2 * op.size, b"\0")
            out += (int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        else:
            out += encode(value * op.factor, op.size, op.signed)


def image(lay: Layout, s: BankSnapshot) -> tuple[int, ...]:
    """Every SunSpec register from BASE ("SunS") to the end marker, for one snapshot."""
    slots = _slots(lay, s)
    members = {a for slot in slots for a in slot}
    readings = [v.reading for a, v in sorted(s.modules.items()) if a in members]
    strings = [_string(lay, s, slot, i + 1) for i, slot in enumerate(slots)]
    string_values = [values for values, _ in strings]
    modules = [(i + 1, j + 1, a) for i, slot in enumerate(slots) for j, a in enumerate(slot)]
    contents: list[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]] = [
        (lay.common, ()),
        (_battery(lay, s, slots, readings), ()),
        (_bank(s, slots, readings, string_values), [{f"Str{k}": v for k, v in x.items()} for x in string_values]),
        *strings,
    ]
    for string, position, a in modules:
        view = s.modules.get(a) if a is not None else None
        contents.append(({"StrIdx": string, "ModIdx": position, **_module(view)}, _cell_groups(view, lay.cells)))
    out = [0x5375, 0x6E53]  # "SunS"
    for block, (values, groups) in zip(lay.blocks, contents, strict=True):
        fixed, group = lay.ops[block.model]
        _write(out, fixed, {**values, "ID": block.model, "L": block.length})
        for repeat in groups:
            _write(out, group, repeat)
    out += [0xFFFF, 0]
    return tuple(out)
