"""The encoders compiled from the DBC against cantools: every message of every DBC, and of every layout the inverter
profiles derive from theirs, with random values in and around each signal's range: the same bytes, or the same error.

"The same error" is strict: the same exception type with the same message (the generated code hands whatever it does
not take to cantools, which raises its own). And the generated code must not hand off what it is for: each signal
given once, an int within range and bits (a number for a float signal), not a value-table entry, is encoded by the
generated code itself, and cantools decodes its bytes back to the values given.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR
from typing import Any

import pytest
from cantools.database.can import Message, Signal
from cantools.database.conversion import LinearConversion
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.can import compiled, dbc
from gateway.can.codec import ModuleCodec
from gateway.master.model import IsolateReason, MasterCommand
from gateway.outputs.inverter.codec import KNOWN, Field, codec, to_raw
from gateway.outputs.inverter.encode import codec_of
from gateway.outputs.inverter.table import PROFILES

from helpers.frames import messages, payloads

FLT_MAX = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]
FLT_OVER = 3.4028235677973366e38
"""The least double a C cast to float makes inf: FLT_MAX plus half its ulp."""


def layouts() -> list[tuple[str, Message]]:
    """The messages of every inverter layout the profiles' options can ask for (big-endian, without the offset)."""
    out: dict[str, Message] = {}
    for profile in PROFILES.values():
        for byte_order in ("little", "big"):
            for current_offset in (False, True):
                options = dataclasses.replace(profile.defaults, byte_order=byte_order, current_offset=current_offset)
                db = codec_of(profile, options).db
                tag = f"{profile.dbc}[{byte_order}, offset {current_offset}]"
                out.update((f"{tag}:{m.name}", m) for m in db.messages)
    return sorted(out.items())


def layout(message: Message) -> tuple[object, ...]:
    """What an encoder depends on; many profiles share a message, and a layout leaves most of them as they are."""
    return (
        message.length,
        *(
            (s.name, s.start, s.length, s.byte_order, s.is_signed, s.conversion, s.minimum, s.maximum)
            for s in message.signals
        ),
    )


ALL = list({repr(layout(m)): (name, m) for name, m in reversed(messages() + layouts())}.values())[::-1]
"""Each distinct message once, under the first name it has."""
PLAIN = {name: m for name, m in ALL if not m.is_multiplexed()}
MULTIPLEXED = {name: m for name, m in ALL if m.is_multiplexed()}
ABSENT = object()
"""A signal left out of the values."""


def outcome(encode: Callable[[dict[str, Any]], bytes], values: dict[str, Any]) -> object:
    """Bytes, or the error's type and message."""
    try:
        return bytes(encode(values))
    except Exception as err:  # whatever cantools raises, the compiled encoder must raise alike
        return (type(err), str(err))


def cantools(message: Message, scaling: bool) -> Callable[[dict[str, Any]], bytes]:
    return lambda values: message.encode(values, scaling=scaling, strict=True)


def watched(message: Message, scaling: bool) -> tuple[compiled.Encoder, list[object]]:
    """A fresh compiled encoder, and the list of the values it handed to cantools."""
    encode = compiled.generate_encoder(message, scaling=scaling)
    assert encode is not None
    handed: list[object] = []
    own = encode.__globals__["_cantools"]

    def hand(values: object) -> bytes:
        handed.append(values)
        return own(values)  # type: ignore[no-any-return]

    encode.__globals__["_cantools"] = hand
    return encode, handed


WATCHED = {(name, scaling): watched(m, scaling) for name, m in PLAIN.items() for scaling in (False, True)}


def _ends(signal: Signal) -> list[float]:
    """Raw values where cantools' answer changes: the range's ends, with and without its tolerance."""
    conversion = signal.conversion
    margin = abs(conversion.scale) * 1e-6
    edges = [
        e
        for limit in (signal.minimum, signal.maximum)
        if limit is not None
        for e in (limit - margin, limit, limit + margin)
    ]
    return [(edge - conversion.offset) / conversion.scale for edge in edges]


def raw_numbers(signal: Signal) -> st.SearchStrategy[Any]:
    """Raw values in the signal's bits and near its range's ends (and its value table's)."""
    n = signal.length
    if signal.is_float:
        anything: st.SearchStrategy[Any] = st.floats(width=32) if n == 32 else st.floats()
        anchors = [*_ends(signal), 0.0, *((FLT_MAX, FLT_OVER, -FLT_OVER) if n == 32 else ())]
        near = st.sampled_from(anchors).flatmap(
            lambda a: st.sampled_from([a, math.nextafter(a, math.inf), math.nextafter(a, -math.inf), int(a)])
        )
    else:
        low, high = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if signal.is_signed else (0, (1 << n) - 1)
        anything = st.integers(low, high)
        anchors = [low, high, *(int(e) for e in _ends(signal)), *(signal.choices or ())]
        near = st.sampled_from(anchors).flatmap(lambda a: st.integers(a - 2, a + 2))
    return st.one_of(anything, near)


ODD = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.just("text"), st.just(ABSENT))
"""Values of other types, non-finite ones, and none at all."""


def raw_values(signal: Signal) -> st.SearchStrategy[Any]:
    numbers = raw_numbers(signal)
    return st.one_of(numbers, numbers, ODD)


def physical_values(signal: Signal) -> st.SearchStrategy[Any]:
    """Physical values: raw ones scaled, on and near a rounding boundary, and odd ones."""
    conversion = signal.conversion
    jitter = st.sampled_from([0.0, 0.5, -0.5, 0.4999999, 0.5000001, 1e-7])
    scaled = st.tuples(raw_numbers(signal), jitter).map(lambda t: (t[0] + t[1]) * conversion.scale + conversion.offset)
    return st.one_of(scaled, scaled, ODD)


@st.composite
def signal_values(draw: st.DrawFn, message: Message, scaling: bool) -> dict[str, Any]:
    """A value per signal (some left out), and now and then one the message does not have."""
    values = {s.name: draw(physical_values(s) if scaling else raw_values(s)) for s in message.signals}
    values = {name: v for name, v in values.items() if v is not ABSENT}
    if draw(st.integers(0, 30)) == 0:
        values["NoSuchSignal"] = 1
    return values


def is_plain(signal: Signal, value: Any, scaling: bool) -> bool:
    """The value is one the generated code must encode itself."""
    if type(value) not in (int, bool, float) or not math.isfinite(value):
        return False
    if not scaling and not signal.is_float and type(value) is float:
        return False
    try:
        raw = signal.conversion.numeric_scaled_to_raw(value) if scaling else value
    except OverflowError:  # a huge value over a small scale: no int
        return False
    if signal.is_float:
        return signal.length == 64 or abs(raw) < FLT_OVER
    return raw not in (signal.choices or {})


def float32(value: float) -> float:
    """What a C cast to float makes of a double (cantools packs float signals through bitstruct's C code)."""
    try:
        return float(struct.unpack(">f", struct.pack(">f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def encoded_alike(name: str, data: st.DataObject, scaling: bool) -> tuple[dict[str, Any], bytes] | None:
    """Random values through the generated encoder and through cantools: the same bytes or the same refusal; the
    values and bytes when the generated code had to take them itself (every value plain), else None."""
    message = PLAIN[name]
    encode, handed = WATCHED[name, scaling]
    values = data.draw(signal_values(message, scaling=scaling), label="values")
    handed.clear()
    got = outcome(encode, values)
    assert got == outcome(cantools(message, scaling), values)
    signals = {s.name: s for s in message.signals}
    plain = values.keys() == signals.keys() and all(is_plain(signals[k], v, scaling) for k, v in values.items())
    if not (plain and isinstance(got, bytes)):  # cantools refuses a value out of range, or beyond the bits
        return None
    assert not handed, "a value the generated code must take went to cantools"
    return values, got


@pytest.mark.parametrize("name", list(PLAIN))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_compiled_encoder_equals_cantools(name: str, data: st.DataObject) -> None:
    taken = encoded_alike(name, data, scaling=False)
    if taken is None:
        return
    values, got = taken
    message = PLAIN[name]
    signals = {s.name: s for s in message.signals}
    back = message.decode(got, scaling=False, decode_choices=False)
    assert isinstance(back, dict)  # a plain message decodes to a dict (cantools types it as any decoding)
    for key, value in values.items():
        signal = signals[key]
        expected = (float(value) if signal.length == 64 else float32(value)) if signal.is_float else int(value)
        assert same(back[key], expected), key


@pytest.mark.parametrize("name", list(PLAIN))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_compiled_scaled_encoder_equals_cantools(name: str, data: st.DataObject) -> None:
    """Physical values in, with cantools' own rounding (the module codec's MasterCommand)."""
    encoded_alike(name, data, scaling=True)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("encoders.dbc:Tables", {"Temp": 255, "Mode": 15, "Narrow": 15, "Power": 0}),  # value-table entries
        ("encoders.dbc:Tables", {"Temp": 0, "Mode": 0, "Narrow": 16, "Power": 0}),  # in range, beyond 4 bits
        ("encoders.dbc:Tables", {"Temp": 0, "Mode": 0, "Narrow": 0, "Power": 101}),  # 1005 > 1000 + 1e-5
        ("encoders.dbc:Tables", {"Temp": 0, "Mode": 0, "Narrow": 0, "Power": 2.5}),  # a float: cantools rounds it
        ("encoders.dbc:Tables", {"Temp": 0, "Mode": 0, "Narrow": 0, "Power": None}),
        ("encoders.dbc:Tables", {"Temp": 0, "Mode": 0, "Narrow": 0}),
        ("encoders.dbc:Whole", {"Word": 7.0}),
        ("encoders.dbc:Whole", {"Word": 1 << 32}),
        ("encoders.dbc:WideSigned", {"S64": -(1 << 63)}),
        ("encoders.dbc:FloatRanges", {"F32r": FLT_OVER, "F32w": 0.0}),  # out of range
        ("encoders.dbc:FloatRanges", {"F32r": 0.0, "F32w": math.nan}),  # NaN passes cantools' range check
        ("encoders.dbc:FloatRanges", {"F32r": 0.0, "F32w": "text"}),
        ("encoders.dbc:DoubleBig", {"F64be": -2001.5}),  # -2001.5 + 0.25 is below -1000.5 - 1e-6
        ("encoders.dbc:Nothing", {}),
        ("decoders.dbc:Floats", {"F32": FLT_OVER, "F32be": -0.0}),  # inf, not an OverflowError
        ("decoders.dbc:Wide", {"U64": (1 << 64) - 1}),
        ("decoders.dbc:Mixed", {"LeU3": 7, "LeS5": -16, "LeU9": 511, "BeU7": 127, "BeS12": -2048, "LeU4": 15}),
        (
            "module.dbc:MasterCommand",
            {
                "ConnectPermit": True,
                "ChargeAllowed": 1,
                "DischargeAllowed": 0,
                "BalancingAllowed": 0,
                "IsolateReason": 7,
                "BalanceTargetVoltage": 0,
                "FanDuty": 0,
                "MasterCounter": 0,
            },
        ),
    ],
)
def test_edge_values(name: str, values: dict[str, Any]) -> None:
    message = PLAIN[name]
    for scaling in (False, True):
        assert outcome(compiled.encoder(message, scaling=scaling), values) == outcome(
            cantools(message, scaling), values
        )


def test_every_message_without_multiplexers_is_compiled() -> None:
    assert len(PLAIN) >= 200 and MULTIPLEXED
    assert all(compiled.generate_encoder(m) is not None for m in PLAIN.values())
    assert all(compiled.generate_encoder(m, scaling=True) is not None for m in PLAIN.values())


@pytest.mark.parametrize("name", list(MULTIPLEXED))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_multiplexed_message_keeps_cantools(name: str, data: st.DataObject) -> None:
    message = MULTIPLEXED[name]
    assert compiled.generate_encoder(message) is None
    try:
        values = message.decode(data.draw(payloads(message)), scaling=False, decode_choices=False)
    except Exception:  # a payload cantools cannot decode has no values to encode
        return
    assert isinstance(values, dict)
    assert outcome(compiled.encoder(message), values) == outcome(cantools(message, False), values)


class Squared(LinearConversion):
    """A conversion cantools does not have: the generator does not know it."""

    def raw_to_scaled(self, raw_value: float, decode_choices: bool = True) -> float:
        return float(raw_value) ** 2


def test_a_message_the_generator_cannot_do_keeps_cantools() -> None:
    odd = Message(
        frame_id=0x123,
        name="Odd",
        length=8,
        signals=[
            Signal("Plain", start=0, length=16),
            Signal("Strange", start=16, length=16, conversion=Squared(1, 0, False)),
        ],
        strict=True,
    )
    assert compiled.generate_encoder(odd) is None
    for values in ({"Plain": 3, "Strange": 4}, {"Plain": 3}):
        assert outcome(compiled.encoder(odd), values) == outcome(cantools(odd, False), values)


# -- the module codec's MasterCommand ------------------------------------------------------------------------------

MODULE_CODEC = ModuleCodec(dbc.load(None, "module.dbc", "can.modules.dbc"))
COMMAND = dbc.load(None, "module.dbc", "can.modules.dbc").get_message_by_name("MasterCommand")


@settings(max_examples=300, deadline=None)
@given(
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    reason=st.sampled_from(IsolateReason),
    voltage=st.one_of(
        st.floats(-0.01, 5.01),
        st.integers(0, 5000).map(lambda mv: mv / 1000),
        st.integers(0, 5000).map(lambda mv: (mv + 0.5) * 0.001),
        st.sampled_from([5.0, 5.000001, 5.0000011, -1e-6, -1.1e-6, math.nan, math.inf]),
    ),
    fan=st.integers(-2, 102),
    counter=st.integers(0, 1000),
)
@example(flags=(True, True, True, True), reason=IsolateReason(0), voltage=3.4995, fan=100, counter=255)
def test_encode_command_equals_cantools(
    flags: tuple[bool, bool, bool, bool], reason: IsolateReason, voltage: float, fan: int, counter: int
) -> None:
    command = MasterCommand(3, *flags, reason, voltage, fan)
    values = {
        "ConnectPermit": int(flags[0]),
        "ChargeAllowed": int(flags[1]),
        "DischargeAllowed": int(flags[2]),
        "BalancingAllowed": int(flags[3]),
        "IsolateReason": int(reason),
        "BalanceTargetVoltage": voltage,
        "FanDuty": fan,
        "MasterCounter": counter % 256,
    }
    expected = outcome(cantools(COMMAND, True), values)
    try:
        got: object = MODULE_CODEC.encode_command(command, counter)
    except Exception as err:  # cantools' refusal, whatever its type
        got = (type(err), str(err))
    assert got == ((COMMAND.frame_id + 3, expected) if isinstance(expected, bytes) else expected)


# -- the inverter codec: physical values rounded and clamped per field, then encoded -----------------------------

CODECS = sorted(
    {
        id(c): c
        for profile in PROFILES.values()
        for byte_order in ("little", "big")
        for current_offset in (False, True)
        for c in [
            codec_of(
                profile, dataclasses.replace(profile.defaults, byte_order=byte_order, current_offset=current_offset)
            )
        ]
    }.values(),
    key=lambda c: repr(sorted(c.messages)),
)
FRAMES = [(c, frame_id) for c in CODECS for frame_id in sorted(c.messages)]
FIELDS = [(c, frame_id, name) for c, frame_id in FRAMES for name in c.fields[frame_id]]


def reference_raw(field: Field, value: float | None) -> int:
    """`Field.raw` as it was before it remembered values: Decimal every time."""
    if value is None or not math.isfinite(value):
        raw = {ROUND_FLOOR: field.low, ROUND_CEILING: field.high}.get(field.rounding, 0)
    else:
        raw = to_raw(field.signal, value, field.rounding)
    return min(max(raw, field.low), field.high)


def physical(field: Field) -> st.SearchStrategy[Any]:
    """Values on a rounding boundary of the field (55.2 V over 0.1: 552 exactly in decimal, not in binary), halfway
    between two, near them, the same number as an int and as a float, and odd ones."""
    scale, offset = field.signal.scale, field.signal.offset
    steps = st.one_of(st.integers(field.low - 3, field.high + 3), st.integers(-(1 << 40), 1 << 40))
    halves = st.sampled_from([0, 0.5, -0.5, 0.25])
    boundary = st.tuples(steps, halves).map(lambda t: (t[0] + t[1]) * scale + offset)
    near = boundary.flatmap(lambda v: st.sampled_from([v, math.nextafter(v, math.inf), math.nextafter(v, -math.inf)]))
    same = st.integers(-100_000, 100_000).flatmap(lambda i: st.sampled_from([i, float(i), i * scale + offset]))
    wide = st.floats(1e15, 2.0**64).map(lambda f: float(int(f)))  # integral floats whose repr is not the int
    odd = st.one_of(
        st.none(),
        st.floats(),
        st.integers(),
        st.booleans(),
        st.sampled_from([-0.0, 0.0, 2**60, 2.0**60, 2**70, 1e300, -1e300, math.nan, math.inf, -math.inf]),
    )
    return st.one_of(boundary, near, same, wide, odd)


@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_field_raw_equals_decimal(data: st.DataObject) -> None:
    """Remembered or not, `Field.raw` gives what the Decimal reference gives, value after value (the fields are the
    codecs' own, so what one example leaves in memory meets the next)."""
    codec, frame_id, name = data.draw(st.sampled_from(FIELDS), label="field")
    field = codec.fields[frame_id][name]
    values = data.draw(st.lists(physical(field), min_size=1, max_size=8), label="values")
    for value in values + twins(values) + values[::-1]:
        assert field.raw(value) == reference_raw(field, value), value
    assert len(field.known) <= KNOWN


def twins(values: list[Any]) -> list[Any]:
    """The same numbers as the other type (a dict takes 2**60 and 2.0**60 for one key)."""
    out: list[Any] = [float(v) for v in values if type(v) is int and abs(v) < 2**1000 and float(v) == v]
    return out + [int(v) for v in values if type(v) is float and math.isfinite(v) and v == int(v)]


PYLONTECH = codec("pylontech.dbc")


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("ChargeVoltageLimit", [55.2, 552 * 0.1, 55.199999999999996, 55.2, 55]),  # floor: 552, 552, 551, 552, 550
        ("DischargeVoltageLimit", [48.0, 48, 48.00000000000001, 0.1 * 481]),  # ceiling
        ("ChargeCurrentLimit", [-0.0, 0.0, -1e-300, None, math.nan, math.inf, -math.inf, 1e300]),
        ("DischargeCurrentLimit", [1, 1.0, True, 2**60, 2.0**60]),
        ("ManufacturerName", [2.0**60, 2**60, 1.2345678901234567e18, 1234567890123456768]),  # 64 bits, not clamped
    ],
)
def test_field_raw_edges(name: str, values: list[Any]) -> None:
    field = next(fields[name] for fields in PYLONTECH.fields.values() if name in fields)
    for value in values + values[::-1]:
        assert field.raw(value) == reference_raw(field, value), value


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_codec_encode_equals_decimal_and_cantools(data: st.DataObject) -> None:
    """A whole frame: the fields' raw values through the compiled encoder, as cantools encodes the Decimal ones."""
    codec, frame_id = data.draw(st.sampled_from(FRAMES), label="frame")
    fields = codec.fields[frame_id]
    values = {name: data.draw(physical(field), label=name) for name, field in fields.items()}
    raw = {name: reference_raw(field, values[name]) for name, field in fields.items()}
    assert codec.encode(frame_id, values) == codec.messages[frame_id].encode(raw, scaling=False, strict=True)


def test_the_codecs_encode_through_generated_code() -> None:
    assert MODULE_CODEC._encode_command is not None
    assert MODULE_CODEC._encode_command.__code__.co_filename.startswith("<encoder of MasterCommand (scaled)")
    assert all(e.__code__.co_filename.startswith("<encoder of") for c in CODECS for e in c.encoders.values())
