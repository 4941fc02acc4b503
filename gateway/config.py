"""One TOML file, validated into frozen dataclasses.

Every key has a default that suits the typical module of the protocol page (16 LFP cells, 100 Ah, 100 A), so an
empty file is a working config. Validation collects every problem in one pass, each line naming the key, so an
installer fixes a file in one go; unknown keys get a "did you mean" when one is close.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError

Table = tuple[tuple[float, float], ...]
"""A piecewise-linear table: (x, percent) points with x strictly increasing; flat beyond both ends."""

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
InverterProtocol = Literal["pylontech", "pylontech-1.3", "victron", "sma"]

SHIPPED_ADDRESS_MASK = 0x1F
"""The address field of the shipped module.dbc: the low 5 bits of the frame ID."""
MAX_ADDRESS_MASK = 0xFF
"""The widest address field: a J1939-style source-address byte."""
MAX_MODULES = 31
"""Module addresses stop at 31 whatever the mask: the Modbus map has 31 module blocks."""


def address_mask_problem(mask: int) -> str | None:
    """Why `mask` cannot split frame IDs into base and module address, or None."""
    if not 1 <= mask <= MAX_ADDRESS_MASK or mask & (mask + 1):
        return f"must be a low-bit mask 2**n - 1 within 0x1..{MAX_ADDRESS_MASK:#x} (got {mask:#x})"
    return None


def module_addresses(mask: int) -> range:
    """The valid module addresses under an address mask: 1..mask (0 is MasterCommand's broadcast), at most 31."""
    return range(1, min(mask, MAX_MODULES) + 1)


@dataclass(frozen=True, slots=True)
class GatewaySection:
    id: str = "stack1"
    """Used in MQTT topics, Home Assistant unique ids and the SunSpec serial."""
    name: str = "bms-gateway"
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.id or any(c in self.id for c in "/#+ "):
            yield "id", "must be non-empty and contain no '/', '#', '+' or spaces (it is used in MQTT topics)"


@dataclass(frozen=True, slots=True)
class ModuleBusSection:
    interface: str = "virtual"
    channel: str = "modules"
    bitrate: int = 500_000
    dbc: Path | None = None
    """None means the shipped dbc/module.dbc."""
    address_mask: int = SHIPPED_ADDRESS_MASK
    signal_map: Mapping[str, str] = field(default_factory=dict)
    """DBC signal name -> our signal name, for a user's own DBC."""
    commands: bool = True
    """Send MasterCommand frames to the modules."""
    command_period: float = 1.0

    @property
    def addresses(self) -> range:
        """The module addresses this bus can carry."""
        return module_addresses(self.address_mask)

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.bitrate <= 0:
            yield "bitrate", "must be positive"
        if problem := address_mask_problem(self.address_mask):
            yield "address_mask", problem
        if not self.command_period > 0:
            yield "command_period", "must be positive"


@dataclass(frozen=True, slots=True)
class InverterBusSection:
    enabled: bool = True
    interface: str = "virtual"
    channel: str = "inverter"
    bitrate: int = 500_000
    protocol: InverterProtocol = "pylontech"
    period: float = 1.0
    inverter_timeout: float = 30.0
    """Seconds without 0x305/0x307 (after one was seen) before `inverter_comm_lost`; 0 disables."""

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.bitrate <= 0:
            yield "bitrate", "must be positive"
        if not 0.05 <= self.period <= 10:
            yield "period", "must be within 0.05..10 s (inverters stop after about 3 s of silence)"
        if self.inverter_timeout < 0:
            yield "inverter_timeout", "must be 0 (off) or positive"


@dataclass(frozen=True, slots=True)
class CanSection:
    modules: ModuleBusSection = field(default_factory=ModuleBusSection)
    inverter: InverterBusSection = field(default_factory=InverterBusSection)

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


@dataclass(frozen=True, slots=True)
class BankSection:
    strings: tuple[tuple[int, ...], ...] = ()
    """Parallel strings of modules in series; empty means every module seen is its own parallel string."""
    max_modules: int = 16
    """The manufacturer-validated stack size; modules beyond it are not admitted."""
    min_online: int = 1
    module_timeout: float = 3.0
    frozen_counter_frames: int = 5
    cells_in_series: int = 16
    rated_charge_current: float = 100.0
    rated_discharge_current: float = 100.0
    capacity_ah: float = 100.0
    positions: Mapping[int, int] = field(default_factory=dict)
    """Module address -> stack position (1 = bottom); default is the address."""
    tick: float = 0.1
    admission_soc_window: float = 5.0
    admission_voltage_window: float = 0.5
    isolation_holdoff: float = 300.0
    offline_hold: float = 30.0
    """A string that leaves the bank keeps its last limits in force this long: it may still be connected."""
    cutoff_first_count: int = 3
    """A module that is the first to hit a cutoff this many times in a row is isolated."""
    firmware_mismatch: bool = True
    soh_spread: float = 10.0
    capacity_spread: float = 20.0
    cycle_spread: int = 500

    def problems(self) -> Iterator[tuple[str, str]]:
        seen: set[int] = set()
        for s, string in enumerate(self.strings):
            if not string:
                yield f"strings[{s}]", "a string needs at least one module"
            for address in string:
                if address in seen:
                    yield f"strings[{s}]", f"module address {address} appears twice"
                seen.add(address)
        if not 1 <= self.max_modules <= MAX_MODULES:
            yield "max_modules", f"must be within 1..{MAX_MODULES}"
        if len(seen) > self.max_modules:
            yield "strings", f"{len(seen)} modules configured but max_modules is {self.max_modules}"
        if not 1 <= self.min_online <= self.max_modules:
            yield "min_online", "must be within 1..max_modules"
        for key in (
            "module_timeout",
            "tick",
            "rated_charge_current",
            "rated_discharge_current",
            "capacity_ah",
        ):
            if not getattr(self, key) > 0:
                yield key, "must be positive"
        if not 1 <= self.cells_in_series <= 48:
            yield "cells_in_series", "must be within 1..48 (the protocol carries 48 cells)"
        if self.frozen_counter_frames < 2:
            yield "frozen_counter_frames", "must be at least 2"
        for address, position in self.positions.items():
            if position < 1:
                yield f"positions.{address}", "positions start at 1 (bottom)"


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """The derating tables (percent of the module's limit) and alarm thresholds of the master."""

    charge_cell_voltage: Table = ((3.40, 100.0), (3.45, 50.0), (3.50, 10.0), (3.55, 0.0))
    discharge_cell_voltage: Table = ((2.80, 0.0), (2.90, 10.0), (3.00, 50.0), (3.10, 100.0))
    charge_temperature: Table = ((0.0, 0.0), (5.0, 20.0), (15.0, 100.0), (40.0, 100.0), (55.0, 0.0))
    discharge_temperature: Table = ((-20.0, 0.0), (-10.0, 100.0), (50.0, 100.0), (60.0, 0.0))
    charge_soc: Table = ((95.0, 100.0), (99.0, 20.0))
    discharge_soc: Table = ((3.0, 20.0), (10.0, 100.0))
    fan_duty: Table = ((30.0, 0.0), (45.0, 100.0))

    charge_voltage_per_cell: float = 3.45
    """Per-cell charge target: CVL is cells x this, lowered while the highest cell is above it."""
    discharge_voltage_per_cell: float = 3.00
    slew_rate: float = 10.0
    """Rising current limits move at most this percent of the rated current per second."""
    share_threshold: float = 5.0
    """Measured current shares are used when |bank current| exceeds this percent of the rated current."""
    share_smoothing: float = 5.0
    """Time constant (s) of the measured-share filter."""
    force_charge_soc: float = 5.0
    force_charge_cell_voltage: float = 2.90
    full_charge_interval: float = 30.0
    """Days between full charges for balancing; 0 disables the request."""
    full_charge_soc: float = 99.0
    balance_target_threshold: float = 3.40
    """Above this max cell voltage while charging, MasterCommand carries the bank's lowest cell as target."""

    cell_over_voltage: tuple[float, float] = (3.55, 3.65)
    """(warning, protection) thresholds; likewise below."""
    cell_under_voltage: tuple[float, float] = (2.90, 2.50)
    pack_over_voltage: tuple[float, float] = (3.50, 3.60)
    """Per cell, on the average cell voltage of a module."""
    pack_under_voltage: tuple[float, float] = (2.95, 2.80)
    charge_over_temperature: tuple[float, float] = (50.0, 55.0)
    discharge_over_temperature: tuple[float, float] = (55.0, 60.0)
    charge_under_temperature: tuple[float, float] = (5.0, 0.0)
    discharge_under_temperature: tuple[float, float] = (-10.0, -20.0)
    over_current: tuple[float, float] = (110.0, 150.0)
    """A module's current over these percents of its rated current: warning, protection."""
    cell_imbalance: tuple[float, float] = (0.050, 0.150)
    """Cell spread in V: warning, and protection at rest."""
    rest_current: float = 2.0
    """Below this module current (A) a module is "at rest" for the imbalance protection."""
    heat_accumulation: float = 5.0
    sensor_mismatch: float = 5.0
    """Spread of the currents in one series string, percent of the rated current."""
    voltage_hysteresis: float = 0.05
    temperature_hysteresis: float = 3.0
    alarm_hold: float = 5.0
    """An alarm clears only after its condition has been gone this many seconds."""

    def problems(self) -> Iterator[tuple[str, str]]:
        for name, hint in typing.get_type_hints(LimitsSection).items():
            if hint == Table:
                yield from ((name, p) for p in _table_problems(getattr(self, name)))
        rising = ("cell_over_voltage", "pack_over_voltage", "charge_over_temperature")
        falling = ("cell_under_voltage", "pack_under_voltage", "charge_under_temperature")
        for key in (*rising, "discharge_over_temperature", "over_current", "cell_imbalance"):
            warn, prot = getattr(self, key)
            if warn > prot:
                yield key, "the warning threshold must not be above the protection threshold"
        for key in (*falling, "discharge_under_temperature"):
            warn, prot = getattr(self, key)
            if warn < prot:
                yield key, "the warning threshold must not be below the protection threshold"
        if not 2.0 <= self.charge_voltage_per_cell <= 3.65:
            yield "charge_voltage_per_cell", "must be within 2.0..3.65 V for LiFePO4"
        if not 2.0 <= self.discharge_voltage_per_cell < self.charge_voltage_per_cell:
            yield "discharge_voltage_per_cell", "must be within 2.0 V..charge_voltage_per_cell"
        for key in ("slew_rate", "share_smoothing", "alarm_hold"):
            if not getattr(self, key) > 0:
                yield key, "must be positive"
        if self.full_charge_interval < 0:
            yield "full_charge_interval", "must be 0 (off) or positive"


def _table_problems(table: Table) -> Iterator[str]:
    if not table:
        yield "needs at least one [x, percent] point"
    xs = [x for x, _ in table]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        yield "x values must be strictly increasing"
    if any(not 0.0 <= p <= 100.0 for _, p in table):
        yield "percent values must be within 0..100"


@dataclass(frozen=True, slots=True)
class ModbusSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5020
    unit_id: int = 1
    max_clients: int = 16

    def problems(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.port <= 65535:
            yield "port", "must be within 0..65535"
        if not 1 <= self.unit_id <= 247:
            yield "unit_id", "must be within 1..247"
        if self.max_clients < 1:
            yield "max_clients", "must be at least 1"


@dataclass(frozen=True, slots=True)
class TlsSection:
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip the broker's hostname check: only for testing."""

    def problems(self) -> Iterator[tuple[str, str]]:
        if (self.cert_file is None) != (self.key_file is None):
            yield "cert_file", "cert_file and key_file go together"


@dataclass(frozen=True, slots=True)
class MqttSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None
    tls: TlsSection = field(default_factory=TlsSection)
    client_id: str | None = None
    base_topic: str = "bms"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    interval: float = 5.0
    qos: int = 0
    commands: bool = False

    def problems(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.port <= 65535:
            yield "port", "must be within 0..65535"
        if self.qos not in (0, 1, 2):
            yield "qos", "must be 0, 1 or 2"
        if not self.interval > 0:
            yield "interval", "must be positive"
        if self.password_file is not None and self.username is None:
            yield "password_file", "needs mqtt.username"
        for key in ("base_topic", "discovery_prefix"):
            topic = getattr(self, key)
            if not topic or any(c in topic for c in "#+") or topic.startswith("/") or topic.endswith("/"):
                yield key, "must be a topic without wildcards or leading/trailing '/'"


@dataclass(frozen=True, slots=True)
class MetricsSection:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9108

    def problems(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.port <= 65535:
            yield "port", "must be within 0..65535"


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    can: CanSection = field(default_factory=CanSection)
    bank: BankSection = field(default_factory=BankSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    modbus: ModbusSection = field(default_factory=ModbusSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    source: Path | None = None
    """The file this was read from, if any (not a key)."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """Module addresses in [bank] must be ones the [can.modules] address mask can carry."""
        mask = self.can.modules.address_mask
        if address_mask_problem(mask):
            return  # reported under can.modules.address_mask; no address range to check against
        valid = module_addresses(mask)
        outside = f"is outside {valid[0]}..{valid[-1]} (can.modules.address_mask = {mask:#x})"
        for s, string in enumerate(self.bank.strings):
            for address in string:
                if address not in valid:
                    yield f"bank.strings[{s}]", f"module address {address} {outside}"
        for address in self.bank.positions:
            if address not in valid:
                yield f"bank.positions.{address}", f"module address {address} {outside}"


def load(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError with one line per problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: not valid TOML: {err}"]) from err
    return parse(raw, base=path.resolve().parent, source=path)


def parse(raw: Mapping[str, Any], *, base: Path | None = None, source: Path | None = None) -> Config:
    """Validate a TOML document (already parsed) into a Config; relative paths resolve against `base`."""
    problems: list[str] = []
    config = _build(Config, raw, "", _Context(base or Path.cwd(), problems), skip={"source"})
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, source=source)


def to_toml_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain TOML-able values (for `check-config` and support requests)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "source"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {name: _plain(v) for name, v in fields if v is not None}  # TOML has no null: unset keys are absent
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(slots=True)
class _Context:
    base: Path
    problems: list[str]

    def report(self, key: str, reason: str) -> None:
        self.problems.append(f"{key or '<top level>'}: {reason}")


class _Invalid(Exception):
    """A value failed conversion; the reason goes into the problem list under its key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


def _join(path: str, key: str) -> str:
    if key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}" if path else key


def _build(cls: type, raw: Any, path: str, ctx: _Context, skip: frozenset[str] | set[str] = frozenset()) -> Any:
    if not isinstance(raw, Mapping):
        ctx.report(path, f"must be a table, got {_describe(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            ctx.report(_join(path, key), f"unknown key{hint}")
    values: dict[str, Any] = {}
    for name in names:
        if name in raw:
            key = _join(path, name)
            try:
                values[name] = _convert(hints[name], raw[name], key, ctx)
            except _Invalid as err:
                ctx.report(err.key, str(err))
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as err:
        ctx.report(path, str(err))
        return cls()
    for key, reason in obj.problems():
        ctx.report(_join(path, key), reason)
    return obj


def _convert(hint: Any, value: Any, key: str, ctx: _Context) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, ctx)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key, ctx)
    if origin is Literal:
        if value not in args:
            raise _Invalid(key, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"must be true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"must be an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _Invalid(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"must be a string, got {_describe(value)}")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise _Invalid(key, f"must be a path string, got {_describe(value)}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else ctx.base / path
    if origin is tuple:
        if not isinstance(value, list):
            raise _Invalid(key, f"must be an array, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", ctx) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Invalid(key, f"must be an array of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]", ctx) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise _Invalid(key, f"must be a table, got {_describe(value)}")
        key_type, value_type = args
        out = {}
        for name, v in value.items():
            k = name
            if key_type is int:
                try:
                    k = int(name, 0)
                except ValueError:
                    ctx.report(f"{key}.{name}", "keys must be integers")
                    continue
            out[k] = _convert(value_type, v, f"{key}.{name}", ctx)
        return types.MappingProxyType(out)
    raise TypeError(f"unsupported config type {hint!r} at {key}")


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return kind.get(type(value), "a table" if isinstance(value, Mapping) else type(value).__name__) + (
        f" ({value!r})" if isinstance(value, bool | int | float | str) else ""
    )
