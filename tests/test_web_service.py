"""The dashboard as an edge of the running gateway: supervised, part of READY, fed by the live master and its
journal; `bms-gateway join-check` against it, and the demo printing its address.

Real parts: the Gateway on python-can virtual buses with the module simulator, HTTP on 127.0.0.1. The CLI's
blocking HTTP client runs in a thread, since the gateway it asks is served by this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession

from gateway.cli import main
from gateway.master.model import Lifecycle
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault

from helpers.buses import make_config, online, running, simulating, until
from helpers.ports import listening, occupied
from helpers.service import write_config


async def get(url: str) -> Any:
    async with ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_the_dashboard_serves_the_live_bank_and_the_journal_of_its_events(channel: str) -> None:
    cfg = make_config(channel, web={"enabled": True, "host": "127.0.0.1", "port": 0})
    gateway = Gateway(cfg)
    sim = Simulator(modules=3, current=10.0, faults=[parse_fault("drop:3@6")])
    async with running(gateway), simulating(cfg.can.modules[0].channel, sim):
        await until(gateway.ready.is_set, within=10.0, what="gateway ready (the web edge listening)")
        assert gateway.web is not None and gateway.web.port
        url = gateway.web.url
        await until(lambda: online(gateway) == (1, 2, 3), within=10.0, what="modules online")
        snapshot = await get(url + "api/snapshot")
        assert snapshot["modules_online"] == [1, 2, 3]
        assert snapshot["seq"] <= gateway.hub.latest.seq
        await until(lambda: 3 in gateway.hub.latest.addresses(Lifecycle.OFFLINE), within=10.0, what="3 offline")
        events = (await get(url + "api/events?module=3"))["events"]
        assert {"module offline", "alarm raised"} <= {e["event"] for e in events}
        counters = gateway.edge_counters()["web"]
        assert counters["requests"] >= 2 and counters["restarts"] == 0


async def test_a_web_edge_whose_port_is_taken_is_restarted_and_holds_back_ready(channel: str) -> None:
    with occupied() as (blocker, port):
        cfg = make_config(channel, web={"enabled": True, "host": "127.0.0.1", "port": port})
        gateway = Gateway(cfg)
        async with running(gateway), simulating(cfg.can.modules[0].channel, Simulator(modules=1)):
            await until(lambda: gateway.restarts["web"] >= 1, within=10.0, what="the web edge restarted")
            assert not gateway.ready.is_set()
            blocker.close()
            await until(gateway.ready.is_set, within=10.0, what="ready once the port came free")
            assert listening(port)


async def test_join_check_answers_from_the_running_gateway(channel: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(channel, web={"enabled": True, "host": "127.0.0.1", "port": 0})
    gateway = Gateway(cfg)
    sim = Simulator(modules=3, current=20.0, faults=[parse_fault("soc_offset:3=20")])
    with structlog.testing.capture_logs():  # the gateway's journal stays off the command's output
        async with running(gateway), simulating(cfg.can.modules[0].channel, sim):
            await join_checks(gateway, capsys)
    with occupied() as (_, port):
        code = await asyncio.to_thread(main, ["join-check", "3", "--url", f"http://127.0.0.1:{port}/"])
    assert code == 3
    assert "cannot reach the gateway's dashboard" in capsys.readouterr().out


async def join_checks(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    await until(lambda: online(gateway) == (1, 2), within=10.0, what="modules 1 and 2 online")
    await until(lambda: gateway.hub.latest.modules[3].reason.startswith("SOC"), within=5.0, what="3 pending")
    # The modules close their contactors once the master's permits arrive: then the bank charges.
    await until(lambda: (gateway.hub.latest.current or 0.0) > 10.0, within=5.0, what="the bank charging")
    assert gateway.web is not None
    url = gateway.web.url

    assert await asyncio.to_thread(main, ["join-check", "3", "--url", url]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Module 3 may not join yet: its SOC is (19|20|21)\.\d % above the bank's\.", out[0])
    assert out[1].startswith("bank: SOC ")
    assert out[2].startswith("  missing: SOC ") and "(window 5 %)" in out[2]
    assert re.match(r"    -> discharge module 3 to \d+–\d+ % before connecting it, or wait: ", out[3])
    assert "at the present power" in out[3]

    assert await asyncio.to_thread(main, ["join-check", "3", "--url", url, "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["verdict"] == "wait" and answer["items"][0]["kind"] == "soc"

    assert await asyncio.to_thread(main, ["join-check", "1", "--url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Module 1 is in the bank."
    assert lines[1].startswith("bank: SOC ") and len(lines) == 2
    assert await asyncio.to_thread(main, ["join-check", "40", "--url", url]) == 2
    assert "module addresses are 1..31, not 40" in capsys.readouterr().out


def test_the_demo_prints_the_dashboards_address(
    channel: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path / "demo.toml",
        channel,
        gateway={"id": "demo", "log_level": "error"},
        web={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    assert main(["demo", "--duration", "2", "--modules", "2", "--config", str(path)]) == 0
    assert re.search(r"^bms-gateway demo: dashboard at http://127\.0\.0\.1:\d+/$", capsys.readouterr().out, re.M)
