"""Module frames in, latest state per module out.

`ModuleStore.feed` is called where frames arrive (live: python-can's Notifier thread; replay: the log reader)
with an explicit timestamp. It decodes, rejects what is malformed or implausible
(counted by kind, logged once per burst), and keeps only the latest values per module: no queue grows. The
master asks for `readings()` on its tick and gets frozen values, the same object again for a module that has
not changed. A frame that may call for protection (new alarm bits, a module fault, a cell or temperature moving
deeper into a derating zone) calls `on_urgent` so the master does not wait for its next tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import can

from gateway.can.addressing import Scheme
from gateway.can.codec import SCALARS, DecodeFailure, ModuleCodec, Target, TargetKind
from gateway.logs import BurstLog, get
from gateway.master.model import MAX_CELLS, MAX_SENSORS, ModuleReading

log = get("gateway.ingest")

_INTEGER_FIELDS = frozenset(
    {
        "module_state",
        "alive",
        "cell_voltage_max_index",
        "cell_voltage_min_index",
        "balancing_cells",
        "cell_count",
        "temperature_max_index",
        "temperature_min_index",
        "fault_code",
        "cells_in_series",
        "sensor_count",
        "cycle_count",
    }
)
"""Fields that are counts or codes: stored as int whatever the DBC's scale made of them."""
_WATCHED = frozenset(
    {
        "alive",
        "module_state",
        "fault_code",
        "cell_voltage_max",
        "cell_voltage_min",
        "temperature_max",
        "temperature_min",
    }
)
"""Fields whose change `ModuleStore._apply` looks at: the alive counter, the codes and extremes that may be urgent."""
_PLAIN_FIELDS = frozenset(key for _, key in SCALARS.values()) - _INTEGER_FIELDS - _WATCHED
_COUNTS = _INTEGER_FIELDS - _WATCHED
"""Fields stored as decoded (plain) or as int (counts) with nothing else to do: `_apply`'s short ways."""

_FIELD = TargetKind.FIELD
_CELL_VOLTAGES = TargetKind.CELL_VOLTAGES
_CELL_BALANCING = TargetKind.CELL_BALANCING
_CELL_TEMPERATURES = TargetKind.CELL_TEMPERATURES
_WARNINGS = TargetKind.WARNINGS
"""Module-level aliases for the hot path: `TargetKind.FIELD` is a class attribute lookup through the enum's
metaclass (about 100 ns on Python 3.11), a module global is a cached load."""

REJECT_KINDS = (
    "unknown_id",
    "bad_address",
    "bad_length",
    "bad_multiplexer",
    "decode_error",
    "out_of_range",
    "master_command",
    "error_frame",
)
"""Why a frame was not used; each kind has its own counter."""


@dataclass(frozen=True, slots=True)
class Urgency:
    """Where a value starts to matter for protection: above/below these, a worsening value wakes the master."""

    cell_high: float = 3.40
    cell_low: float = 3.10
    temperature_high: float = 40.0
    temperature_low: float = 15.0


@dataclass(slots=True)
class _Slot:
    """The mutable latest state of one module; only `ModuleStore.feed` writes it."""

    address: int
    first_seen: float
    fields: dict[str, Any] = field(default_factory=dict)
    cell_voltages: list[float | None] = field(default_factory=lambda: [None] * MAX_CELLS)
    cell_balancing: list[bool] = field(default_factory=lambda: [False] * MAX_CELLS)
    cell_temperatures: list[float | None] = field(default_factory=lambda: [None] * MAX_SENSORS)
    warnings: int = 0
    protections: int = 0
    alive_repeats: int = 0
    confirmed: bool = False
    """The module is real: its AliveCounter advanced by one between two ModuleStatus frames (or, for a DBC
    without AliveCounter, it sent one). Until then it is kept out of `readings()`: garbage decodes too."""
    seen: dict[str, float] = field(default_factory=dict)
    version: int = 0
    cells_version: int = 0
    """Bumped when a per-cell voltage, balancing flag or sensor temperature arrives."""
    arrays: tuple[Any, ...] | None = None
    frozen: ModuleReading | None = None
    frozen_version: int = -1

    def freeze(
        self, derive_extremes: bool, absent: frozenset[str], invert_current: bool, counts_sensors: bool
    ) -> ModuleReading:
        """Frozen copy; `derive_extremes` fills min/max from the cells when the DBC has no summary message;
        `invert_current` turns a BMS's discharge-positive current into ours (charging positive); `counts_sensors`:
        the DBC says how many sensors a module has (see `_arrays`)."""
        f = dict(self.fields)
        if invert_current and (current := f.get("current")) is not None:
            f["current"] = 0.0 - current  # not -current: a 0.0 stays 0.0, never -0.0
        key = (self.cells_version, f.get("cell_count"), f.get("cells_in_series"), f.get("sensor_count"))
        if self.arrays is None or self.arrays[0] != key:
            self.arrays = (key, *self._arrays(f, derive_extremes, counts_sensors))
        _, cells, balancing, sensors, extremes = self.arrays
        f.update(extremes)
        if "firmware_major" in f:
            major, minor, patch = f.pop("firmware_major"), f.pop("firmware_minor", 0), f.pop("firmware_patch", 0)
            if major is not None:
                f["firmware"] = (int(major), int(minor or 0), int(patch or 0))
        else:
            f.pop("firmware_minor", None)
            f.pop("firmware_patch", None)
        return ModuleReading(
            address=self.address,
            alive_repeats=self.alive_repeats,
            warnings=self.warnings,
            protections=self.protections,
            cell_voltages=cells,
            cell_balancing=balancing,
            cell_temperatures=sensors,
            seen=MappingProxyType(dict(self.seen)),
            first_seen=self.first_seen,
            absent=absent,
            **f,
        )

    def _arrays(self, f: dict[str, Any], derive_extremes: bool, counts_sensors: bool) -> tuple[Any, ...]:
        """(cells, balancing, sensors, extremes derived from them): rebuilt only when a per-cell value changed.

        Sensors are cut to the module's sensor count where its DBC carries one, and are none until it has said:
        a Daly's empty slots read -40 degC, which would derate charging to zero as a real sensor would."""
        every_cell = tuple(self.cell_voltages)
        n_cells = int(f.get("cell_count") or f.get("cells_in_series") or _last_known(every_cell))
        cells = every_cell[:n_cells]
        sensors = tuple(self.cell_temperatures)
        n_sensors = f.get("sensor_count")
        if n_sensors is None:
            n_sensors = 0 if counts_sensors else _last_known(sensors)
        sensors = sensors[:n_sensors]
        extremes: dict[str, Any] = {}
        if derive_extremes:
            extremes |= _extremes("cell_voltage", cells)
            extremes |= _extremes("temperature", sensors)
        return cells, tuple(self.cell_balancing[:n_cells]), sensors, extremes


def _extremes(name: str, values: tuple[float | None, ...]) -> dict[str, Any]:
    """`<name>_max`, `<name>_min` and their 1-based indexes over the known values (none if no value is known)."""
    known = [v for v in values if v is not None]
    if not known:
        return {}
    high, low = max(known), min(known)
    return {
        f"{name}_max": high,
        f"{name}_min": low,
        f"{name}_max_index": values.index(high) + 1,
        f"{name}_min_index": values.index(low) + 1,
    }


def _last_known(values: tuple[Any, ...]) -> int:
    """1 + index of the last known value (0 when none): how many cells or sensors a module has shown."""
    for i in range(len(values) - 1, -1, -1):
        if values[i] is not None:
            return i + 1
    return 0


class ModuleStore:
    """Latest decoded state of every module address seen on the module bus."""

    def __init__(
        self,
        codec: ModuleCodec,
        *,
        urgency: Urgency | None = None,
        on_urgent: Callable[[], None] | None = None,
        ignore_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.codec = codec
        self.urgency = urgency or Urgency()
        self.on_urgent = on_urgent
        self.ignore_ids = ignore_ids
        """Frame IDs that belong to someone else on a shared bus (the inverter's), neither used nor counted."""
        self.received = 0
        self.decoded = 0
        self.rejected: Counter[str] = Counter()
        self._slots: dict[int, _Slot] = {}
        self._burst = BurstLog(log, "module frame rejected")
        self._derive_extremes = "cells" not in codec.required_groups
        self._counted = codec.alive_counter
        self._addresses = codec.addresses
        self._routes = codec.routes
        self._by_signal = codec.addressing.scheme is Scheme.SIGNAL
        self._offset = codec.addressing.offset
        self._padded = codec.padded

    def feed(self, can_id: int, data: bytes | bytearray, t: float, *, extended: bool = False) -> None:
        """Take one received frame; never raises for anything the bus can deliver."""
        self.received += 1
        route = self._routes.get(can_id)
        if route is None or route[0].extended != extended:
            self._unrouted(can_id, extended)
            return
        plan, address = route
        if len(data) != plan.length and not (self._padded and len(data) > plan.length):
            self._reject("bad_length", can_id, dlc=len(data))
            return
        try:
            read = plan.read(data)
        except DecodeFailure as err:
            kind = "bad_multiplexer" if plan.message.is_multiplexed() else "decode_error"
            self._reject(kind, can_id, error=str(err))
            return
        if read is None:  # which signal, for the log: the slow way, once per rejected frame
            signal, value = plan.implausible(data) or ("", None)
            self._reject("out_of_range", can_id, signal=signal, value=value)
            return
        targets, values = read
        if self._by_signal:  # the first value names the module
            address = int(values[0]) + self._offset
            if address not in self._addresses:
                self._reject("bad_address", can_id, address=address)
                return
            targets, values = targets[1:], values[1:]
        slot = self._slots.get(address)
        if slot is None:
            slot = self._slots[address] = _Slot(address, t)
        urgent = self._apply(slot, targets, values)
        seen = slot.seen
        for group in plan.groups:
            seen[group] = t
        if not self._counted and "status" in plan.groups:
            slot.confirmed = True
        slot.version += 1
        if urgent and self.on_urgent is not None:
            self.on_urgent()
        self.decoded += 1  # last: a frame counted as decoded has had all its effects, the urgent wake included

    def on_message(self, msg: can.Message, t: float) -> None:
        """Feed a python-can message (error and remote frames are counted, not decoded)."""
        if msg.is_error_frame or msg.is_remote_frame:
            self.received += 1
            self._reject("error_frame", msg.arbitration_id)
            return
        self.feed(msg.arbitration_id, msg.data, t, extended=msg.is_extended_id)

    def readings(self) -> dict[int, ModuleReading]:
        """Frozen latest values per confirmed module; an unchanged module yields the identical object as last time."""
        out = {}
        for address, slot in list(self._slots.items()):
            if not slot.confirmed:
                continue
            version = slot.version
            if slot.frozen is None or slot.frozen_version != version:
                slot.frozen = slot.freeze(
                    self._derive_extremes, self.codec.absent, self.codec.invert_current, self.codec.counts_sensors
                )
                slot.frozen_version = version
            out[address] = slot.frozen
        return out

    @property
    def counters(self) -> Mapping[str, int]:
        return {
            "received": self.received,
            "decoded": self.decoded,
            **{k: self.rejected[k] for k in REJECT_KINDS},
        }

    def flush_log(self) -> None:
        self._burst.flush()

    def _unrouted(self, can_id: int, extended: bool) -> None:
        """Count a frame the route table does not know: someone else's, a MasterCommand, a known message from an
        address this bus does not carry, or an unknown ID."""
        if can_id in self.ignore_ids:
            self.received -= 1
            return
        codec = self.codec
        plan, _ = codec.route(can_id)
        if plan is not None and plan.extended == extended:
            self._reject("bad_address", can_id)
        elif codec.command_base is not None and codec.addressing.base(can_id) == codec.command_base:
            self._reject("master_command", can_id)
        else:
            self._reject("unknown_id", can_id)

    def _reject(self, kind: str, can_id: int, **details: Any) -> None:
        self.rejected[kind] += 1
        self._burst(kind, can_id=hex(can_id), **details)

    def _apply(self, slot: _Slot, targets: tuple[Target, ...], values: tuple[Any, ...]) -> bool:
        """Write decoded values (in the order of their targets) into a slot; True when the change may call for
        protection."""
        fields: dict[Any, Any] = slot.fields  # a FIELD target's key is a field name
        urgency = self.urgency
        urgent = cells = False
        warnings, protections = slot.warnings, slot.protections
        for target, value in zip(targets, values):  # noqa: B905 - read() returns one value per target
            kind = target.kind
            key = target.key
            if kind is _FIELD:
                if key in _PLAIN_FIELDS:
                    fields[key] = value
                    continue
                if key in _INTEGER_FIELDS:
                    value = int(value)  # noqa: PLW2901 - stored as int whatever the DBC's scale made of it
                if key in _COUNTS:
                    fields[key] = value
                    continue
                old = fields.get(key)
                fields[key] = value
                if key == "alive":
                    slot.alive_repeats = slot.alive_repeats + 1 if old == value else 0
                    if old is not None and (value == old + 1 or (value == target.low and old == target.high)):
                        slot.confirmed = True
                elif key in {"module_state", "fault_code"}:
                    urgent = urgent or (old is not None and old != value)
                elif key in {"cell_voltage_max", "temperature_max"}:
                    high = urgency.cell_high if key == "cell_voltage_max" else urgency.temperature_high
                    urgent = urgent or (value >= high and (old is None or value > old))
                elif key in {"cell_voltage_min", "temperature_min"}:
                    low = urgency.cell_low if key == "cell_voltage_min" else urgency.temperature_low
                    urgent = urgent or (value <= low and (old is None or value < old))
            elif kind is _CELL_VOLTAGES:
                slot.cell_voltages[key] = value  # type: ignore[index]
                cells = True
            elif kind is _CELL_BALANCING:
                slot.cell_balancing[key] = bool(value)  # type: ignore[index]
                cells = True
            elif kind is _CELL_TEMPERATURES:
                slot.cell_temperatures[key] = None if value == target.no_value else value  # type: ignore[index]
                cells = True
            elif kind is _WARNINGS:
                warnings = warnings | 1 << key if value else warnings & ~(1 << key)  # type: ignore[operator]
            else:
                protections = protections | 1 << key if value else protections & ~(1 << key)  # type: ignore[operator]
        if cells:
            slot.cells_version += 1
        if warnings != slot.warnings or protections != slot.protections:
            slot.warnings, slot.protections = warnings, protections
            urgent = True
        return urgent


class ModuleStores:
    """The stores of every module bus as one: their readings together (addresses are unique across buses, the
    config sees to it) and their counters added up."""

    def __init__(self, stores: Sequence[ModuleStore]) -> None:
        self.stores = tuple(stores)

    def readings(self) -> dict[int, ModuleReading]:
        if len(self.stores) == 1:
            return self.stores[0].readings()
        out: dict[int, ModuleReading] = {}
        for store in self.stores:
            out.update(store.readings())
        return out

    @property
    def received(self) -> int:
        return sum(s.received for s in self.stores)

    @property
    def decoded(self) -> int:
        return sum(s.decoded for s in self.stores)

    @property
    def rejected(self) -> Counter[str]:
        return sum((s.rejected for s in self.stores), Counter())

    @property
    def counters(self) -> Mapping[str, int]:
        return {k: sum(s.counters[k] for s in self.stores) for k in ("received", "decoded", *REJECT_KINDS)}

    def set_urgency(self, urgency: Urgency) -> None:
        for store in self.stores:
            store.urgency = urgency

    def flush_log(self) -> None:
        for store in self.stores:
            store.flush_log()
