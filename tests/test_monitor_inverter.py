"""The live view's inverter line: what the demo shows of the inverter side, from the schedule's state."""

from __future__ import annotations

from rich.console import Console

from gateway import config
from gateway.master.model import InverterInfo
from gateway.monitor import inverter_dict, view
from gateway.outputs.inverter import Heard, Schedule

from helpers.snapshots import hv_snapshot


def rendered(inverter: dict[str, object]) -> str:
    console = Console(width=200, record=True)
    console.print(view({"valid": True}, {}, inverter))
    return console.export_text()


def test_the_live_view_shows_the_pairing_the_requests_and_the_last_answer() -> None:
    inverter = config.parse({"can": {"inverter": {"protocol": "sma-hv"}}}).can.inverter
    s = Schedule(inverter, bank=config.BankSection())
    s.due(1.0, hv_snapshot(t=1.0))
    before = inverter_dict(s.state, 1.0, None)
    assert (before["paired"], before["requests"], before["heard"]) == (False, 0, None)
    assert "inverter sma-hv (handshake)  never heard  not paired (idle)  requests 0, answers 0" in rendered(before)

    for n in range(40):  # a pairing request, then the queue drains 250 ms apart on the ticks
        t = 2.0 + n / 10
        s.due(t, hv_snapshot(t=t), [Heard(t, 0x5E7, bytes(8))] if n == 0 else [])
    after = inverter_dict(s.state, 6.0, InverterInfo(name="", last_seen=5.5))
    assert (after["paired"], after["session"], after["requests"]) == (True, "paired", 1)
    assert after["heard"] == 0.5
    text = rendered(after)
    assert "heard 0.5 s ago  paired (paired)  requests 1, answers " in text
