"""Growatt HV (Growatt BMS CAN protocol, high voltage, V1.10): 29-bit IDs, big-endian
(dbc/inverters/growatt_hv.dbc).

Handshake: nothing goes out until the inverter speaks (its heartbeat 0x3010, commands 0x3020 or time 0x3030, each
every second). Then every second the whole set, 0x3110 to 0x3290 and 0x3F00 (the public implementation spreads
them over five batches in that second; they go out together here, 22 frames). 0x3110 carries CVL, CCL, DCL, the
ISO and status bits (no charge / no discharge); 0x3130 the measurements with SOC and SOH; 0x3140 the capacity in
10 mAh. The alarm bits of 0x3120 follow bms-to-inverter (the other public source leaves them 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_be
from gateway.outputs.inverter.common import (
    IDLE_A,
    charge_forbidden,
    discharge_forbidden,
    energy_wh,
    modules_in_series,
    online,
    value,
)
from gateway.outputs.inverter.profiles import (
    Builder,
    Group,
    Input,
    Mode,
    Profile,
    Rule,
    SimFrame,
    Trigger,
    Wiring,
    parts,
    repeated,
)

DBC = "growatt_hv.dbc"
HEARD = frozenset({0x3010, 0x3020, 0x3030})
MANUFACTURER = "BG"
FORCE_CHARGE = 0xAA
"""0x3220 byte 4: asks the inverter to charge the battery."""
PROTECTIONS = (
    "PackUnderVoltage",
    "PackOverVoltage",
    "CellUnderVoltage",
    "CellOverVoltage",
    "ShortCircuit",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
    "CellImbalance",
    "OtherFailure",
    "ChargeUnderTemperature",
    "DischargeUnderTemperature",
    "ChargeOverTemperature",
    "DischargeOverTemperature",
)
ALARMS = (
    "InternalComm",
    "CellImbalance",
    "ChargeUnderTemperature",
    "DischargeUnderTemperature",
    "ChargeOverTemperature",
    "DischargeOverTemperature",
    "PackUnderVoltage",
    "PackOverVoltage",
    "CellUnderVoltage",
    "CellOverVoltage",
    "ChargeOverCurrent",
    "DischargeOverCurrent",
)


def _state(i: Input) -> int:
    current = i.snapshot.current
    if current is None or abs(current) < IDLE_A:
        return 1
    return 2 if current > 0 else 3


def _limits(i: Input) -> Values:
    lim = i.snapshot.limits
    return {
        "ChargeVoltageLimit": lim.charge_voltage.value,
        "ChargeCurrentLimit": lim.charge_current.value,
        "DischargeCurrentLimit": lim.discharge_current.value,
        "BatteryNormal": int(i.snapshot.valid),
        "IsoDetected": 1,
        "State": _state(i),
        "NoDischarge": int(discharge_forbidden(i)),
        "NoCharge": int(charge_forbidden(i)),
    }


def _alarms(i: Input) -> Values:
    names = [f"Protect{p}" for p in PROTECTIONS] + [f"Alarm{a}" for a in ALARMS]
    return {name: int(name in i.active) for name in names}


def _operation(i: Input) -> Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "MaxTemperature": value(s.temperature_max),
        "StateOfCharge": s.soc,
        "StateOfHealth": s.soh,
    }


def _cycles(i: Input) -> int:
    return max((m.reading.cycle_count or 0 for m in online(i.snapshot)), default=0)


def _capacity(i: Input) -> Values:
    s = i.snapshot
    return {
        "RemainingCapacity": s.remaining_ah,
        "FullCapacity": s.full_ah,
        "ManufacturerCode": ascii_be(MANUFACTURER, 2),
        "CycleCount": _cycles(i),
    }


def _working(i: Input) -> Values:
    series = modules_in_series(i.snapshot)
    return {
        "DischargeVoltageLimit": i.snapshot.limits.discharge_voltage.value,
        "ControllerTemperature": value(i.snapshot.temperature_max),
        "TotalCells": series * i.cells_in_series,
        "ModulesInSeries": series,
    }


def _position(i: Input, module: int | None) -> int:
    view = None if module is None else i.snapshot.modules.get(module)
    return 0 if view is None else view.position


def _faults(i: Input) -> Values:
    s = i.snapshot
    vmax, vmin = s.cell_voltage_max, s.cell_voltage_min
    return {
        "FaultFlags": 0,
        "FaultExtension": 0,
        "MaxCellModule": _position(i, None if vmax is None else vmax.module),
        "MaxCellNumber": 0 if vmax is None else vmax.index,
        "MinCellModule": _position(i, None if vmin is None else vmin.module),
        "MinCellNumber": 0 if vmin is None else vmin.index,
        "MinTemperature": value(s.temperature_min),
    }


def _temperature_numbers(i: Input) -> Values:
    s = i.snapshot
    tmax, tmin = s.temperature_max, s.temperature_min
    return {
        "MaxTemperatureModule": _position(i, None if tmax is None else tmax.module),
        "MaxTemperatureSensor": 0 if tmax is None else tmax.index,
        "MinTemperatureModule": _position(i, None if tmin is None else tmin.module),
        "MinTemperatureSensor": 0 if tmin is None else tmin.index,
    }


def _composition(i: Input) -> Values:
    series = modules_in_series(i.snapshot)
    return {
        "ManufacturerCode": ascii_be(MANUFACTURER, 2),
        "PacksInParallel": max(1, len(i.snapshot.strings)),
        "TotalCells": series * i.cells_in_series,
        "PackInfo": 0,
    }


def _cells(i: Input) -> Values:
    s = i.snapshot
    return {
        "CellStatus": 0,
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
        "FaultyPack": 0,
        "FaultyModule": 0,
    }


def _version(i: Input) -> Values:
    cells = modules_in_series(i.snapshot) * i.cells_in_series
    cvl = i.snapshot.limits.charge_voltage.value
    return {
        "ManufacturerCode": ascii_be(MANUFACTURER, 2),
        "HardwareRevision": 1,
        "CirculatingCurrent": 0,
        "CellChargeVoltage": cvl / cells if cells else None,
    }


def _derating(i: Input) -> Values:
    wh = energy_wh(i.snapshot, i.snapshot.full_ah)
    return {
        "PowerReduction": 0,
        "SystemFault": 0,
        "ForcedChargeMark": FORCE_CHARGE if i.snapshot.flags.force_charge else 0,
        "RatedEnergy": None if wh is None else wh / 1000,
        "SoftwareSubversion": 0,
    }


def _serial(i: Input) -> Values:
    return {"SerialFrame": i.part, "SerialBytes": 0}


def _energy(_: Input) -> Values:
    return {"DischargePack": 1, "DischargedEnergy": 0, "ChargePack": 1, "ChargedEnergy": 0}


def _zero(name: str) -> Builder:
    return lambda _: {name: 0}


BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x3110: _limits,
        0x3120: _alarms,
        0x3130: _operation,
        0x3140: _capacity,
        0x3150: _working,
        0x3160: _faults,
        0x3170: _temperature_numbers,
        0x3180: _composition,
        0x3190: _cells,
        0x3200: _version,
        0x3210: _zero("UpgradeStatus"),
        0x3220: _derating,
        0x3230: _serial,
        0x3240: _energy,
        0x3250: _zero("FaultHistory"),
        0x3260: _zero("DebugA"),
        0x3270: _zero("DebugB"),
        0x3280: _zero("ProductVersion"),
        0x3290: _zero("SeriesCode"),
        0x3F00: _zero("InternalAlarm"),
    }
)

SET = (
    *parts(0x3110, 0x3120, 0x3130, 0x3140, 0x3150, 0x3160, 0x3170, 0x3180, 0x3190, 0x3200, 0x3210, 0x3220),
    *repeated(0x3230, 3),
    *parts(0x3240, 0x3250, 0x3260, 0x3270, 0x3280, 0x3290, 0x3F00),
)

ROWS: tuple[Profile, ...] = (
    Profile(
        name="growatt-hv",
        family="growatt_hv",
        dbc=DBC,
        high_voltage=True,
        mode=Mode.HANDSHAKE,
        builders=BUILDERS,
        alarm_column="growatt-hv",
        extended=True,
        groups=(Group(SET, 1.0),),
        cyclic_in=frozenset({"started"}),
        rules=(Rule("start", Trigger(HEARD), (), frozenset({"idle"}), then="started"),),
        paired=frozenset({"started"}),
        urgent=frozenset({0x3110, 0x3120}),
        expects=HEARD,
        timeout=10.0,
        sim=(
            SimFrame(0x3010, "00 01 00 00 00 00 00 00", 0.0, 1.0),
            SimFrame(0x3020, "01 01 00 00 00 00 00 00", 0.1, 1.0),
            SimFrame(0x3030, "65 00 00 00 00 00 00 00", 0.2, 1.0),
        ),
        wiring=Wiring(
            "Growatt HV hybrids (SPH, MOD/MID XH) with Growatt's HV battery protocol",
            menu="battery type: lithium, the Growatt HV BMS protocol (CAN)",
        ),
        notes=(
            "Starts when the inverter speaks (0x3010/0x3020/0x3030). The whole set every second; 0x3230 (serial) "
            "as its three numbered frames. 0x3120 bits from one source (the other sends 0). Force charge sets "
            "0x3220 byte 4 = 0xAA."
        ),
        sources="Battery-Emulator GROWATT-HV-CAN; bms-to-inverter inverter-growatt-hv-can",
    ),
)
