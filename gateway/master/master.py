"""The master BMS: one pure step from module readings and "now" to a bank snapshot and module commands.

No I/O, no clock, no asyncio: the service calls `step` on its tick (and at once on an urgent frame), replay calls
it on the log's timestamps, tests call it with explicit numbers. The master keeps only what the rules need
between ticks: which modules are admitted or isolated, the smoothed current shares, the last limits (slew),
the alarm tracker, and when the bank was last full.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.config import Config
from gateway.master import aggregate, thermal
from gateway.master.alarms import AlarmTracker, Condition, module_conditions, quiet
from gateway.master.limits import module_limits, parallel_current, string_limits
from gateway.master.model import (
    ALARM_BITS,
    BankLimits,
    BankSnapshot,
    Extreme,
    Flags,
    InverterInfo,
    IsolateReason,
    Level,
    Lifecycle,
    Limit,
    MasterCommand,
    ModuleLimits,
    ModuleReading,
    ModuleState,
    ModuleView,
)

GROUP_NAMES = {
    "status": "ModuleStatus",
    "limits": "ModuleLimits",
    "cells": "CellSummary",
    "temperatures": "Temperatures",
}
MIN_CURRENT = 0.1
"""Current limits below this (the inverter protocol's resolution) are 0, so flags and limits agree."""


@dataclass(frozen=True, slots=True)
class Tick:
    snapshot: BankSnapshot
    commands: tuple[MasterCommand, ...]


@dataclass(slots=True)
class _Memory:
    """What the master remembers about one module between ticks."""

    admitted: bool = False
    isolated: str | None = None
    isolate_reason: IsolateReason = IsolateReason.NONE
    isolated_at: float = 0.0
    cutoff_firsts: int = 0


@dataclass(slots=True)
class _Ghost:
    """The bank-level bounds a string implied at its last tick in the bank (current limits divided by its
    share), kept for `offline_hold` seconds after it left: a silent module may still be connected."""

    charge: Limit
    discharge: Limit
    charge_voltage: Limit
    discharge_voltage: Limit
    left: float | None = None


@dataclass(slots=True)
class _Health:
    lifecycle: Lifecycle
    reason: str
    isolate_reason: IsolateReason


_CANDIDATE = _Health(Lifecycle.PENDING, "", IsolateReason.NOT_ADMITTED)


@dataclass(slots=True)
class Master:
    """The master's state machine. `config` may be replaced between steps (live reload)."""

    config: Config
    required_groups: frozenset[str] = frozenset(GROUP_NAMES)
    """Message groups a module must keep sending to count (the ones its DBC carries)."""
    _seq: int = 0
    _start: float | None = None
    _last_t: float | None = None
    _memory: dict[int, _Memory] = field(default_factory=dict)
    _shares: dict[tuple[int, ...], float] = field(default_factory=dict)
    _ghosts: dict[tuple[int, ...], _Ghost] = field(default_factory=dict)
    _limits_cache: dict[int, tuple[tuple[object, ...], ModuleLimits]] = field(default_factory=dict)
    _other_groups: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self._other_groups = tuple(sorted(self.required_groups - {"status"}))

    _last_charge: float = 0.0
    _last_discharge: float = 0.0
    _alarms: AlarmTracker = field(default_factory=AlarmTracker)
    _last_full: float | None = None
    _last_voltage: float | None = None
    _full_requested: bool = False
    _cutoff_last: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())

    def readmit(self, address: int) -> bool:
        """Operator action: lift an isolation now; the module still has to pass admission. True if it was isolated."""
        memory = self._memory.get(address)
        if memory is None or memory.isolated is None:
            return False
        memory.isolated, memory.isolate_reason, memory.cutoff_firsts = None, IsolateReason.NONE, 0
        return True

    def request_full_charge(self) -> None:
        """Operator action: ask the inverter for a full charge (balancing) until the bank is full."""
        self._full_requested = True

    def step(self, now: float, readings: Mapping[int, ModuleReading], inverter: InverterInfo | None = None) -> Tick:
        cfg = self.config
        bank, lim = cfg.bank, cfg.limits
        if self._start is None:
            self._start = now
            self._last_full = now
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        self._last_t = now
        self._seq += 1

        strings, overflow = self._topology(readings)
        members = {a for s in strings for a in s}
        addresses = sorted(members | set(readings) | overflow)
        health = {a: self._health(a, readings.get(a), now, members, overflow) for a in addresses}
        conditions: list[Condition] = []

        # Admission and broken strings, string by string.
        starting = now - self._start < bank.module_timeout
        admitted: list[tuple[int, ...]] = []
        candidates: list[tuple[int, ...]] = []
        broken: list[tuple[int, ...]] = []
        for string in strings:
            states = [health[a] for a in string]
            if all(h is _CANDIDATE for h in states):
                if all(self._memory[a].admitted for a in string):
                    admitted.append(string)
                else:
                    candidates.append(string)
                continue
            for a in string:
                self._memory.setdefault(a, _Memory()).admitted = False
            if len(string) > 1 and any(h is _CANDIDATE for h in states):
                broken.append(string)
        if not starting:
            admitted += self._admit(candidates, admitted, readings, health)
        admitted_set = {a for s in admitted for a in s}
        for a in admitted_set:
            health[a] = _Health(Lifecycle.ONLINE, "", IsolateReason.NONE)

        # Aggregation over the admitted strings (or, to show something while invalid, the fresh modules that
        # belong to the bank: never a rejected address, which may be garbage or another bank's module).
        fresh = [readings[a] for a in addresses if a in readings and health[a].lifecycle is not Lifecycle.OFFLINE]
        online = [readings[a] for a in sorted(admitted_set)]
        shown = online or [r for r in fresh if health[r.address].lifecycle is not Lifecycle.REJECTED]
        electrical = [aggregate.series([readings[a] for a in s], bank.capacity_ah) for s in admitted]
        total = aggregate.parallel(electrical) if electrical else None
        if total is None and shown:
            total = aggregate.parallel([aggregate.series([r], bank.capacity_ah) for r in shown])
        vmax, vmin, tmax, tmin = aggregate.extremes(shown)

        reason = ""
        if starting:
            reason = "starting: waiting for every module to report"
        elif broken:
            missing = ", ".join(f"module {a} {health[a].lifecycle}" for a in broken[0] if health[a] is not _CANDIDATE)
            reason = f"series string {'-'.join(map(str, broken[0]))} broken: {missing}"
        elif not admitted:
            reason = "no module online"
        elif len(admitted_set) < bank.min_online:
            reason = f"{len(admitted_set)} modules online, min_online is {bank.min_online}"
        valid = not reason

        # Limits.
        per_module = {a: self._module_limits(readings[a]) for a in admitted_set}
        shares = self._update_shares(admitted, electrical, dt)
        module_share: dict[int, float] = {}
        if valid:
            limits = self._limits(admitted, per_module, shares, electrical, readings, dt, now, total)
            for string, share in zip(admitted, shares, strict=True):
                for a in string:
                    module_share[a] = share
            self._track_cutoffs(admitted, admitted_set, per_module, limits, now)
        else:
            self._last_charge = self._last_discharge = 0.0
            dvl = self.fallback_dvl(strings)
            # CVL holds the bank where it is; with no voltage known, never 0 (an inverter could read "charge to
            # 0 V"): the last known bank voltage, else DVL.
            cvl = (total.voltage if total is not None else 0.0) or self._last_voltage or dvl
            limits = BankLimits(Limit(0.0, reason), Limit(0.0, reason), Limit(cvl, reason), Limit(dvl, reason))
        if total is not None and total.voltage > 0.0:
            self._last_voltage = total.voltage

        flags = self._flags(valid, limits, total, vmin, now)

        # Alarms.
        flagged = self._alarms.flagged
        for r in fresh:
            if health[r.address].lifecycle is Lifecycle.REJECTED:
                continue
            if r.address in flagged or not quiet(r, bank, lim):
                conditions.extend(module_conditions(r, bank, lim, self._alarms.previous))
        conditions.extend(
            self._bank_conditions(strings, health, readings, broken, len(admitted_set), starting, inverter, now)
        )
        temperatures = {r.address: r.temperature_max for r in fresh if r.temperature_max is not None}
        positions = {a: bank.positions.get(a, a) for a in addresses}
        layers = thermal.by_position(temperatures, positions)
        for a, excess in thermal.heat_accumulation(temperatures, layers, lim.heat_accumulation):
            conditions.append(
                Condition(
                    "heat_accumulation",
                    Level.WARNING,
                    a,
                    f"module {a} {excess:.1f} degC above the outer ones",
                )
            )
        warnings = self._mismatch(fresh, health, conditions)
        alarms = self._alarms.update(conditions, now, lim.alarm_hold)
        fan = thermal.fan_duty(lim.fan_duty, tmax.value if tmax else None)

        string_of = {a: i for i, s in enumerate(strings) for a in s}
        views = {
            a: ModuleView(
                reading=readings.get(a) or ModuleReading(address=a),
                lifecycle=health[a].lifecycle,
                reason=health[a].reason,
                position=positions[a],
                string=string_of.get(a),
                limits=per_module.get(a) or (self._module_limits(readings[a]) if a in readings else None),
                share=module_share.get(a),
                isolate_reason=health[a].isolate_reason,
                warnings=tuple(warnings.get(a, ())),
            )
            for a in addresses
        }
        snapshot = BankSnapshot(
            seq=self._seq,
            t=now,
            valid=valid,
            reason=reason,
            voltage=total.voltage if total else None,
            current=total.current if total else None,
            soc=total.soc if total else None,
            soh=total.soh if total else None,
            remaining_ah=total.remaining_ah if total else None,
            full_ah=total.full_ah if total else None,
            cell_voltage_max=vmax,
            cell_voltage_min=vmin,
            temperature_max=tmax,
            temperature_min=tmin,
            limits=limits,
            flags=flags,
            fan_duty=fan,
            alarms=alarms,
            modules=MappingProxyType(views),
            strings=tuple(strings),
            temperature_gradient=thermal.gradient(temperatures, layers),
            inverter=inverter,
        )
        return Tick(snapshot, self._commands(snapshot, per_module))

    # -- topology and health ------------------------------------------------------------------------------

    def _topology(self, readings: Mapping[int, ModuleReading]) -> tuple[list[tuple[int, ...]], set[int]]:
        """The configured strings, or (auto) each module seen as its own parallel string up to max_modules."""
        bank = self.config.bank
        if bank.strings:
            return [tuple(s) for s in bank.strings], set()
        seen = sorted(readings, key=lambda a: (readings[a].first_seen, a))
        kept = sorted(seen[: bank.max_modules])
        return [(a,) for a in kept], set(seen[bank.max_modules :])

    def _health(self, a: int, r: ModuleReading | None, now: float, members: set[int], overflow: set[int]) -> _Health:
        """A module's state before admission: offline, rejected, isolated, or a candidate (healthy)."""
        bank = self.config.bank
        memory = self._memory.setdefault(a, _Memory())
        if a in overflow:
            return _Health(
                Lifecycle.ISOLATED,
                f"stack limit: max_modules is {bank.max_modules}",
                IsolateReason.STACK_LIMIT,
            )
        if a not in members:
            return _Health(Lifecycle.REJECTED, "not in bank.strings", IsolateReason.NOT_ADMITTED)
        if r is None or "status" not in r.seen:
            return _Health(Lifecycle.OFFLINE, "never seen", IsolateReason.COMMUNICATION_LOST)
        age = now - r.seen["status"]
        if age > bank.module_timeout:
            return _Health(Lifecycle.OFFLINE, f"no ModuleStatus for {age:.1f} s", IsolateReason.COMMUNICATION_LOST)
        if r.alive_repeats >= bank.frozen_counter_frames - 1:
            return _Health(Lifecycle.OFFLINE, f"AliveCounter frozen at {r.alive}", IsolateReason.COMMUNICATION_LOST)
        for group in self._other_groups:
            seen = r.seen.get(group)
            if seen is None:
                return _Health(Lifecycle.PENDING, f"waiting for {GROUP_NAMES[group]}", IsolateReason.NOT_ADMITTED)
            if now - seen > bank.module_timeout:
                message = f"no {GROUP_NAMES[group]} for {now - seen:.1f} s"
                return _Health(Lifecycle.OFFLINE, message, IsolateReason.COMMUNICATION_LOST)
        cells = r.cells_in_series or r.cell_count
        if cells is not None and cells != bank.cells_in_series:
            return _Health(
                Lifecycle.REJECTED,
                f"{cells} cells, the bank has {bank.cells_in_series}",
                IsolateReason.MISMATCH,
            )
        trouble = _trouble(r)
        if trouble is not None:
            # The hold-off counts from the last moment the trouble was seen.
            memory.isolated, memory.isolate_reason, memory.isolated_at = trouble, IsolateReason.FAULT, now
            memory.admitted = False
        if memory.isolated is not None:
            left = memory.isolated_at + bank.isolation_holdoff - now
            if left > 0:
                wait = "" if trouble else f" (re-admission in {left:.0f} s)"
                return _Health(Lifecycle.ISOLATED, memory.isolated + wait, memory.isolate_reason)
            memory.isolated, memory.isolate_reason = None, IsolateReason.NONE
        return _CANDIDATE

    def _admit(
        self,
        candidates: list[tuple[int, ...]],
        admitted: list[tuple[int, ...]],
        readings: Mapping[int, ModuleReading],
        health: dict[int, _Health],
    ) -> list[tuple[int, ...]]:
        """Admit candidate strings that match the bank (SOC and voltage windows); the rest stay pending."""
        bank = self.config.bank
        if not candidates:
            return []
        ah = bank.capacity_ah
        electrical = {s: aggregate.series([readings[a] for a in s], ah) for s in candidates}
        if admitted:
            reference = aggregate.parallel([aggregate.series([readings[a] for a in s], ah) for s in admitted])
        else:
            # Forming the bank: start from the string that matches the most others.
            def matches(s: tuple[int, ...]) -> int:
                return sum(self._mismatch_reason(electrical[o], electrical[s]) is None for o in candidates)

            reference = electrical[max(candidates, key=lambda s: (matches(s), -s[0]))]
        joined = []
        for string in candidates:
            why = self._mismatch_reason(electrical[string], reference)
            if why is None:
                joined.append(string)
                for a in string:
                    self._memory[a].admitted = True
            else:
                for a in string:
                    health[a] = _Health(Lifecycle.PENDING, why, IsolateReason.NOT_ADMITTED)
        return joined

    def _mismatch_reason(self, string: aggregate.Electrical, bank: aggregate.Electrical) -> str | None:
        cfg = self.config.bank
        if abs(string.soc - bank.soc) > cfg.admission_soc_window:
            return f"SOC {string.soc:.1f} % vs bank {bank.soc:.1f} % (window {cfg.admission_soc_window:g} %)"
        if abs(string.voltage - bank.voltage) > cfg.admission_voltage_window:
            return (
                f"voltage {string.voltage:.2f} V vs bank {bank.voltage:.2f} V "
                f"(window {cfg.admission_voltage_window:g} V)"
            )
        return None

    # -- limits ---------------------------------------------------------------------------------------------

    def _module_limits(self, r: ModuleReading) -> ModuleLimits:
        """`module_limits`, remembered per module while its inputs and the config stay the same: most
        ticks change a module's current and alive counter, not what its limits depend on."""
        cfg = self.config
        key = (
            cfg,
            r.charge_current_limit,
            r.discharge_current_limit,
            r.charge_voltage_limit,
            r.discharge_voltage_limit,
            r.cell_voltage_max,
            r.cell_voltage_min,
            r.temperature_max,
            r.temperature_min,
            r.soc,
        )
        cached = self._limits_cache.get(r.address)
        if cached is not None and cached[0][0] is cfg and cached[0] == key:
            return cached[1]
        result = module_limits(r, cfg.bank, cfg.limits, reported="limits" in self.required_groups)
        self._limits_cache[r.address] = (key, result)
        return result

    def _update_shares(
        self, admitted: Sequence[tuple[int, ...]], electrical: Sequence[aggregate.Electrical], dt: float
    ) -> list[float]:
        """Each string's share of the bank current, as the limits must assume it.

        Measured (I_string / I_bank) whenever the bank current is large enough to measure. A measured share that
        rises applies at once: the limit must fit the share the string takes now. One that falls decays with
        `share_smoothing`, so the next load step does not find a limit that is too high. Never below the string's
        capacity share, which is never 0.
        """
        lim, bank = self.config.limits, self.config.bank
        self._shares = {s: v for s, v in self._shares.items() if s in admitted}
        if not admitted:
            return []
        capacity = sum(e.capacity_ah for e in electrical)
        by_capacity = [e.capacity_ah / capacity for e in electrical]
        total = sum(e.current for e in electrical)
        rated = bank.rated_charge_current if total >= 0 else bank.rated_discharge_current
        if abs(total) > lim.share_threshold / 100.0 * rated * len(admitted):
            direction = math.copysign(1.0, total)
            flowing = [max(0.0, direction * e.current) for e in electrical]
            alpha = 1.0 - math.exp(-dt / lim.share_smoothing)
            for string, f in zip(admitted, flowing, strict=True):
                measured = f / sum(flowing)
                old = self._shares.get(string, measured)
                self._shares[string] = measured if measured >= old else old + alpha * (measured - old)
        return [max(self._shares.get(s, 0.0), c) for s, c in zip(admitted, by_capacity, strict=True)]

    def _limits(
        self,
        admitted: Sequence[tuple[int, ...]],
        per_module: Mapping[int, ModuleLimits],
        shares: Sequence[float],
        electrical: Sequence[aggregate.Electrical],
        readings: Mapping[int, ModuleReading],
        dt: float,
        now: float,
        total: aggregate.Electrical | None,
    ) -> BankLimits:
        cfg = self.config
        lim, bank = cfg.limits, cfg.bank
        per_string = [string_limits([per_module[a] for a in s]) for s in admitted]
        names = [f"module {s[0]}" for s in admitted]
        charge = parallel_current([s.charge_current for s in per_string], shares, names)
        discharge = parallel_current([s.discharge_current for s in per_string], shares, names)
        cvls = [
            self._string_cvl(s, lims, e, readings) for s, lims, e in zip(admitted, per_string, electrical, strict=True)
        ]
        cvl = min(cvls, key=_value)
        dvl = max((s.discharge_voltage for s in per_string), key=_value)
        # A string that just left the bank may still be connected: its last bounds stay in force a while.
        for string, lims, share, string_cvl in zip(admitted, per_string, shares, cvls, strict=True):
            self._ghosts[string] = _Ghost(
                Limit(lims.charge_current.value / share, lims.charge_current.bound_by),
                Limit(lims.discharge_current.value / share, lims.discharge_current.bound_by),
                string_cvl,
                lims.discharge_voltage,
            )
        for string, ghost in list(self._ghosts.items()):
            if string in admitted:
                continue
            if ghost.left is None:
                ghost.left = now
            if now - ghost.left > bank.offline_hold:
                del self._ghosts[string]
                continue
            held = f" (held: module {string[0]} left the bank)"
            charge = min(charge, Limit(ghost.charge.value, ghost.charge.bound_by + held), key=_value)
            discharge = min(discharge, Limit(ghost.discharge.value, ghost.discharge.bound_by + held), key=_value)
            cvl = min(cvl, Limit(ghost.charge_voltage.value, ghost.charge_voltage.bound_by + held), key=_value)
            dvl = max(dvl, Limit(ghost.discharge_voltage.value, ghost.discharge_voltage.bound_by + held), key=_value)
        slew = lim.slew_rate / 100.0 * dt * len(admitted)
        charge, self._last_charge = _slewed(charge, self._last_charge, slew * bank.rated_charge_current)
        discharge, self._last_discharge = _slewed(discharge, self._last_discharge, slew * bank.rated_discharge_current)
        if charge.value == 0.0 and total is not None and total.voltage < cvl.value:
            cvl = Limit(total.voltage, f"charge_stop ({charge.bound_by})")
        floor = min(s.discharge_voltage.value for s in per_string)
        if cvl.value < floor:
            # Never below a string's DVL, so never 0 V: a module reporting 0 V must not read as "charge to 0 V".
            cvl = Limit(floor, cvl.bound_by)
        return BankLimits(charge, discharge, cvl, dvl)

    def _string_cvl(
        self,
        string: tuple[int, ...],
        limits: ModuleLimits,
        electrical: aggregate.Electrical,
        readings: Mapping[int, ModuleReading],
    ) -> Limit:
        """The string's charge voltage, pulled down by what its highest cell is over the per-cell target, so
        no cell is pushed past it while the others catch up (balancing-aware CVL)."""
        cvl = limits.charge_voltage
        target = self.config.limits.charge_voltage_per_cell
        for a in string:
            r = readings[a]
            if r.cell_voltage_max is not None and r.cell_voltage_max > target:
                value = max(electrical.voltage - (r.cell_voltage_max - target), limits.discharge_voltage.value)
                if value < cvl.value:
                    cvl = Limit(value, f"balancing module {a} cell {r.cell_voltage_max_index or 0}")
        return cvl

    def fallback_dvl(self, strings: Sequence[tuple[int, ...]] | None = None) -> float:
        """DVL when no module says better: cells x DVL per cell, for the longest string (the configured ones by
        default); what the inverter gets before any module is known."""
        strings = self.config.bank.strings if strings is None else strings
        cells = self.config.bank.cells_in_series * max((len(s) for s in strings), default=1)
        return cells * self.config.limits.discharge_voltage_per_cell

    def _track_cutoffs(
        self,
        admitted: Sequence[tuple[int, ...]],
        admitted_set: set[int],
        per_module: Mapping[int, ModuleLimits],
        limits: BankLimits,
        now: float,
    ) -> None:
        """Isolate a module that is, time after time, the only one to hit the cell-voltage cutoff first."""
        at_cutoff = (
            frozenset(
                a
                for a in admitted_set
                if per_module[a].charge_current.bound_by.startswith("cell_voltage")
                and per_module[a].charge_current.value == 0.0
            ),
            frozenset(
                a
                for a in admitted_set
                if per_module[a].discharge_current.bound_by.startswith("cell_voltage")
                and per_module[a].discharge_current.value == 0.0
            ),
        )
        for now_set, before in zip(at_cutoff, self._cutoff_last, strict=True):
            if now_set and not before:
                first = next(iter(now_set)) if len(now_set) == 1 else None
                for a in admitted_set:
                    memory = self._memory[a]
                    memory.cutoff_firsts = memory.cutoff_firsts + 1 if a == first else 0
                if first is not None and len(admitted) > 1:
                    memory = self._memory[first]
                    if memory.cutoff_firsts >= self.config.bank.cutoff_first_count:
                        memory.isolated = (
                            f"first to reach the cell-voltage cutoff {memory.cutoff_firsts} times in a row"
                        )
                        memory.isolate_reason, memory.isolated_at, memory.admitted = (
                            IsolateReason.FAULT,
                            now,
                            False,
                        )
        self._cutoff_last = at_cutoff

    def _flags(
        self,
        valid: bool,
        limits: BankLimits,
        total: aggregate.Electrical | None,
        vmin: Extreme | None,
        now: float,
    ) -> Flags:
        lim = self.config.limits
        if not valid or total is None:
            return Flags()
        if total.soc >= lim.full_charge_soc:
            self._last_full, self._full_requested = now, False
        interval = lim.full_charge_interval * 86400.0
        due = interval > 0 and self._last_full is not None and now - self._last_full >= interval
        low_cell = vmin is not None and vmin.value < lim.force_charge_cell_voltage
        return Flags(
            charge_enable=limits.charge_current.value > 0.0,
            discharge_enable=limits.discharge_current.value > 0.0,
            force_charge=limits.charge_current.value > 0.0 and (total.soc < lim.force_charge_soc or low_cell),
            full_charge=limits.charge_current.value > 0.0 and (due or self._full_requested),
        )

    # -- alarms and commands ------------------------------------------------------------------------------

    def _bank_conditions(
        self,
        strings: Sequence[tuple[int, ...]],
        health: Mapping[int, _Health],
        readings: Mapping[int, ModuleReading],
        broken: Sequence[tuple[int, ...]],
        online: int,
        starting: bool,
        inverter: InverterInfo | None,
        now: float,
    ) -> list[Condition]:
        """Bank-level conditions: lost modules (a protection when the bank cannot run without them), stack
        limit, current-sensor mismatch in a series string, a silent inverter."""
        cfg = self.config
        out = []
        lost = [a for a, h in health.items() if h.lifecycle is Lifecycle.OFFLINE]
        if lost and not starting:
            fatal = online == 0 or online < cfg.bank.min_online or any(set(s) & set(lost) for s in broken)
            level = Level.PROTECTION if fatal else Level.WARNING
            out.extend(Condition("module_comm_lost", level, a, f"module {a}: {health[a].reason}") for a in lost)
        stacked = [a for a, h in health.items() if h.isolate_reason is IsolateReason.STACK_LIMIT]
        out.extend(
            Condition("stack_limit", Level.WARNING, a, f"max_modules is {cfg.bank.max_modules}") for a in stacked
        )
        for string in strings:
            currents = [readings[a].current for a in string if a in readings and readings[a].current is not None]
            if len(string) > 1 and len(currents) == len(string):
                spread = max(currents) - min(currents)
                if spread > cfg.limits.sensor_mismatch / 100.0 * cfg.bank.rated_charge_current:
                    out.extend(
                        Condition(
                            "sensor_mismatch",
                            Level.WARNING,
                            a,
                            f"current spread {spread:.1f} A in one string",
                        )
                        for a in string
                    )
        timeout = cfg.can.inverter.inverter_timeout
        if inverter is not None and timeout > 0 and now - inverter.last_seen > timeout:
            out.append(
                Condition(
                    "inverter_comm_lost",
                    Level.WARNING,
                    None,
                    f"no frame for {now - inverter.last_seen:.0f} s",
                )
            )
        return out

    def _mismatch(
        self, fresh: Sequence[ModuleReading], health: Mapping[int, _Health], conditions: list[Condition]
    ) -> dict[int, list[str]]:
        """Mismatch warnings (firmware, SOH, capacity, cycles) and rejected modules, named per module."""
        bank = self.config.bank
        notes: dict[int, list[str]] = {}

        def warn(a: int, text: str) -> None:
            notes.setdefault(a, []).append(text)
            conditions.append(Condition("module_mismatch", Level.WARNING, a, f"module {a}: {text}"))

        for a, h in health.items():
            if h.lifecycle is Lifecycle.REJECTED:
                warn(a, h.reason)
        pool = [r for r in fresh if health[r.address].lifecycle is not Lifecycle.REJECTED]
        firmwares = [r.firmware for r in pool if r.firmware is not None]
        if bank.firmware_mismatch and firmwares:
            majority = max(set(firmwares), key=lambda f: (firmwares.count(f), f))
            for r in pool:
                if r.firmware is not None and r.firmware != majority:
                    warn(
                        r.address,
                        f"firmware {_version(r.firmware)} differs from the bank's {_version(majority)}",
                    )
        spreads = (
            (
                "SOH",
                [(r.soh, r.address) for r in pool if r.soh is not None],
                lambda lo, hi: hi - lo > bank.soh_spread,
            ),
            (
                "capacity",
                [(c, r.address) for r in pool if (c := r.full_capacity or r.nominal_capacity)],
                lambda lo, hi: hi > lo * (1.0 + bank.capacity_spread / 100.0),
            ),
            (
                "cycle count",
                [(r.cycle_count, r.address) for r in pool if r.cycle_count is not None],
                lambda lo, hi: hi - lo > bank.cycle_spread,
            ),
        )
        for what, values, too_far in spreads:
            if len(values) > 1:
                (lo, lo_a), (hi, hi_a) = min(values), max(values)
                if too_far(lo, hi):
                    # Name the outlier: the end farther from the median (both ends when equally far).
                    median = statistics.median(v for v, _ in values)
                    for value, a in ((lo, lo_a), (hi, hi_a)):
                        if abs(value - median) >= max(median - lo, hi - median):
                            warn(a, f"{what} {value:g} vs bank median {median:g}")
        return notes

    def _commands(self, snapshot: BankSnapshot, per_module: Mapping[int, ModuleLimits]) -> tuple[MasterCommand, ...]:
        lim = self.config.limits
        vmax, vmin = snapshot.cell_voltage_max, snapshot.cell_voltage_min
        charging = snapshot.current is not None and snapshot.current > lim.rest_current
        target = 0.0
        if snapshot.valid and charging and vmax and vmin and vmax.value > lim.balance_target_threshold:
            target = vmin.value
        out = []
        for a, view in snapshot.modules.items():
            permit = view.lifecycle is Lifecycle.ONLINE
            own = per_module.get(a)
            out.append(
                MasterCommand(
                    address=a,
                    connect_permit=permit,
                    charge_allowed=permit
                    and snapshot.flags.charge_enable
                    and own is not None
                    and own.charge_current.value > 0.0,
                    discharge_allowed=permit
                    and snapshot.flags.discharge_enable
                    and own is not None
                    and own.discharge_current.value > 0.0,
                    balancing_allowed=view.lifecycle in (Lifecycle.ONLINE, Lifecycle.PENDING),
                    isolate_reason=view.isolate_reason,
                    balance_target_voltage=target if permit else 0.0,
                    fan_duty=snapshot.fan_duty,
                )
            )
        return tuple(out)


def _trouble(r: ModuleReading) -> str | None:
    """Why a module must be isolated now (fault state, fault code or a protection bit), or None."""
    if r.module_state == ModuleState.FAULT:
        return f"module in fault (code {r.fault_code})"
    if r.fault_code:
        return f"fault code {r.fault_code}"
    if r.protections:
        names = [ALARM_BITS[i] for i in range(16) if r.protections >> i & 1]
        return "protection: " + ", ".join(names)
    return None


def _slewed(target: Limit, last: float, step: float) -> tuple[Limit, float]:
    """(limit to report, value to slew from next): rising limits move at most `step`, falling ones apply at
    once, and limits below MIN_CURRENT are reported as 0 while the ramp keeps counting."""
    limit = target if target.value <= last + step else Limit(last + step, "slew_rate")
    if limit.value < MIN_CURRENT:
        return Limit(0.0, limit.bound_by), limit.value
    return limit, limit.value


def _value(limit: Limit) -> float:
    return limit.value


def _version(firmware: tuple[int, int, int]) -> str:
    return ".".join(map(str, firmware))
