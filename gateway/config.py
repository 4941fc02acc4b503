"""One TOML file, validated into frozen dataclasses.

Every key has a default that suits the typical module of the protocol page (16 LFP cells, 100 Ah, 100 A), so an
empty file is a working config. Validation collects every problem in one pass, each line naming the key, so an
installer fixes a file in one go; unknown keys get a "did you mean" when one is close. Every number has a range
that makes physical sense, declared with its default (`within`) and checked in one place, so a typo such as
`tick = 1e-9` is refused at start instead of pinning a core.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from gateway.can import profiles
from gateway.can.addressing import KEYS, MAX_MODULES, Addressing, Scheme
from gateway.can.profiles import ModuleProfile, Poll
from gateway.errors import ConfigError

Table = tuple[tuple[float, float], ...]
"""A piecewise-linear table: (x, percent) points with x strictly increasing; flat beyond both ends."""

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
RtuMap = Literal["byd"]
"""Register maps served over Modbus RTU (`gateway.outputs.byd`: the BYD Battery-Box map the Fronius GEN24 reads)."""
InverterProtocol = Literal[
    "pylontech",
    "pylontech-1.3",
    "victron",
    "sma-lv",
    "sma",
    "deye-lv",
    "goodwe-lv",
    "growatt-lv",
    "pylon-hv",
    "sofar",
    "byd-hvs",
    "sma-hv",
    "sma-sbs",
    "solax",
    "foxess",
    "growatt-hv",
    "sungrow",
]
"""The profiles of gateway/outputs/inverter/table.py (`sma` is the old name of `sma-lv`); a test keeps them equal."""
ByteOrder = Literal["little", "big"]

SHIPPED_ADDRESS_MASK = 0x1F
"""The address field of the shipped module.dbc: the low 5 bits of the frame ID."""
ModuleProfileName = Literal["module", "pylon-lv-battery", "pylon-hv-battery", "jk-bms-can", "daly-can"]
"""The rows of gateway/can/profiles.py; a test keeps them equal."""
AddressScheme = Literal["mask", "field", "stride", "signal", "fixed"]


def module_addresses(mask: int) -> range:
    """The valid module addresses under an address mask: 1..mask (0 is MasterCommand's broadcast), at most 31."""
    return Addressing(mask=mask).addresses


T = typing.TypeVar("T")


@dataclass(frozen=True, slots=True)
class Range:
    """The values of a number key that make physical sense, both ends included."""

    low: float
    high: float
    unit: str = ""
    off: float | None = None
    """A value outside low..high that is accepted too and switches the feature off (0 for some intervals)."""
    why: str = ""

    @property
    def span(self) -> str:
        """`low..high`, as the README states it."""
        return f"{_number(self.low)}..{_number(self.high)}"

    def problem(self, value: float) -> str | None:
        """What is wrong with `value`, or None when it is in range."""
        if value == self.off or self.low <= value <= self.high:
            return None
        off = "" if self.off is None else f"{_number(self.off)} (off) or "
        unit = f" {self.unit}" if self.unit else ""
        why = f" ({self.why})" if self.why else ""
        return f"must be {off}within {self.span}{unit}{why}, got {_number(value)}"


def within(default: T, low: float, high: float, unit: str = "", *, off: float | None = None, why: str = "") -> T:
    """A field whose number (each element of an array, each x of a table) must lie in low..high."""
    return field(default=default, metadata={"range": Range(low, high, unit, off, why)})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e10 else f"{value:g}"


BITRATE = (5_000, 1_000_000, "bit/s")
"""Classic CAN: 1 Mbit/s is the fastest arbitration rate, 5 kbit/s the slowest any controller offers."""
CELL_VOLTAGE = (2.0, 3.65, "V")
"""A LiFePO4 cell's working window: targets and thresholds that act on charge and discharge."""
CELL_ALARM = (2.0, 4.0, "V")
"""Cell voltages an alarm or a derating point may sit at: past the working window, short of where a LiFePO4 cell
is destroyed."""
TEMPERATURE = (-40.0, 125.0, "degC")
"""What the modules' sensors can report."""
PERCENT = (0.0, 100.0, "%")


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
class PollSection:
    """A request frame a bus entry declares instead of its profile's polls."""

    id: int = within(0, 0, (1 << 29) - 1)
    data: tuple[int, ...] = within((), 0, 255)
    period: float = within(1.0, 0.05, 60.0, "s")
    extended: bool = False
    address_shift: int | None = within(None, 0, 28)
    """Sent to each module address of the bus, its address on the wire at this bit of `id`; unset: once."""

    def problems(self) -> Iterator[tuple[str, str]]:
        if len(self.data) > 8:
            yield "data", f"a classic CAN frame carries at most 8 bytes, got {len(self.data)}"
        if not self.extended and self.id > 0x7FF:
            yield "id", f"{self.id:#x} needs 29 bits: set extended = true"


@dataclass(frozen=True, slots=True)
class ModuleBusSection:
    """One module bus (`[[can.modules]]`): its port, its profile, and the profile's keys it overrides (unset: the
    profile's)."""

    interface: str = "virtual"
    channel: str = "modules"
    profile: ModuleProfileName = "module"
    bitrate: int | None = within(None, *BITRATE)
    dbc: Path | None = None
    addressing: AddressScheme | None = None
    """Unset: the scheme whose keys the entry sets (`address = 1` is `fixed`), else the profile's."""
    address_mask: int | None = None
    address_shift: int | None = None
    address_width: int | None = None
    address_stride: int | None = None
    address_signal: str | None = None
    address: int | None = None
    address_offset: int | None = None
    address_count: int | None = None
    signal_map: Mapping[str, str] = field(default_factory=dict)
    """DBC signal name -> our signal name, over the profile's map."""
    invert_current: bool = False
    """The BMS counts discharging as positive (ours: charging is positive): the gateway negates its current. Where
    the public sources disagree on a BMS's sign (JK, Daly), check it against the inverter's reading once."""
    polls: tuple[PollSection, ...] | None = None
    commands: bool | None = None
    """Send MasterCommand frames to the modules (unset: when the profile takes them)."""
    command_period: float = within(1.0, 0.1, 10.0, "s")
    where: str = field(default="can.modules", compare=False, metadata={"where": True})
    """The key this entry was read from (not a key): `can.modules` or `can.modules[1]`."""

    @property
    def row(self) -> ModuleProfile:
        return profiles.profile(self.profile)

    @property
    def scheme(self) -> Scheme:
        if self.addressing is not None:
            return Scheme(self.addressing)
        named = {scheme for scheme, keys in KEYS.items() for key in keys if getattr(self, key) is not None}
        return named.pop() if len(named) == 1 else self.row.addressing.scheme

    @property
    def address_plan(self) -> Addressing:
        """The addressing in force: the profile's, with the keys this entry sets (a scheme of its own starts from
        that scheme's defaults)."""
        scheme, own = self.scheme, self.row.addressing
        start = own if own.scheme is scheme else Addressing(scheme=scheme)
        keys: dict[str, Any] = {
            "mask": self.address_mask,
            "shift": self.address_shift,
            "width": self.address_width,
            "stride": self.address_stride,
            "signal": self.address_signal,
            "address": self.address,
            "offset": self.address_offset,
            "count": self.address_count,
        }
        return dataclasses.replace(start, **{k: v for k, v in keys.items() if v is not None})

    @property
    def addresses(self) -> range:
        """The module addresses this bus can carry."""
        return self.address_plan.addresses

    @property
    def rate(self) -> int:
        """The bitrate in force."""
        return self.row.bitrate if self.bitrate is None else self.bitrate

    @property
    def sends_commands(self) -> bool:
        return self.row.commands if self.commands is None else self.commands

    @property
    def poll_frames(self) -> tuple[Poll, ...]:
        """The request frames in force: the entry's own, else the profile's."""
        if self.polls is None:
            return self.row.polls
        return tuple(Poll(p.id, bytes(p.data), p.period, p.extended, p.address_shift) for p in self.polls)

    @property
    def signals(self) -> Mapping[str, str]:
        """The signal map in force: the profile's, with the entry's entries over it."""
        return {**self.row.signal_map, **self.signal_map}

    def problems(self) -> Iterator[tuple[str, str]]:
        plan = self.address_plan
        own = self.row.addressing
        if plan.scheme is Scheme.FIXED and self.address is None:
            why = "addressing = 'fixed'" if own.scheme is not Scheme.FIXED else f"the {self.profile} profile"
            yield "address", f"{why} carries one battery per bus: set its module address"
        else:
            yield from plan.problems()
        wanted = set(KEYS[plan.scheme]) | (
            {"address_offset", "address_count"} if plan.scheme is not Scheme.FIXED else set()
        )
        for scheme, keys in KEYS.items():
            for key in keys:
                if key not in wanted and getattr(self, key) is not None:
                    yield key, f"belongs to addressing = '{scheme}', this bus has '{plan.scheme}'"
        for key in ("address_offset", "address_count"):
            if key not in wanted and getattr(self, key) is not None:
                yield key, "does not apply to addressing = 'fixed'"


@dataclass(frozen=True, slots=True)
class InverterBusSection:
    enabled: bool = True
    interface: str = "virtual"
    channel: str = "inverter"
    bitrate: int = within(500_000, *BITRATE)
    protocol: InverterProtocol = "pylontech"
    period: float = within(1.0, 0.05, 10.0, "s", why="inverters stop after about 3 s of silence")
    inverter_timeout: float | None = within(None, 1.0, 3600.0, "s", off=0.0)
    """Seconds without a frame from the inverter (after one was seen) before `inverter_comm_lost`; 0 disables;
    unset: the profile's own timeout."""
    byte_order: ByteOrder | None = None
    """pylon-hv: the byte order of its 16-bit fields (unset: the profile's default, little)."""
    current_offset: bool | None = None
    """pylon-hv: currents with the 3000 A offset (unset: the profile's default, true)."""
    id_suffix: int | None = within(None, 0, 15)
    """pylon-hv: added to every frame ID (1 for Sofar: 0x4211, ...)."""
    battery_id: int | None = within(None, 0, 15)
    """sofar: the pack ID, in bits 12-15 of every frame ID and byte 0 of the queries it answers."""
    deye_soc_workaround: bool | None = None
    """deye-lv: SOC 100 % while charging is forbidden, 0 % while discharging is (off unless set true)."""

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


@dataclass(frozen=True, slots=True)
class CanSection:
    modules: tuple[ModuleBusSection, ...] = (ModuleBusSection(),)
    """`[[can.modules]]`, one entry per module bus; a single `[can.modules]` table is a list of one."""
    inverter: InverterBusSection = field(default_factory=InverterBusSection)

    @property
    def addresses(self) -> range:
        """From the lowest to the highest module address any bus can carry."""
        every = [a for bus in self.modules for a in bus.addresses] or [1]
        return range(min(every), max(every) + 1)

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.modules:
            yield "modules", "needs at least one module bus"
        buses = [(bus, bus.addresses) for bus in self.modules if not any(bus.problems())]
        for i, (bus, mine) in enumerate(buses):
            for other, theirs in buses[:i]:
                if bus.channel == other.channel and bus.interface == other.interface:
                    yield bus.where.removeprefix("can."), f"uses the channel of {other.where} ({bus.channel!r})"
                shared = sorted(set(mine) & set(theirs))
                if shared:
                    yield (
                        bus.where.removeprefix("can."),
                        f"module addresses {_span(mine)} overlap {other.where}'s {_span(theirs)} (both carry "
                        f"{_span(shared)}): addresses must be unique across buses; narrow them with address_count, "
                        "address_offset or address",
                    )


def _span(addresses: Sequence[int]) -> str:
    return str(addresses[0]) if len(addresses) == 1 else f"{addresses[0]}..{addresses[-1]}"


@dataclass(frozen=True, slots=True)
class BankSection:
    strings: tuple[tuple[int, ...], ...] = ()
    """Parallel strings of modules in series; empty means every module seen is its own parallel string."""
    max_modules: int = within(16, 1, MAX_MODULES)
    """The manufacturer-validated stack size; modules beyond it are not admitted."""
    min_online: int = 1
    module_timeout: float = within(3.0, 1.0, 60.0, "s", why="the slowest required message comes every 1 s")
    frozen_counter_frames: int = within(5, 2, 100)
    cells_in_series: int = within(16, 1, 48, why="the protocol carries 48 cells")
    rated_charge_current: float = within(100.0, 1.0, 1000.0, "A")
    rated_discharge_current: float = within(100.0, 1.0, 1000.0, "A")
    capacity_ah: float = within(100.0, 1.0, 6553.5, "Ah", why="what the module protocol can carry")
    positions: Mapping[int, int] = field(default_factory=dict, metadata={"range": Range(1, MAX_MODULES)})
    """Module address -> stack position (1 = bottom); default is the address."""
    tick: float = within(0.1, 0.01, 1.0, "s")
    admission_soc_window: float = within(5.0, 0.5, 100.0, "%")
    admission_voltage_window: float = within(0.5, 0.05, 100.0, "V")
    isolation_holdoff: float = within(300.0, 0.0, 86_400.0, "s")
    offline_hold: float = within(30.0, 0.0, 3600.0, "s")
    """A string that leaves the bank keeps its last limits in force this long: it may still be connected."""
    cutoff_first_count: int = within(3, 1, 1_000_000)
    """A module that is the first to hit a cutoff this many times in a row is isolated."""
    firmware_mismatch: bool = True
    soh_spread: float = within(10.0, *PERCENT)
    capacity_spread: float = within(20.0, *PERCENT)
    cycle_spread: int = within(500, 0, 100_000, "cycles")

    def problems(self) -> Iterator[tuple[str, str]]:
        seen: set[int] = set()
        for s, string in enumerate(self.strings):
            if not string:
                yield f"strings[{s}]", "a string needs at least one module"
            for address in string:
                if address in seen:
                    yield f"strings[{s}]", f"module address {address} appears twice"
                seen.add(address)
        if len(seen) > self.max_modules:
            yield "strings", f"{len(seen)} modules configured but max_modules is {self.max_modules}"
        if not 1 <= self.min_online <= self.max_modules:
            yield "min_online", "must be within 1..max_modules"


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """The derating tables (percent of the module's limit) and alarm thresholds of the master.

    A table's range is that of its x values; its percent values are always 0..100.
    """

    charge_cell_voltage: Table = within(((3.40, 100.0), (3.45, 50.0), (3.50, 10.0), (3.55, 0.0)), *CELL_ALARM)
    discharge_cell_voltage: Table = within(((2.80, 0.0), (2.90, 10.0), (3.00, 50.0), (3.10, 100.0)), *CELL_ALARM)
    charge_temperature: Table = within(
        ((0.0, 0.0), (5.0, 20.0), (15.0, 100.0), (40.0, 100.0), (55.0, 0.0)), *TEMPERATURE
    )
    discharge_temperature: Table = within(((-20.0, 0.0), (-10.0, 100.0), (50.0, 100.0), (60.0, 0.0)), *TEMPERATURE)
    charge_soc: Table = within(((95.0, 100.0), (99.0, 20.0)), *PERCENT)
    discharge_soc: Table = within(((3.0, 20.0), (10.0, 100.0)), *PERCENT)
    fan_duty: Table = within(((30.0, 0.0), (45.0, 100.0)), *TEMPERATURE)

    charge_voltage_per_cell: float = within(3.45, *CELL_VOLTAGE)
    """Per-cell charge target: CVL is cells x this, lowered while the highest cell is above it."""
    discharge_voltage_per_cell: float = within(3.00, *CELL_VOLTAGE)
    slew_rate: float = within(10.0, 0.1, 10_000.0, "%/s")
    """Rising current limits move at most this percent of the rated current per second."""
    share_threshold: float = within(5.0, *PERCENT)
    """Measured current shares are used when |bank current| exceeds this percent of the rated current."""
    share_smoothing: float = within(5.0, 0.1, 600.0, "s")
    """Time constant (s) of the measured-share filter."""
    force_charge_soc: float = within(5.0, *PERCENT)
    force_charge_cell_voltage: float = within(2.90, *CELL_VOLTAGE)
    full_charge_interval: float = within(30.0, 1.0, 365.0, "days", off=0.0)
    """Days between full charges for balancing; 0 disables the request."""
    full_charge_soc: float = within(99.0, 50.0, 100.0, "%")
    balance_target_threshold: float = within(3.40, *CELL_VOLTAGE)
    """Above this max cell voltage while charging, MasterCommand carries the bank's lowest cell as target."""

    cell_over_voltage: tuple[float, float] = within((3.55, 3.65), *CELL_ALARM)
    """(warning, protection) thresholds; likewise below."""
    cell_under_voltage: tuple[float, float] = within((2.90, 2.50), *CELL_ALARM)
    pack_over_voltage: tuple[float, float] = within((3.50, 3.60), *CELL_ALARM)
    """Per cell, on the average cell voltage of a module."""
    pack_under_voltage: tuple[float, float] = within((2.95, 2.80), *CELL_ALARM)
    charge_over_temperature: tuple[float, float] = within((50.0, 55.0), *TEMPERATURE)
    discharge_over_temperature: tuple[float, float] = within((55.0, 60.0), *TEMPERATURE)
    charge_under_temperature: tuple[float, float] = within((5.0, 0.0), *TEMPERATURE)
    discharge_under_temperature: tuple[float, float] = within((-10.0, -20.0), *TEMPERATURE)
    over_current: tuple[float, float] = within((110.0, 150.0), 50.0, 1000.0, "%")
    """A module's current over these percents of its rated current: warning, protection."""
    cell_imbalance: tuple[float, float] = within((0.050, 0.150), 0.005, 1.0, "V")
    """Cell spread in V: warning, and protection at rest."""
    rest_current: float = within(2.0, 0.0, 1000.0, "A")
    """Below this module current (A) a module is "at rest" for the imbalance protection."""
    heat_accumulation: float = within(5.0, 0.5, 50.0, "degC")
    sensor_mismatch: float = within(5.0, *PERCENT)
    """Spread of the currents in one series string, percent of the rated current."""
    voltage_hysteresis: float = within(0.05, 0.0, 0.5, "V")
    temperature_hysteresis: float = within(3.0, 0.0, 20.0, "degC")
    alarm_hold: float = within(5.0, 0.1, 3600.0, "s")
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
        if not self.discharge_voltage_per_cell < self.charge_voltage_per_cell:
            yield "discharge_voltage_per_cell", "must be below charge_voltage_per_cell"


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
    port: int = within(5020, 0, 65535)
    unit_id: int = within(1, 1, 247)
    max_clients: int = within(16, 1, 256)
    """Connections at once; a new one beyond it closes the one idle the longest."""
    idle_timeout: float = within(60.0, 1.0, 3600.0, "s")
    """Seconds a connection may send nothing and read nothing before it is closed."""

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


@dataclass(frozen=True, slots=True)
class ModbusRtuSection:
    """A register map on a serial line, for an inverter that reads its battery over Modbus RTU (8N1)."""

    enabled: bool = False
    port: str | None = None
    """The serial device, e.g. /dev/ttyUSB0 (or a pyserial URL); no default: required when enabled."""
    baudrate: int = within(9600, 1200, 115_200, "bit/s", why="the RS485 rates of Modbus RTU; the GEN24 uses 9600")
    unit_id: int = within(21, 1, 247)
    map: RtuMap = "byd"
    primo: bool = False
    """A Fronius Primo GEN24 (single phase): the map's max voltage is capped at 450.0 V."""
    heartbeat_timeout: float = within(300.0, 120.0, 3600.0, "s", off=0.0, why="the GEN24 writes it every 60 s")
    """Seconds without a new heartbeat (after one was seen) before `inverter_comm_lost`; 0 disables."""

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.enabled and not self.port:
            yield "port", "needs the serial device when enabled, e.g. /dev/ttyUSB0"


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
    port: int = within(1883, 1, 65535)
    username: str | None = None
    password_file: Path | None = None
    tls: TlsSection = field(default_factory=TlsSection)
    client_id: str | None = None
    base_topic: str = "bms"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    interval: float = within(5.0, 0.1, 3600.0, "s")
    qos: int = within(0, 0, 2)
    commands: bool = False
    configuration_url: str | None = None
    """The gateway's web dashboard, linked from the bank's Home Assistant device; unset: no link."""

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.password_file is not None and self.username is None:
            yield "password_file", "needs mqtt.username"
        if self.configuration_url is not None and not _is_configuration_url(self.configuration_url):
            yield "configuration_url", "must be an http://, https:// or homeassistant:// URL with a host"
        for key in ("base_topic", "discovery_prefix"):
            topic = getattr(self, key)
            if not topic or any(c in topic for c in "#+") or topic.startswith("/") or topic.endswith("/"):
                yield key, "must be a topic without wildcards or leading/trailing '/'"


def _is_configuration_url(url: str) -> bool:
    """What Home Assistant accepts as a device's configuration_url (else it refuses the whole discovery config)."""
    parts = urlsplit(url)
    return parts.scheme in {"http", "https", "homeassistant"} and bool(parts.netloc) and url.isprintable()


@dataclass(frozen=True, slots=True)
class MetricsSection:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = within(9108, 0, 65535)

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


RUN_HISTORY = Path("/var/lib/bms-gateway/history.sqlite")
"""Where `bms-gateway run` keeps its history when `[history] path` is not set: the systemd unit's StateDirectory."""


@dataclass(frozen=True, slots=True)
class HistorySection:
    enabled: bool = True
    path: Path | None = None
    """None: the command's default (`RUN_HISTORY` for `run`, a file in a temp directory for `demo`); a Gateway
    built without a path writes no history."""
    retention_days: int = within(365, 1, 36_500, "days")
    """Events older than this are deleted (once a day); lifetime counters and daily samples are kept."""

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


@dataclass(frozen=True, slots=True)
class WebSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    """Loopback by default: an installer opens the dashboard to the LAN explicitly (e.g. "0.0.0.0")."""
    port: int = within(8080, 0, 65535)
    token_file: Path | None = None
    """The operator token (readmit, full charge); without it, and without a systemd credential `web.token`,
    the dashboard offers no action."""
    allowed_hosts: tuple[str, ...] = ()
    """Names a browser may reach the dashboard by, beside IP addresses, localhost and this machine's hostname
    (`gateway.outputs.web.server.HostCheck`: the defence against DNS rebinding)."""

    def problems(self) -> Iterator[tuple[str, str]]:
        for i, name in enumerate(self.allowed_hosts):
            if not _HOST_NAME.fullmatch(name) or len(name) > 253:
                yield (
                    f"allowed_hosts[{i}]",
                    f"must be a host name (letters, digits, '-' and '.'; no port, scheme or wildcard; IP addresses "
                    f"are always allowed), got {name!r}",
                )


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
"""A DNS name as a browser sends it in Host: labels of letters, digits and inner hyphens."""


@dataclass(frozen=True, slots=True)
class SparkplugSection:
    """A Sparkplug B edge node (`gateway.outputs.sparkplug`), beside the [mqtt] topics or instead of them.

    The broker is [mqtt]'s (host, port, credentials and TLS) unless `host` is set: then `port`, `username`,
    `password_file` and [sparkplug.tls] say how to reach a broker of its own.
    """

    enabled: bool = False
    group_id: str = "bms"
    edge_node_id: str | None = None
    """Default: [gateway] id."""
    primary_host_id: str | None = None
    """A Sparkplug host application to wait for (its STATE) before the births; unset: birth at once."""
    interval: float = within(1.0, 0.1, 3600.0, "s")
    """Changed values are gathered this long into one NDATA/DDATA; alarms, flags and module states go at once."""
    deadband: float = within(1.0, 0.0, 1000.0, "x resolution")
    """A number is reported when it moved by this many steps of its field's resolution (0: any change)."""
    client_id: str | None = None
    """Default: bms-gateway-<group_id>-<edge_node_id>."""
    host: str | None = None
    port: int = within(1883, 1, 65535)
    username: str | None = None
    password_file: Path | None = None
    tls: TlsSection = field(default_factory=TlsSection)

    def problems(self) -> Iterator[tuple[str, str]]:
        for key in ("group_id", "edge_node_id", "primary_host_id"):
            value = getattr(self, key)
            if value is not None and (not value or any(c in value for c in "/#+")):
                yield key, "must be non-empty and contain no '/', '#' or '+' (it is a Sparkplug topic element)"
        if self.host is None and (self.username is not None or self.password_file is not None or self.tls.enabled):
            yield "host", "username, password_file and [sparkplug.tls] are for a broker of its own: set host too"
        if self.password_file is not None and self.username is None:
            yield "password_file", "needs sparkplug.username"


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    can: CanSection = field(default_factory=CanSection)
    bank: BankSection = field(default_factory=BankSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    modbus: ModbusSection = field(default_factory=ModbusSection)
    modbus_rtu: ModbusRtuSection = field(default_factory=ModbusRtuSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    web: WebSection = field(default_factory=WebSection)
    history: HistorySection = field(default_factory=HistorySection)
    sparkplug: SparkplugSection = field(default_factory=SparkplugSection)
    source: Path | None = None
    """The file this was read from, if any (not a key)."""
    keys: frozenset[str] = field(default=frozenset(), compare=False)
    """The dotted keys the file sets, e.g. "bank.rated_charge_current" (not a key): a reload that loses some is a
    file caught half-written."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """Module addresses in [bank] must be ones a module bus can carry."""
        buses = [bus for bus in self.can.modules if not any(bus.problems())]
        if len(buses) < len(self.can.modules):
            return  # reported under the bus entry; no address range to check against
        valid = {a for bus in buses for a in bus.addresses}
        outside = "is outside " + "; ".join(f"{_span(bus.addresses)} ({bus.where})" for bus in buses)
        for s, string in enumerate(self.bank.strings):
            for address in string:
                if address not in valid:
                    yield f"bank.strings[{s}]", f"module address {address} {outside}"
        for address in self.bank.positions:
            if address not in valid:
                yield f"bank.positions.{address}", f"module address {address} {outside}"


def with_history_default(config: Config, path: Path) -> Config:
    """`config` with `[history] path` set to `path` where the file leaves it unset (a command's default)."""
    if config.history.path is not None:
        return config
    return dataclasses.replace(config, history=dataclasses.replace(config.history, path=path))


def load(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError with one line per problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: not valid TOML: {err}"]) from err
    except RecursionError as err:
        raise ConfigError([f"{path}: not valid TOML: arrays or tables nested too deeply"]) from err
    return parse(raw, base=path.resolve().parent, source=path)


def parse(raw: Mapping[str, Any], *, base: Path | None = None, source: Path | None = None) -> Config:
    """Validate a TOML document (already parsed) into a Config; relative paths resolve against `base`."""
    problems: list[str] = []
    config: Config = _build(Config, raw, "", _Context(base or Path.cwd(), problems), skip=NOT_KEYS)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, source=source, keys=frozenset(key for key, _ in _dotted(raw)))


NOT_KEYS = frozenset({"source", "keys"})
"""Fields of `Config` that say where it came from, not what it sets."""


def _dotted(raw: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every value in a TOML document (tables are walked, arrays are values)."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _dotted(value, f"{path}.")
        else:
            yield path, value


def to_toml_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain TOML-able values (for `check-config` and support requests)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name not in NOT_KEYS}


def differences(old: Config, new: Config) -> list[str]:
    """`key: old -> new` for every dotted key whose effective value differs (a reload's "what changed")."""
    before, after = dict(_dotted(to_toml_dict(old))), dict(_dotted(to_toml_dict(new)))
    return [
        f"{key}: {_shown(before.get(key))} -> {_shown(after.get(key))}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if "where" not in f.metadata)
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
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    names = [f.name for f in fields if "where" not in f.metadata]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            ctx.report(_join(path, key), f"unknown key{hint}")
    values: dict[str, Any] = {f.name: path for f in fields if "where" in f.metadata}
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
    for key, reason in itertools.chain(_range_problems(obj), obj.problems()):
        ctx.report(_join(path, key), reason)
    return obj


def _range_problems(obj: Any) -> Iterator[tuple[str, str]]:
    """The first number out of its range in each field that has one (see `within`)."""
    for f in dataclasses.fields(obj):
        limits = f.metadata.get("range")
        if limits is None:
            continue
        for where, what, number in _numbers(getattr(obj, f.name)):
            if number is None:
                continue  # unset: the default of whatever reads it
            if problem := limits.problem(number):
                yield f.name + where, what + problem
                break


def _numbers(value: Any) -> Iterator[tuple[str, str, float]]:
    """(where, what, number) for each number a field's range applies to: a table's x values, an array's elements,
    a mapping's values, or the number itself."""
    if isinstance(value, Mapping):
        for key, number in value.items():
            yield f".{key}", "", number
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            if isinstance(item, tuple):
                yield f"[{i}]", "x ", item[0]
            else:
                yield f"[{i}]", "", item
    else:
        yield "", "", value


def _convert(hint: Any, value: Any, key: str, ctx: _Context) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
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
        return _text(value, key)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise _Invalid(key, f"must be a path string, got {_describe(value)}")
        path = Path(_text(value, key)).expanduser()
        return path if path.is_absolute() else ctx.base / path
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        if isinstance(value, Mapping):  # `[can.modules]`: a list of one, under the table's own key
            return (_build(typing.cast("type", args[0]), value, key, ctx),)
        if not isinstance(value, list):
            raise _Invalid(key, f"must be a table or an array of tables, got {_describe(value)}")
        return tuple(_build(typing.cast("type", args[0]), v, f"{key}[{i}]", ctx) for i, v in enumerate(value))
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: str, key: str) -> str:
    """`value`, unless it holds a control character: names, topics and paths never do (MQTT forbids NUL, the
    OS refuses it in a path), and one pasted in by accident is invisible in the file."""
    if match := _CONTROL.search(value):
        raise _Invalid(key, f"must not contain control characters, got {match.group()!r} at position {match.start()}")
    return value


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return kind.get(type(value), "a table" if isinstance(value, Mapping) else type(value).__name__) + (
        f" ({value!r})" if isinstance(value, bool | int | float | str) else ""
    )
