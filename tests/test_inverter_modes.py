"""Each mode end to end on python-can virtual buses, a simulated inverter (gateway/sim/inverter.py) talking to the
real gateway (`Gateway` of gateway.service) fed by the module simulator.

Timing: the only durations asserted are the 100 ms within which a request must be answered, measured on bus
timestamps (python-can's virtual bus stamps each frame when it is sent: the inverter's request and the gateway's
answer carry their send times). The gateway answers in a few milliseconds on an idle machine; the bound is the
protocol's, so a loaded test machine has about 95 ms of margin. Everything else waits for a condition.
"""

from __future__ import annotations

import struct

import can

from gateway.master.model import AlarmCode
from gateway.outputs.inverter import profile
from gateway.outputs.inverter.profiles import SimFrame
from gateway.service import Gateway
from gateway.sim import Simulator
from gateway.sim.inverter import SimInverter

from helpers.buses import inverting, make_config, online, running, simulating, tapped, until

ANSWER_WITHIN = 0.1
"""Seconds: a request/response inverter gives up on an answer later than this."""
ENSEMBLE = [0x4210, 0x4220, 0x4230, 0x4240, 0x4250, 0x4260, 0x4270, 0x4280, 0x4290]
SYSTEM = [0x7310, 0x7320, 0x7330, 0x7340]
POLLS = (SimFrame(0x4200, "00 00 00 00 00 00 00 00", 0.0, 0.25), SimFrame(0x4200, "02 00 00 00 00 00 00 00", 0.1, 1.0))
"""A Pylon HV inverter polling four times faster than a real one, so that the test sees many requests."""


def limits_4220(msg: can.Message) -> tuple[float, float, float, float]:
    """0x4220 as the protocol text lays it out: CVL, DVL (0.1 V), CCL, DCL ((A + 3000) x 10), little-endian."""
    cvl, dvl, ccl, dcl = struct.unpack("<HHHH", msg.data)
    return cvl / 10, dvl / 10, ccl / 10 - 3000, dcl / 10 - 3000


def answered(frames: list[can.Message], expected: list[int]) -> list[tuple[can.Message, list[can.Message]]]:
    """The requests (0x4200 whose byte 0 asks for `expected`), each paired with the burst of `expected` frames that
    answered it, in order (two requests sent back to back get two bursts, one after the other)."""
    kind = 0x00 if expected == ENSEMBLE else 0x02
    requests = [m for m in frames if m.arbitration_id == 0x4200 and m.data[0] == kind]
    bursts: list[list[can.Message]] = []
    for msg in frames:
        if msg.arbitration_id == expected[0]:
            bursts.append([msg])
        elif msg.arbitration_id in expected and bursts:
            bursts[-1].append(msg)
    assert len(bursts) == len(requests), (len(bursts), len(requests))
    return list(zip(requests, bursts, strict=True))


async def test_request_response_answers_at_once_never_unasked_silence_and_fail_safe(channel: str) -> None:
    cfg = make_config(
        channel, can={"inverter": {"protocol": "pylon-hv", "inverter_timeout": 1.0}}, bank={"strings": [[1, 2, 3, 4]]}
    )
    gateway = Gateway(cfg)
    modules = Simulator(modules=4, strings=[[1, 2, 3, 4]], current=-10.0, seed=3)
    inverter = SimInverter(profile("pylon-hv"), frames=POLLS)
    async with (
        tapped(cfg.can.inverter.channel) as bus,
        running(gateway),
        simulating(cfg.can.modules.channel, modules) as module_sim,
    ):
        await until(lambda: online(gateway) == (1, 2, 3, 4) and gateway.hub.latest.valid, within=10.0, what="bank")
        await until(lambda: gateway.publisher is not None, within=5.0, what="publisher")
        assert bus.since() == [], "nothing before the inverter asks"

        async with inverting(cfg.can.inverter.channel, inverter):
            await until(lambda: inverter.seen.ids.get(0x7310, 0) >= 2, within=10.0, what="requests answered")
            healthy = [m for m in bus.since() if m.arbitration_id == 0x4220][-1]

            # The inverter falls silent: the master raises inverter_comm_lost, and nothing is sent meanwhile.
            inverter.silent = True
            await until(
                lambda: any(a.code is AlarmCode.INVERTER_COMM_LOST for a in gateway.hub.latest.alarms),
                within=5.0,
                what="inverter_comm_lost",
            )
            quiet = bus.mark()
            inverter.silent = False
            await until(lambda: len(bus.since(quiet)) > 0, within=5.0, what="the inverter asks again")
            assert bus.since(quiet)[0].arbitration_id == 0x4200, "nothing was sent while the inverter was silent"

            # The modules fall silent: the bank is not valid, and the answers carry the fail-safe set.
            module_sim.cancel()
            await until(lambda: not gateway.hub.latest.valid, within=5.0, what="bank not valid")
            mark = bus.mark()
            _, failsafe = await bus.wait(lambda m: m.arbitration_id == 0x4220, after=mark, within=2.0)
            _, forbidden = await bus.wait(lambda m: m.arbitration_id == 0x4280, after=mark, within=2.0)

    cvl, dvl, ccl, dcl = limits_4220(healthy)
    assert ccl > 0 and dcl > 0 and cvl > dvl
    cvl, dvl, ccl, dcl = limits_4220(failsafe)
    assert (ccl, dcl) == (0.0, 0.0)
    assert forbidden.data[:2] == bytes([0xAA, 0xAA])

    frames = bus.since()
    last = max(i for i, m in enumerate(frames) if m.arbitration_id != 0x4200)
    frames = frames[: last + 1]  # a request still on its way when the test ended was not answered: not counted
    assert frames[0].arbitration_id == 0x4200
    ensemble, system = answered(frames, ENSEMBLE), answered(frames, SYSTEM)
    assert len(ensemble) >= 5 and len(system) >= 2
    for request, answer in ensemble + system:
        expected = ENSEMBLE if request.data[0] == 0 else SYSTEM
        assert [m.arbitration_id for m in answer] == expected, "each request answered once, whole, in order"
        assert all(m.is_extended_id for m in answer)
        delay = answer[-1].timestamp - request.timestamp
        assert answer[0].timestamp >= request.timestamp, "an answer before its request"
        assert delay < ANSWER_WITHIN, delay
    gateway_frames = [m for m in frames if m.arbitration_id != 0x4200]
    assert len(gateway_frames) == 9 * len(ensemble) + 4 * len(system), "never a frame unasked"
