"""Several module buses live, on python-can virtual buses: each its own supervised edge, polled BMSs, N-1.

The simulated modules speak their profile through its DBC (`gateway.sim.profiled`), one bus instance per channel on
the simulator's side, answering the gateway's polls. Nothing here waits a fixed time: every wait is for a state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import can

from gateway import config
from gateway.can.bus import open_bus
from gateway.master.model import Lifecycle
from gateway.service import Gateway
from gateway.sim import Simulator
from gateway.sim.bus import run_translated
from gateway.sim.profiled import Translator, bus_entries

from helpers.buses import MODULE_TIMEOUT, online, running, until


def gateway_config(channel: str, buses: Sequence[dict[str, Any]], **bank: Any) -> config.Config:
    return config.parse(
        {
            "gateway": {"id": "buses"},
            "can": {"modules": list(buses), "inverter": {"channel": f"{channel}-inverter"}},
            "bank": {"module_timeout": MODULE_TIMEOUT, **bank},
            "limits": {"slew_rate": 1000.0},
            "modbus": {"enabled": False},
            "mqtt": {"enabled": False},
            "web": {"enabled": False},
        }
    )


@contextlib.asynccontextmanager
async def speaking(cfg: config.Config, sim: Simulator) -> AsyncIterator[list[tuple[can.BusABC, Translator]]]:
    """`sim`'s modules in their profiles' frames on every module bus of `cfg`, from the simulator's own bus
    instances (closing one silences that bus)."""
    links = [(open_bus("virtual", m.channel, m.rate), Translator(m, index=i)) for i, m in enumerate(cfg.can.modules)]
    task = asyncio.create_task(run_translated(links, sim, duration=None), name="simulator")
    try:
        yield links
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for bus, _ in links:
            bus.shutdown()


async def test_three_pylontech_batteries_on_three_buses_share_and_one_bus_lost_leaves_n_minus_1(channel: str) -> None:
    """Each battery reports 100 A (its own limit: no cell data); the bank's rating is 200 A, so each binds by its
    own limit and the three share the bank current by capacity: 3 x 100 A. With bus 3 dead (silent), module 3 goes
    offline by the module timeout and the bank runs on at 2 x 100 A, the other buses still publishing."""
    buses = bus_entries("pylon-lv-battery", 3, interface="virtual", channel=f"{channel}-pylon")
    cfg = gateway_config(channel, buses, rated_charge_current=200.0, rated_discharge_current=200.0)
    gateway = Gateway(cfg)
    assert gateway.module_edges == tuple(f"module-bus:{channel}-pylon-{n}" for n in (1, 2, 3))
    sim = Simulator(modules=3, current=0.0)
    async with running(gateway), speaking(cfg, sim) as links:
        await until(lambda: online(gateway) == (1, 2, 3), within=10.0, what="three batteries online")
        await until(lambda: gateway.hub.latest.limits.charge_current.value == 300.0, within=5.0, what="300 A")
        s = gateway.hub.latest
        assert s.valid
        assert s.limits.discharge_current.value == 300.0
        for a in (1, 2, 3):
            own = s.modules[a].limits
            assert own is not None
            assert own.charge_current.value == 100.0
            assert own.charge_current.bound_by == f"reported module {a}: module's own limit, no cell data"
            share = s.modules[a].share
            assert share is not None and abs(share - 1 / 3) < 0.02

        links[2][1].muted.add(3)  # the third port goes dead
        await until(
            lambda: s.modules[3].lifecycle is Lifecycle.OFFLINE if (s := gateway.hub.latest) else False,
            within=MODULE_TIMEOUT + 3.0,
            what="module 3 offline",
        )
        await until(lambda: gateway.hub.latest.limits.charge_current.value == 200.0, within=5.0, what="200 A")
        s = gateway.hub.latest
        assert s.valid and online(gateway) == (1, 2)
        assert s.modules[3].reason.startswith("no ModuleStatus for")
        seq = s.seq
        received = [store.received for store in gateway.core.stores]
        await until(
            lambda: all(store.received > n for store, n in zip(gateway.core.stores[:2], received, strict=False)),
            within=5.0,
            what="buses 1 and 2 still receiving",
        )
        assert gateway.hub.latest.seq > seq
        assert gateway.core.stores[2].received == received[2]
        assert sum(gateway.restarts.values()) == 0


async def test_polled_bmss_answer_only_when_polled_and_one_that_stops_goes_offline(channel: str) -> None:
    """A Daly BMS (address 1, module 1) and a Pylontech HV tower (nibble 0, module 2 by its offset) on two buses.
    Neither sends unasked: both are online because the gateway polls them. The Daly stops answering: it goes
    offline within the module timeout, the tower stays."""
    buses = [
        {"interface": "virtual", "channel": f"{channel}-daly", "profile": "daly-can", "address_count": 1},
        {
            "interface": "virtual",
            "channel": f"{channel}-hv",
            "profile": "pylon-hv-battery",
            "address_offset": 2,
            "address_count": 1,
        },
    ]
    cfg = gateway_config(channel, buses)
    assert [list(m.addresses) for m in cfg.can.modules] == [[1], [2]]
    sim = Simulator(modules=2, current=0.0)
    gateway = Gateway(cfg)
    async with speaking(cfg, sim) as links:
        await asyncio.sleep(0.3)
        assert not any(list(t.broadcast(sim.time)) for _, t in links)  # polled profiles send nothing unasked
        async with running(gateway):
            await until(lambda: online(gateway) == (1, 2), within=10.0, what="both polled modules online")
            s = gateway.hub.latest
            for a in (1, 2):
                voltage = s.modules[a].reading.voltage
                assert voltage is not None and abs(voltage - sim.module(a).voltage) < 0.2

            def daly_cells() -> tuple[int, int]:
                r = gateway.hub.latest.modules[1].reading
                return len(r.cell_voltages), len(r.cell_temperatures)

            # 0x94 (the counts) every 10 s, 0x96 every 5 s: the first polls may go out before the gateway has
            # opened the bus.
            await until(lambda: daly_cells() == (16, 4), within=10.0, what="the Daly's 16 cells and 4 sensors")
            daly = links[0][1]
            daly.muted.add(1)
            await until(
                lambda: gateway.hub.latest.modules[1].lifecycle is Lifecycle.OFFLINE,
                within=MODULE_TIMEOUT + 3.0,
                what="the silent Daly offline",
            )
            assert online(gateway) == (2,)
            assert gateway.hub.latest.valid
