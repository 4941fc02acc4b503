"""pylon-hv: every frame byte for byte from a snapshot computed by hand, the layouts the options give, a decoder
written from the protocol text (struct, not our DBC) that reads every value back, and the schedule's request /
response rule: answered at once, never unasked."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from gateway import config
from gateway.master.model import Level
from gateway.outputs.inverter import Heard, Options, Schedule, frames, profile

from helpers.snapshots import alarm, hexes, hv_snapshot

ROW = profile("pylon-hv")
ENSEMBLE = [0x4210, 0x4220, 0x4230, 0x4240, 0x4250, 0x4260, 0x4270, 0x4280, 0x4290]
SYSTEM = [0x7310, 0x7320, 0x7330, 0x7340]


def sent(options: Options | None = None, **values: Any) -> dict[int, str]:
    out = frames(hv_snapshot(**values), ROW, options, ROW.parts, cells_in_series=16)
    assert all(f.extended for f in out)
    return {f.can_id: hexes(f.data) for f in out}


# Golden bytes of hv_snapshot() (see helpers/snapshots.py), default layout: little-endian, currents + 3000 A.
GOLDEN = {
    # 204.8 V -> 2048 = 0x0800; -12.3 A -> (-12.3 + 3000) x 10 = 29877 = 0x74B5; 25.4 degC -> (25.4 + 100) x 10
    # = 1254 = 0x04E6; SOC 75 = 0x4B; SOH 98 = 0x62
    0x4210: "00 08 B5 74 E6 04 4B 62",
    # CVL 220.8 V -> 2208 = 0x08A0; DVL 179.2 V -> 1792 = 0x0700; CCL 50 A -> 30500 = 0x7724; DCL 80 A -> 30800
    # = 0x7850
    0x4220: "A0 08 00 07 24 77 50 78",
    # 3.345 V -> 3345 = 0x0D11; 3.301 V -> 3301 = 0x0CE5; cell numbers: module 2 cell 7 -> 16 + 7 = 23 = 0x17,
    # module 1 cell 3 -> 3
    0x4230: "11 0D E5 0C 17 00 03 00",
    # 25.4 degC -> 0x04E6, 22.0 degC -> 1220 = 0x04C4; sensors 2 and 1
    0x4240: "E6 04 C4 04 02 00 01 00",
    # status 2 = discharge (-12.3 A), no force charge, no balancing; cycle period 0; no error, alarm, protection
    0x4250: "02 00 00 00 00 00 00 00",
    # modules: 51.3 V (position 2) -> 51300 = 0xC864; 51.1 V (position 3) -> 51100 = 0xC79C
    0x4260: "64 C8 9C C7 02 00 03 00",
    # module temperatures: 25.4 degC (position 1), 22.0 degC (position 2)
    0x4270: "E6 04 C4 04 01 00 02 00",
    0x4280: "00 00 00 00 00 00 00 00",  # charge and discharge allowed
    0x4290: "00 00 00 00 00 00 00 00",
    # hardware 1, reserved, hardware 1.0, software = the gateway's version 0.1, development 0.0
    0x7310: "01 00 01 00 00 01 00 00",
    # 4 modules x 16 cells = 64 = 0x40; 4 in series; 16 per module; 64 x 3.2 V = 204 V = 0xCC; 100 Ah = 0x64
    0x7320: "40 00 04 10 CC 00 64 00",
    0x7330: "50 59 4C 4F 4E 54 45 43",  # PYLONTEC
    0x7340: "48 00 00 00 00 00 00 00",  # H
}


def test_every_frame_byte_for_byte() -> None:
    assert sent() == {i: GOLDEN[i] for i in [*ENSEMBLE, *SYSTEM]}


def test_big_endian_without_offset_and_the_id_suffix() -> None:
    other = Options(byte_order="big", current_offset=False, id_suffix=1)
    out = sent(other)
    assert sorted(out) == sorted(i + 1 for i in [*ENSEMBLE, *SYSTEM])
    # 2048 = 0x0800 big-endian; -12.3 A -> -123 = 0xFF85 (signed, no offset); the temperature keeps its offset
    assert out[0x4211] == "08 00 FF 85 04 E6 4B 62"
    # CCL 50 A -> 500 = 0x01F4, DCL 80 A -> 800 = 0x0320
    assert out[0x4221] == "08 A0 07 00 01 F4 03 20"
    assert out[0x4231] == "0D 11 0C E5 00 17 00 03"
    assert out[0x7331] == GOLDEN[0x7330]  # text is not a number: its bytes keep their order
    little_no_offset = sent(Options(byte_order="little", current_offset=False))
    assert little_no_offset[0x4210] == "00 08 85 FF E6 04 4B 62"


def test_the_fail_safe_set() -> None:
    out = sent(valid=False, reason="no module online")
    # CVL held at the bank voltage 204.8 V, DVL 179.2 V, CCL = DCL = 0 -> (0 + 3000) x 10 = 30000 = 0x7530
    assert out[0x4220] == "00 08 00 07 30 75 30 75"
    # status 0 = sleep; the internal error sets ErrorOther (byte 3 bit 7)
    assert out[0x4250] == "00 00 00 80 00 00 00 00"
    assert out[0x4280] == "AA AA 00 00 00 00 00 00"


@pytest.mark.parametrize(
    ("code", "level", "expected"),
    [
        ("cell_over_voltage", Level.PROTECTION, "00 00 00 00 00 00 02 00"),  # ProtectCellHighVoltage: bit 49
        ("cell_over_voltage", Level.WARNING, "00 00 00 00 02 00 00 00"),  # AlarmCellHighVoltage: bit 33
        ("discharge_under_temperature", Level.PROTECTION, "00 00 00 00 00 00 40 00"),  # bit 54
        ("discharge_over_current", Level.WARNING, "00 00 00 00 00 02 00 00"),  # bit 41
        ("module_comm_lost", Level.PROTECTION, "00 00 00 04 00 00 00 00"),  # ErrorInternalComm: bit 26
        ("module_comm_lost", Level.WARNING, "00 00 00 00 00 00 00 00"),  # a warning: no fault bit
        ("cell_imbalance", Level.WARNING, "00 00 00 00 00 00 00 00"),  # not sent
    ],
)
def test_alarm_bits(code: str, level: Level, expected: str) -> None:
    out = sent(alarms=(alarm(code, level),), current=0.0)
    assert out[0x4250][:2] == "03"  # idle at 0 A
    assert out[0x4250][2:] == expected[2:]


def test_forbidden_marks_follow_the_limits() -> None:
    assert sent(ccl=0.0)[0x4280] == "AA 00 00 00 00 00 00 00"
    assert sent(dcl=0.0)[0x4280] == "00 AA 00 00 00 00 00 00"


# -- a decoder written from the protocol text, not from our DBC --------------------------------------------------


def decode(can_id: int, data: bytes, *, big: bool = False, offset: bool = True) -> dict[str, float | str]:
    """Pylon HV as its protocol text lays it out: u16 fields, currents (A + 3000) x 10, temperatures (degC + 100)
    x 10, or plain signed currents without the offset."""
    end = ">" if big else "<"
    current = "H" if offset else "h"

    def amps(raw: int) -> float:
        return raw / 10 - 3000 if offset else raw / 10

    if can_id == 0x4210:
        v, i, t, soc, soh = struct.unpack(f"{end}H{current}HBB", data)
        return {"V": v / 10, "A": amps(i), "T": t / 10 - 100, "SOC": soc, "SOH": soh}
    if can_id == 0x4220:
        cvl, dvl, ccl, dcl = struct.unpack(f"{end}HH{current}{current}", data)
        return {"CVL": cvl / 10, "DVL": dvl / 10, "CCL": amps(ccl), "DCL": amps(dcl)}
    if can_id in (0x4230, 0x4260):
        vmax, vmin, nmax, nmin = struct.unpack(f"{end}HHHH", data)
        return {"max": vmax / 1000, "min": vmin / 1000, "nmax": nmax, "nmin": nmin}
    if can_id in (0x4240, 0x4270):
        tmax, tmin, nmax, nmin = struct.unpack(f"{end}HHHH", data)
        return {"max": tmax / 10 - 100, "min": tmin / 10 - 100, "nmax": nmax, "nmin": nmin}
    if can_id == 0x4250:
        status, cycle, error, alarms, protections = struct.unpack("<BHBHH", data)
        return {
            "state": status & 7,
            "force": status >> 3 & 1,
            "cycle": cycle,
            "error": error,
            "alarm": alarms,
            "protection": protections,
        }
    if can_id == 0x4280:
        return {"charge": data[0], "discharge": data[1]}
    if can_id == 0x7320:
        cells, modules, per, level, ah = struct.unpack(f"{end}HBBHH", data)
        return {"cells": cells, "modules": modules, "per": per, "level": level, "ah": ah}
    if can_id in (0x7330, 0x7340):
        return {"text": data.rstrip(b"\0").decode("ascii")}
    return {}


EXPECTED = {
    0x4210: {"V": 204.8, "A": -12.3, "T": 25.4, "SOC": 75, "SOH": 98},
    0x4220: {"CVL": 220.8, "DVL": 179.2, "CCL": 50.0, "DCL": 80.0},
    0x4230: {"max": 3.345, "min": 3.301, "nmax": 23, "nmin": 3},
    0x4240: {"max": 25.4, "min": 22.0, "nmax": 2, "nmin": 1},
    0x4250: {"state": 2, "force": 0, "cycle": 0, "error": 0, "alarm": 0, "protection": 0},
    0x4260: {"max": 51.3, "min": 51.1, "nmax": 2, "nmin": 3},
    0x4270: {"max": 25.4, "min": 22.0, "nmax": 1, "nmin": 2},
    0x4280: {"charge": 0, "discharge": 0},
    0x7320: {"cells": 64, "modules": 4, "per": 16, "level": 204, "ah": 100},
    0x7330: {"text": "PYLONTEC"},
    0x7340: {"text": "H"},
}


@pytest.mark.parametrize(
    ("options", "big", "offset"),
    [(None, False, True), (Options("big", False), True, False), (Options("big", True), True, True)],
    ids=["default", "big-endian without offset", "big-endian with offset"],
)
def test_an_independent_decoder_reads_every_value_back(options: Options | None, big: bool, offset: bool) -> None:
    out = frames(hv_snapshot(), ROW, options, ROW.parts, cells_in_series=16)
    decoded = {f.can_id: decode(f.can_id, f.data, big=big, offset=offset) for f in out}
    for can_id, values in EXPECTED.items():
        assert decoded[can_id] == pytest.approx(values), hex(can_id)


# -- request / response -------------------------------------------------------------------------------------------


def schedule(**keys: Any) -> Schedule:
    inverter = config.parse({"can": {"inverter": {"protocol": "pylon-hv", **keys}}}).can.inverter
    return Schedule(inverter, bank=config.BankSection())


def ids(out: list[Any]) -> list[int]:
    return [f.can_id for f in out]


def request(t: float, kind: int, can_id: int = 0x4200) -> Heard:
    return Heard(t, can_id, bytes([kind, 0, 0, 0, 0, 0, 0, 0]))


def test_nothing_unasked_and_each_request_answered_at_once() -> None:
    s = schedule()
    quiet = [s.due(t / 10, hv_snapshot(t=t / 10, seq=t + 1)) for t in range(50)]
    assert quiet == [[]] * 50, "no request, nothing sent, however long"
    assert ids(s.due(5.0, hv_snapshot(t=5.0), [request(5.0, 0x00)])) == ENSEMBLE
    assert ids(s.due(5.1, hv_snapshot(t=5.1), [request(5.1, 0x02)])) == SYSTEM
    assert s.due(5.2, hv_snapshot(t=5.2), [request(5.2, 0x01), request(5.2, 0x00, can_id=0x4201)]) == []
    assert s.due(9.0, hv_snapshot(t=5.2)) == [], "stale: still nothing unasked"
    state = s.state
    assert (state.requests, state.answers, state.last_request, state.last_answer) == (2, 2, 5.1, 5.1)


def test_an_answer_carries_the_fail_safe_set_when_the_master_is_stale() -> None:
    s = schedule()
    out = {f.can_id: hexes(f.data) for f in s.due(9.0, hv_snapshot(t=0.0), [request(9.0, 0x00)])}
    assert out[0x4220] == "00 08 00 07 30 75 30 75"
    assert s.reason == "master stale"


def test_sofar_ids_answer_the_same_request() -> None:
    s = schedule(id_suffix=1)
    assert ids(s.due(0.0, hv_snapshot(), [request(0.0, 0x00)])) == [i + 1 for i in ENSEMBLE]
