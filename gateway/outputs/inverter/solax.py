"""The Solax family: Solax (Triple Power) and FoxESS, both polled on 0x1871 with 29-bit IDs, little-endian
(dbc/inverters/solax.dbc, dbc/inverters/foxess.dbc).

- solax (request/response with a contactor handshake): each poll (0x1871, byte 0 = 1 or 2) is answered with
  0x187E, 0x187A and 0x1872 to 0x1878. While the contactor is open the answers end with the announce frame
  0x100A001 (DLC 0); the request 02 00 01 00 01 asks to close it: the next poll's answer ends with 0x1801 and the
  contactor is closed (0x1875 byte 4 = 1); 02 00 01 00 00 opens it again. With no poll for 2 s the battery goes
  back to announcing. 05 00 01 asks for the serial numbers (0x1881, 0x1882).
- foxess (request/response): 0x1871 01 00 01 00 00 is answered with 0x1872 to 0x1879, 01 00 01 00 01 with one
  frame per pack (module of the string, 0x0C05 to 0x0C0C), 05 00 01 with the serials (0x1881 to 0x1883).

Some implementations rescale cell voltages into 3.0-3.5 V (Solax) or 2.5-3.4 V (FoxESS): that is for NMC cells
from an EV pack. The modules here are LiFePO4, already in the range the inverters expect, and are sent as they
are.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.outputs.inverter.codec import Values, ascii_be
from gateway.outputs.inverter.common import energy_wh, limits, online, temperature_mean, value
from gateway.outputs.inverter.profiles import (
    Builder,
    Input,
    Mode,
    Profile,
    Rule,
    SimFrame,
    Trigger,
    Wiring,
    parts,
    payload,
)

POLL = 0x1871
SERIAL = "BMSGW01"
"""Seven ASCII characters of the serial the 0x1881/0x1882 (0x1883) frames carry, after the slot byte."""


def _pack(i: Input) -> Values:
    s = i.snapshot
    remaining = energy_wh(s, s.remaining_ah)
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "StateOfCharge": s.soc,
        "RemainingEnergy": None if remaining is None else remaining / 1000,
    }


def _cells(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxTemperature": value(s.temperature_max),
        "MinTemperature": value(s.temperature_min),
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
    }


def _total_wh(i: Input) -> float | None:
    return energy_wh(i.snapshot, i.snapshot.full_ah)


def _serial(i: Input) -> Values:
    return {"Slot": i.part, "SerialText": ascii_be(SERIAL, 7)}


# -- solax -------------------------------------------------------------------------------------------------------------


def _solax_status(i: Input) -> Values:
    return {
        "AverageTemperature": temperature_mean(i.snapshot),
        "Modules": len(online(i.snapshot)),
        "Contactor": int(i.session == "closed"),
    }


def _solax_pack_temps(i: Input) -> Values:
    s = i.snapshot
    return {
        "MaxTemperature": value(s.temperature_max),
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinTemperature": value(s.temperature_min),
        "MinCellVoltage": value(s.cell_voltage_min),
    }


def _solax_identity(_: Input) -> Values:
    return {"BatteryType": 0x51, "Firmware": 0x22, "FirmwareTarget": 0x02}


def _solax_stats(i: Input) -> Values:
    return {"PackVoltage": i.snapshot.voltage, "TotalEnergy": _total_wh(i)}


def _ultra_7a(_: Input) -> Values:
    return {"Ultra0": 0x01, "Ultra1": 0x50}


def _ultra_7e(i: Input) -> Values:
    return {"TotalEnergy": _total_wh(i), "StateOfHealth": i.snapshot.soh, "StateOfCharge": i.snapshot.soc}


def _contactor(_: Input) -> Values:
    return {"Command": 2, "Unit": 1, "Closed": 1}


def _announce(_: Input) -> Values:
    return {}


SOLAX_BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x1872: limits,
        0x1873: _pack,
        0x1874: _cells,
        0x1875: _solax_status,
        0x1876: _solax_pack_temps,
        0x1877: _solax_identity,
        0x1878: _solax_stats,
        0x187A: _ultra_7a,
        0x187E: _ultra_7e,
        0x1801: _contactor,
        0x100A001: _announce,
        0x1881: _serial,
        0x1882: _serial,
    }
)

SOLAX_DATA = parts(0x187E, 0x187A, 0x1872, 0x1873, 0x1874, 0x1875, 0x1876, 0x1877, 0x1878)
ANNOUNCE = parts(0x100A001)
OPEN, WAITING, CLOSED = "announce", "waiting", "closed"
CLOSE_REQUEST = payload(POLL, "02 00 01 00 01 00 00 00")
OPEN_REQUEST = payload(POLL, "02 00 01 00 00 00 00 00")


def _poll(kind: int) -> Trigger:
    return Trigger(frozenset({POLL}), ((0, 0xFF, kind),))


SOLAX_RULES = (
    Rule("serials", payload(POLL, "05 00 01 00 00 00 00 00"), parts(0x1881, 0x1882)),
    Rule("close request", CLOSE_REQUEST, (*SOLAX_DATA, *ANNOUNCE), frozenset({OPEN}), then=WAITING),
    *(Rule("poll", _poll(kind), (*SOLAX_DATA, *ANNOUNCE), frozenset({OPEN})) for kind in (1, 2)),
    *(Rule("contactor", _poll(kind), (*SOLAX_DATA, *parts(0x1801)), frozenset({WAITING}), CLOSED) for kind in (1, 2)),
    Rule("open request", OPEN_REQUEST, SOLAX_DATA, frozenset({CLOSED}), then=OPEN),
    *(Rule("poll", _poll(kind), SOLAX_DATA, frozenset({CLOSED})) for kind in (1, 2)),
)

# -- foxess ------------------------------------------------------------------------------------------------------------

PACKS = 8
"""FoxESS emulates a tower of up to eight packs; pack n is the module at stack position n of the string."""
CHARGING, DISCHARGING = 0x35, 0x2B
"""0x1879 byte 1."""


def _fox_status(i: Input) -> Values:
    s = i.snapshot
    cycles = [m.reading.cycle_count for m in online(s) if m.reading.cycle_count is not None]
    return {
        "AverageTemperature": temperature_mean(s),
        "OperationalPacks": len(online(s)),
        "Modules": len(online(s)),
        "Contactor": 1,
        "CycleCount": max(cycles, default=0),
    }


def _fox_limits(i: Input) -> Values:
    s = i.snapshot
    forbidden = not s.flags.charge_enable or s.limits.charge_current.value <= 0 or not s.valid
    return {
        "ChargeForbidden": int(forbidden),
        "MaxCellVoltage": value(s.cell_voltage_max),
        "MinCellVoltage": value(s.cell_voltage_min),
    }


FOX_TYPE, FOX_FIRMWARE = 0x52, 0x12
"""0x1877: an HV2600 V2 main controller and its firmware, as the public implementation says."""
MAX_AC_VOLTAGE = 256.7
"""0x1878 bytes 0-1: the highest AC voltage, a constant of the HV2600 (V)."""


def _fox_errors(i: Input) -> Values:
    return {
        "ErrorCode": 0 if i.snapshot.valid else 0x02,
        "BatteryType": FOX_TYPE,
        "Firmware": FOX_FIRMWARE,
        "PackInfo": 1,
    }


def _fox_stats(_: Input) -> Values:
    return {"MaxAcVoltage": MAX_AC_VOLTAGE, "TotalEnergy": 0}


def _fox_flags(i: Input) -> Values:
    current = i.snapshot.current
    return {
        "ErrorFlag": int("ErrorFlag" in i.active),
        "Direction": CHARGING if current is not None and current > 0 else DISCHARGING,
    }


def _fox_pack(frame_id: int) -> Builder:
    position = frame_id - 0x0C05 + 1

    def build(i: Input) -> Values:
        module = next((m for m in online(i.snapshot) if m.position == position), None)
        r = None if module is None else module.reading
        return {
            "PackCurrent": None if r is None else r.current,
            "PackMaxTemperature": None if r is None else r.temperature_max,
            "PackMinTemperature": None if r is None else r.temperature_min,
            "PackSoc": None if r is None else r.soc,
            "PackFlags": 0 if r is None else 0x0A,
            "PackVoltage": None if r is None else r.voltage,
        }

    return build


FOX_PACKS = tuple(range(0x0C05, 0x0C05 + PACKS))
FOXESS_BUILDERS: Mapping[int, Builder] = MappingProxyType(
    {
        0x1872: limits,
        0x1873: _pack,
        0x1874: _cells,
        0x1875: _fox_status,
        0x1876: _fox_limits,
        0x1877: _fox_errors,
        0x1878: _fox_stats,
        0x1879: _fox_flags,
        **{frame_id: _fox_pack(frame_id) for frame_id in FOX_PACKS},
        0x1881: _serial,
        0x1882: _serial,
        0x1883: _serial,
    }
)
FOX_RULES = (
    Rule("bms info", Trigger(frozenset({POLL}), ((0, 0xFF, 1), (4, 0xFF, 0))), parts(*range(0x1872, 0x187A))),
    Rule("packs", Trigger(frozenset({POLL}), ((0, 0xFF, 1), (4, 0xFF, 1))), parts(*FOX_PACKS)),
    Rule("serials", Trigger(frozenset({POLL}), ((0, 0xFF, 5),)), parts(0x1881, 0x1882, 0x1883)),
)

SOURCES = "Battery-Emulator {}; rand12345/solax_can_bus (the Solax/FoxESS V1 protocol, DBC and README)"

ROWS: tuple[Profile, ...] = (
    Profile(
        name="solax",
        family="solax",
        dbc="solax.dbc",
        high_voltage=True,
        mode=Mode.REQUEST,
        builders=SOLAX_BUILDERS,
        alarm_column="solax",
        extended=True,
        rules=SOLAX_RULES,
        initial=OPEN,
        reset_after=2.0,
        paired=frozenset({CLOSED}),
        expects=frozenset({POLL}),
        timeout=10.0,
        sim=(
            SimFrame(POLL, "01 00 01 00 00 00 00 00", 0.0, 1.0),
            SimFrame(POLL, "02 00 01 00 01 00 00 00", 2.5, None),
            SimFrame(POLL, "05 00 01 00 00 00 00 00", 4.5, None),
        ),
        wiring=Wiring(
            "Solax Triple Power / X3-Hybrid with Solax HV batteries",
            menu="battery: Solax (the inverter closes the battery's contactor by its request)",
        ),
        notes=(
            "Polled on 0x1871; announces 0x100A001 (DLC 0) until the inverter asks to close the contactor "
            "(02 00 01 00 01, answered with 0x1801); no poll for 2 s: announcing again. Remaining energy in 10 Wh "
            "(both sources agree). One source puts temperatures in 0x1876 bytes 0-1 and 4-5, the other a flag: the "
            "temperatures are sent. Cells are not rescaled (LiFePO4)."
        ),
        sources=SOURCES.format("SOLAX-CAN"),
    ),
    Profile(
        name="foxess",
        family="solax",
        dbc="foxess.dbc",
        high_voltage=True,
        mode=Mode.REQUEST,
        builders=FOXESS_BUILDERS,
        alarm_column="foxess",
        extended=True,
        rules=FOX_RULES,
        expects=frozenset({POLL}),
        timeout=10.0,
        sim=(
            SimFrame(POLL, "01 00 01 00 00 00 00 00", 0.0, 1.0),
            SimFrame(POLL, "01 00 01 00 01 00 00 00", 0.5, 6.0),
            SimFrame(POLL, "05 00 01 00 00 00 00 00", 0.7, 60.0),
        ),
        wiring=Wiring(
            "FoxESS H3 / AIO hybrids with HV2600 / ECS batteries",
            menu="battery: FoxESS HV (the BMS port, CAN)",
        ),
        notes=(
            "Polled on 0x1871 like Solax: 0x1872-0x1879; the packs (0x0C05-0x0C0C) are the string's modules by "
            "position, with their own readings (zeros where none). 0x1877 byte 0 = 0x02 while the gateway cannot "
            "vouch for the bank. Serials for slot 0 only."
        ),
        sources=SOURCES.format("FOXESS-CAN"),
    ),
)
