"""The decoders compiled from the DBC against cantools: every message of every DBC, random payloads, the same result.

"The same" is strict: the same signal names in the same order, and per value the same type and the same repr (so
1 is not 1.0, -0.0 is not 0.0, NaN is NaN); a payload cantools refuses is refused with the same DecodeError message.
"""

from __future__ import annotations

import linecache
import math
from collections.abc import Callable
from typing import Any

import pytest
from cantools.database.can import Message, Signal
from cantools.database.conversion import LinearConversion
from cantools.database.errors import DecodeError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.can import compiled, dbc
from gateway.can.addressing import Addressing
from gateway.can.codec import ModuleCodec, Plan

from helpers.frames import DATA, branches, messages, payloads

MESSAGES = messages()
BY_NAME = dict(MESSAGES)
DECODERS = {name: compiled.decoder(message) for name, message in MESSAGES}


def outcome(decode: Callable[[bytes], Any], data: bytes) -> object:
    """What a decoder makes of a payload, in a form where equal means identical."""
    try:
        values = decode(data)
    except DecodeError as err:
        return ("DecodeError", str(err))
    return [(name, type(value).__name__, repr(value)) for name, value in values.items()]


def cantools_decode(message: Message) -> Callable[[bytes], Any]:
    return lambda data: message.decode(data, decode_choices=False)


@pytest.mark.parametrize("name", list(BY_NAME))
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_compiled_decoder_equals_cantools(name: str, data: st.DataObject) -> None:
    message = BY_NAME[name]
    payload = data.draw(payloads(message), label="payload")
    assert outcome(DECODERS[name], payload) == outcome(cantools_decode(message), payload)


def test_every_shipped_and_test_message_is_compiled() -> None:
    """None of them falls back to cantools: each is generated code."""
    assert MESSAGES
    fallen_back = [name for name, m in MESSAGES if compiled.generate(m, compiled.dict_leaf) is None]
    assert fallen_back == []


def test_the_test_dbc_has_what_the_shipped_ones_lack() -> None:
    """Big-endian and signed signals of odd lengths, a negative scale, float signals, nested multiplexers."""
    signals = [s for name, m in MESSAGES if name.startswith("decoders.dbc:") for s in m.signals]
    assert {s.byte_order for s in signals} == {"big_endian", "little_endian"}
    assert any(s.is_signed and s.byte_order == "big_endian" and s.length % 8 for s in signals)
    assert any(s.scale < 0 for s in signals)
    assert {s.length for s in signals if s.is_float} == {32, 64}
    nested = BY_NAME["decoders.dbc:Nested"]
    assert {frozenset(p.items()) for p in branches(nested)} == {
        frozenset({("Mux", 0)}),
        frozenset({("Mux", 1)}),
        frozenset({("Mux", 2), ("Sub", 0)}),
        frozenset({("Mux", 2), ("Sub", 1)}),
        frozenset({("Mux", 3)}),
    }


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("module.dbc:CellVoltages", bytes([16, 0, 0, 0, 0, 0, 0, 0])),  # no branch 16
        ("module.dbc:CellVoltages", bytes([2, 1, 2, 3, 4, 5, 6])),  # short
        ("module.dbc:ModuleStatus", bytes(range(12))),  # long: cut, as cantools does
        ("module.dbc:ModuleStatus", b""),
        ("decoders.dbc:Nested", bytes([2, 7, 0, 0, 0, 0, 0, 0])),  # Sub 7 does not exist
        ("decoders.dbc:Nested", bytes([3, 0, 0, 0, 0, 0, 0, 0])),  # Mux 3: the multiplexers, nothing else
        ("decoders.dbc:Floats", bytes.fromhex("0000c0ff 7fc00001")),  # NaNs
        ("decoders.dbc:Floats", bytes.fromhex("00000080 80000000")),  # -0.0
        ("decoders.dbc:BigEndian", bytes.fromhex("ffff ffff ffff ffff")),
        ("decoders.dbc:Mixed", bytes.fromhex("ffffffff ff")),
    ],
)
def test_edge_payloads(name: str, data: bytes) -> None:
    assert outcome(DECODERS[name], data) == outcome(cantools_decode(BY_NAME[name]), data)


def test_values_and_types_follow_cantools_conversions() -> None:
    """Integer scale and offset give ints, any float gives floats, with cantools' arithmetic (raw * scale + offset)."""
    mixed = compiled.decoder(BY_NAME["decoders.dbc:Mixed"])
    values = mixed(bytes.fromhex("ffffffff ff"))
    assert values == {
        "LeU3": 7,
        "LeS5": -0.5,
        "LeU9": 511 * 0.1 + 0.05,
        "BeU7": -127,
        "BeS12": -1 * 0.01 + -0.5,
        "LeU4": 43,
    }
    assert [type(v) for v in values.values()] == [int, float, float, int, float, int]
    temperatures = compiled.decoder(BY_NAME["module.dbc:CellTemperatures"])(bytes([0, 255, 65, 0, 0, 0, 0, 0]))
    assert temperatures["Temp01"] == 215 and temperatures["Temp02"] == 25  # 255 = NoSensor is the codec's business
    floats = compiled.decoder(BY_NAME["decoders.dbc:Floats"])(bytes.fromhex("0000c07f 7fc00000"))
    assert math.isnan(floats["F32"]) and math.isnan(floats["F32be"])


class Squared(LinearConversion):
    """A conversion cantools does not have (a future one, or a user's): the generator does not know it."""

    def raw_to_scaled(self, raw_value: float, decode_choices: bool = True) -> float:
        return float(raw_value) ** 2


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=10))
@example(data=bytes(8))
def test_a_message_the_generator_cannot_do_keeps_cantools(data: bytes) -> None:
    """Whatever the generator does not know makes the whole message cantools' decode: slower, never different."""
    odd = Message(
        frame_id=0x123,
        name="Odd",
        length=8,
        signals=[
            Signal("Plain", start=0, length=16, conversion=LinearConversion(0.1, 0, is_float=False)),
            Signal("Strange", start=16, length=16, conversion=Squared(1, 0, is_float=False)),
        ],
        strict=True,
    )
    assert compiled.generate(odd, compiled.dict_leaf) is None
    assert outcome(compiled.decoder(odd), data) == outcome(cantools_decode(odd), data)


def test_generated_source_is_readable_in_tracebacks() -> None:
    """The generated code is registered with linecache: profiles and tracebacks show its lines."""
    decode = compiled.decoder(BY_NAME["module.dbc:ModuleStatus"])
    text = "".join(linecache.getlines(decode.__code__.co_filename))
    assert "def decode(data):" in text
    assert "'ModuleVoltage': " in text


# -- the module codec's reads: only the values the gateway stores, range-checked -----------------------------------

MODULE_CODEC = ModuleCodec(dbc.load(None, "module.dbc", "can.modules.dbc"))
ODD_CODEC = ModuleCodec(
    dbc.load(DATA / "decoders.dbc", "decoders.dbc", "can.modules.dbc"),
    addressing=Addressing(mask=0x0),
    signal_map={
        "BeU17": "ModuleVoltage",  # big-endian, 17 bits, range narrower than the raw bits
        "BeS11": "ModuleCurrent",  # big-endian, signed, odd start bit
        "BeU13": "Temp01",  # a "no sensor" value outside the range
        "BeNeg": "TemperatureMax",  # negative scale
        "LeS5": "SOC",
        "BeS12": "CellVoltageMax",
        "LeU4": "CellCount",
        "F32": "PowerStageTemperature",  # IEEE float: NaN and inf are never plausible
        "F64": "InternalResistance",
        "Always": "AliveCounter",  # outside the multiplexer, in every branch
        "A0": "Cell01Voltage",
        "A1": "FaultCode",
        "Tail": "Cell02Voltage",
        "S0": "ModuleState",  # in a nested branch
        "S1": "WarnOther",
        "S1Big": "CycleCount",
    },
)
HV_CODEC = ModuleCodec.from_config(config.parse({"can": {"modules": {"profile": "pylon-hv-battery"}}}).can.modules[0])
"""A profile whose permits are codes (0x4280: 0xAA forbids): the read turns them into 0/1."""
PLANS = [(f"module.dbc:{p.message.name}", p) for p in MODULE_CODEC.plans.values()]
PLANS += [(f"decoders.dbc:{p.message.name}", p) for p in ODD_CODEC.plans.values()]
PLANS += [("pylon_hv_battery.dbc:Forbidden", p) for p in HV_CODEC.plans.values() if p.message.name == "Forbidden"]


def reference_read(plan: Plan, data: bytes) -> object:
    """What `Plan.read` must return, computed the way the codec did before it was compiled: cantools' decode, the
    targets whose signals the frame holds, each value within its range or its "no reading" value."""
    try:
        values = dbc.decode(plan.message, data)
    except DecodeError as err:
        return ("DecodeError", str(err))
    present = tuple(t for t in plan.targets if t.signal in values)
    for target in present:
        value = values[target.signal]
        if not (target.low <= value <= target.high or value == target.no_value):
            return ("implausible", target.signal, repr(value))
    said = [values[t.signal] if t.forbidden is None else int(values[t.signal] != t.forbidden) for t in present]
    return (present, [(type(v).__name__, repr(v)) for v in said])


def compiled_read(plan: Plan, data: bytes) -> object:
    try:
        read = plan.read(data)
    except DecodeError as err:
        return ("DecodeError", str(err))
    if read is None:
        found = plan.implausible(data)
        assert found is not None
        return ("implausible", found[0], repr(found[1]))
    targets, values = read
    return (targets, [(type(v).__name__, repr(v)) for v in values])


def test_the_codecs_under_test_have_compiled_reads() -> None:
    assert len(MODULE_CODEC.plans) == 9
    assert {name for name, _ in PLANS if name.startswith("decoders.dbc")} == {
        "decoders.dbc:BigEndian",
        "decoders.dbc:Mixed",
        "decoders.dbc:Floats",
        "decoders.dbc:Double",
        "decoders.dbc:Nested",
    }
    assert all(plan.read.__code__.co_filename.startswith("<decoder of") for _, plan in PLANS)


@pytest.mark.parametrize("name", [name for name, _ in PLANS])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_compiled_read_equals_cantools_decode_and_range_checks(name: str, data: st.DataObject) -> None:
    plan = dict(PLANS)[name]
    payload = data.draw(payloads(plan.message), label="payload")
    assert compiled_read(plan, payload) == reference_read(plan, payload)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("module.dbc:ModuleStatus", bytes.fromhex("1414 85ff e903 6212"), ("implausible", "SOC", "100.10000000000001")),
        ("module.dbc:CellTemperatures", bytes([0, 255, 65, 0, 0, 0, 0, 0]), None),  # 255: no sensor, plausible
        ("module.dbc:CellTemperatures", bytes([0, 254, 65, 0, 0, 0, 0, 0]), ("implausible", "Temp01", "214")),
        ("decoders.dbc:Floats", bytes.fromhex("0000c07f 00000000"), ("implausible", "F32", "nan")),
        ("decoders.dbc:Nested", bytes([3, 0, 0, 0, 0, 0, 0, 0]), None),  # Mux 3: only AliveCounter
        ("pylon_hv_battery.dbc:Forbidden", bytes([0xAA, 0x55, 0, 0, 0, 0, 0, 0]), None),  # codes -> 0, 1
    ],
)
def test_read_edge_cases(name: str, data: bytes, expected: object) -> None:
    plan = dict(PLANS)[name]
    result = compiled_read(plan, data)
    assert result == reference_read(plan, data)
    if expected is not None:
        assert result == expected
