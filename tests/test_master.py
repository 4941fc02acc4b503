"""The master's rules with explicit numbers: what the inverter will be told, and why."""

from __future__ import annotations

import math

import pytest

from gateway.master.model import Alarm, BankSnapshot, InverterInfo, IsolateReason, Level, Lifecycle, ModuleReading

from helpers.factories import bank, master, reading, run


def find(snapshot: BankSnapshot, code: str) -> Alarm | None:
    return next((a for a in snapshot.alarms if a.code == code), None)


def alarm(snapshot: BankSnapshot, code: str) -> Alarm:
    """The snapshot's alarm `code`; a test that expects one fails here, naming it, when it is not raised."""
    found = find(snapshot, code)
    assert found is not None, f"no {code} alarm in {[a.code for a in snapshot.alarms]}"
    return found


def test_starting_grace_then_limits_ramp_up_from_zero() -> None:
    m = master()
    first = m.step(0.0, bank(1)(0.0)).snapshot
    assert not first.valid
    assert first.reason.startswith("starting")
    assert first.limits.charge_current.value == first.limits.discharge_current.value == 0.0
    assert first.limits.charge_voltage.value == 53.0  # the bank's present voltage
    assert not first.flags.charge_enable
    tick = run(m, 0.1, 5.0, bank(1))
    s = tick.snapshot
    assert s.valid
    # 10 %/s of 100 A from the first valid tick at t = 3.0: 21 ticks of 1 A
    assert s.limits.charge_current.value == pytest.approx(21.0)
    assert s.limits.charge_current.bound_by == "slew_rate"
    s = run(m, 5.1, 20.0, bank(1)).snapshot
    assert s.limits.charge_current.value == pytest.approx(100.0)
    assert s.limits.charge_current.bound_by == "rating module 1"
    assert s.limits.charge_voltage.value == pytest.approx(55.2)
    assert s.limits.discharge_voltage.value == pytest.approx(48.0)
    assert s.flags.charge_enable and s.flags.discharge_enable


def test_falling_limits_apply_at_once() -> None:
    m = master()
    run(m, 0.0, 20.0, bank(1))
    s = m.step(20.1, {1: reading(1, 20.1, cell_voltage_max=3.45)}).snapshot
    assert s.limits.charge_current.value == pytest.approx(50.0)
    assert s.limits.charge_current.bound_by == "cell_voltage module 1"


def test_sixty_forty_sharing_gives_166_7_amps() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t, current=60.0), 2: reading(2, t, current=40.0)}

    s = run(m, 0.0, 60.0, readings).snapshot
    assert s.limits.charge_current.value == pytest.approx(166.7, abs=0.05)
    assert s.limits.charge_current.bound_by == "current_share module 1"
    assert s.modules[1].share == pytest.approx(0.6, abs=1e-3)
    assert s.modules[2].share == pytest.approx(0.5)  # never below its capacity share
    assert s.current == 100.0


def test_a_share_measured_from_the_first_second_is_never_exceeded_while_it_settles() -> None:
    """60/40 from t = 0: the 60 % module is never asked for more than its 100 A (it once got 103 A at t = 12 s)."""
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t, current=48.0), 2: reading(2, t, current=32.0)}

    charges = []
    for i in range(301):
        s = m.step(i * 0.1, readings(i * 0.1)).snapshot
        if s.valid:
            charges.append(s.limits.charge_current.value)
            assert 0.6 * s.limits.charge_current.value <= 100.0 + 1e-9
    assert max(charges) == pytest.approx(166.67, abs=0.01)
    assert s.limits.charge_current.bound_by == "current_share module 1"


def test_a_share_that_rises_applies_at_once_and_one_that_falls_decays() -> None:
    m = master()
    shares = {"even": (0.5, 0.5), "uneven": (0.7, 0.3)}
    state = ["even"]

    def readings(t: float) -> dict[int, ModuleReading]:
        a, b = shares[state[0]]
        return {1: reading(1, t, current=80.0 * a), 2: reading(2, t, current=80.0 * b)}

    s = run(m, 0.0, 40.0, readings).snapshot
    assert s.limits.charge_current.value == pytest.approx(200.0)
    state[0] = "uneven"  # module 1's contact resistance fell: it takes 70 %
    s = m.step(40.1, readings(40.1)).snapshot
    assert s.limits.charge_current.value == pytest.approx(142.86, abs=0.01)  # 100 A / 0.7, at once
    assert s.limits.charge_current.bound_by == "current_share module 1"
    s = run(m, 40.2, 60.0, readings).snapshot
    state[0] = "even"  # back to 50/50: the share decays with share_smoothing (5 s), the limit follows slowly
    s = m.step(60.1, readings(60.1)).snapshot
    share = s.modules[1].share
    assert share is not None
    assert share == pytest.approx(0.7 - 0.2 * (1 - math.exp(-0.1 / 5.0)), abs=1e-6)
    assert s.limits.charge_current.value == pytest.approx(100.0 / share, abs=1e-6)
    share = run(m, 60.2, 65.0, readings).snapshot.modules[1].share
    assert share is not None and 0.5 < share < 0.6
    s = run(m, 65.1, 120.0, readings).snapshot
    assert s.limits.charge_current.value == pytest.approx(200.0, abs=0.01)


def test_a_series_string_with_no_headroom_still_has_a_share() -> None:
    """One module empty and one full: the string can move 0 Ah, yet it is connected and takes current.

    This crashed the master with a ZeroDivisionError (a share of 0); the share comes from module capacity now.
    """
    m = master(bank={"strings": [[1, 2], [3, 4]], "admission_soc_window": 100.0})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {
            1: reading(1, t),
            2: reading(2, t),
            3: reading(3, t, soc=0.0),
            4: reading(4, t, soc=100.0),
        }

    s = run(m, 0.0, 30.0, readings).snapshot
    assert s.valid
    assert [s.modules[a].share for a in (1, 2, 3, 4)] == pytest.approx([0.5] * 4)
    assert s.limits.charge_current.value == pytest.approx(40.0)  # module 4 at 100 % may take 20 A: 20 / 0.5
    assert s.limits.charge_current.bound_by == "soc module 4"


def test_with_no_voltage_known_the_charge_voltage_is_never_zero() -> None:
    """CVL 0 V could be read as "charge to 0 V": hold the last known bank voltage, else DVL."""
    m = master()
    s = m.step(0.0, {}).snapshot
    assert not s.valid
    assert s.limits.charge_voltage.value == s.limits.discharge_voltage.value == pytest.approx(48.0)
    run(m, 0.1, 20.0, bank(1, voltage=52.4))
    s = m.step(40.0, {}).snapshot  # every module gone
    assert not s.valid
    assert s.limits.charge_current.value == 0.0
    assert s.limits.charge_voltage.value == pytest.approx(52.4)
    assert s.limits.discharge_voltage.value == pytest.approx(48.0)
    assert s.failsafe("master stale").limits.charge_voltage.value == pytest.approx(52.4)


def test_a_module_reporting_0_volts_never_makes_the_charge_voltage_0() -> None:
    """A module reporting CVL 0 V means "do not charge me": its charge current goes to 0 and its CVL to its DVL.
    A voltage of 0 V while a cell is high would pull CVL below 0: it stops at 16 cells x 2.50 V = 40 V."""
    m = master()
    run(m, 0.0, 20.0, bank(1, 2))
    s = m.step(20.1, {1: reading(1, 20.1, charge_voltage_limit=0.0), 2: reading(2, 20.1)}).snapshot
    assert s.limits.charge_current.value == 0.0
    assert s.limits.charge_current.bound_by == "reported module 1 charge voltage 0 V"
    assert s.limits.charge_voltage.value == pytest.approx(48.0)
    s = m.step(20.2, {1: reading(1, 20.2, voltage=0.0, cell_voltage_max=3.5), 2: reading(2, 20.2)}).snapshot
    assert s.limits.charge_voltage.value == pytest.approx(40.0)


def test_while_invalid_the_bank_values_come_only_from_the_banks_modules() -> None:
    """An address outside bank.strings (garbage, or another bank's module) never shows as the bank's SOC."""
    m = master(bank={"strings": [[1], [2]], "min_online": 2})
    s = m.step(0.0, {1: reading(1, 0.0, soc=40.0), 9: reading(9, 0.0, soc=100.0, voltage=60.0)}).snapshot
    assert not s.valid
    assert s.soc == pytest.approx(40.0)
    assert s.voltage == pytest.approx(53.0)
    assert s.modules[9].lifecycle is Lifecycle.REJECTED


def test_a_cold_module_derates_charge() -> None:
    s = run(master(), 0.0, 20.0, bank(1, temperature_max=2.0, temperature_min=2.0)).snapshot
    assert s.limits.charge_current.value == pytest.approx(8.0)  # 20 % at 5 degC, 0 % at 0 degC: 8 % at 2 degC
    assert s.limits.charge_current.bound_by == "temperature module 1"
    assert s.limits.discharge_current.value == pytest.approx(100.0)
    assert alarm(s, "charge_under_temperature").level is Level.WARNING


def test_one_cell_at_3_56_volts_stops_charge_for_the_whole_parallel_bank() -> None:
    m = master()
    run(m, 0.0, 20.0, bank(1, 2, 3))
    tick = m.step(20.1, {1: reading(1, 20.1), 2: reading(2, 20.1, cell_voltage_max=3.56), 3: reading(3, 20.1)})
    s = tick.snapshot
    assert s.limits.charge_current.value == 0.0
    assert s.limits.charge_current.bound_by == "cell_voltage module 2"
    assert not s.flags.charge_enable
    assert s.flags.discharge_enable
    assert s.limits.charge_voltage.value == pytest.approx(53.0 - 0.11)  # pulled below the present voltage
    assert s.limits.charge_voltage.bound_by == "balancing module 2 cell 2"
    assert alarm(s, "cell_over_voltage").modules == (2,)
    commands = {c.address: c for c in tick.commands}
    assert not commands[2].charge_allowed
    assert commands[2].connect_permit


def test_a_module_gone_3_s_leaves_the_limits_at_n_minus_1() -> None:
    m = master()
    run(m, 0.0, 30.0, bank(1, 2, 3))
    assert m.step(30.1, bank(1, 2, 3)(30.1)).snapshot.limits.charge_current.value == pytest.approx(300.0)

    def two_left(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t), 3: reading(3, 30.1, alive=5)}

    s = run(m, 30.2, 33.0, two_left).snapshot
    assert s.modules[3].lifecycle is Lifecycle.ONLINE  # 2.9 s: not yet
    s = m.step(33.2, two_left(33.2)).snapshot
    assert s.modules[3].lifecycle is Lifecycle.OFFLINE
    assert s.modules[3].reason == "no ModuleStatus for 3.1 s"
    assert s.limits.charge_current.value == pytest.approx(200.0)
    assert s.limits.discharge_current.value == pytest.approx(200.0)
    assert s.valid
    assert alarm(s, "module_comm_lost").level is Level.WARNING
    assert alarm(s, "module_comm_lost").modules == (3,)


def test_a_frozen_alive_counter_is_offline() -> None:
    m = master()
    run(m, 0.0, 10.0, bank(1, 2))
    s = m.step(10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, alive=7, alive_repeats=4)}).snapshot
    assert s.modules[2].lifecycle is Lifecycle.OFFLINE
    assert s.modules[2].reason == "AliveCounter frozen at 7"
    assert s.addresses(Lifecycle.ONLINE) == (1,)


def test_a_module_20_percent_off_stays_pending() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t), 3: reading(3, t, soc=80.0)}

    tick = run(m, 0.0, 20.0, readings)
    s = tick.snapshot
    assert s.modules[3].lifecycle is Lifecycle.PENDING
    assert s.modules[3].reason == "SOC 80.0 % vs bank 60.0 % (window 5 %)"
    assert s.limits.charge_current.value == pytest.approx(200.0)
    command = next(c for c in tick.commands if c.address == 3)
    assert not command.connect_permit
    assert command.isolate_reason is IsolateReason.NOT_ADMITTED
    s = m.step(20.1, {**readings(20.1), 3: reading(3, 20.1, soc=63.0)}).snapshot
    assert s.modules[3].lifecycle is Lifecycle.ONLINE


def test_admission_checks_the_voltage_too() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t), 3: reading(3, t, voltage=53.8)}

    s = run(m, 0.0, 10.0, readings).snapshot
    assert s.modules[3].reason == "voltage 53.80 V vs bank 53.00 V (window 0.5 V)"


def test_a_broken_series_string_zeroes_the_limits() -> None:
    m = master(bank={"strings": [[1, 2, 3, 4]]})
    s = run(m, 0.0, 20.0, bank(1, 2, 3, 4)).snapshot
    assert s.valid
    assert s.voltage == pytest.approx(212.0)
    assert s.limits.charge_voltage.value == pytest.approx(4 * 55.2)

    def three(t: float) -> dict[int, ModuleReading]:
        return {**bank(1, 2, 3)(t), 4: reading(4, 20.0)}

    s = run(m, 20.1, 24.0, three).snapshot
    assert not s.valid
    assert s.reason == "series string 1-2-3-4 broken: module 4 offline"
    assert s.limits.charge_current.value == s.limits.discharge_current.value == 0.0
    assert not s.flags.charge_enable and not s.flags.discharge_enable
    assert s.limits.charge_voltage.value <= 212.0
    assert alarm(s, "module_comm_lost").level is Level.PROTECTION


def test_series_string_aggregation_and_soc_rule() -> None:
    m = master(bank={"strings": [[1, 2]]})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t, soc=60.0, current=10.0), 2: reading(2, t, soc=63.0, current=10.4)}

    s = run(m, 0.0, 20.0, readings).snapshot
    assert s.voltage == pytest.approx(106.0)
    assert s.current == pytest.approx(10.2)
    # discharge what the emptiest holds (60 Ah), charge what the fullest takes (37 Ah)
    assert s.remaining_ah == pytest.approx(60.0)
    assert s.full_ah == pytest.approx(97.0)
    assert s.soc == pytest.approx(100 * 60 / 97)
    assert s.limits.charge_voltage.value == pytest.approx(110.4)
    assert s.limits.discharge_voltage.value == pytest.approx(96.0)


def test_parallel_aggregation_weights_by_capacity() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {
            1: reading(1, t, soc=60.0, full_capacity=100.0, voltage=53.0),
            2: reading(2, t, soc=62.0, full_capacity=50.0, soh=90.0, voltage=53.1),
            3: reading(3, t, soc=61.0, full_capacity=50.0, voltage=53.2),
        }

    s = run(m, 0.0, 10.0, readings).snapshot
    assert s.soc == pytest.approx((100 * 60 + 50 * 62 + 50 * 61) / 200)
    assert s.soh == pytest.approx((100 * 98 + 50 * 90 + 50 * 98) / 200)
    assert s.voltage == pytest.approx(53.1)
    assert s.full_ah == pytest.approx(200.0)
    assert s.remaining_ah == pytest.approx(60 + 31 + 30.5)


def test_extremes_name_module_and_cell() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {
            1: reading(1, t, cell_voltage_max=3.35, cell_voltage_max_index=9, temperature_min=18.0),
            2: reading(2, t, cell_voltage_min=3.21, cell_voltage_min_index=14, temperature_max=31.0),
        }

    s = run(m, 0.0, 5.0, readings).snapshot
    vmax, vmin, tmax, tmin = s.cell_voltage_max, s.cell_voltage_min, s.temperature_max, s.temperature_min
    assert vmax is not None and vmin is not None and tmax is not None and tmin is not None
    assert (vmax.value, vmax.module, vmax.index) == (3.35, 1, 9)
    assert (vmin.value, vmin.module, vmin.index) == (3.21, 2, 14)
    assert (tmax.value, tmax.module) == (31.0, 2)
    assert (tmin.value, tmin.module) == (18.0, 1)


def test_reported_limits_below_the_rating_bind() -> None:
    s = run(master(), 0.0, 20.0, bank(1, charge_current_limit=42.0, charge_voltage_limit=54.4)).snapshot
    assert s.limits.charge_current.value == pytest.approx(42.0)
    assert s.limits.charge_current.bound_by == "reported module 1"
    assert s.limits.charge_voltage.value == pytest.approx(54.4)
    assert s.limits.charge_voltage.bound_by == "reported module 1"


@pytest.mark.parametrize(
    ("values", "charge", "discharge", "rule"),
    [
        ({"soc": 97.0}, 60.0, 100.0, "soc"),
        ({"soc": 6.5}, 100.0, 60.0, "soc"),
        ({"cell_voltage_min": 3.00}, 100.0, 50.0, "cell_voltage"),
        ({"cell_voltage_min": 2.79}, 100.0, 0.0, "cell_voltage"),
        ({"temperature_max": 57.0}, 0.0, 30.0, "temperature"),
        ({"temperature_min": -15.0, "temperature_max": -12.0}, 0.0, 50.0, "temperature"),
    ],
)
def test_derating_tables(values: dict[str, float], charge: float, discharge: float, rule: str) -> None:
    s = run(master(), 0.0, 20.0, bank(1, **values)).snapshot
    assert s.limits.charge_current.value == pytest.approx(charge)
    assert s.limits.discharge_current.value == pytest.approx(discharge)
    reduced = s.limits.charge_current if charge < 100 else s.limits.discharge_current
    assert reduced.bound_by == f"{rule} module 1"


def test_force_charge_and_full_charge_requests() -> None:
    s = run(master(), 0.0, 20.0, bank(1, soc=4.0)).snapshot
    assert s.flags.force_charge
    s = run(master(), 0.0, 20.0, bank(1, cell_voltage_min=2.88)).snapshot
    assert s.flags.force_charge
    m = master(limits={"full_charge_interval": 1.0})
    s = run(m, 0.0, 86_000.0, bank(1), step=100.0).snapshot
    assert not s.flags.full_charge
    s = run(m, 86_400.0, 86_500.0, bank(1), step=10.0).snapshot
    assert s.flags.full_charge
    s = m.step(86_600.0, bank(1, soc=99.5)(86_600.0)).snapshot
    assert not s.flags.full_charge
    m.request_full_charge()
    assert m.step(86_700.0, bank(1)(86_700.0)).snapshot.flags.full_charge


def test_protection_isolates_then_holds_off_then_readmits() -> None:
    m = master(bank={"isolation_holdoff": 10.0})
    run(m, 0.0, 20.0, bank(1, 2))

    def protecting(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t, protections=1)}

    tick = run(m, 20.1, 21.0, protecting)
    s = tick.snapshot
    assert s.modules[2].lifecycle is Lifecycle.ISOLATED
    assert s.modules[2].reason == "protection: CellOverVoltage"
    assert s.limits.charge_current.value == pytest.approx(100.0)  # the bank goes on with module 1
    assert alarm(s, "cell_over_voltage").level is Level.PROTECTION
    command = next(c for c in tick.commands if c.address == 2)
    assert (command.connect_permit, command.isolate_reason) == (False, IsolateReason.FAULT)
    s = run(m, 21.1, 30.0, bank(1, 2)).snapshot
    assert s.modules[2].lifecycle is Lifecycle.ISOLATED
    assert "re-admission in" in s.modules[2].reason
    s = run(m, 30.1, 31.5, bank(1, 2)).snapshot
    assert s.modules[2].lifecycle is Lifecycle.ONLINE


def test_a_fault_isolates_and_the_operator_can_readmit() -> None:
    m = master()
    run(m, 0.0, 10.0, bank(1, 2))
    s = m.step(10.1, {1: reading(1, 10.1), 2: reading(2, 10.1, module_state=5, fault_code=1234)}).snapshot
    assert s.modules[2].lifecycle is Lifecycle.ISOLATED
    assert s.modules[2].reason == "module in fault (code 1234)"
    assert alarm(s, "module_fault").level is Level.PROTECTION
    assert m.readmit(2)
    assert not m.readmit(1)
    s = m.step(10.2, bank(1, 2)(10.2)).snapshot
    assert s.modules[2].lifecycle is Lifecycle.ONLINE


def test_repeatedly_first_to_cutoff_is_isolated() -> None:
    m = master(bank={"cutoff_first_count": 3})
    t = 0.0
    run(m, 0.0, 10.0, bank(1, 2))
    for _ in range(3):
        t += 10.0
        run(m, t, t + 1.0, lambda t: {1: reading(1, t), 2: reading(2, t, cell_voltage_max=3.56)})
        t += 2.0
        run(m, t, t + 1.0, bank(1, 2))
    s = m.step(t + 1.1, bank(1, 2)(t + 1.1)).snapshot
    assert s.modules[2].lifecycle is Lifecycle.ISOLATED
    assert s.modules[2].reason.startswith("first to reach the cell-voltage cutoff 3 times in a row")
    assert s.modules[1].lifecycle is Lifecycle.ONLINE


def test_stack_limit_in_auto_mode() -> None:
    m = master(bank={"max_modules": 2, "min_online": 1})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t), 3: reading(3, t, first_seen=5.0)}

    tick = run(m, 0.0, 20.0, readings)
    s = tick.snapshot
    assert s.modules[3].lifecycle is Lifecycle.ISOLATED
    assert s.modules[3].isolate_reason is IsolateReason.STACK_LIMIT
    assert alarm(s, "stack_limit").modules == (3,)
    assert s.limits.charge_current.value == pytest.approx(200.0)


def test_wrong_cell_count_is_rejected_and_unknown_modules_are_not_admitted() -> None:
    m = master(bank={"strings": [[1], [2], [3]]})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {**bank(1, 2, 9)(t), 3: reading(3, t, cells_in_series=15, cell_count=15)}

    tick = run(m, 0.0, 10.0, readings)
    s = tick.snapshot
    assert s.modules[3].lifecycle is Lifecycle.REJECTED
    assert s.modules[3].reason == "15 cells, the bank has 16"
    assert s.modules[9].lifecycle is Lifecycle.REJECTED
    assert s.modules[9].reason == "not in bank.strings"
    assert alarm(s, "module_mismatch").modules == (3, 9)
    commands = {c.address: c for c in tick.commands}
    assert commands[3].isolate_reason is IsolateReason.MISMATCH
    assert not commands[9].connect_permit


def test_mismatch_warnings_name_the_modules() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {
            1: reading(1, t),
            2: reading(2, t, firmware=(1, 3, 0)),
            3: reading(3, t, soh=85.0, cycle_count=900),
        }

    s = run(m, 0.0, 10.0, readings).snapshot
    assert s.modules[2].mismatch == ("firmware 1.3.0 differs from the bank's 1.4.2",)
    assert s.modules[3].mismatch == ("SOH 85 vs bank median 98", "cycle count 900 vs bank median 100")
    assert s.modules[1].mismatch == ()
    assert alarm(s, "module_mismatch").level is Level.WARNING
    assert s.addresses(Lifecycle.ONLINE) == (1, 2, 3)  # warnings only


def test_thermal_gradient_heat_accumulation_and_fan() -> None:
    m = master(bank={"positions": {"1": 1, "2": 2, "3": 3}})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {
            1: reading(1, t, temperature_max=25.0),
            2: reading(2, t, temperature_max=37.5),
            3: reading(3, t, temperature_max=29.0),
        }

    tick = run(m, 0.0, 10.0, readings)
    s = tick.snapshot
    assert s.temperature_gradient == pytest.approx(4.0)
    assert alarm(s, "heat_accumulation").modules == (2,)
    assert s.fan_duty == 50  # 0 % at 30 degC, 100 % at 45 degC
    assert {c.fan_duty for c in tick.commands} == {50}


def test_balance_target_while_charging_near_the_top() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t, current=20.0, cell_voltage_max=3.42, cell_voltage_min=3.36)}

    tick = run(m, 0.0, 10.0, readings)
    assert tick.commands[0].balance_target_voltage == pytest.approx(3.36)
    tick = m.step(10.1, {1: reading(1, 10.1, current=20.0, cell_voltage_max=3.38)})
    assert tick.commands[0].balance_target_voltage == 0.0


def test_alarm_hysteresis_and_hold() -> None:
    m = master()
    run(m, 0.0, 10.0, bank(1))
    s = m.step(10.1, bank(1, cell_voltage_max=3.56)(10.1)).snapshot
    assert alarm(s, "cell_over_voltage").since == 10.1
    s = m.step(10.2, bank(1, cell_voltage_max=3.52)(10.2)).snapshot  # inside the 50 mV band: still raised
    assert find(s, "cell_over_voltage") is not None
    s = run(m, 10.3, 15.1, bank(1, cell_voltage_max=3.45)).snapshot  # gone, but held 5 s
    assert alarm(s, "cell_over_voltage").since == 10.1
    s = m.step(15.3, bank(1, cell_voltage_max=3.45)(15.3)).snapshot
    assert find(s, "cell_over_voltage") is None


def test_cell_imbalance_is_a_protection_only_at_rest() -> None:
    s = run(master(), 0.0, 10.0, bank(1, cell_voltage_max=3.46, cell_voltage_min=3.30)).snapshot
    assert alarm(s, "cell_imbalance").level is Level.PROTECTION
    s = run(master(), 0.0, 10.0, bank(1, cell_voltage_max=3.46, cell_voltage_min=3.30, current=30.0)).snapshot
    assert alarm(s, "cell_imbalance").level is Level.WARNING


def test_below_min_online_everything_stops() -> None:
    m = master(bank={"min_online": 2})
    s = run(m, 0.0, 10.0, bank(1)).snapshot
    assert not s.valid
    assert s.reason == "1 modules online, min_online is 2"
    assert s.limits.charge_current.value == 0.0


def test_inverter_comm_lost_after_the_timeout() -> None:
    m = master()
    run(m, 0.0, 10.0, bank(1))
    info = InverterInfo(name="VIC", last_seen=5.0)
    assert find(m.step(30.0, bank(1)(30.0), info).snapshot, "inverter_comm_lost") is None
    s = m.step(35.5, bank(1)(35.5), info).snapshot
    assert alarm(s, "inverter_comm_lost").level is Level.WARNING
    assert s.inverter == info


def test_sensor_mismatch_in_a_series_string() -> None:
    m = master(bank={"strings": [[1, 2]]})

    def readings(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t, current=20.0), 2: reading(2, t, current=27.0)}

    s = run(m, 0.0, 10.0, readings).snapshot
    assert alarm(s, "sensor_mismatch").modules == (1, 2)


def test_module_alarm_bits_become_alarms() -> None:
    s = run(master(), 0.0, 10.0, bank(1, warnings=1 << 13)).snapshot
    found = alarm(s, "module_fault")
    assert found.level is Level.WARNING
    assert found.detail == "module reports WarnSensorFault"


def test_missing_temperatures_keep_a_module_out() -> None:
    m = master()

    def readings(t: float) -> dict[int, ModuleReading]:
        seen = {"status": t, "limits": t, "cells": t}
        return {1: reading(1, t), 2: reading(2, t, seen=seen, temperature_max=None, temperature_min=None)}

    s = run(m, 0.0, 20.0, readings).snapshot
    assert s.modules[2].lifecycle is Lifecycle.PENDING
    assert s.modules[2].reason == "waiting for Temperatures"
    assert s.limits.charge_current.value == pytest.approx(100.0)


def test_a_silent_binding_module_keeps_its_limit_for_offline_hold() -> None:
    m = master(bank={"offline_hold": 10.0})
    run(m, 0.0, 20.0, bank(1, 2))

    def full(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, t, cell_voltage_max=3.56)}

    run(m, 20.1, 21.0, full)

    def silent(t: float) -> dict[int, ModuleReading]:
        return {1: reading(1, t), 2: reading(2, 21.0, cell_voltage_max=3.56)}

    s = run(m, 21.1, 30.0, silent).snapshot
    assert s.modules[2].lifecycle is Lifecycle.OFFLINE
    assert s.limits.charge_current.value == 0.0  # it may still be connected and full
    assert s.limits.charge_current.bound_by == "cell_voltage module 2 (held: module 2 left the bank)"
    s = run(m, 30.1, 45.0, silent).snapshot
    assert s.limits.charge_current.value == pytest.approx(100.0)  # then the bank runs on without it


def test_a_missing_reported_limit_counts_as_zero() -> None:
    s = run(master(), 0.0, 20.0, bank(1, discharge_current_limit=None)).snapshot
    assert s.limits.discharge_current.value == 0.0
    assert s.limits.discharge_current.bound_by == "no reported limit module 1"
    assert not s.flags.discharge_enable
