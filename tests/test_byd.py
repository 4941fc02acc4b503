"""The BYD map as a pure function of the snapshot (no serial line): its table, its fail-safe, its rounding and caps,
its docs; the heartbeat, and how the master hears the GEN24 through the core."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import Core
from gateway.master.model import (
    Alarm,
    AlarmCode,
    BankSnapshot,
    Extreme,
    Flags,
    InverterInfo,
    Level,
    Limit,
    Limits,
    empty_snapshot,
)
from gateway.outputs import byd

from helpers.modbus_rtu import TOWER, rtu_config, tower_snapshot

ROOT = Path(__file__).parents[1]
PLATE = byd.nameplate(rtu_config("/dev/null", bank=TOWER))


def registers(snapshot: BankSnapshot, plate: byd.Nameplate = PLATE) -> dict[int, int]:
    return byd.image(snapshot, plate)


# -- the table -----------------------------------------------------------------------------------------------------


def test_rows_fill_the_read_only_blocks_exactly_and_never_overlap() -> None:
    """Every register the GEN24 may read in the computed blocks has a row (so the docs name it), and no row is
    outside them or in the GEN24's writable block."""
    covered: list[int] = [row.address + i for row in byd.ROWS for i in range(row.size)]
    assert len(covered) == len(set(covered))
    computed = {a for b in byd.BLOCKS if not b.writable and b.start < 1000 for a in range(b.start, b.start + b.length)}
    assert set(covered) == computed
    assert [row.address for row in byd.ROWS] == sorted(row.address for row in byd.ROWS)
    assert [b for b in byd.BLOCKS if b.writable] == [byd.Block(400, 20, True, byd.BLOCKS[3].name)]
    assert byd.HEARTBEAT in range(400, 420)


@pytest.mark.parametrize("doc", [ROOT / "docs" / "modbus.md", ROOT / "README.md"], ids=["docs", "readme"])
def test_docs_are_the_table(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert byd.update_docs(text) == text, "run: python -m gateway.outputs.byd docs/modbus.md README.md"


def test_every_row_is_in_the_docs_with_its_address_and_scale() -> None:
    text = (ROOT / "docs" / "modbus.md").read_text(encoding="utf-8")
    for row in byd.ROWS:
        span = str(row.address) if row.size == 1 else f"{row.address}..{row.address + row.size - 1}"
        scale = "" if row.kind == "text" else f"{row.scale:g}"
        assert f"| {span} | {row.name} |" in text
        assert f"| {scale} | {row.unit} | {row.how} |" in text


# -- values --------------------------------------------------------------------------------------------------------


def test_an_invalid_snapshot_is_the_fail_safe_set() -> None:
    """What the master cannot vouch for: STANDBY, idle, no power either way, no outer voltage; the rest as known."""
    image = registers(tower_snapshot().failsafe("module 3 lost"))
    assert [image[a] for a in (300, 302, 306, 307, 308, 309)] == [0, 128, 0, 0, 0, 0]
    assert image[310] == 4200  # the inner voltage is still what was measured
    assert (image[205], image[206]) == (4672, 3200)  # the cells' window, whatever the master's CVL and DVL


def test_an_invalid_snapshot_with_a_protection_is_a_fault() -> None:
    lost = Alarm(AlarmCode.MODULE_COMM_LOST, Level.PROTECTION, (3,), 990.0, "module 3: silent")
    image = registers(tower_snapshot(alarms=(lost,)).failsafe("module 3 lost"))
    assert (image[300], image[306], image[307]) == (4, 0, 0)
    warning = Alarm(AlarmCode.CELL_IMBALANCE, Level.WARNING, (3,), 990.0)
    assert registers(tower_snapshot(alarms=(warning,)).failsafe("x"))[300] == 0


def test_a_protection_in_a_valid_bank_leaves_it_active_with_the_masters_limits() -> None:
    """The limits carry the protection (0 A charging here); the status stays ACTIVE so discharging goes on."""
    over = Alarm(AlarmCode.CELL_OVER_VOLTAGE, Level.PROTECTION, (5,), 990.0)
    limits = Limits(Limit(0.0, "cell_voltage"), Limit(80.0, "t"), Limit(441.6, "t"), Limit(384.0, "t"))
    image = registers(tower_snapshot(alarms=(over,), limits=limits, flags=Flags(discharge_enable=True)))
    assert (image[300], image[306], image[307]) == (3, 30000, 0)


def test_the_snapshot_before_the_first_tick() -> None:
    """Nothing known: STANDBY, SOC at its 1 % floor, the configured capacity, temperatures and SOH 0."""
    image = registers(empty_snapshot(0.0, discharge_voltage=384.0))
    # capacity: 100 Ah x 1 string x 409.6 V = 40960 Wh
    assert [image[a] for a in (202, 205, 206, 300, 302, 303, 304, 305, 306, 307, 312, 313, 323)] == [
        40960, 4672, 3200, 0, 128, 100, 0, 0, 0, 0, 0, 0, 0,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "charge", "discharge", "mode"),
    [
        (12.5, True, True, 129),
        (-12.5, True, True, 130),
        (0.4, True, True, 128),  # within the idle band
        (-0.6, True, True, 130),
        (12.5, False, True, 128),  # charging current with charging disabled: not "charging" to the GEN24
        (-12.5, True, False, 128),
        (None, True, True, 128),
    ],
)
def test_mode_follows_the_current_sign_and_the_enables(
    current: float | None, charge: bool, discharge: bool, mode: int
) -> None:
    s = tower_snapshot(current=current, flags=Flags(charge_enable=charge, discharge_enable=discharge))
    assert registers(s)[302] == mode


def test_caps_and_rounding() -> None:
    """Energy over 57960 Wh is capped; SOC under 1 % reads 1 %; power limits over 30 kW are capped, power beyond
    +-32767 W saturates."""
    s = tower_snapshot(
        full_ah=200.0,  # 200 x 409.6 = 81920 Wh
        remaining_ah=150.0,  # 61440 Wh
        soc=0.4,
        voltage=500.0,
        current=-100.0,  # 50 kW discharging
        limits=Limits(Limit(50.0, "t"), Limit(80.0, "t"), Limit(496.84, "t"), Limit(383.91, "t")),
    )
    image = registers(s)
    assert [image[a] for a in (202, 303, 304, 305, 306, 307, 309, 311)] == [
        57960, 100, 57960, 57960, 30000, 25000, 32767, 32767,
    ]  # fmt: skip
    charging = registers(tower_snapshot(current=100.0, voltage=500.0))
    assert charging[309] == charging[311] == (-32768) & 0xFFFF


def test_the_voltage_window_is_the_cells_never_wider() -> None:
    """9 modules of 15 cells: 135 x 3.65 V = 492.75 V rounds down to 4927, 135 x 2.50 V = 337.5 V up to 3375; a
    Primo GEN24 gets at most 450.0 V. The thresholds are the config's cell protections."""
    tower = {"cells_in_series": 15, "strings": [list(range(1, 10))], "max_modules": 9}
    plate = byd.nameplate(rtu_config("/dev/null", bank=tower))
    assert [byd.image(tower_snapshot(), plate)[a] for a in (205, 206)] == [4927, 3375]
    primo = byd.nameplate(rtu_config("/dev/null", bank=tower, modbus_rtu={"primo": True}))
    assert [byd.image(tower_snapshot(), primo)[a] for a in (205, 206)] == [4500, 3375]
    tighter = byd.nameplate(
        rtu_config(
            "/dev/null", bank=tower, limits={"cell_over_voltage": [3.55, 3.60], "cell_under_voltage": [2.9, 2.8]}
        )
    )
    assert [byd.image(tower_snapshot(), tighter)[a] for a in (205, 206)] == [4860, 3780]


def test_negative_temperatures_are_twos_complement() -> None:
    image = registers(tower_snapshot(temperature_min=Extreme(-12.3, 1, 1), temperature_max=Extreme(-0.5, 2, 1)))
    assert (image[312], image[313], image[322]) == (0x10000 - 123, 0x10000 - 5, 0x10000 - 5)


def test_the_serial_is_the_gateway_id_cut_to_32_characters() -> None:
    plate = byd.nameplate(rtu_config("/dev/null", gateway={"id": "x" * 40}))
    image = registers(tower_snapshot(), plate)
    assert [image[a] for a in range(150, 166)] == [0x7878] * 16


@given(
    voltage=st.one_of(st.none(), st.floats(0.0, 1000.0)),
    ccl=st.floats(0.0, 1000.0),
    dcl=st.floats(0.0, 1000.0),
    charge=st.booleans(),
    discharge=st.booleans(),
    valid=st.booleans(),
)
def test_power_limits_never_exceed_the_masters_and_never_the_cap(
    voltage: float | None, ccl: float, dcl: float, charge: bool, discharge: bool, valid: bool
) -> None:
    s = tower_snapshot(
        voltage=voltage,
        valid=valid,
        flags=Flags(charge_enable=charge, discharge_enable=discharge),
        limits=Limits(Limit(ccl, "t"), Limit(dcl, "t"), Limit(441.6, "t"), Limit(384.0, "t")),
    )
    image = registers(s)
    for register, amps, enabled in ((307, ccl, charge), (306, dcl, discharge)):
        watts = image[register]
        assert 0 <= watts <= 30000
        if not (valid and enabled and voltage):
            assert watts == 0
        else:
            assert watts <= math.floor(amps * voltage + 1e-6)
    assert all(0 <= r <= 0xFFFF for r in image.values())


# -- the heartbeat -------------------------------------------------------------------------------------------------


def test_the_heartbeat_counts_changes_not_repeats() -> None:
    beat = byd.Heartbeat(300.0)
    beat.write(0, 5.0)  # the register's own value: nothing heard
    assert beat.info is None
    beat.write(0x00FF, 10.0)
    assert beat.info == InverterInfo(name="GEN24", last_seen=10.0, timeout=300.0)
    assert beat.info is not None
    beat.write(0x00FF, 70.0)
    assert beat.info.last_seen == 10.0
    beat.write(0xFF00, 130.0)
    assert beat.info.last_seen == 130.0


def _core(**rtu: object) -> Core:
    cfg = rtu_config("/dev/null", modbus_rtu=dict(rtu), can={"inverter": {"inverter_timeout": 30.0}})
    return Core(cfg, now=0.0)


def test_the_master_raises_inverter_comm_lost_by_the_heartbeats_own_timeout() -> None:
    """The CAN inverter timeout (30 s) does not apply to the GEN24: the heartbeat's (120 s) does."""
    core = _core(heartbeat_timeout=120.0)
    assert core.heartbeat is not None
    core.heartbeat.write(0x00FF, 10.0)

    def lost(t: float) -> bool:
        return any(a.code is AlarmCode.INVERTER_COMM_LOST for a in core.tick(t).snapshot.alarms)

    assert not lost(10.0 + 100.0)
    assert lost(10.0 + 121.0)


def test_a_heartbeat_timeout_of_0_never_raises() -> None:
    core = _core(heartbeat_timeout=0.0)
    assert core.heartbeat is not None
    core.heartbeat.write(0x00FF, 10.0)
    assert not any(a.code is AlarmCode.INVERTER_COMM_LOST for a in core.tick(100_000.0).snapshot.alarms)


def test_with_both_links_the_master_watches_the_one_that_runs_out_first() -> None:
    """CAN frames seen at 100 s (30 s timeout: due at 130 s), the heartbeat at 50 s (120 s: due at 170 s)."""
    core = _core(heartbeat_timeout=120.0)
    assert core.heartbeat is not None
    core.heartbeat.write(0x00FF, 50.0)
    core.link.feed(0x305, bytes(8), 100.0)
    info = core.inverter_info()
    assert info is not None and (info.name, info.last_seen) == ("", 100.0)
    core.link.feed(0x305, bytes(8), 150.0)  # CAN now due at 180 s: the heartbeat runs out first
    info = core.inverter_info()
    assert info is not None and (info.name, info.last_seen) == ("GEN24", 50.0)


def test_without_modbus_rtu_the_core_has_no_heartbeat() -> None:
    cfg = rtu_config("/dev/null", modbus_rtu={"enabled": False})
    assert Core(cfg, now=0.0).heartbeat is None
