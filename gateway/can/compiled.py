"""Decoders and encoders compiled from the DBC: Python functions per message, generated at load from its cantools
definition.

cantools decodes any message through generic machinery (a bitstruct format per byte order, a conversion object per
signal, a dict merged per multiplexer level), 2 to 4 us a frame. Here each message becomes straight-line code: the
payload read once as an integer (`int.from_bytes`, little- and/or big-endian as its signals need), then per signal
a shift and a mask, two's complement for a signed signal, IEEE 754 for a float signal, and cantools' own arithmetic
for scale and offset (`raw * scale + offset` with the same constants, so ints stay ints and floats round alike). A
multiplexed message dispatches on its multiplexer value to one function per branch of its signal tree.

cantools stays the reference: `decoder(message)` returns what `message.decode(data, decode_choices=False)` returns,
the same keys in the same order, the same values of the same types, and raises cantools' DecodeError with cantools'
message for a short payload or an unknown multiplexer value (a longer payload is cut to the message's length, as
cantools does). tests/test_compiled.py checks that on random payloads of every message of every DBC under dbc/
and of a test DBC with big-endian, signed and float signals. A message with something this generator does not
know (a conversion of a future cantools, a signal outside its payload) keeps cantools' decode: slower, never
different.

`generate` is the generator itself, for callers that want something else than the dict per branch (the module
codec returns only the values it stores, range-checked): they say what each branch returns, given the signals
present in it and the expression of each.

Encoding is the same idea the other way (`encoder`): cantools' strict `Message.encode` checks every value against
its range through generic machinery, then packs with bitstruct, 4 us a frame, on every inverter frame and
MasterCommand. A message without multiplexers becomes one function: each signal's value checked against the raw
interval cantools' strict check lets through (worked out at load with cantools' own arithmetic; with `scaling`, the
physical value against cantools' constants, then cantools' rounding), shifted into one integer per byte order, two's
complement for a signed signal, IEEE 754 through `struct` for a float one (the C cast bitstruct makes). Whatever
that path does not take as it is (a missing or extra signal, None, a value out of range or bits, a value-table
name, a float where an int goes, NaN) goes to cantools' own encode with the same arguments, which encodes it or
raises its own error (EncodeError naming the signal, or what it raises besides): the same bytes or the same
exception, never a second opinion. A multiplexed message keeps cantools' encode. tests/test_compiled_encode.py
checks that on random values in and around the range of every signal of every DBC under dbc/, every layout the
inverter profiles derive, and two test DBCs.
"""

from __future__ import annotations

import functools
import itertools
import linecache
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from cantools.database.can import Message, Signal
from cantools.database.conversion import BaseConversion, IdentityConversion, LinearConversion, LinearIntegerConversion
from cantools.database.errors import DecodeError

Values = dict[str, int | float]
Decoder = Callable[[bytes | bytearray], Values]
Encoder = Callable[[Mapping[str, Any]], bytes]
Constant = Callable[[object], str]
"""Gives the name (or the literal) under which generated code reads a value."""
Leaf = Callable[[Sequence[str], Mapping[str, str], Constant], list[str]]
"""What a branch returns: given the names of its signals in cantools' order and the expression of each signal's
value, the lines of the branch's function body."""

MAX_BRANCHES = 1024
"""More branches than this (nested or parallel multiplexers multiply) and the message keeps cantools' decode."""

_F32, _F64 = struct.Struct(">f"), struct.Struct(">d")


def decoder(message: Message) -> Decoder:
    """`message.decode(data, decode_choices=False)`, compiled (or cantools' own where the generator cannot)."""
    compiled = generate(message, dict_leaf)
    if compiled is None:
        return lambda data: cast("Values", message.decode(data, decode_choices=False))  # type: ignore[arg-type]
    return cast("Decoder", compiled)


def dict_leaf(names: Sequence[str], expressions: Mapping[str, str], constant: Constant) -> list[str]:
    """A branch returns every signal by name, as cantools does."""
    items = ", ".join(f"{name!r}: {expressions[name]}" for name in names)
    return [f"return {{{items}}}"]


def generate(message: Message, leaf: Leaf) -> Callable[[bytes | bytearray], Any] | None:
    """The function of one argument (the payload) that returns, for the multiplexer branch the payload selects,
    what `leaf` says; None when a signal of the message is beyond this generator."""
    if message.is_container:
        return None
    expressions = {s.name: _value(s, message.length) for s in message.signals}
    if None in expressions.values() or _branch_count(message.signal_tree) > MAX_BRANCHES:
        return None
    source = _Source(message, cast("dict[str, str]", expressions), leaf)
    return source.build()


class _Code:
    """Generated source and the constants it reads, compiled under a name that tracebacks and profilers show."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.lines: list[str] = []

    def constant(self, value: object) -> str:
        """A literal for an int or a finite float, else the name of a global of the generated code."""
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            return f"({value!r})"
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def compile(self, filename: str) -> None:
        """Run the source into the namespace; it is registered with linecache, so tracebacks show its lines."""
        text = "\n".join(self.lines) + "\n"
        exec(compile(text, filename, "exec"), self.namespace)  # our own source, generated from the DBC
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)


class _Source(_Code):
    """Python source of one message's decoder, and the constants it reads."""

    def __init__(self, message: Message, expressions: dict[str, str], leaf: Leaf) -> None:
        super().__init__(
            {
                "_from_bytes": int.from_bytes,
                "_fit": _fit,
                "_float32": _float32,
                "_float64": _float64,
                "DecodeError": DecodeError,
            }
        )
        self.message = message
        self.expressions = expressions
        self.leaf = leaf
        self.tables: dict[str, dict[int, str]] = {}
        self._ids = itertools.count()
        orders = {s.byte_order for s in message.signals}
        self.params = ", ".join(p for p, order in (("x", "little_endian"), ("y", "big_endian")) if order in orders)

    def build(self) -> Callable[[bytes | bytearray], Any]:
        """Generate, compile and return `decode(data)`; its source is registered with linecache, so tracebacks
        and profilers show it."""
        length = self.message.length
        head = [f"if len(data) != {length}:", f"    data = _fit(data, {length})"]
        if "x" in self.params:
            head.append('x = _from_bytes(data, "little")')
        if "y" in self.params:
            head.append('y = _from_bytes(data, "big")')
        names, muxes = _split(self.message.signal_tree)
        self._function("decode", "data", head, names, muxes)
        self.compile(f"<decoder of {self.message.name}, generated from the DBC>")
        for table, branches in self.tables.items():
            self.namespace[table] = {mux: self.namespace[function] for mux, function in branches.items()}
        return cast("Callable[[bytes | bytearray], Any]", self.namespace["decode"])

    def _function(
        self, name: str, params: str, head: list[str], names: list[str], muxes: list[tuple[str, Mapping[int, Any]]]
    ) -> None:
        """`def name(params)`: the branch with signals `names` so far and `muxes` still to resolve, depth first as
        cantools decodes (a multiplexer's branch before the next multiplexer of the same level)."""
        if not muxes:
            body = head + self.leaf(names, self.expressions, self.constant)
        else:
            (mux, branches), rest = muxes[0], muxes[1:]
            table = f"_t{next(self._ids)}"
            self.tables[table] = {}
            for mux_id, subtree in branches.items():
                child = f"_b{next(self._ids)}"
                own, nested = _split(subtree)
                self._function(child, self.params, [], names + own, nested + rest)
                self.tables[table][mux_id] = child
            expected = f"expected multiplexer id {_format_or(sorted(branches))}, but got "
            body = [
                *head,
                f"mux = {self.expressions[mux]}",
                f"branch = {table}.get(mux)",
                "if branch is None:",
                f"    raise DecodeError({expected!r} + str(mux))",
                f"return branch({self.params})",
            ]
        self.lines += [f"def {name}({params}):", *(f"    {line}" for line in body), ""]


# -- encoders ------------------------------------------------------------------------------------------------------

_STUMBLES = (KeyError, TypeError, ValueError, OverflowError, struct.error)
"""What the generated path trips on where cantools has its own answer (a missing signal, None, a string or a float
where an int goes, NaN or inf where an int goes, a float beyond float32): the values then go to cantools, which
encodes them or raises its own error."""


def encoder(message: Message, *, scaling: bool = False) -> Encoder:
    """`message.encode(values, scaling=scaling, strict=True)`, compiled (or cantools' own where the generator
    cannot)."""
    compiled = generate_encoder(message, scaling=scaling)
    if compiled is None:
        return cast("Encoder", functools.partial(message.encode, scaling=scaling, strict=True))
    return compiled


def generate_encoder(message: Message, *, scaling: bool = False) -> Encoder | None:
    """The straight-line encoder of a message without multiplexers; None when a signal is beyond this generator.

    The values cantools takes without a question (each signal once and nothing else; an int within the signal's
    range and bit width, or a number for a float signal) are encoded by generated code; anything else is handed to
    cantools as it is, which encodes it or raises its own error."""
    if message.is_container or any(not isinstance(node, str) for node in message.signal_tree):
        return None
    code = _Code({"_from_bytes": int.from_bytes, "_to_bytes": int.to_bytes, "_STUMBLES": _STUMBLES})
    found = [_encoding(s, message.length, scaling, i, code.constant) for i, s in enumerate(message.signals)]
    if None in found:
        return None
    parts = cast("list[_Encoding]", found)
    body = [f"v{i} = data[{s.name!r}]" for i, s in enumerate(message.signals)]
    indent = ""  # each condition nests what follows: values that fail one fall through to cantools
    if guards := " and ".join(p.guard for p in parts if p.guard):
        body.append(f"if {guards}:")
        indent = "    "
    body += [f"{indent}r{i} = {p.raw}" for i, p in enumerate(parts) if p.raw]
    if fits := " and ".join(p.fits for p in parts if p.fits):
        body.append(f"{indent}if {fits}:")
        indent += "    "
    body.append(f"{indent}return {_payload(parts, message.length, code.constant)}")
    code.namespace["_cantools"] = functools.partial(message.encode, scaling=scaling, strict=True)
    code.lines += [
        "def encode(data):",
        f"    if data.__class__ is dict and len(data) == {len(parts)}:",
        "        try:",
        *(f"            {line}" for line in body),
        "        except _STUMBLES:",
        "            pass",
        "    return _cantools(data)",
    ]
    code.compile(f"<encoder of {message.name}{' (scaled)' if scaling else ''}, generated from the DBC>")
    return cast("Encoder", code.namespace["encode"])


class _Encoding(NamedTuple):
    """The source that encodes the value `v<i>` of one signal."""

    guard: str
    """When cantools takes the value without a question (empty: always)."""
    raw: str
    """The raw value `r<i>` when scaling (empty: the value itself)."""
    fits: str
    """When that raw value fits the signal's bits (empty: always)."""
    order: str
    """"x" (placed in the payload read as a little-endian integer) or "y" (big-endian)."""
    placed: str
    """The raw value's bits, shifted to their place."""


def _encoding(signal: Signal, size: int, scaling: bool, i: int, constant: Constant) -> _Encoding | None:
    """How cantools encodes one signal, strict, in a payload of `size` bytes: the range check (the scaled value
    against the DBC's [minimum|maximum] widened by a millionth of the scale; a value-table entry outside the range is
    cantools' business), the raw value, two's complement or IEEE 754 bits. None if this generator does not know."""
    place, conversion = _place(signal, size), _numeric(signal.conversion)
    kind, scale, offset = type(conversion), conversion.scale, conversion.offset
    numbers = (scale, offset, *(v for v in (signal.minimum, signal.maximum) if v is not None))
    if (
        place is None
        or kind not in (IdentityConversion, LinearConversion, LinearIntegerConversion)
        or not all(type(v) in (int, float) and math.isfinite(v) for v in numbers)
        or scale == 0
        or (conversion.is_float and signal.length not in (32, 64))
    ):
        return None
    margin = abs(signal.conversion.scale) * 1e-6
    low = None if signal.minimum is None else signal.minimum - margin
    high = None if signal.maximum is None else signal.maximum + margin
    n, value = signal.length, f"v{i}"
    width = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if signal.is_signed else (0, (1 << n) - 1)
    raw = fits = ""
    if scaling:
        guard = _between(value, low, high)
        if kind is LinearIntegerConversion:  # cantools divides exactly where it can: its own method, as it is
            raw = f"{constant(conversion.numeric_scaled_to_raw)}({value})"
        else:
            quotient = value if kind is IdentityConversion else f"({value} - {_literal(offset)}) / {_literal(scale)}"
            raw = quotient if conversion.is_float else f"round({quotient})"
            raw = "" if raw == value else raw
        if not conversion.is_float:
            fits = _between(f"r{i}", *width)
    elif conversion.is_float:
        scaled = value if kind is IdentityConversion else f"{value} * {_literal(scale)} + {_literal(offset)}"
        guard = _between(scaled, low, high)
    else:
        accepted = _accepted(conversion, width, low, high)
        if accepted is None:
            return None
        guard = _between(value, *accepted)
    bits = f"r{i}" if raw else value
    if conversion.is_float:
        bits = f"_from_bytes({constant(_F32.pack if n == 32 else _F64.pack)}({bits}), 'big')"
    elif signal.is_signed:
        bits = f"({bits} & {(1 << n) - 1:#x})"
    order, shift = place
    return _Encoding(guard, raw, fits, order, bits if shift == 0 else f"({bits} << {shift})")


def _numeric(conversion: BaseConversion) -> BaseConversion:
    """The conversion cantools applies to numbers: a value table's delegates to a plain one."""
    if conversion.choices is None:
        return conversion
    return BaseConversion.factory(conversion.scale, conversion.offset, None, conversion.is_float)


def _accepted(
    conversion: BaseConversion, width: tuple[int, int], low: float | None, high: float | None
) -> tuple[int, int] | None:
    """The raw ints of the signal's bit width that cantools' strict check lets through, as one interval (the
    scaled value is monotonic in the raw one, so they are one); None if there are none."""

    def scaled(raw: int) -> float:
        return cast("float", conversion.raw_to_scaled(raw, decode_choices=False))

    def under(raw: int) -> bool:
        return low is not None and scaled(raw) < low

    def over(raw: int) -> bool:
        return high is not None and scaled(raw) > high

    first, last = width
    if conversion.scale < 0:
        under, over = over, under
    start = _first(lambda raw: not under(raw), first, last)
    end = _first(over, first, last) - 1
    return (start, end) if start <= end else None


def _first(predicate: Callable[[int], bool], first: int, last: int) -> int:
    """The least int in [first, last] where a predicate that turns true once holds; last + 1 if nowhere."""
    while first <= last:
        middle = (first + last) // 2
        if predicate(middle):
            last = middle - 1
        else:
            first = middle + 1
    return first


def _between(expression: str, low: float | None, high: float | None) -> str:
    """`low <= expression <= high`, without the ends that are None."""
    text = expression
    if low is not None:
        text = f"{_literal(low)} <= {text}"
    if high is not None:
        text = f"{text} <= {_literal(high)}"
    return "" if text == expression else text


def _payload(parts: Sequence[_Encoding], size: int, constant: Constant) -> str:
    """The payload from the placed bits: one integer per byte order, as cantools packs them, or-ed together."""
    words = {order: " | ".join(p.placed for p in parts if p.order == order) for order in ("x", "y")}
    if words["x"] and words["y"]:
        return f'_to_bytes({words["y"]} | _from_bytes(_to_bytes({words["x"]}, {size}, "little"), "big"), {size}, "big")'
    if words["x"]:
        return f'_to_bytes({words["x"]}, {size}, "little")'
    if words["y"]:
        return f'_to_bytes({words["y"]}, {size}, "big")'
    return constant(bytes(size))


def _split(tree: Sequence[Any]) -> tuple[list[str], list[tuple[str, Mapping[int, Any]]]]:
    """A node of cantools' signal tree: the names of its signals (multiplexers included, in order) and its
    multiplexers with their branches."""
    names: list[str] = []
    muxes: list[tuple[str, Mapping[int, Any]]] = []
    for node in tree:
        if isinstance(node, str):
            names.append(node)
            continue
        for mux, branches in node.items():
            names.append(mux)
            muxes.append((mux, branches))
    return names, muxes


def _branch_count(tree: Sequence[Any]) -> int:
    """How many functions the decoder of this tree would have at its leaves."""
    count = 1
    for node in tree:
        if not isinstance(node, str):
            for branches in node.values():
                count *= max(1, sum(_branch_count(subtree) for subtree in branches.values()))
    return count


def _value(signal: Signal, size: int) -> str | None:
    """The expression of a signal's decoded value from `x` (the payload as a little-endian integer) or `y`
    (big-endian), exactly as cantools computes it; None if this generator does not know how."""
    raw = _raw(signal, size)
    if raw is None:
        return None
    conversion = signal.conversion
    if conversion.choices is not None:  # decoded without choices: the conversion cantools then delegates to
        conversion = BaseConversion.factory(conversion.scale, conversion.offset, None, conversion.is_float)
    if conversion.is_float:
        if signal.length not in (32, 64):
            return None
        raw = f"_float{signal.length}({raw})"
    elif signal.is_signed:
        sign = 1 << (signal.length - 1)
        raw = f"(({raw} ^ {sign:#x}) - {sign:#x})"
    kind = type(conversion)
    if kind is IdentityConversion:
        return raw
    if kind is not LinearIntegerConversion and kind is not LinearConversion:
        return None
    scale, offset = conversion.scale, conversion.offset
    if not all(type(v) in (int, float) and math.isfinite(v) for v in (scale, offset)):
        return None
    value = raw if type(scale) is int and scale == 1 else f"{raw} * {_literal(scale)}"
    product_is_int = type(scale) is int and not conversion.is_float
    # `+ 0` changes nothing but -0.0 (to 0.0) and an int (to float, for + 0.0): keep it wherever either can happen
    never_minus_zero = not conversion.is_float and scale > 0
    if offset == 0 and (type(offset) is int or not product_is_int) and (product_is_int or never_minus_zero):
        return value
    return f"({value} + {_literal(offset)})"


def _raw(signal: Signal, size: int) -> str | None:
    """The expression of a signal's raw bits as an unsigned integer, from a payload of `size` bytes."""
    place = _place(signal, size)
    if place is None:
        return None
    name, shift = place
    value = name if shift == 0 else f"({name} >> {shift})"
    return value if shift + signal.length == 8 * size else f"({value} & {(1 << signal.length) - 1:#x})"


def _place(signal: Signal, size: int) -> tuple[str, int] | None:
    """Where a signal's bits are in a payload of `size` bytes: in `x` (the payload as a little-endian integer) or
    `y` (big-endian), and at which shift; None when they are not all inside it."""
    bits, length = 8 * size, signal.length
    if length <= 0:
        return None
    if signal.byte_order == "little_endian":
        name, shift = "x", signal.start
    else:  # the start bit is the most significant bit, numbered as in a sawtooth: 7..0, 15..8, ...
        name, shift = "y", bits - (8 * (signal.start // 8) + 7 - signal.start % 8) - length
    if shift < 0 or shift + length > bits:
        return None
    return name, shift


def _literal(value: float) -> str:
    """A finite number as Python source that reads back as the same value of the same type."""
    assert math.isfinite(value)
    return f"({value!r})"


def _fit(data: bytes | bytearray, length: int) -> bytes | bytearray:
    """What cantools decodes of a payload of the wrong size: a longer one cut to the message's length; a shorter
    one is refused with cantools' own error."""
    if len(data) < length:
        raise DecodeError(f"Wrong data size: {len(data)} instead of {length} bytes")
    return data[:length]


def _float32(raw: int) -> float:
    return cast("float", _F32.unpack(raw.to_bytes(4, "big"))[0])


def _float64(raw: int) -> float:
    return cast("float", _F64.unpack(raw.to_bytes(8, "big"))[0])


def _format_or(items: Sequence[int]) -> str:
    """cantools' wording for the multiplexer ids a message has: "0, 1 or 2"."""
    text = [str(item) for item in items]
    return text[0] if len(text) == 1 else f"{', '.join(text[:-1])} or {text[-1]}"
