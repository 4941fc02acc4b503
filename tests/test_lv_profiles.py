"""The LV profiles beside the Pylon set: goodwe-lv, growatt-lv, and deye-lv's SOC workaround. Every frame byte for
byte from lv_snapshot() (helpers/snapshots.py), computed by hand; a struct decoder written from the protocol text
reads every value back; Growatt answers only when asked."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from gateway import config
from gateway.master.model import Level
from gateway.outputs.inverter import Heard, Options, Schedule, frames, profile

from helpers.snapshots import alarm, assert_values, hexes, lv_snapshot


def sent(name: str, options: Options | None = None, **values: Any) -> dict[int, str]:
    row = profile(name)
    out = frames(lv_snapshot(**values), row, options, row.parts, cells_in_series=16)
    assert not any(f.extended for f in out)
    return {f.can_id: hexes(f.data) for f in out}


# -- goodwe-lv (little-endian) -------------------------------------------------------------------------------------

GOODWE = {
    0x453: "04 00 00 00 00 00 00 00",  # four modules online
    0x455: "00 00 00 00 00 00 00 00",  # no alarm, no warning
    # CVL 55.2 V -> 552 = 0x0228; CCL 150 A -> 1500 = 0x05DC; DCL 200 A -> 2000 = 0x07D0; DVL 48.0 V -> 480 = 0x01E0
    0x456: "28 02 DC 05 D0 07 E0 01",
    # SOC 80 % -> 8000 = 0x1F40; SOH 97 % -> 9700 = 0x25E4 (0.01 %)
    0x457: "40 1F E4 25 00 00 00 00",
    # 52.31 V -> 523 (0.1 V, nearest) = 0x020B; +20.5 A -> 205 = 0x00CD; 25.4 degC -> 254 = 0x00FE
    0x458: "0B 02 CD 00 FE 00 00 00",
}


def test_goodwe_every_frame_byte_for_byte() -> None:
    assert sent("goodwe-lv") == GOODWE


@pytest.mark.parametrize(
    ("code", "level", "expected"),
    [
        ("cell_over_voltage", Level.PROTECTION, "01 00 00 00"),  # AlarmChargeOverVoltage: bit 0
        ("cell_over_voltage", Level.WARNING, "00 00 01 00"),  # WarningChargeOverVoltage: bit 16
        ("discharge_over_current", Level.PROTECTION, "20 00 00 00"),  # bit 5
        ("module_comm_lost", Level.PROTECTION, "00 10 00 00"),  # AlarmInternalComm: bit 12
        ("cell_imbalance", Level.WARNING, "00 00 00 01"),  # WarningCellImbalance: bit 24
        ("cell_imbalance", Level.PROTECTION, "00 00 00 00"),  # no alarm bit for it
    ],
)
def test_goodwe_alarm_bits(code: str, level: Level, expected: str) -> None:
    assert sent("goodwe-lv", alarms=(alarm(code, level),))[0x455][:11] == expected


def goodwe_decode(can_id: int, data: bytes) -> dict[str, float]:
    if can_id == 0x453:
        return {"packs": struct.unpack_from("<H", data)[0]}
    if can_id == 0x456:
        cvl, ccl, dcl, dvl = struct.unpack("<hhhh", data)
        return {"CVL": cvl / 10, "CCL": ccl / 10, "DCL": dcl / 10, "DVL": dvl / 10}
    if can_id == 0x457:
        soc, soh = struct.unpack_from("<HH", data)
        return {"SOC": soc / 100, "SOH": soh / 100}
    if can_id == 0x458:
        v, i, t = struct.unpack_from("<Hhh", data)
        return {"V": v / 10, "A": i / 10, "T": t / 10}
    return {"bits": struct.unpack("<I", data[:4])[0]}


def test_goodwe_an_independent_decoder_reads_every_value_back() -> None:
    row = profile("goodwe-lv")
    decoded = {f.can_id: goodwe_decode(f.can_id, f.data) for f in frames(lv_snapshot(), row)}
    assert_values(
        decoded,
        {
            0x453: {"packs": 4},
            0x455: {"bits": 0},
            0x456: {"CVL": 55.2, "CCL": 150.0, "DCL": 200.0, "DVL": 48.0},
            0x457: {"SOC": 80.0, "SOH": 97.0},
            0x458: {"V": 52.3, "A": 20.5, "T": 25.4},
        },
    )


# -- growatt-lv (big-endian, request/response) ---------------------------------------------------------------------

GROWATT = {
    # CVL 552 = 0x0228, CCL 1500 = 0x05DC, DCL 2000 = 0x07D0 (big-endian); state 2 (charging, +20.5 A): bits 10-11
    # of the status word (byte 6: 2 << 2 = 0x08) and bits 0-1 (byte 7: 0x02)
    0x311: "02 28 05 DC 07 D0 08 02",
    # no protection or alarm bit; pack 1; manufacturer "BG" = 0x42 0x47; 16 cells
    0x312: "00 00 00 00 01 42 47 10",
    # 52.31 V -> 5231 = 0x146F (0.01 V); 205 = 0x00CD; 254 = 0x00FE; SOC 80 = 0x50; SOH 97 = 0x61
    0x313: "14 6F 00 CD 00 FE 50 61",
    # 320 Ah -> 32000 = 0x7D00 and 400 Ah -> 40000 = 0x9C40 (10 mAh); spread 3.345 - 3.301 V = 44 mV = 0x2C; 0 cycles
    0x314: "7D 00 9C 40 00 2C 00 00",
    # charge and discharge enabled (bits 7, 6) = 0xC0; 3345 mV = 0x0D11; 3301 mV = 0x0CE5; cells 16 + 7 = 23, 3
    0x319: "C0 0D 11 0C E5 17 03 00",
    0x320: "42 47 01 01 00 00 00 00",  # "BG", hardware 1, software 1 (the gateway's minor version)
    0x321: "00 00 00 00 00 00 00 00",
}


def test_growatt_every_frame_byte_for_byte() -> None:
    assert sent("growatt-lv") == GROWATT


def test_growatt_alarm_bits_and_flags() -> None:
    out = sent("growatt-lv", alarms=(alarm("cell_under_voltage", Level.PROTECTION),), ccl=0.0)
    assert out[0x312][:11] == "08 00 00 00"  # ProtectCellUnderVoltage: byte 0 bit 3
    assert out[0x319][:2] == "40"  # charging disabled: discharge enable only
    warned = sent("growatt-lv", alarms=(alarm("charge_over_temperature", Level.WARNING),))
    assert warned[0x312][:11] == "00 00 00 40"  # AlarmChargeOverTemperature: byte 3 bit 6


def growatt_decode(can_id: int, data: bytes) -> dict[str, float]:
    if can_id == 0x311:
        cvl, ccl, dcl, status = struct.unpack(">HHHH", data)
        return {"CVL": cvl / 10, "CCL": ccl / 10, "DCL": dcl / 10, "state": status & 3, "sp": status >> 10 & 3}
    if can_id == 0x313:
        v, i, t, soc, soh = struct.unpack(">HhhBB", data)
        return {"V": v / 100, "A": i / 10, "T": t / 10, "SOC": soc, "SOH": soh}
    if can_id == 0x314:
        rem, full, delta, cycles = struct.unpack(">HHHH", data)
        return {"rem": rem / 100, "full": full / 100, "delta": delta / 1000, "cycles": cycles}
    if can_id == 0x319:
        flags, vmax, vmin, nmax, nmin, _ = struct.unpack(">BHHBBB", data)
        return {
            "charge": flags >> 7,
            "discharge": flags >> 6 & 1,
            "max": vmax / 1000,
            "min": vmin / 1000,
            "nmax": nmax,
            "nmin": nmin,
        }
    return {}


def test_growatt_an_independent_decoder_reads_every_value_back() -> None:
    row = profile("growatt-lv")
    out = frames(lv_snapshot(), row, None, row.parts)
    decoded = {f.can_id: growatt_decode(f.can_id, f.data) for f in out if f.can_id in (0x311, 0x313, 0x314, 0x319)}
    assert_values(
        decoded,
        {
            0x311: {"CVL": 55.2, "CCL": 150.0, "DCL": 200.0, "state": 2, "sp": 2},
            0x313: {"V": 52.31, "A": 20.5, "T": 25.4, "SOC": 80, "SOH": 97},
            0x314: {"rem": 320.0, "full": 400.0, "delta": 0.044, "cycles": 0},
            0x319: {"charge": 1, "discharge": 1, "max": 3.345, "min": 3.301, "nmax": 23, "nmin": 3},
        },
    )


def test_growatt_answers_0x301_and_nothing_else() -> None:
    inverter = config.parse({"can": {"inverter": {"protocol": "growatt-lv"}}}).can.inverter
    s = Schedule(inverter, bank=config.BankSection())
    assert [s.due(t / 10, lv_snapshot(t=t / 10)) for t in range(30)] == [[]] * 30
    answer = s.due(3.0, lv_snapshot(t=3.0), [Heard(3.0, 0x301, bytes(8))])
    assert [f.can_id for f in answer] == [0x311, 0x312, 0x313, 0x314, 0x319, 0x320, 0x321]
    assert s.due(3.1, lv_snapshot(t=3.1), [Heard(3.1, 0x305, bytes(8))]) == []


# -- deye-lv: SOC 100 % while charging is forbidden, 0 % while discharging is ----------------------------------------


@pytest.mark.parametrize(
    ("values", "soc"),
    [
        ({}, 80),  # both allowed: the real SOC
        ({"ccl": 0.0}, 100),
        ({"dcl": 0.0}, 0),
        ({"valid": False, "reason": "no module online"}, 0),  # the fail-safe set forbids both: 0 %
    ],
)
def test_deye_soc_workaround(values: dict[str, Any], soc: int) -> None:
    on = sent("deye-lv", Options(deye_soc_workaround=True), **values)
    assert struct.unpack("<HH", bytes.fromhex(on[0x355]))[0] == soc
    off = sent("deye-lv", **values)  # off by default: the real SOC
    assert struct.unpack("<HH", bytes.fromhex(off[0x355]))[0] == 80


def test_deye_lv_and_sma_lv_send_the_pylon_bytes() -> None:
    """Their frames are the Pylon LV family's (golden bytes in test_pylontech.py): deye-lv the 1.2 set (with the
    workaround off), sma-lv the victron set."""
    assert sent("deye-lv") == sent("pylontech")
    assert sent("sma-lv") == sent("victron")
