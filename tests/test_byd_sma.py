"""The BYD HVS family: byd-hvs and the SMA dialect (sma-hv, sma-sbs). Every frame byte for byte from hv_snapshot()
(helpers/snapshots.py), computed by hand; a struct decoder written from the protocol text reads the values back;
the handshakes: nothing before the inverter speaks (BYD) or pairs (SMA), then identity and cyclic frames."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest

from gateway import config
from gateway.master.model import Level
from gateway.outputs.inverter import Frame, Heard, Schedule, frames, profile

from helpers.snapshots import alarm, assert_values, hexes, hv_snapshot

NAME = {
    # index, then "Battery" / "-Box Pr" / "emium H" / "VS" in ASCII, padded with NULs
    0: "00 42 61 74 74 65 72 79",
    1: "01 2D 42 6F 78 20 50 72",
    2: "02 65 6D 69 75 6D 20 48",
    3: "03 56 53 00 00 00 00 00",
}
LIMITS = "08 A0 07 00 03 20 01 F4"
"""CVL 220.8 V -> 2208 = 0x08A0; DVL 179.2 V -> 1792 = 0x0700; then DCL 80 A -> 800 = 0x0320 before CCL 50 A -> 500
= 0x01F4; big-endian."""
INFO = "08 00 FF 85 00 ED 03 08"
"""204.8 V -> 2048 = 0x0800; -12.3 A -> -123 = 0xFF85; mean of 25.4 and 22.0 degC = 23.7 -> 237 = 0x00ED; then 03 08
(BYD: what a real battery sends; SMA: state 3 = ready, 08)."""


def sent(name: str, **values: Any) -> list[tuple[int, str]]:
    row = profile(name)
    out = frames(hv_snapshot(**values), row, None, row.parts, cells_in_series=16)
    assert not any(f.extended for f in out)
    return [(f.can_id, hexes(f.data)) for f in out]


def test_byd_every_frame_byte_for_byte() -> None:
    assert sent("byd-hvs") == [
        (0x110, LIMITS),
        # SOC 75 % -> 7500 = 0x1D4C; SOH 98 % -> 9800 = 0x2648 (0.01 %); 75 Ah -> 750 = 0x02EE; 100 Ah -> 1000 = 0x03E8
        (0x150, "1D 4C 26 48 02 EE 03 E8"),
        (0x1D0, INFO),
        (0x210, "00 FE 00 DC 00 00 00 00"),  # 25.4 degC -> 254 = 0x00FE; 22.0 degC -> 220 = 0x00DC
        (0x190, "00 00 03 00 00 00 00 00"),  # a healthy battery's alarm frame
        # firmware = the gateway's 0.1; model 0x66; 100 Ah x 204.8 V = 20.48 kWh -> 205 (0.1 kWh) = 0x00CD; 02 09
        (0x250, "00 01 00 66 00 CD 02 09"),
        (0x290, "00 00 00 01 00 00 00 00"),  # serial 1
        (0x2D0, "00 42 59 44 00 00 00 00"),  # BYD
        *((0x3D0, NAME[n]) for n in range(4)),
    ]


SMA = {
    0x358: LIMITS,
    0x158: "AA AA AA AA AA AA AA AA",  # every message "10": none active
    0x3D8: "1D 4C 26 48 02 EE 00 00",  # SOC, SOH (0.01 %), remaining 75 Ah (0.1 Ah)
    0x458: "00 00 00 00 00 00 00 00",  # lifetime energy: not kept
    0x4D8: INFO,
    # 254, 220 (0.1 degC); sum of cells = 204.8 V -> 0x0800; 3.301 V / 25 mV = 132.04 -> 132 = 0x84; 3.345 / 0.025
    # = 133.8 -> 134 = 0x86
    0x518: "00 FE 00 DC 08 00 84 86",
    0x558: "00 01 00 04 00 CD 04 09",  # software 0.1, four modules, 20.48 kWh -> 205, 04 09
    0x598: "00 00 00 01 00 00 00 00",
    0x5D8: "00 42 59 44 00 00 00 00",
}


def test_sma_every_frame_byte_for_byte() -> None:
    out = sent("sma-hv")
    assert [i for i, _ in out] == [0x358, 0x158, 0x518, 0x4D8, 0x3D8, 0x458, 0x558, 0x598, 0x5D8, *[0x618] * 4]
    assert {i: d for i, d in out if i != 0x618} == SMA
    assert [d for i, d in out if i == 0x618] == [NAME[n] for n in range(4)]
    sbs = sent("sma-sbs")
    assert [i for i, _ in sbs] == [0x558, 0x598, 0x5D8, *[0x618] * 4, 0x158, 0x358, 0x3D8, 0x458, 0x4D8, 0x518]
    assert sorted(sbs) == sorted(out)


@pytest.mark.parametrize(
    ("code", "level", "expected"),
    [
        ("cell_over_voltage", Level.PROTECTION, "A6 AA AA AA AA AA AA AA"),  # fault, second message of byte 0
        ("cell_over_voltage", Level.WARNING, "AA AA AA AA A6 AA AA AA"),  # warning: byte 4
        ("charge_under_temperature", Level.PROTECTION, "AA A9 AA AA AA AA AA AA"),  # first message of byte 1
        ("discharge_over_current", Level.PROTECTION, "AA 6A AA AA AA AA AA AA"),  # overload: fourth of byte 1
        ("discharge_over_current", Level.WARNING, "AA AA AA AA AA AA AA AA"),  # no warning for it
        ("module_fault", Level.PROTECTION, "AA AA 6A AA AA AA AA AA"),  # hardware fault: fourth of byte 2
        ("sensor_mismatch", Level.WARNING, "AA AA AA AA AA 6A AA AA"),  # self-diagnosis: fourth of byte 5
    ],
)
def test_sma_fault_and_warning_pairs(code: str, level: Level, expected: str) -> None:
    assert dict(sent("sma-hv", alarms=(alarm(code, level),)))[0x158] == expected


def test_the_fail_safe_set() -> None:
    byd = dict(sent("byd-hvs", valid=False, reason="no module online"))
    assert byd[0x110] == "08 00 07 00 00 00 00 00"  # CVL at the bank voltage 204.8 V, DCL = CCL = 0
    sma = dict(sent("sma-hv", valid=False, reason="no module online"))
    assert sma[0x358] == "08 00 07 00 00 00 00 00"
    assert sma[0x4D8][-5:] == "02 08"  # state 2: stop
    assert sma[0x158] == "A9 AA AA AA AA AA AA AA"  # system defect: the internal error


def decode(can_id: int, data: bytes) -> dict[str, float | str]:
    """BYD / SMA frames as the protocol text lays them out, big-endian."""
    if can_id in (0x110, 0x358):
        cvl, dvl, dcl, ccl = struct.unpack(">HHHH", data)
        return {"CVL": cvl / 10, "DVL": dvl / 10, "DCL": dcl / 10, "CCL": ccl / 10}
    if can_id in (0x150, 0x3D8):
        soc, soh, rem, full = struct.unpack(">HHHH", data)
        return {"SOC": soc / 100, "SOH": soh / 100, "rem": rem / 10, "full": full / 10}
    if can_id in (0x1D0, 0x4D8):
        v, i, t, state, _ = struct.unpack(">HhhBB", data)
        return {"V": v / 10, "A": i / 10, "T": t / 10, "state": state}
    if can_id == 0x518:
        tmax, tmin, total, vmin, vmax = struct.unpack(">hhHBB", data)
        return {"Tmax": tmax / 10, "Tmin": tmin / 10, "sum": total / 10, "min": vmin * 0.025, "max": vmax * 0.025}
    if can_id in (0x250, 0x558):
        return {"kWh": struct.unpack_from(">H", data, 4)[0] / 10}
    if can_id in (0x3D0, 0x618, 0x2D0, 0x5D8):
        return {"index": data[0], "text": data[1:].rstrip(b"\0").decode()}
    return {}


def test_an_independent_decoder_reads_every_value_back() -> None:
    decoded = {}
    for name in ("byd-hvs", "sma-hv"):
        row = profile(name)
        for f in frames(hv_snapshot(), row, None, row.parts):
            decoded[(name, f.can_id, f.data[0])] = decode(f.can_id, f.data)
    expected = {
        0x110: {"CVL": 220.8, "DVL": 179.2, "DCL": 80.0, "CCL": 50.0},
        0x150: {"SOC": 75.0, "SOH": 98.0, "rem": 75.0, "full": 100.0},
        0x1D0: {"V": 204.8, "A": -12.3, "T": 23.7, "state": 3},
        0x250: {"kWh": 20.5},
    }
    by_id = {k[1]: v for k, v in decoded.items() if k[0] == "byd-hvs"}
    assert_values({k: by_id[k] for k in expected}, expected)
    assert [decoded[("byd-hvs", 0x3D0, n)]["text"] for n in range(4)] == ["Battery", "-Box Pr", "emium H", "VS"]
    sma = {k[1]: v for k, v in decoded.items() if k[0] == "sma-hv"}
    assert_values(
        {k: sma[k] for k in (0x358, 0x4D8, 0x518, 0x558)},
        {
            0x358: expected[0x110],
            0x4D8: expected[0x1D0],
            0x518: {"Tmax": 25.4, "Tmin": 22.0, "sum": 204.8, "min": 3.3, "max": 3.35},
            0x558: {"kWh": 20.5},
        },
    )
    assert sma[0x5D8] == {"index": 0, "text": "BYD"}


# -- handshakes -------------------------------------------------------------------------------------------------------


def schedule(name: str) -> Schedule:
    inverter = config.parse({"can": {"inverter": {"protocol": name}}}).can.inverter
    return Schedule(inverter, bank=config.BankSection())


def ids(out: list[Frame]) -> list[int]:
    return [f.can_id for f in out]


def run(s: Schedule, start: float, stop: float, heard: dict[float, Heard] | None = None) -> dict[float, list[int]]:
    """Drive the schedule with a tick every 0.1 s (fresh snapshots), `heard` frames at their ticks."""
    out = {}
    for n in range(round(start * 10), round(stop * 10)):
        t = n / 10
        h = [] if heard is None or t not in heard else [heard[t]]
        sent = ids(s.due(t, hv_snapshot(t=t, seq=n + 1), h))
        if sent:
            out[t] = sent
    return out


def test_byd_waits_for_the_inverter_then_identity_and_cyclic_frames() -> None:
    s = schedule("byd-hvs")
    assert run(s, 0.0, 3.0) == {}, "nothing before the inverter speaks"
    assert s.state.paired is False
    sent = run(s, 3.0, 13.5, {3.0: Heard(3.0, 0x091, bytes(8)), 5.0: Heard(5.0, 0x151, bytes([1]) + bytes(7))})
    identity = [0x250, 0x290, 0x2D0, 0x3D0, 0x3D0, 0x3D0, 0x3D0]
    assert sent == {
        3.0: [*identity, 0x110, 0x150, 0x1D0, 0x210, 0x190],  # started: identity, then every group
        5.0: [*identity, 0x110],  # 0x151 bit 0 asks for the identity again; 0x110 every 2 s
        7.0: [0x110],
        9.0: [0x110],
        11.0: [0x110],
        13.0: [0x110, 0x150, 0x1D0, 0x210],  # the 10 s group
    }
    assert s.state.paired is True


def test_sma_hv_pairs_250_ms_apart_then_sends_its_cyclic_frames() -> None:
    s = schedule("sma-hv")
    assert run(s, 0.0, 2.0) == {}, "nothing before the inverter asks to pair"
    sent = run(s, 2.0, 6.0, {2.0: Heard(2.0, 0x5E7, bytes(8))})
    pairing = [0x558, 0x598, 0x5D8, 0x618, 0x618, 0x618, 0x618, 0x358, 0x3D8, 0x458, 0x4D8, 0x518]
    queued = [f for t in sorted(sent) for f in sent[t]][: len(pairing)]
    assert queued == pairing
    times = sorted(sent)
    assert all(len(sent[t]) == 1 for t in times[:11]), "one pairing frame at a time"
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(times[:12])), "250 ms apart, on the ticks"
    paired_at = times[11]
    assert sent[paired_at] == [0x518, 0x358, 0x158, 0x518, 0x4D8, 0x3D8, 0x458], "then the cyclic frames"
    assert s.state.paired is True


def test_sma_sbs_sends_everything_every_tenth_of_a_second_and_at_once_on_pairing() -> None:
    s = schedule("sma-sbs")
    sent = run(s, 0.0, 1.0)
    assert sorted(sent) == [n / 10 for n in range(10)]
    assert all(len(v) == 13 for v in sent.values())
    again = ids(s.due(0.95, hv_snapshot(t=0.9, seq=10), [Heard(0.95, 0x660, bytes(8))]))
    assert len(again) == 13
