"""The requests to the inverter, driven directly: enables follow the limits, force charge under 5 % SOC or a cell
under 2.90 V, and the full charge for balancing every `full_charge_interval` days (or on request) until 99 %."""

from __future__ import annotations

from gateway.config import Config
from gateway.master.flags import Requests
from gateway.master.model import Electrical, Extreme, Flags, Limit, Limits

from helpers.factories import configured, tick_input

CFG = configured()
DAY = 86_400.0


def limits(charge: float = 100.0, discharge: float = 100.0) -> Limits:
    return Limits(Limit(charge, "test"), Limit(discharge, "test"), Limit(55.2, "test"), Limit(48.0, "test"))


def total(soc: float = 60.0) -> Electrical:
    return Electrical(53.0, 0.0, soc, 100.0, soc, 98.0, 100.0)


def flags(
    requests: Requests,
    now: float,
    *,
    soc: float = 60.0,
    charge: float = 100.0,
    discharge: float = 100.0,
    cell_min: float | None = 3.30,
    valid: bool = True,
    cfg: Config = CFG,
) -> Flags:
    vmin = None if cell_min is None else Extreme(cell_min, 1, 5)
    return requests.update(tick_input(cfg, now, {}), valid, limits(charge, discharge), total(soc), vmin)


def test_enables_follow_the_limits() -> None:
    assert flags(Requests(), 10.0) == Flags(charge_enable=True, discharge_enable=True)
    assert flags(Requests(), 10.0, charge=0.0) == Flags(charge_enable=False, discharge_enable=True)
    assert flags(Requests(), 10.0, discharge=0.0) == Flags(charge_enable=True, discharge_enable=False)
    assert flags(Requests(), 10.0, charge=0.1, discharge=0.1) == Flags(charge_enable=True, discharge_enable=True)


def test_nothing_is_asked_of_a_bank_that_is_not_valid() -> None:
    assert flags(Requests(), 10.0, valid=False, soc=3.0, cell_min=2.5) == Flags()
    no_total = Requests().update(tick_input(CFG, 10.0, {}), True, limits(), None, None)
    assert no_total == Flags()


def test_force_charge_under_5_percent_soc() -> None:
    assert flags(Requests(), 10.0, soc=4.9).force_charge
    assert not flags(Requests(), 10.0, soc=5.0).force_charge  # under 5 %, not at it
    assert flags(Requests(), 10.0, soc=10.0, cfg=configured(limits={"force_charge_soc": 12.0})).force_charge


def test_force_charge_with_a_cell_under_2_90_volts() -> None:
    assert flags(Requests(), 10.0, cell_min=2.89).force_charge
    assert not flags(Requests(), 10.0, cell_min=2.90).force_charge  # under 2.90 V, not at it
    assert not flags(Requests(), 10.0, cell_min=None).force_charge


def test_force_charge_only_when_charging_is_allowed() -> None:
    """A cold bank at 3 % may not be charged (limit 0): asking the inverter to force it would contradict the limit."""
    assert flags(Requests(), 10.0, soc=3.0, charge=0.0) == Flags(discharge_enable=True)


def test_the_full_charge_request_comes_full_charge_interval_days_after_the_start() -> None:
    cfg = configured(limits={"full_charge_interval": 1.0})
    requests = Requests()
    assert not flags(requests, 1000.0, cfg=cfg).full_charge  # the interval counts from here
    assert not flags(requests, 1000.0 + DAY - 0.1, cfg=cfg).full_charge
    assert flags(requests, 1000.0 + DAY, cfg=cfg).full_charge  # exactly 1 day
    assert flags(requests, 1000.0 + DAY + 3600.0, soc=98.9, cfg=cfg).full_charge
    # 99 % (full_charge_soc) reached: the request ends, and the next is a day from now
    assert not flags(requests, 1000.0 + DAY + 7200.0, soc=99.0, cfg=cfg).full_charge
    assert not flags(requests, 1000.0 + DAY + 7200.1, soc=60.0, cfg=cfg).full_charge
    assert not flags(requests, 1000.0 + 2 * DAY + 7199.9, cfg=cfg).full_charge
    assert flags(requests, 1000.0 + 2 * DAY + 7200.0, cfg=cfg).full_charge


def test_the_default_interval_is_30_days() -> None:
    requests = Requests()
    flags(requests, 0.0)
    assert not flags(requests, 30 * DAY - 1.0).full_charge
    assert flags(requests, 30 * DAY).full_charge


def test_the_interval_counts_from_the_first_tick_even_an_invalid_one() -> None:
    cfg = configured(limits={"full_charge_interval": 1.0})
    requests = Requests()
    assert flags(requests, 0.0, valid=False, cfg=cfg) == Flags()
    assert flags(requests, DAY, cfg=cfg).full_charge


def test_a_bank_that_gets_full_by_itself_is_never_asked() -> None:
    cfg = configured(limits={"full_charge_interval": 1.0})
    requests = Requests()
    for day in range(5):
        assert not flags(requests, day * DAY + 0.5 * DAY, soc=99.5, cfg=cfg).full_charge
        assert not flags(requests, day * DAY + 0.9 * DAY, soc=60.0, cfg=cfg).full_charge


def test_interval_0_disables_the_request() -> None:
    cfg = configured(limits={"full_charge_interval": 0.0})
    requests = Requests()
    flags(requests, 0.0, cfg=cfg)
    assert not flags(requests, 400 * DAY, cfg=cfg).full_charge


def test_full_charge_is_asked_only_when_charging_is_allowed() -> None:
    cfg = configured(limits={"full_charge_interval": 1.0})
    requests = Requests()
    flags(requests, 0.0, cfg=cfg)
    assert not flags(requests, DAY, charge=0.0, cfg=cfg).full_charge
    assert flags(requests, DAY + 1.0, cfg=cfg).full_charge  # still due


def test_an_operator_asks_for_a_full_charge_until_the_bank_is_full() -> None:
    requests = Requests()
    assert not flags(requests, 0.0).full_charge
    requests.ask_full_charge()
    assert flags(requests, 0.1).full_charge
    assert flags(requests, 3600.0, soc=98.0).full_charge
    assert not flags(requests, 3600.1, soc=99.0).full_charge
    assert not flags(requests, 3600.2, soc=60.0).full_charge


def test_full_charge_soc_is_configurable() -> None:
    cfg = configured(limits={"full_charge_soc": 95.0})
    requests = Requests()
    requests.ask_full_charge()
    assert flags(requests, 0.1, soc=94.9, cfg=cfg).full_charge
    assert not flags(requests, 0.2, soc=95.0, cfg=cfg).full_charge


def test_time_going_backwards_does_not_make_a_full_charge_due() -> None:
    cfg = configured(limits={"full_charge_interval": 1.0})
    requests = Requests()
    flags(requests, 10 * DAY, soc=99.5, cfg=cfg)  # full at day 10
    assert not flags(requests, 5 * DAY, cfg=cfg).full_charge  # the clock jumps back 5 days
    assert not flags(requests, 11 * DAY - 1.0, cfg=cfg).full_charge
    assert flags(requests, 11 * DAY, cfg=cfg).full_charge
