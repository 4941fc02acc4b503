"""The other HV profiles: sofar, solax, foxess, growatt-hv, sungrow. Every frame byte for byte from hv_snapshot()
(helpers/snapshots.py), computed by hand; a struct decoder written from the protocol text reads the values back;
and each one's mode: Sofar's queries addressed by pack, Solax's contactor handshake, FoxESS's polls, Growatt HV
and Sungrow waiting for the inverter."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from gateway import config
from gateway.master.model import Flags, Level
from gateway.outputs.inverter import Frame, Heard, Options, Schedule, frames, profile

from helpers.snapshots import alarm, assert_values, hexes, hv_snapshot

LIMITS_LE = "A0 08 00 07 F4 01 20 03"
"""CVL 220.8 V -> 2208 = 0x08A0, DVL 179.2 V -> 1792 = 0x0700, CCL 50 A -> 500 = 0x01F4, DCL 80 A -> 800 = 0x0320,
little-endian (Solax, FoxESS, Sungrow order)."""


def sent(name: str, options: Options | None = None, **kw: Any) -> list[tuple[int, str]]:
    row = profile(name)
    values = {k: kw.pop(k) for k in list(kw) if k not in ("session", "request")}
    out = frames(hv_snapshot(**values), row, options, row.parts, cells_in_series=16, **kw)
    assert all(f.extended == row.extended for f in out)
    return [(f.can_id, hexes(f.data)) for f in out]


# -- sofar ------------------------------------------------------------------------------------------------------------

SOFAR = [
    (0x351, "A0 08 F4 01 20 03 00 07"),  # CVL 2208, CCL 500, DCL 800, DVL 1792 (Pylon order), little-endian
    (0x355, "4B 00 62 00 00 00 00 00"),  # SOC 75 %, SOH 98 %
    (0x356, "00 08 85 FF FE 00 00 00"),  # 204.8 V -> 2048 (0.1 V); -12.3 A -> -123 = 0xFF85; 25.4 degC -> 254
    (0x359, "01 04 01 40 00 00 00 00"),  # one string, four modules in series, CAN version 1, 64 cells
    (0x35E, "42 4D 53 47 41 54 45 00"),  # BMSGATE
    (0x35F, "01 00 01 00 64 00 00 00"),  # Li-ion, version 0.1.0, 100 Ah
    (0x30F, "00 03 00 00 00 00 00 00"),  # normal; discharge (bit 0) and charge (bit 1) enabled
    (0x35A, "00 00 00 00 00 00 00 00"),
]


def test_sofar_every_frame_byte_for_byte() -> None:
    assert sent("sofar")[:8] == SOFAR
    capped = dict(sent("sofar", soc=100.0))
    assert capped[0x355][:2] == "63"  # 99 %
    shifted = dict(sent("sofar", Options(battery_id=2)))
    assert sorted(shifted)[:3] == [0x230F, 0x2351, 0x2355], "every ID plus battery_id << 12"


def test_sofar_every_answer_byte_for_byte() -> None:
    """All eighteen answers, to a request with pack 2, inquiry 0x0A, byte 2 = 3, byte 3 = 5 (battery_id 2)."""
    out = sent("sofar", Options(battery_id=2), request=bytes.fromhex("02 0A 03 05"))[8:]
    realtime = [0x670, 0x671, 0x680, 0x681, 0x690, 0x691, 0x6A0, 0x6B0, 0x6C0]
    history = [0x770, 0x771, 0x772, 0x773, 0x780, 0x781, 0x782, 0x783, 0x784]
    assert out == [(0x2000 + i, "02 03 00 00 00 00 00 00") for i in realtime] + [
        (0x2000 + i, "02 05 03 00 00 00 00 00") for i in history
    ], "0x605: pack 2, sub-target (byte 2) 3, record 0; 0x705: pack 2, sub-target (byte 3) 5, record (byte 2) 3"


def test_sofar_answers_carry_the_pack_module_and_record() -> None:
    # 0x605 pack 0, inquiry 0x0A, sub-target 3 -> 0x690: pack 0, sub-target 3, record 0
    assert sent("sofar", request=bytes.fromhex("00 0A 03 00"))[8 + 4] == (0x690, "00 03 00 00 00 00 00 00")
    # 0x705 pack 0, inquiry 4, record 3, sub-target 5 -> 0x780: pack 0, sub-target 5, record 3
    assert dict(sent("sofar", request=bytes.fromhex("00 04 03 05")))[0x780] == "00 05 03 00 00 00 00 00"


def schedule(name: str, **keys: Any) -> Schedule:
    inverter = config.parse({"can": {"inverter": {"protocol": name, **keys}}}).can.inverter
    return Schedule(inverter, bank=config.BankSection())


def ids(out: list[Frame]) -> list[int]:
    return [f.can_id for f in out]


def test_sofar_broadcasts_and_answers_only_queries_to_its_pack() -> None:
    s = schedule("sofar", battery_id=1)
    first = ids(s.due(0.0, hv_snapshot(t=0.0)))
    assert first == [0x1351, 0x1355, 0x1356, 0x1359, 0x135E, 0x135F, 0x130F, 0x135A]
    assert ids(s.due(0.5, hv_snapshot(t=0.5))) == [], "0x35A only when it changes"
    assert ids(s.due(0.55, hv_snapshot(t=0.5), [Heard(0.55, 0x605, bytes([1, 0x0C, 2]) + bytes(5))])) == [0x16A0]
    assert s.due(0.6, hv_snapshot(t=0.5), [Heard(0.6, 0x605, bytes([0, 0x0C, 2]) + bytes(5))]) == [], "not our pack"
    assert ids(s.due(0.65, hv_snapshot(t=0.5), [Heard(0.65, 0x705, bytes([1, 8, 0, 0]) + bytes(4))])) == [0x1784]


def sofar_decode(can_id: int, data: bytes) -> dict[str, float]:
    base = can_id & 0xFFF
    if base == 0x351:
        cvl, ccl, dcl, dvl = struct.unpack("<HHHH", data)
        return {"CVL": cvl / 10, "CCL": ccl / 10, "DCL": dcl / 10, "DVL": dvl / 10}
    if base == 0x356:
        v, i, t = struct.unpack_from("<Hhh", data)
        return {"V": v / 10, "A": i / 10, "T": t / 10}
    if base == 0x30F:
        return {"discharge": data[1] & 1, "charge": data[1] >> 1 & 1}
    return {}


def test_sofar_an_independent_decoder_reads_every_value_back() -> None:
    out = {f.can_id: sofar_decode(f.can_id, f.data) for f in frames(hv_snapshot(), profile("sofar"))}
    assert_values(
        {k: out[k] for k in (0x351, 0x356, 0x30F)},
        {
            0x351: {"CVL": 220.8, "CCL": 50.0, "DCL": 80.0, "DVL": 179.2},
            0x356: {"V": 204.8, "A": -12.3, "T": 25.4},
            0x30F: {"discharge": 1, "charge": 1},
        },
    )


# -- solax ------------------------------------------------------------------------------------------------------------

SOLAX_DATA = [
    # total 100 Ah x 204.8 V = 20480 Wh = 0x5000; SOH 98 = 0x62; SOC 75 = 0x4B
    (0x187E, "00 50 00 00 62 4B 00 00"),
    (0x187A, "01 50 00 00 00 00 00 00"),
    (0x1872, LIMITS_LE),
    # 2048 (0.1 V); -123 = 0xFF85; SOC 75; remaining 75 Ah x 204.8 V = 15360 Wh -> 1536 (10 Wh) = 0x0600
    (0x1873, "00 08 85 FF 4B 00 00 06"),
    # 254, 220 (0.1 degC); cells in 0.1 V: 3.345 -> 33 = 0x21, 3.301 -> 33
    (0x1874, "FE 00 DC 00 21 00 21 00"),
    # mean temperature 23.7 -> 237 = 0xED; four modules; contactor closed (1)
    (0x1875, "ED 00 04 00 01 00 00 00"),
    (0x1876, "FE 00 11 0D DC 00 E5 0C"),  # 254, 3345 mV = 0x0D11, 220, 3301 mV = 0x0CE5
    (0x1877, "00 00 00 00 51 00 22 02"),  # type 0x51, firmware 0x22 of the master BMS (0x02)
    (0x1878, "00 08 00 00 00 50 00 00"),  # pack voltage 2048, total 20480 Wh
]


def test_solax_every_frame_byte_for_byte() -> None:
    out = sent("solax", session="closed")
    assert out[2:11] == SOLAX_DATA
    assert out[:2] == [(0x1881, "00 42 4D 53 47 57 30 31")] * 1 + [(0x1882, "00 42 4D 53 47 57 30 31")]  # BMSGW01
    assert out[11:] == [(0x100A001, ""), (0x1801, "02 00 01 00 01 00 00 00")]
    assert dict(sent("solax"))[0x1875] == "ED 00 04 00 00 00 00 00", "contactor open while announcing"


POLL = bytes.fromhex("01 00 01 00 00 00 00 00")
CLOSE = bytes.fromhex("02 00 01 00 01 00 00 00")
OPEN = bytes.fromhex("02 00 01 00 00 00 00 00")
DATA_IDS = [0x187E, 0x187A, 0x1872, 0x1873, 0x1874, 0x1875, 0x1876, 0x1877, 0x1878]


def poll(s: Schedule, t: float, data: bytes = POLL) -> list[Frame]:
    return s.due(t, hv_snapshot(t=t), [Heard(t, 0x1871, data)])


def contactor(out: list[Frame]) -> int:
    return next(f.data[4] for f in out if f.can_id == 0x1875)


def test_solax_contactor_handshake() -> None:
    s = schedule("solax")
    assert s.due(0.0, hv_snapshot(t=0.0)) == [], "nothing unasked"
    first = poll(s, 0.1)
    assert ids(first) == [*DATA_IDS, 0x100A001] and contactor(first) == 0, "announcing"
    assert ids(poll(s, 1.1, CLOSE)) == [*DATA_IDS, 0x100A001], "the close request, answered as a poll"
    closing = poll(s, 2.1)
    assert ids(closing) == [*DATA_IDS, 0x1801] and contactor(closing) == 0, "0x1801: the contactor closes"
    closed = poll(s, 3.1)
    assert ids(closed) == DATA_IDS and contactor(closed) == 1 and s.state.paired
    assert ids(poll(s, 4.1, OPEN)) == DATA_IDS and s.session == "announce", "the open request"
    assert ids(poll(s, 5.1)) == [*DATA_IDS, 0x100A001]
    poll(s, 6.1, CLOSE)
    poll(s, 7.1)
    assert s.session == "closed"
    assert ids(poll(s, 9.2)) == [*DATA_IDS, 0x100A001], "no poll for 2 s: announcing again"
    assert ids(poll(s, 9.3, bytes.fromhex("05 00 01 00 00 00 00 00"))) == [0x1881, 0x1882]


def solax_decode(can_id: int, data: bytes) -> dict[str, float]:
    """rand12345/solax_can_bus's layout: little-endian, 0.1 V / 0.1 A, SOC %, energy in 0.01 kWh."""
    if can_id == 0x1872:
        vmax, vmin, charge, discharge = struct.unpack("<HHHH", data)
        return {"Vmax": vmax / 10, "Vmin": vmin / 10, "charge": charge / 10, "discharge": discharge / 10}
    if can_id == 0x1873:
        v, i, soc, kwh = struct.unpack("<HhHH", data)
        return {"V": v / 10, "A": i / 10, "SOC": soc, "kWh": kwh / 100}
    if can_id == 0x1874:
        tmax, tmin, cmax, cmin = struct.unpack("<hhHH", data)
        return {"Tmax": tmax / 10, "Tmin": tmin / 10, "cmax": cmax / 10, "cmin": cmin / 10}
    if can_id == 0x1878:
        v, _, wh = struct.unpack("<HHI", data)
        return {"V": v / 10, "Wh": wh}
    return {}


def test_solax_an_independent_decoder_reads_every_value_back() -> None:
    row = profile("solax")
    out = {f.can_id: solax_decode(f.can_id, f.data) for f in frames(hv_snapshot(), row, None, row.parts)}
    assert_values(
        {k: out[k] for k in (0x1872, 0x1873, 0x1874, 0x1878)},
        {
            0x1872: {"Vmax": 220.8, "Vmin": 179.2, "charge": 50.0, "discharge": 80.0},
            0x1873: {"V": 204.8, "A": -12.3, "SOC": 75, "kWh": 15.36},
            0x1874: {"Tmax": 25.4, "Tmin": 22.0, "cmax": 3.3, "cmin": 3.3},
            0x1878: {"V": 204.8, "Wh": 20480},
        },
    )


# -- foxess -----------------------------------------------------------------------------------------------------------

FOXESS = [
    (0x1872, LIMITS_LE),
    (0x1873, "00 08 85 FF 4B 00 00 06"),
    (0x1874, "FE 00 DC 00 11 0D E5 0C"),  # cells in mV here: 3345 = 0x0D11, 3301 = 0x0CE5
    (0x1875, "ED 00 04 04 01 00 00 00"),  # 23.7 degC; four packs operational, four modules; contactor on; 0 cycles
    (0x1876, "00 00 11 0D 00 00 E5 0C"),  # charging allowed (bit 0 = 0); cells in mV
    (0x1877, "00 00 00 00 52 00 12 01"),  # no error; HV2600 V2 (0x52), firmware 0x12, main BMS
    (0x1878, "07 0A 00 00 00 00 00 00"),  # 256.7 V AC -> 2567 = 0x0A07; no lifetime energy
    (0x1879, "00 2B 00 00 00 00 00 00"),  # discharging (-12.3 A): 0x2B
    # pack n = the module at position n: no current reading (0); temperatures + 40: 25.4 -> 65.4 -> 65 = 0x41,
    # 23.0 -> 63 = 0x3F; no SOC reading (0); 0x0A; 51.2 V -> 5120 (0.01 V) = 0x1400
    (0x0C05, "00 00 41 3F 00 0A 00 14"),
    (0x0C06, "00 00 40 3E 00 0A 0A 14"),  # 24.0 -> 64, 22.0 -> 62; 51.3 V -> 5130 = 0x140A
    (0x0C07, "00 00 40 3F 00 0A F6 13"),  # 23.5 -> 63.5 -> 64, 22.5 -> 62.5 -> 63; 51.1 V -> 5110 = 0x13F6
    (0x0C08, "00 00 3F 3E 00 0A 00 14"),  # 23.0 -> 63, 22.2 -> 62.2 -> 62; 51.2 V
    *((frame_id, "00 00 00 00 00 00 00 00") for frame_id in range(0x0C09, 0x0C0D)),  # no module there
    *((frame_id, "00 42 4D 53 47 57 30 31") for frame_id in (0x1881, 0x1882, 0x1883)),
]


def test_foxess_every_frame_byte_for_byte() -> None:
    assert sent("foxess") == FOXESS
    failsafe = dict(sent("foxess", valid=False, reason="no module online"))
    assert failsafe[0x1877][:2] == "02"  # the pack is in error
    assert failsafe[0x1876][:2] == "01"  # charging not allowed
    assert failsafe[0x1879][:2] == "01"  # the internal error's flag


def test_foxess_answers_each_poll() -> None:
    s = schedule("foxess")
    assert ids(poll(s, 0.0)) == list(range(0x1872, 0x187A))
    assert ids(poll(s, 0.1, bytes.fromhex("01 00 01 00 01 00 00 00"))) == list(range(0x0C05, 0x0C0D))
    assert ids(poll(s, 0.2, bytes.fromhex("05 00 01 00 00 00 00 00"))) == [0x1881, 0x1882, 0x1883]
    assert poll(s, 0.3, bytes.fromhex("03 06 17 05 09 09 28 22")) == [], "the time: no answer"
    assert s.due(5.0, hv_snapshot(t=5.0)) == []


# -- growatt-hv -------------------------------------------------------------------------------------------------------

GROWATT_HV = {
    # CVL 2208 = 0x08A0, CCL 500 = 0x01F4, DCL 800 = 0x0320, big-endian; byte 6: ISO detected (bit 5), battery
    # normal (bit 4) = 0x30; byte 7: state 3 = discharging, charge and discharge allowed
    0x3110: "08 A0 01 F4 03 20 30 03",
    0x3120: "00 00 00 00 00 00 00 00",
    0x3130: "08 00 FF 85 00 FE 4B 62",  # 2048, -123, 254, SOC 75, SOH 98
    0x3140: "1D 4C 27 10 42 47 00 00",  # 75 Ah -> 7500 (10 mAh) = 0x1D4C; 100 Ah -> 10000 = 0x2710; "BG"; 0 cycles
    0x3150: "07 00 00 FE 00 40 00 04",  # DVL 1792 = 0x0700; 25.4 degC; 64 cells; 4 modules in series
    0x3160: "00 00 02 07 01 03 00 DC",  # max cell: module 2 cell 7; min: module 1 cell 3; 22.0 degC
    0x3170: "01 02 02 01 00 00 00 00",  # hottest: module 1 sensor 2; coldest: module 2 sensor 1
    0x3180: "42 47 00 01 00 40 00 00",  # "BG", one string, 64 cells
    0x3190: "00 0D 11 0C E5 00 00 00",  # 3345 mV, 3301 mV
    0x3200: "42 47 01 00 00 00 0D 7A",  # "BG", hardware 1; cell charge voltage 220.8 V / 64 = 3.45 V -> 3450 = 0x0D7A
    0x3210: "00 00 00 00 00 00 00 00",
    0x3220: "00 00 00 00 00 00 CD 00",  # no force charge; 100 Ah x 204.8 V = 20.48 kWh -> 205 (0.1 kWh) = 0x00CD
    0x3240: "01 00 00 00 01 00 00 00",  # pack 1, no lifetime energy
    # upgrade status, fault history, debugging, product version, series, internal alarm: none (0)
    **dict.fromkeys((0x3250, 0x3260, 0x3270, 0x3280, 0x3290, 0x3F00), "00 00 00 00 00 00 00 00"),
}


def test_growatt_hv_every_frame_byte_for_byte() -> None:
    out = sent("growatt-hv")
    assert [i for i, _ in out] == [
        *(0x3110, 0x3120, 0x3130, 0x3140, 0x3150, 0x3160, 0x3170, 0x3180, 0x3190, 0x3200, 0x3210, 0x3220),
        *(0x3230, 0x3230, 0x3230),
        *(0x3240, 0x3250, 0x3260, 0x3270, 0x3280, 0x3290, 0x3F00),
    ]
    assert {i: d for i, d in out if i in GROWATT_HV} == GROWATT_HV
    assert [d for i, d in out if i == 0x3230] == [f"0{n} 00 00 00 00 00 00 00" for n in range(3)]
    forbidden = dict(sent("growatt-hv", ccl=0.0, alarms=(alarm("cell_over_voltage", Level.PROTECTION),)))
    assert forbidden[0x3110][-2:] == "43", "no charge (bit 6) + discharging"
    assert forbidden[0x3120] == "00 00 00 10 00 00 00 00", "ProtectCellOverVoltage: bit 4 of the first u32"
    forced = dict(sent("growatt-hv", flags=Flags(charge_enable=True, discharge_enable=True, force_charge=True)))
    assert forced[0x3220][12:14] == "AA"


def growatt_hv_decode(can_id: int, data: bytes) -> dict[str, float]:
    if can_id == 0x3110:
        cvl, ccl, dcl, iso, state = struct.unpack(">HHHBB", data)
        return {
            "CVL": cvl / 10,
            "CCL": ccl / 10,
            "DCL": dcl / 10,
            "iso": iso >> 5 & 1,
            "state": state & 3,
            "no_charge": state >> 6 & 1,
        }
    if can_id == 0x3130:
        v, i, t, soc, soh = struct.unpack(">HhhBB", data)
        return {"V": v / 10, "A": i / 10, "T": t / 10, "SOC": soc, "SOH": soh}
    if can_id == 0x3140:
        rem, full, _, cycles = struct.unpack(">HHHH", data)
        return {"rem": rem / 100, "full": full / 100, "cycles": cycles}
    return {}


def test_growatt_hv_an_independent_decoder_reads_every_value_back() -> None:
    out = {f.can_id: growatt_hv_decode(f.can_id, f.data) for f in frames(hv_snapshot(), profile("growatt-hv"))}
    assert_values(
        {k: out[k] for k in (0x3110, 0x3130, 0x3140)},
        {
            0x3110: {"CVL": 220.8, "CCL": 50.0, "DCL": 80.0, "iso": 1, "state": 3, "no_charge": 0},
            0x3130: {"V": 204.8, "A": -12.3, "T": 25.4, "SOC": 75, "SOH": 98},
            0x3140: {"rem": 75.0, "full": 100.0, "cycles": 0},
        },
    )


@pytest.mark.parametrize(("name", "heard"), [("growatt-hv", 0x3010), ("sungrow", 0x101)])
def test_growatt_hv_and_sungrow_wait_for_the_inverter_then_send_every_second(name: str, heard: int) -> None:
    s = schedule(name)
    quiet = [s.due(t / 10, hv_snapshot(t=t / 10, seq=t + 1)) for t in range(20)]
    assert quiet == [[]] * 20 and s.state.paired is False
    started = s.due(2.0, hv_snapshot(t=2.0, seq=30), [Heard(2.0, heard, bytes(8))])
    assert len(started) == len(profile(name).parts) and s.state.paired is True
    assert s.due(2.5, hv_snapshot(t=2.5, seq=31)) == []
    assert len(s.due(3.0, hv_snapshot(t=3.0, seq=32))) == len(profile(name).parts)


# -- sungrow ----------------------------------------------------------------------------------------------------------

SUNGROW = {
    0x402: "00 00 55 00 00 00 00 00",
    0x500: "01 01 03 FF 00 01 00 4B",  # the SBR's constants, SOC 75 %
    0x401: "00 00 00 00 00 00 00 00",
    0x701: LIMITS_LE,
    # SOC 7500 = 0x1D4C, SOH 9800 = 0x2648 (0.01 %); 75 Ah x 204.8 V = 15360 Wh = 0x3C00; 20480 Wh = 0x5000
    0x702: "4C 1D 48 26 00 3C 00 50",
    0x703: "00 00 00 00 00 00 00 00",
    0x704: "00 08 85 FF 00 08 FE 00",  # 2048, -123, 2048, 254
    0x705: "02 00 01 E8 20 00 08 00",  # run; no end stop; 1; model 8420 + 4 modules = 8424 = 0x20E8; 2048
    0x706: "FE 00 DC 00 11 0D E5 0C",  # 254, 220, 3345 mV, 3301 mV
    0x504: "00 08 7B 00 00 08 FE 00",  # the current reversed: +123 = 0x007B
    0x000: "00 00 00 00 00 00 00 00",
    0x700: "00 00 00 00 00 00 00 00",
}


def test_sungrow_every_frame_byte_for_byte() -> None:
    out = sent("sungrow")
    by_id = dict(out)
    assert {i: by_id[i] for i in SUNGROW} == SUNGROW
    for k in range(1, 7):
        if k != 5:
            assert by_id[k] == by_id[0x700 + k], "0x001-0x006 copy 0x701-0x706 (but 0x005)"
        if k != 4:
            assert by_id[0x500 + k] == by_id[0x700 + k], "0x501-0x506 copy them (but 0x504)"
    assert by_id[0x005] == SUNGROW[0x705]
    assert dict(sent("sungrow", ccl=0.0))[0x005] == "02 01 01 E8 20 00 08 00", "end stop 1: full"
    assert dict(sent("sungrow", soc=0.0))[0x005][3:5] == "02", "end stop 2: empty"
    assert dict(sent("sungrow", valid=False, reason="x"))[0x705][:2] == "01", "standby while not valid"


def test_sungrow_an_independent_decoder_reads_every_value_back() -> None:
    out = {f.can_id: f.data for f in frames(hv_snapshot(), profile("sungrow"))}
    cvl, dvl, ccl, dcl = struct.unpack("<HHHH", out[0x701])
    soc, soh, rem, full = struct.unpack("<HHHH", out[0x702])
    v, i, _, t = struct.unpack("<HhHh", out[0x704])
    assert (cvl / 10, dvl / 10, ccl / 10, dcl / 10) == pytest.approx((220.8, 179.2, 50.0, 80.0))
    assert (soc / 100, soh / 100, rem, full) == pytest.approx((75.0, 98.0, 15360, 20480))
    assert (v / 10, i / 10, t / 10) == pytest.approx((204.8, -12.3, 25.4))
    assert struct.unpack("<h", out[0x504][2:4])[0] / 10 == pytest.approx(12.3)
