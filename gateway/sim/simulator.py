"""The module simulator: N modules speaking the module CAN protocol, every frame at its period.

Time is simulated: `advance(until=t)` yields every frame due up to `t` in time order, stamped with simulated
time; the bus adapter decides whether that runs as fast as the CPU allows (a log file) or in real time. The
physics moves in fixed steps from the start, so the traffic for a seed does not depend on how it is consumed.
Frames are encoded by cantools from the shipped `module.dbc`, each value clamped into its DBC range first.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import can
from cantools.database.can import Database, Message

from gateway.can.codec import DecodeFailure
from gateway.can.dbc import decode, load
from gateway.config import SHIPPED_ADDRESS_MASK, module_addresses
from gateway.master.model import ALARM_BITS, MAX_CELLS, MAX_SENSORS, ModuleState
from gateway.sim import physics
from gateway.sim.faults import NONE, Effects, Fault, effects

STEP = 0.1
"""Seconds per physics step; a frame reports the state of the last step before it."""
ADDRESS_MASK = SHIPPED_ADDRESS_MASK
ADDRESSES = module_addresses(ADDRESS_MASK)
FIRMWARE = (1, 4, 2)
IDLE_CURRENT = 0.5
"""|A| below which a module reports Standby rather than Charging or Discharging."""

Values = tuple[float, ...]

STATUS = ("ModuleVoltage", "ModuleCurrent", "SOC", "SOH", "ModuleState", "AliveCounter")
LIMITS = ("ChargeCurrentLimit", "DischargeCurrentLimit", "ChargeVoltageLimit", "DischargeVoltageLimit")
SUMMARY = (
    "CellVoltageMax",
    "CellVoltageMin",
    "CellVoltageMaxIndex",
    "CellVoltageMinIndex",
    "BalancingCellCount",
    "CellCount",
)
TEMPERATURES = (
    "TemperatureMax",
    "TemperatureMin",
    "TemperatureMaxIndex",
    "TemperatureMinIndex",
    "PowerStageTemperature",
)
ALARMS = (*(f"{level}{bit}" for level in ("Warn", "Prot") for bit in ALARM_BITS), "FaultCode")
INFO = ("FirmwareMajor", "FirmwareMinor", "FirmwarePatch", "CellsInSeries", "NominalCapacity", "CycleCount")
CAPACITY = ("RemainingCapacity", "FullChargeCapacity", "InternalResistance")
"""The signals of each message, in the order in which the module's builders return their values."""


class _Encoder:
    """cantools encoding of one message (or one multiplexer group) from values in a fixed signal order."""

    __slots__ = ("_fixed", "_highs", "_lows", "_message", "_names", "frame_id")

    def __init__(self, message: Message, names: Sequence[str], fixed: Mapping[str, float | str]) -> None:
        signals = [message.get_signal_by_name(n) for n in names]
        self.frame_id: int = message.frame_id
        self._message = message
        self._names = tuple(names)
        self._lows = tuple(-math.inf if s.minimum is None else float(s.minimum) for s in signals)
        self._highs = tuple(math.inf if s.maximum is None else float(s.maximum) for s in signals)
        self._fixed = dict(fixed)

    def __call__(self, values: Values) -> bytes:
        """The payload, each value clamped into its DBC range first."""
        clamped = [
            low if v < low else high if v > high else v
            for v, low, high in zip(values, self._lows, self._highs, strict=True)
        ]
        data = dict(zip(self._names, clamped, strict=True), **self._fixed)
        return bytes(self._message.encode(data, scaling=True, strict=False))


@functools.cache
def _db() -> Database:
    return load(None, "module.dbc", "sim")


@functools.cache
def _encoder(name: str, signals: tuple[str, ...], fixed: tuple[tuple[str, float | str], ...] = ()) -> _Encoder:
    """The encoder of a message, prepared once per process for every simulator."""
    return _Encoder(_db().get_message_by_name(name), signals, dict(fixed))


def _cell_voltages(group: int, cells: int) -> _Encoder:
    """Group g of CellVoltages (cells 3g+1..3g+3); cells beyond `cells` are sent as 0 V, not balancing."""
    present = range(3 * group + 1, min(3 * group + 3, cells) + 1)
    absent = range(max(3 * group, cells) + 1, 3 * group + 4)
    signals = tuple(f"Cell{n:02}{what}" for what in ("Voltage", "Balancing") for n in present)
    fixed = (("CellGroup", group), *((f"Cell{n:02}{what}", 0) for what in ("Voltage", "Balancing") for n in absent))
    return _encoder("CellVoltages", signals, fixed)


def _cell_temperatures(group: int, sensors: int) -> _Encoder:
    """Group g of CellTemperatures (sensors 7g+1..7g+7); sensors beyond `sensors` are sent as NoSensor (raw 255)."""
    present = range(7 * group + 1, min(7 * group + 7, sensors) + 1)
    absent = range(max(7 * group, sensors) + 1, 7 * group + 8)
    fixed = (("SensorGroup", group), *((f"Temp{n:02}", "NoSensor") for n in absent))
    return _encoder("CellTemperatures", tuple(f"Temp{n:02}" for n in present), fixed)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSnapshot:
    """One simulated module's physical state at the simulator's current time."""

    address: int
    soc: float
    current: float
    """A, + = charging."""
    voltage: float
    temperature: float
    connected: bool
    resistance: float
    """Ohm."""
    full_capacity: float
    """Ah."""
    cell_voltages: tuple[float, ...]


class _Module:
    """One module's protocol side: its faults, contactor, alive counter and the values each frame carries."""

    def __init__(
        self,
        *,
        address: int,
        model: physics.ModuleModel,
        faults: Sequence[Fault],
        nominal: float,
        cycle_count: int,
        sensor_offsets: Sequence[float],
        high_cell: int,
    ) -> None:
        self.address = address
        self.model = model
        self.faults = tuple(faults)
        self.nominal = nominal
        self.cycle_count = cycle_count
        self.sensor_offsets = tuple(sensor_offsets)
        self.high_cell = high_cell
        self.soh = min(100.0, round(100.0 * model.full_capacity / nominal))
        self.connected = True
        self.alive = 0
        self.current = 0.0
        self.cells: list[float] = []
        self.voltage = 0.0
        self.balancing: list[bool] = []

    def effects(self, t: float) -> Effects:
        return effects(self.faults, t) if self.faults else NONE

    def settle(self, current: float, eff: Effects) -> None:
        """Take the current of this step and derive the cell voltages and balancing flags the frames report."""
        self.current = current
        cells = self.model.terminal(current)
        if eff.cell_high is not None:
            target, progress = eff.cell_high
            cells[self.high_cell] += progress * (target - cells[self.high_cell])
        highest = max(cells)
        self.cells = cells
        self.voltage = sum(cells)
        self.balancing = [v == highest and v > physics.BALANCE_FROM for v in cells]

    def snapshot(self) -> ModuleSnapshot:
        return ModuleSnapshot(
            address=self.address,
            soc=self.model.soc,
            current=self.current,
            voltage=self.voltage,
            temperature=self.model.temperature,
            connected=self.connected,
            resistance=self.model.resistance,
            full_capacity=self.model.full_capacity,
            cell_voltages=tuple(self.cells),
        )

    def state(self, eff: Effects) -> ModuleState:
        if eff.fault_code:
            return ModuleState.FAULT
        if not self.connected:
            return ModuleState.ISOLATED
        if self.current > IDLE_CURRENT:
            return ModuleState.CHARGING
        if self.current < -IDLE_CURRENT:
            return ModuleState.DISCHARGING
        return ModuleState.STANDBY

    def status(self, eff: Effects) -> Values:
        alive = self.alive
        if not eff.frozen:
            self.alive = (alive + 1) % 16
        return (self.voltage, self.current, self.model.soc, self.soh, self.state(eff), alive)

    def limits(self, eff: Effects) -> Values:
        cells = len(self.cells)
        charge, discharge = physics.current_limits(self.model.soc)
        return (
            charge,
            discharge,
            physics.CHARGE_VOLTAGE_PER_CELL * cells,
            physics.DISCHARGE_VOLTAGE_PER_CELL * cells,
        )

    def summary(self, eff: Effects) -> Values:
        cells = self.cells
        high, low = max(cells), min(cells)
        return (high, low, cells.index(high) + 1, cells.index(low) + 1, sum(self.balancing), len(cells))

    def temperatures(self, eff: Effects) -> Values:
        sensors = self.sensors()
        high, low = max(sensors), min(sensors)
        power_stage = self.model.temperature + physics.POWER_STAGE_RISE * abs(self.current)
        return (high, low, sensors.index(high) + 1, sensors.index(low) + 1, power_stage)

    def cell_voltages(self, group: int, eff: Effects) -> Values:
        span = range(3 * group, min(3 * group + 3, len(self.cells)))
        return (*(self.cells[i] for i in span), *(int(self.balancing[i]) for i in span))

    def cell_temperatures(self, group: int, eff: Effects) -> Values:
        sensors = self.sensors()
        return tuple(sensors[7 * group : 7 * group + 7])

    def alarms(self, eff: Effects) -> Values:
        bits = eff.warnings | eff.protections << 16
        return (*((bits >> i) & 1 for i in range(32)), eff.fault_code)

    def info(self, eff: Effects) -> Values:
        firmware = eff.firmware or FIRMWARE
        return (*firmware, len(self.cells), self.nominal, self.cycle_count)

    def capacity(self, eff: Effects) -> Values:
        full = self.model.full_capacity
        return (full * self.model.soc / 100.0, full, self.model.resistance * 1000.0)

    def sensors(self) -> list[float]:
        temperature = self.model.temperature
        return [temperature + offset for offset in self.sensor_offsets]


@dataclass(frozen=True, slots=True)
class _Slot:
    """One recurring frame of one module (`period` 0: sent once), `offset` s after start for the first time."""

    module: _Module
    period: float
    offset: float
    encode: _Encoder
    build: Callable[[Effects], Values]

    @property
    def can_id(self) -> int:
        return self.encode.frame_id + self.module.address


class Simulator:
    """N simulated modules on one bus; `advance` yields their frames, `handle_command` takes the master's."""

    def __init__(
        self,
        *,
        modules: int = 8,
        current: float = 0.0,
        seed: int = 0,
        soc: float = 50.0,
        strings: Iterable[Iterable[int]] | None = None,
        faults: Iterable[Fault] = (),
        cells: int = 16,
        sensors: int = 4,
        capacity_ah: float = 100.0,
        ambient: float = 25.0,
        start: float = 0.0,
    ) -> None:
        faults = tuple(faults)
        layout = _check(
            modules,
            soc=soc,
            strings=strings,
            faults=faults,
            cells=cells,
            sensors=sensors,
            capacity_ah=capacity_ah,
            ambient=ambient,
        )
        rng = random.Random(seed)
        self._command = _db().get_message_by_name("MasterCommand")
        self._ambient = ambient
        self._start = start
        self._time = start
        self._next_step = 1
        self._modules = {
            address: _module(
                address,
                count=modules,
                rng=rng,
                soc=soc,
                faults=faults,
                cells=cells,
                sensors=sensors,
                capacity_ah=capacity_ah,
                ambient=ambient,
            )
            for address in range(1, modules + 1)
        }
        self._strings = tuple(tuple(self._modules[a] for a in string) for string in layout)
        self.current = current
        entries = [slot for m in self._modules.values() for slot in self._slots(m, rng.uniform(0.001, 0.099))]
        self._heap = [(start + slot.offset, order, 0, slot) for order, slot in enumerate(entries)]
        heapq.heapify(self._heap)

    @property
    def time(self) -> float:
        """Simulated time up to which frames have been produced."""
        return self._time

    @property
    def next_due(self) -> float:
        """Simulated time of the next frame."""
        return self._heap[0][0]

    @property
    def current(self) -> float:
        """Bank current in A, + = charging; shared at once among the connected strings."""
        return self._current

    @current.setter
    def current(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"bank current must be a finite number of A, not {value}")
        self._current = float(value)
        self._share(self._time)

    def module(self, address: int) -> ModuleSnapshot:
        return self._modules[address].snapshot()

    def advance(self, *, until: float) -> Iterator[can.Message]:
        """Every frame due in (time, until], in time order; consume it whole before calling again."""
        heap, start = self._heap, self._start
        while heap[0][0] <= until:
            due, order, n, slot = heap[0]
            if slot.period:
                heapq.heapreplace(heap, (start + slot.offset + (n + 1) * slot.period, order, n + 1, slot))
            else:
                heapq.heappop(heap)
            self._physics(due)
            self._time = due
            eff = slot.module.effects(due - start)
            if eff.dropped:
                continue
            data = slot.encode(slot.build(eff))
            yield can.Message(timestamp=due, arbitration_id=slot.can_id, is_extended_id=False, dlc=8, data=data)
        self._physics(until)
        self._time = max(self._time, until)

    def handle_command(self, can_id: int, data: bytes | bytearray) -> bool:
        """Apply a MasterCommand (0x380 + address, 0 = all); False for any other or undecodable frame.

        ConnectPermit = 0 opens the module's contactor: it carries no current until a permit closes it again.
        """
        command = self._command
        if can_id & ~ADDRESS_MASK != command.frame_id:
            return False
        address = can_id & ADDRESS_MASK
        try:
            permit = bool(decode(command, bytes(data))["ConnectPermit"])
        except DecodeFailure:
            return False
        targets = list(self._modules.values()) if address == 0 else [m for m in [self._modules.get(address)] if m]
        if not targets:
            return False
        for module in targets:
            module.connected = permit
        self._share(self._time)
        return True

    def _slots(self, m: _Module, phase: float) -> Iterator[_Slot]:
        """The module's frames; its once-a-second ones spread over the second so they do not come in bursts."""
        cells, sensors = len(m.cells), len(m.sensor_offsets)
        alarms = _encoder("Alarms", ALARMS)
        yield _Slot(m, 0.1, phase, _encoder("ModuleStatus", STATUS), m.status)
        yield _Slot(m, 0.2, phase + 0.05, _encoder("CellSummary", SUMMARY), m.summary)
        yield _Slot(m, 10.0, phase + 0.02, _encoder("ModuleInfo", INFO), m.info)
        each_second: list[tuple[_Encoder, Callable[[Effects], Values]]] = [
            (_encoder("ModuleLimits", LIMITS), m.limits),
            (_encoder("Temperatures", TEMPERATURES), m.temperatures),
            *((_cell_voltages(g, cells), functools.partial(m.cell_voltages, g)) for g in range(math.ceil(cells / 3))),
            *(
                (_cell_temperatures(g, sensors), functools.partial(m.cell_temperatures, g))
                for g in range(math.ceil(sensors / 7))
            ),
            (alarms, m.alarms),
            (_encoder("ModuleCapacity", CAPACITY), m.capacity),
        ]
        for j, (encode, build) in enumerate(each_second):
            yield _Slot(m, 1.0, phase + (j + 0.5) / len(each_second), encode, build)
        for fault in m.faults:
            if fault.kind in {"warning", "protection", "fault"} and fault.at > 0:
                yield _Slot(m, 0.0, fault.at, alarms, m.alarms)

    def _physics(self, until: float) -> None:
        """Run the physics steps due by `until`; step k is at start + k * STEP, so rounding never adds up."""
        while (t := self._start + self._next_step * STEP) <= until:
            for module in self._modules.values():
                heat_target = module.effects(t - self._start).heat_target
                module.model.step(module.current, STEP, self._ambient, heat_target)
            self._share(t)
            self._next_step += 1

    def _share(self, t: float) -> None:
        """Split the bank current among the connected strings (a string is connected when all its modules are)."""
        connected = [s for s in self._strings if all(m.connected for m in s)]
        ocvs = [sum(sum(m.model.ocv) for m in s) for s in connected]
        resistances = [sum(m.model.resistance for m in s) for s in connected]
        currents = dict(zip(connected, physics.share_current(self._current, ocvs, resistances), strict=True))
        for string in self._strings:
            for module in string:
                module.settle(currents.get(string, 0.0), module.effects(t - self._start))


def _module(
    address: int,
    *,
    count: int,
    rng: random.Random,
    soc: float,
    faults: tuple[Fault, ...],
    cells: int,
    sensors: int,
    capacity_ah: float,
    ambient: float,
) -> _Module:
    """A module with its own spread of resistance, capacity, cell SOCs and sensors, drawn from `rng`."""
    mine = [f for f in faults if f.module == address]
    start_soc = soc + sum(f.value for f in mine if f.kind == "soc_offset" and isinstance(f.value, float | int))
    capacity = capacity_ah * rng.uniform(0.95, 1.02)
    model = physics.ModuleModel(
        socs=[start_soc + rng.uniform(-1.0, 1.0) for _ in range(cells)],
        capacities=[capacity * rng.uniform(0.99, 1.01) for _ in range(cells)],
        resistance=rng.uniform(0.002, 0.004),
        conductance=physics.cooling(address, count),
        temperature=ambient,
    )
    return _Module(
        address=address,
        model=model,
        faults=[f for f in mine if f.kind != "soc_offset"],
        nominal=capacity_ah,
        cycle_count=100 + rng.randrange(20),
        sensor_offsets=[rng.uniform(-0.3, 0.3) for _ in range(sensors)],
        high_cell=rng.randrange(cells),
    )


def _check(
    modules: int,
    *,
    soc: float,
    strings: Iterable[Iterable[int]] | None,
    faults: tuple[Fault, ...],
    cells: int,
    sensors: int,
    capacity_ah: float,
    ambient: float,
) -> tuple[tuple[int, ...], ...]:
    """Validate the constructor's arguments; the strings of module addresses (default: one module each)."""
    if not 1 <= modules <= len(ADDRESSES):
        raise ValueError(f"modules must be within 1..{len(ADDRESSES)}, not {modules}")
    if not 1 <= cells <= MAX_CELLS:
        raise ValueError(f"cells must be within 1..{MAX_CELLS}, not {cells}")
    if not 1 <= sensors <= MAX_SENSORS:
        raise ValueError(f"sensors must be within 1..{MAX_SENSORS}, not {sensors}")
    if not 0 < capacity_ah <= 6553.5:
        raise ValueError(f"capacity_ah must be within 0..6553.5 Ah, not {capacity_ah}")
    if not 0 <= soc <= 100:
        raise ValueError(f"soc must be within 0..100 %, not {soc}")
    if not -40 <= ambient <= 125:
        raise ValueError(f"ambient must be within -40..125 degC, not {ambient}")
    layout = tuple(tuple(s) for s in strings) if strings else tuple((a,) for a in range(1, modules + 1))
    addresses = sorted(a for s in layout for a in s)
    if addresses != list(range(1, modules + 1)) or not all(layout):
        raise ValueError(f"strings {layout} must hold each module address 1..{modules} exactly once")
    outside = sorted({f.module for f in faults if f.module > modules})
    if outside:
        raise ValueError(f"faults name modules {outside} beyond the {modules} simulated")
    return layout
