"""Replay of both buses: frames on the inverter's channel reach the inverter side as received, and its answers go
to --output at the request's time; request/response runs are the same on every run."""

from __future__ import annotations

from pathlib import Path

from gateway import config
from gateway.can.logfile import LogFile
from gateway.outputs.inverter import profile
from gateway.outputs.inverter.profiles import SimFrame
from gateway.replay import replay
from gateway.sim import Simulator

from helpers.logs import two_bus_log

ENSEMBLE = [0x4210, 0x4220, 0x4230, 0x4240, 0x4250, 0x4260, 0x4270, 0x4280, 0x4290]
SYSTEM = [0x7310, 0x7320, 0x7330, 0x7340]
POLLS = (SimFrame(0x4200, "00 00 00 00 00 00 00 00", 0.0, 1.0), SimFrame(0x4200, "02 00 00 00 00 00 00 00", 0.5, 5.0))
CFG = config.parse(
    {
        "can": {"modules": {"channel": "can0"}, "inverter": {"channel": "can1", "protocol": "pylon-hv"}},
        "bank": {"strings": [[1, 2, 3, 4]]},
    }
)


def test_a_two_channel_log_with_a_pylon_hv_inverter_polling_gives_the_same_frames_on_every_run(
    tmp_path: Path,
) -> None:
    log = tmp_path / "both.log"
    sim = Simulator(modules=4, strings=[[1, 2, 3, 4]], current=-10.0, seed=5)
    two_bus_log(log, sim, 12.0, inverter=profile("pylon-hv"), frames=POLLS, start=3.0)
    runs = []
    for n in range(3):
        out = tmp_path / f"out{n}.log"
        result = replay(log, CFG, output=out)
        runs.append([(m.timestamp, m.arbitration_id, bytes(m.data), m.is_extended_id) for m in LogFile(out)])
    assert runs[0] == runs[1] == runs[2], "the same frames on every run"

    requests = [m for m in LogFile(log) if m.channel == "can1"]
    assert result.inverter_frames == len(requests) == 9 + 2  # 3.0..11.x s: nine polls, two system requests
    sent = [m for m in LogFile(tmp_path / "out0.log") if m.channel == "inverter"]
    expected = [
        (request.timestamp, can_id) for request in requests for can_id in (ENSEMBLE if request.data[0] == 0 else SYSTEM)
    ]
    assert [(m.timestamp, m.arbitration_id) for m in sent] == expected, "answered at each request's time, never else"
    assert all(m.is_extended_id for m in sent)
    # The first answers come while the bank forms (not valid yet): the fail-safe set, CCL = DCL = 0 (30000 raw).
    limits = [m for m in sent if m.arbitration_id == 0x4220]
    assert limits[-1].data[4:] != bytes.fromhex("30 75 30 75"), "later, the master's limits"
