"""The BYD Battery-Box Premium HV register map the Fronius GEN24 reads over Modbus RTU: a pure function of the
snapshot, laid out in one table.

The GEN24 (Primo and Symo) reads its battery over RS485 as a Modbus RTU client: 9600 8N1, server id 21, function
3 to read and 6 or 16 to write. It reads identity strings, ratings and live values, and writes a block of its own
at 400..419, in which it toggles register 401 between 0x00FF and 0xFF00 every 60 s: its heartbeat.

`ROWS` is the map: every register the gateway computes, with its address (0-based, as on the wire), its type, scale,
rounding and how its value follows from the snapshot and the config's `Nameplate`. `image` evaluates the table,
`markdown` documents it (docs/modbus.md and README.md, checked by a test); nothing else knows an address. `BLOCKS`
says which addresses exist and which the inverter may write. `Heartbeat` turns the writes to 401 into what the
master reads of the inverter. The serial edge (`gateway.outputs.modbus_rtu`) only moves bytes.

Sources. Three agree on every address and scale used here: a capture of a real BYD HVM 11 kWh on a GEN24
Symo (dalathegreat/byd_battery: its README and spreadsheet list the blocks the GEN24 reads and the write to 401), and
two independent emulations used with real GEN24s, dalathegreat/Battery-Emulator (Software/src/inverter/BYD-MODBUS.cpp)
and a C++ `byd::BatteryModel` built from pelle8's register notes. The capture and the notes number registers from 1:
subtract 1. They differ in the firmware string (3.16 in the capture and the notes, 3.26 in Battery-Emulator; real
batteries report 3.18 or 3.20 to a GEN24, which accepts them all), in the first value of 401 (0 or 0xFF00), in the
power ratings (a real 11 kWh HVM says 10240 W and 13312 W, the emulations 40960 W and 53248 W) and in what they
answer outside the blocks (zeros below 30000, or exception 02). The map takes Battery-Emulator's values and caps
(57960 Wh, 30000 W, 450.0 V for a Primo) and the capture's blocks.
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from gateway.config import Config
from gateway.master.model import BankSnapshot, Extreme, InverterInfo, Level
from gateway.outputs import generated

NOMINAL_CELL_VOLTAGE = 3.2
"""V: a LiFePO4 cell's nominal voltage; energy = Ah x cells in series x this."""
MAX_ENERGY = 57_960.0
"""Wh: the largest capacity the GEN24 accepts from a BYD battery (Battery-Emulator caps 202, 304 and 305 at it)."""
MAX_POWER = 40_960
"""W: the rated power at 203 and 204 in both emulations (the captured 11 kWh HVM says 10240)."""
POWER_CAP = 30_000.0
"""W: the largest charge or discharge power limit the map reports (Battery-Emulator caps 306 and 307 at it)."""
PRIMO_MAX_VOLTAGE = 450.0
"""V: the max voltage a Primo GEN24 takes without a constant warning (Battery-Emulator; a Symo takes more)."""
SOC_FLOOR = 1.0
"""%: the SOC never reads below this (Battery-Emulator: "to avoid overdischarge")."""
IDLE_CURRENT = 0.5
"""A: a bank current within +-this reads as idle in the mode register."""
HEARTBEAT = 401
"""The register the GEN24 toggles (0x00FF / 0xFF00) every 60 s."""
INVERTER_NAME = "GEN24"
"""The inverter's name in the snapshot once its heartbeat is heard."""


class Status(enum.IntEnum):
    """Register 300, the battery's system status (both emulations)."""

    STANDBY = 0
    INACTIVE = 1
    DARKSTART = 2
    ACTIVE = 3
    FAULT = 4
    UPDATING = 5


class Mode(enum.IntEnum):
    """Register 302: bit 7 set in normal operation, bit 0 charging, bit 1 discharging."""

    IDLE = 128
    CHARGING = 129
    DISCHARGING = 130


@dataclass(frozen=True, slots=True)
class Nameplate:
    """What the map says that no snapshot changes, from the config."""

    serial: str
    nominal_voltage: float
    """V of one string at NOMINAL_CELL_VOLTAGE: `bank.cells_in_series` x modules in series."""
    capacity_wh: float
    """Wh the configured bank holds (`bank.capacity_ah` per string), for the capacity before any module reports."""
    max_voltage: float
    """V: cells in series x the cell over-voltage protection, capped at PRIMO_MAX_VOLTAGE for a Primo GEN24."""
    min_voltage: float
    """V: cells in series x the cell under-voltage protection."""


def nameplate(config: Config) -> Nameplate:
    """The BYD battery's absolute voltage window is that of its cells: a real one tells a GEN24 3.65 V and 2.50 V
    per cell (467.2 V and 320 V for 128 cells, ioBroker.fronius issue 348; 233.6 V and 160.0 V for 64 in the capture).
    Not CVL and DVL: above the max the GEN24 forces a discharge and below the min it stops the battery, while the
    master pulls CVL down to the bank's voltage to balance or to stop a charge. The power limits carry the master's
    derating."""
    bank, limits = config.bank, config.limits
    cells = bank.cells_in_series * max((len(s) for s in bank.strings), default=1)
    nominal = cells * NOMINAL_CELL_VOLTAGE
    max_voltage = cells * limits.cell_over_voltage[1]
    return Nameplate(
        serial=config.gateway.id,
        nominal_voltage=nominal,
        capacity_wh=bank.capacity_ah * max(len(bank.strings), 1) * nominal,
        max_voltage=min(max_voltage, PRIMO_MAX_VOLTAGE) if config.modbus_rtu.primo else max_voltage,
        min_voltage=cells * limits.cell_under_voltage[1],
    )


# -- what the rows compute ------------------------------------------------------------------------------------------


def status(s: BankSnapshot) -> Status:
    """ACTIVE while the master vouches for the bank and measures its voltage: its modules are admitted and connected,
    the DC bus is live. Otherwise FAULT if a protection is active, else STANDBY (starting, no module yet): a GEN24
    that sees ACTIVE on a dead bus logs an error and restarts (Battery-Emulator pull request 2666)."""
    if s.valid and s.voltage is not None and s.voltage > 0.0:
        return Status.ACTIVE
    return Status.FAULT if s.worst_level() is Level.PROTECTION else Status.STANDBY


def mode(s: BankSnapshot) -> Mode:
    """Charging or discharging while that much current flows that way and the limit allows it, else idle."""
    if status(s) is Status.ACTIVE and s.current is not None:
        if s.current > IDLE_CURRENT and s.flags.charge_enable:
            return Mode.CHARGING
        if s.current < -IDLE_CURRENT and s.flags.discharge_enable:
            return Mode.DISCHARGING
    return Mode.IDLE


def _watts(s: BankSnapshot, amps: float, enabled: bool) -> float:
    """A current limit as power at the bank's voltage, capped; 0 unless the bank is active and the limit enabled."""
    if status(s) is not Status.ACTIVE or not enabled or s.voltage is None:
        return 0.0
    return min(max(amps, 0.0) * s.voltage, POWER_CAP)


def _energy(ah: float | None, plate: Nameplate) -> float | None:
    return None if ah is None else min(ah * plate.nominal_voltage, MAX_ENERGY)


def _capacity(s: BankSnapshot, plate: Nameplate) -> float | None:
    return _energy(s.full_ah, plate) if s.full_ah else min(plate.capacity_wh, MAX_ENERGY)


def _power(s: BankSnapshot) -> float | None:
    """W, charge negative (the BYD sign; the snapshot's current is positive when charging)."""
    return None if s.power is None else -s.power


def _when_active(s: BankSnapshot, value: float | None) -> float | None:
    return value if status(s) is Status.ACTIVE else 0.0


def _extreme(extreme: Extreme | None) -> float | None:
    return None if extreme is None else extreme.value


# -- the table ------------------------------------------------------------------------------------------------------

Kind = Literal["u16", "s16", "u32", "text"]
Rounding = Literal["nearest", "down", "up"]
_SIZES: dict[Kind, int] = {"u16": 1, "s16": 1, "u32": 2}


@dataclass(frozen=True, slots=True)
class Row:
    """One value of the map: where it is, how it is encoded, and how it follows from the snapshot."""

    address: int
    name: str
    kind: Kind
    how: str
    """How the value is computed, for the docs."""
    value: Callable[[BankSnapshot, Nameplate], float | str | None]
    scale: float = 1.0
    unit: str = ""
    rounding: Rounding = "nearest"
    """Limits round so as never to widen themselves: power limits and the max voltage down, the min voltage up."""
    length: int = 0
    """Registers of a text row (2 characters each, zero-padded); numbers take their kind's size."""

    @property
    def size(self) -> int:
        return self.length if self.kind == "text" else _SIZES[self.kind]

    def encode(self, s: BankSnapshot, plate: Nameplate) -> tuple[int, ...]:
        value = self.value(s, plate)
        if self.kind == "text":
            raw = str(value or "").encode("ascii", "replace")[: 2 * self.length].ljust(2 * self.length, b"\0")
            return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
        if value is None or not math.isfinite(float(value)):
            value = 0.0  # not known (or not a number): the map has no "not available"
        number = _rounded(float(value) / self.scale, self.rounding)
        if self.kind == "u32":
            number = min(max(number, 0), 0xFFFFFFFF)
            return (number >> 16, number & 0xFFFF)
        low, high = (-0x8000, 0x7FFF) if self.kind == "s16" else (0, 0xFFFF)
        return (min(max(number, low), high) & 0xFFFF,)


def _rounded(x: float, rounding: Rounding) -> int:
    if rounding == "down":
        return math.floor(x + 1e-9)  # 441.6 / 0.1 is 4415.999...: a decimal that is exact reads as itself
    if rounding == "up":
        return math.ceil(x - 1e-9)
    return round(x)


def _const(n: int) -> Callable[[BankSnapshot, Nameplate], float]:
    return lambda _s, _p: n


def _text(text: str) -> Callable[[BankSnapshot, Nameplate], str]:
    return lambda _s, _p: text


def _zero(address: int, name: str = "Always 0") -> Row:
    return Row(address, name, "u16", "0", _const(0))


ROWS: tuple[Row, ...] = (
    # identity
    Row(100, "Marker", "text", '"SI"', _text("SI"), length=1),
    Row(101, "Marker", "u16", "1", _const(1)),
    Row(102, "Manufacturer", "text", '"BYD"', _text("BYD"), length=16),
    Row(118, "Model", "text", '"BYD Battery-Box Premium HV"', _text("BYD Battery-Box Premium HV"), length=16),
    Row(134, "Hardware version", "text", '"5.0"', _text("5.0"), length=8),
    Row(142, "Firmware version", "text", '"3.26"', _text("3.26"), length=8),
    Row(150, "Serial number", "text", "`gateway.id`", lambda _s, p: p.serial, length=16),
    Row(166, "Always 1", "u16", "1", _const(1)),
    _zero(167),
    # ratings
    _zero(200),
    _zero(201),
    Row(
        202,
        "Capacity",
        "u16",
        f"`full_ah` x nominal string voltage (cells x {NOMINAL_CELL_VOLTAGE} V), capped at {MAX_ENERGY:.0f} Wh; "
        "before any module reports, the configured bank",
        _capacity,
        unit="Wh",
    ),
    Row(203, "Max power", "u16", str(MAX_POWER), _const(MAX_POWER), unit="W"),
    Row(
        204,
        "Max power",
        "u16",
        f"{MAX_POWER}; the GEN24 enforces the lower of 203 and 204",
        _const(MAX_POWER),
        unit="W",
    ),
    Row(
        205,
        "Max voltage",
        "u16",
        "cells in series x `limits.cell_over_voltage` protection (3.65 V), rounded down; capped at "
        f"{PRIMO_MAX_VOLTAGE} V with `primo = true`. Above it the GEN24 forces a discharge",
        lambda _s, p: p.max_voltage,
        scale=0.1,
        unit="V",
        rounding="down",
    ),
    Row(
        206,
        "Min voltage",
        "u16",
        "cells in series x `limits.cell_under_voltage` protection (2.50 V), rounded up. Below it the GEN24 stops "
        "the battery",
        lambda _s, p: p.min_voltage,
        scale=0.1,
        unit="V",
        rounding="up",
    ),
    Row(207, "Peak power", "u16", "53248 (1.3 x 203)", _const(53248), unit="W"),
    Row(208, "Always 10", "u16", "10", _const(10)),
    Row(209, "Peak power", "u16", "53248 (1.3 x 204)", _const(53248), unit="W"),
    Row(210, "Always 10", "u16", "10", _const(10)),
    _zero(211),
    _zero(212),
    # live values
    Row(
        300,
        "System status",
        "u16",
        "3 ACTIVE while the bank is valid with a measured voltage (its modules connected: the DC bus is live); "
        "else 4 FAULT with a protection active, 0 STANDBY without",
        lambda s, _p: status(s),
    ),
    _zero(301),
    Row(
        302,
        "Mode",
        "u16",
        f"129 charging, 130 discharging: current over {IDLE_CURRENT} A that way while ACTIVE and that direction "
        "enabled; else 128 idle",
        lambda s, _p: mode(s),
    ),
    Row(303, "SOC", "u16", f"`soc`, at least {SOC_FLOOR:g} %", lambda s, _p: max(s.soc or 0.0, SOC_FLOOR), 0.01, "%"),
    Row(
        304,
        "Total energy",
        "u16",
        f"`full_ah` x nominal string voltage, capped at {MAX_ENERGY:.0f} Wh",
        lambda s, p: _energy(s.full_ah, p),
        unit="Wh",
    ),
    Row(
        305,
        "Remaining energy",
        "u16",
        f"`remaining_ah` x nominal string voltage, capped at {MAX_ENERGY:.0f} Wh",
        lambda s, p: _energy(s.remaining_ah, p),
        unit="Wh",
    ),
    Row(
        306,
        "Max discharge power",
        "u16",
        f"DCL x `voltage`, rounded down, capped at {POWER_CAP:.0f} W; 0 unless ACTIVE with discharge enabled",
        lambda s, _p: _watts(s, s.limits.discharge_current.value, s.flags.discharge_enable),
        unit="W",
        rounding="down",
    ),
    Row(
        307,
        "Max charge power",
        "u16",
        f"CCL x `voltage`, rounded down, capped at {POWER_CAP:.0f} W; 0 unless ACTIVE with charge enabled",
        lambda s, _p: _watts(s, s.limits.charge_current.value, s.flags.charge_enable),
        unit="W",
        rounding="down",
    ),
    Row(
        308,
        "Outer voltage",
        "u16",
        "`voltage` while ACTIVE, else 0",
        lambda s, _p: _when_active(s, s.voltage),
        0.1,
        "V",
    ),
    Row(
        309,
        "Outer power",
        "s16",
        "-`power` (charging negative) while ACTIVE, else 0",
        lambda s, _p: _when_active(s, _power(s)),
        unit="W",
    ),
    Row(310, "Inner voltage", "u16", "`voltage`", lambda s, _p: s.voltage, 0.1, "V"),
    Row(311, "Inner power", "s16", "-`power` (charging negative)", lambda s, _p: _power(s), unit="W"),
    Row(312, "Min temperature", "s16", "`temperature_min`", lambda s, _p: _extreme(s.temperature_min), 0.1, "degC"),
    Row(313, "Max temperature", "s16", "`temperature_max`", lambda s, _p: _extreme(s.temperature_max), 0.1, "degC"),
    _zero(314, "Charged energy, high words (always 0)"),
    _zero(315, "Charged energy, high words (always 0)"),
    Row(316, "Charged energy", "u32", "0: the snapshot carries no lifetime counter yet", _const(0), unit="Wh"),
    _zero(318, "Discharged energy, high words (always 0)"),
    _zero(319, "Discharged energy, high words (always 0)"),
    Row(320, "Discharged energy", "u32", "0: the snapshot carries no lifetime counter yet", _const(0), unit="Wh"),
    Row(322, "Device temperature", "s16", "`temperature_max`", lambda s, _p: _extreme(s.temperature_max), 0.1, "degC"),
    Row(323, "SOH", "u16", "`soh`", lambda s, _p: s.soh, 0.01, "%"),
)
"""The map, in address order. A value not known (no reading yet) reads 0: the map has no "not available"."""


class Block(NamedTuple):
    """A range of addresses that exists; reads and writes anywhere else get exception 02 ILLEGAL DATA ADDRESS."""

    start: int
    length: int
    writable: bool
    name: str


BLOCKS: tuple[Block, ...] = (
    Block(100, 68, False, "identity"),
    Block(200, 13, False, "ratings"),
    Block(300, 24, False, "live values"),
    Block(
        400,
        20,
        True,
        "the GEN24's own registers: it writes its operating mode (400), the heartbeat (401), a watchdog period and "
        "the time; they read back what it wrote, and only 401 means anything to the gateway",
    ),
    Block(1000, 100, False, "polled by the GEN24, reads 0 (as the captured battery's, idle)"),
    Block(12288, 768, False, "read by the GEN24, reads 0 (as the captured battery's)"),
)


def image(s: BankSnapshot, plate: Nameplate) -> dict[int, int]:
    """Every register `ROWS` computes, by address, for one snapshot."""
    out: dict[int, int] = {}
    for row in ROWS:
        for i, register in enumerate(row.encode(s, plate)):
            out[row.address + i] = register
    return out


# -- the heartbeat ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Heartbeat:
    """Register 401 as the master hears it. A write that changes the value is the GEN24 speaking; one that repeats
    it is not (both sources: "unchanged for 5 minutes means the inverter is missing").

    `info` is None until the first change, then an `InverterInfo` whose `timeout` is `heartbeat_timeout`: the
    master raises `inverter_comm_lost` from it as from the CAN link's, without reading any Modbus setting.
    """

    timeout: float
    value: int = 0
    """The register's value: 0 until the GEN24 writes it."""
    info: InverterInfo | None = None

    def write(self, value: int, t: float) -> None:
        if value != self.value:
            self.info = InverterInfo(name=INVERTER_NAME, last_seen=t, timeout=self.timeout)
        self.value = value


# -- docs -------------------------------------------------------------------------------------------------------------

DOCS_COMMAND = "python -m gateway.outputs.byd docs/modbus.md"
"""The generated part of docs/modbus.md and README.md (the same part in both)."""


def _span(row: Row) -> str:
    return str(row.address) if row.size == 1 else f"{row.address}..{row.address + row.size - 1}"


def markdown() -> str:
    """The map and its blocks as Markdown tables, from `ROWS` and `BLOCKS`."""
    lines = [
        "| address | name | type | scale | unit | value |",
        "|---|---|---|---:|---|---|",
        *(
            f"| {_span(r)} | {r.name} | {r.kind if r.kind != 'text' else 'ASCII, 2 per register'} | "
            f"{'' if r.kind == 'text' else f'{r.scale:g}'} | {r.unit} | {r.how} |"
            for r in ROWS
        ),
        "",
        "| block | access | content |",
        "|---|---|---|",
        *(
            f"| {b.start}..{b.start + b.length - 1} | {'read, write (6, 16)' if b.writable else 'read'} | {b.name} |"
            for b in BLOCKS
        ),
    ]
    return "\n".join(lines)


def update_docs(text: str) -> str:
    """`text` (docs/modbus.md or README.md) with its generated part of the BYD map replaced by the current one."""
    return generated.splice(text, DOCS_COMMAND, markdown())


def main(argv: list[str]) -> None:
    """Rewrite the generated part of each docs file given as an argument."""
    for name in argv:
        generated.rewrite(Path(name), DOCS_COMMAND, markdown())


if __name__ == "__main__":
    main(sys.argv[1:])
