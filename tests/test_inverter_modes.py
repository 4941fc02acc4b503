"""Each mode end to end on python-can virtual buses, a simulated inverter (gateway/sim/inverter.py) talking to the
real gateway (`Gateway` of gateway.service) fed by the module simulator:

- request/response (pylon-hv): every request answered, whole and in order, within 100 ms; nothing ever unasked;
  a silent inverter raises inverter_comm_lost (and gets nothing); silent modules: the answers are fail-safe;
- handshake (byd-hvs: the inverter speaks first; sma-hv: pairing 250 ms apart; solax: the contactor request):
  nothing before the inverter speaks, the handshake completes, silence raises inverter_comm_lost, silent modules
  send the fail-safe set to the paired inverter;
- broadcast (victron): the set from the start; a silent keep-alive raises inverter_comm_lost.

Timing: the only durations asserted are the 100 ms within which a request must be answered, measured on bus
timestamps (python-can's virtual bus stamps each frame when it is sent: the inverter's request and the gateway's
answer carry their send times). The gateway answers in a few milliseconds on an idle machine; the bound is the
protocol's, so a loaded test machine has about 95 ms of margin. Everything else waits for a condition.
"""

from __future__ import annotations

import struct

import can
import pytest

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
        simulating(cfg.can.modules[0].channel, modules) as module_sim,
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


# -- handshake ------------------------------------------------------------------------------------------------------


def limits_be(msg: can.Message) -> tuple[float, float, float, float]:
    """BYD 0x110 / SMA 0x358: charge voltage, discharge voltage (0.1 V), then DCL before CCL (0.1 A), big-endian."""
    cvl, dvl, dcl, ccl = struct.unpack(">HHHH", msg.data)
    return cvl / 10, dvl / 10, ccl / 10, dcl / 10


def limits_solax(msg: can.Message) -> tuple[float, float, float, float]:
    """Solax 0x1872: charge voltage, discharge voltage, CCL, DCL, little-endian."""
    cvl, dvl, ccl, dcl = struct.unpack("<HHHH", msg.data)
    return cvl / 10, dvl / 10, ccl / 10, dcl / 10


HANDSHAKES = {
    # profile: (the first frame the gateway may send, the frame that ends the handshake, limits frame, its decoder)
    "byd-hvs": (0x250, 0x3D0, 0x110, limits_be),
    "sma-hv": (0x558, 0x518, 0x358, limits_be),
    "solax": (0x187E, 0x1801, 0x1872, limits_solax),
}


@pytest.mark.parametrize("name", list(HANDSHAKES))
async def test_handshake_completes_silence_raises_comm_lost_and_silent_modules_get_the_fail_safe_set(
    name: str, channel: str
) -> None:
    first_id, last_id, limits_id, limits = HANDSHAKES[name]
    row = profile(name)
    cfg = make_config(
        channel, can={"inverter": {"protocol": name, "inverter_timeout": 3.0}}, bank={"strings": [[1, 2, 3, 4]]}
    )
    gateway = Gateway(cfg)
    modules = Simulator(modules=4, strings=[[1, 2, 3, 4]], current=-10.0, seed=2)
    inverter = SimInverter(row)
    async with (
        tapped(cfg.can.inverter.channel) as bus,
        running(gateway),
        simulating(cfg.can.modules[0].channel, modules) as module_sim,
    ):
        await until(lambda: online(gateway) == (1, 2, 3, 4) and gateway.hub.latest.valid, within=10.0, what="bank")
        schedule = gateway.core.inverter
        assert schedule is not None
        assert bus.since() == [] and schedule.state.paired is False, "nothing before the inverter speaks"

        async with inverting(cfg.can.inverter.channel, inverter):
            await until(lambda: schedule.state.paired is True, within=10.0, what=f"{name}: handshake")
            frames = bus.since()
            spoke = next(i for i, m in enumerate(frames) if m.arbitration_id in row.expects)
            mine = [m for m in frames if m.arbitration_id not in row.expects]
            assert frames.index(mine[0]) > spoke, "the inverter spoke first"
            assert mine[0].arbitration_id == first_id
            # Paired is the gateway's state; the frame that says so may still be on its way to the tap.
            await bus.wait(lambda m: m.arbitration_id == last_id, within=5.0)
            _, healthy = await bus.wait(lambda m: m.arbitration_id == limits_id, within=5.0)
            cvl, dvl, ccl, dcl = limits(healthy)
            assert ccl > 0 and dcl > 0 and cvl > dvl

            # The inverter falls silent: inverter_comm_lost.
            inverter.silent = True
            await until(
                lambda: any(a.code is AlarmCode.INVERTER_COMM_LOST for a in gateway.hub.latest.alarms),
                within=8.0,
                what="inverter_comm_lost",
            )
            inverter.silent = False

            # The modules fall silent: the fail-safe set (CCL = DCL = 0) goes out, to a paired inverter.
            module_sim.cancel()
            await until(lambda: not gateway.hub.latest.valid, within=5.0, what="bank not valid")
            _, failsafe = await bus.wait(
                lambda m: m.arbitration_id == limits_id and limits(m)[2:] == (0.0, 0.0), after=bus.mark(), within=5.0
            )
            assert limits(failsafe)[0] > 0, "CVL held at the bank's voltage, never 0 V"


# -- broadcast ------------------------------------------------------------------------------------------------------


async def test_broadcast_sends_from_the_start_and_a_silent_inverter_raises_comm_lost(channel: str) -> None:
    """The set goes out whether the inverter speaks or not; once its keep-alive (0x305) was heard, its silence for
    `inverter_timeout` raises inverter_comm_lost. (The fail-safe set when the modules fall silent: test_e2e.)"""
    cfg = make_config(channel, can={"inverter": {"protocol": "victron", "inverter_timeout": 2.0}})
    gateway = Gateway(cfg)
    inverter = SimInverter(profile("victron"))
    async with tapped(cfg.can.inverter.channel) as bus, running(gateway):
        await bus.wait(lambda m: m.arbitration_id == 0x351, within=5.0)  # before the inverter spoke, and invalid
        async with inverting(cfg.can.inverter.channel, inverter):
            await until(lambda: gateway.hub.latest.inverter is not None, within=5.0, what="inverter heard")
            info = gateway.hub.latest.inverter
            assert info is not None and info.name == "SIM"
            inverter.silent = True
            await until(
                lambda: any(a.code is AlarmCode.INVERTER_COMM_LOST for a in gateway.hub.latest.alarms),
                within=6.0,
                what="inverter_comm_lost",
            )
            mark = bus.mark()
            await bus.wait(lambda m: m.arbitration_id == 0x351, after=mark, within=2.0)  # and it goes on sending


async def test_on_stop_a_request_response_inverter_gets_the_fail_safe_set_as_its_next_answer(channel: str) -> None:
    """SIGTERM: nothing is sent unasked; the next request (within ANSWER_ON_STOP) is answered with the fail-safe
    set, and then nothing more."""
    cfg = make_config(channel, can={"inverter": {"protocol": "pylon-hv"}}, bank={"strings": [[1, 2, 3, 4]]})
    gateway = Gateway(cfg)
    modules = Simulator(modules=4, strings=[[1, 2, 3, 4]], current=-10.0, seed=3)
    inverter = SimInverter(profile("pylon-hv"), frames=POLLS)
    async with (
        tapped(cfg.can.inverter.channel) as bus,
        running(gateway),
        simulating(cfg.can.modules[0].channel, modules),
        inverting(cfg.can.inverter.channel, inverter),
    ):
        await until(lambda: gateway.hub.latest.valid, within=10.0, what="bank")
        await bus.wait(lambda m: m.arbitration_id == 0x4220 and limits_4220(m)[2] > 0, within=5.0)
        mark = bus.mark()
        await gateway.send_failsafe()
        assert gateway.publisher is not None and gateway.publisher.stopped
        _, last = await bus.wait(
            lambda m: (
                m.arbitration_id == 0x4290
                and any(f.arbitration_id == 0x4220 and limits_4220(f)[2:] == (0.0, 0.0) for f in bus.since(mark))
            ),
            after=mark,
            within=2.0,
        )

        def later(m: can.Message) -> bool:
            return m.arbitration_id == 0x4200 and m.timestamp > last.timestamp

        position, _ = await bus.wait(later, after=mark, within=2.0)
        await bus.wait(later, after=position + 1, within=2.0)  # two requests after it: time enough to answer one
    after = bus.since(mark)
    failsafe = [m for m in after if m.arbitration_id == 0x4220 and limits_4220(m)[2:] == (0.0, 0.0)]
    assert len(failsafe) == 1, "the fail-safe set, as one answer"
    request = max(
        (m for m in after if m.arbitration_id == 0x4200 and m.timestamp <= failsafe[0].timestamp),
        key=lambda m: m.timestamp,
    )
    assert failsafe[0].timestamp - request.timestamp < ANSWER_WITHIN, "asked for, and answered at once"
    assert [m for m in after if m.timestamp > last.timestamp and m.arbitration_id != 0x4200] == [], "then nothing"
