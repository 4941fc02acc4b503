"""Encoding with an inverter protocol's DBC: physical values in, payload bytes out. Pure.

Values are never computed here (the master owns limits, flags and alarms); they are only rounded, in the
direction that never raises a limit, and clamped to each field's range (its bit width, narrowed by the DBC's
[minimum|maximum]). Every signal of a frame must be given: a DBC and code that drift apart fail loudly. The rounding
is exact (Decimal) and each field remembers its last few results, since limits and setpoints repeat tick after tick;
the raw values are then encoded by a function generated from the DBC (`gateway.can.compiled.encoder`), which gives
cantools' bytes and cantools' errors.

Where the public implementations of a protocol disagree on the byte order or on an offset, the DBC describes the
common default and `variant` derives the other layout from it (the same bytes, the other byte order; the same
signal without its offset), so that even a profile option encodes through a DBC, never by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import BaseConversion

from gateway.can import compiled, dbc

FLOOR: frozenset[str] = frozenset(
    {
        "ChargeVoltageLimit",
        "ChargeCurrentLimit",
        "DischargeCurrentLimit",
        "OnlineCapacity",
        "InstalledCapacity",
    }
)
"""Signals rounded down wherever they appear (a limit or a capacity must never be raised by rounding)."""
CEILING: frozenset[str] = frozenset({"DischargeVoltageLimit"})
"""Signals rounded up (the voltage the inverter may discharge to must never be lowered by rounding)."""

Values = Mapping[str, float | None]


def to_raw(signal: Signal, value: float, rounding: str) -> int:
    """Physical -> raw in decimal, so that 55.2 V is 552 and not 551 after a float division."""
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
    raw = (exact - Decimal(repr(signal.offset))) / Decimal(repr(signal.scale))
    return int(raw.to_integral_value(rounding=rounding))


def rounding_of(name: str) -> str:
    if name in FLOOR:
        return ROUND_FLOOR
    if name in CEILING:
        return ROUND_CEILING
    return ROUND_HALF_UP


KNOWN = 64
"""How many values each field remembers the raw value of (emptied when full): the limits, setpoints and texts of a
frame repeat tick after tick, and a Decimal division costs microseconds."""


@dataclass(frozen=True, slots=True)
class Field:
    signal: Signal
    rounding: str
    low: int
    high: int
    known: dict[tuple[type, object], int] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """Raw values already worked out, by the value's type and the value: 2**60 and 2.0**60 are one key of a dict,
    but not one number to `to_raw`, which reads a float through its repr."""

    @classmethod
    def of(cls, signal: Signal) -> Field:
        """The signal's raw range: its bit width, narrowed by the DBC's [minimum|maximum]."""
        low = -(2 ** (signal.length - 1)) if signal.is_signed else 0
        high = 2 ** (signal.length - 1) - 1 if signal.is_signed else 2**signal.length - 1
        if signal.minimum is not None:
            low = max(low, to_raw(signal, signal.minimum, ROUND_CEILING))
        if signal.maximum is not None:
            high = min(high, to_raw(signal, signal.maximum, ROUND_FLOOR))
        return cls(signal, rounding_of(signal.name), low, high)

    def raw(self, value: float | None) -> int:
        """Rounded as the field requires and clamped to its range. Unknown or non-finite values take the safe
        end: the lowest CVL/CCL/DCL, the highest DVL, 0 for a measurement (clamped into the field)."""
        key = (value.__class__, value)
        raw = self.known.get(key)
        if raw is None:
            if len(self.known) >= KNOWN:
                self.known.clear()
            raw = self.known[key] = self.exact(value)
        return raw

    def exact(self, value: float | None) -> int:
        """`raw`, worked out in Decimal."""
        if value is None or not math.isfinite(value):
            raw = {ROUND_FLOOR: self.low, ROUND_CEILING: self.high}.get(self.rounding, 0)
        else:
            raw = to_raw(self.signal, value, self.rounding)
        return min(max(raw, self.low), self.high)


class Codec:
    """One DBC, loaded once, with each signal's rounding and raw range worked out ahead."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.messages: dict[int, Message] = {m.frame_id: m for m in db.messages}
        self.fields = {m.frame_id: {s.name: Field.of(s) for s in m.signals} for m in db.messages}
        self.encoders = {m.frame_id: compiled.encoder(m) for m in db.messages}

    def encode(self, frame_id: int, values: Values) -> bytes:
        """Every signal of the frame must be given (strict): a DBC and code that drift apart fail loudly."""
        fields = self.fields[frame_id]
        raw = {name: fields[name].raw(value) for name, value in values.items()}
        return self.encoders[frame_id](raw)

    def decode(self, frame_id: int, data: bytes) -> Mapping[str, float]:
        """A received frame's signals (short frames zero-padded: their arrival is what counts)."""
        message = self.messages[frame_id]
        return dbc.decode(message, data[: message.length].ljust(message.length, b"\0"))


@functools.cache
def load(name: str) -> Database:
    """dbc/inverters/`name`, loaded once, strict, duplicate frame IDs refused."""
    return dbc.load(None, f"inverters/{name}", f"dbc/inverters/{name}")


@functools.cache
def codec(name: str, *, big_endian: bool = False, no_offset: frozenset[str] = frozenset()) -> Codec:
    """The codec of dbc/inverters/`name`, or of its `variant`; built once per layout."""
    db = load(name)
    if big_endian or no_offset:
        db = variant(db, big_endian=big_endian, no_offset=no_offset)
    return Codec(db)


def variant(db: Database, *, big_endian: bool, no_offset: frozenset[str]) -> Database:
    """`db` with every 16- and 32-bit little-endian signal (the numbers; text stays in byte order) re-laid
    big-endian over the same bytes (`big_endian`), and
    the signals named in `no_offset` without their offset and signed (a current that some inverters want with a
    3000 A offset, others as a plain signed value)."""
    messages = []
    for message in db.messages:
        signals = [_changed(s, big_endian=big_endian, no_offset=s.name in no_offset) for s in message.signals]
        messages.append(
            Message(
                frame_id=message.frame_id,
                name=message.name,
                length=message.length,
                signals=signals,
                comment=message.comment,
                senders=message.senders,
                cycle_time=message.cycle_time,
                is_extended_frame=message.is_extended_frame,
                strict=True,
            )
        )
    return Database(messages=messages, nodes=db.nodes, version=db.version, strict=True)


def _changed(signal: Signal, *, big_endian: bool, no_offset: bool) -> Signal:
    start, byte_order = signal.start, signal.byte_order
    if big_endian and byte_order == "little_endian" and signal.length in (16, 32):
        if signal.start % 8:
            raise ValueError(f"{signal.name}: only whole-byte signals can change byte order")
        start, byte_order = signal.start + 7, "big_endian"  # MSB in the signal's first byte
    conversion = signal.conversion
    is_signed, minimum, maximum = signal.is_signed, signal.minimum, signal.maximum
    if no_offset:
        conversion = BaseConversion.factory(scale=signal.scale, offset=0, choices=None, is_float=False)
        is_signed, minimum, maximum = True, None, None
    return Signal(
        name=signal.name,
        start=start,
        length=signal.length,
        byte_order=byte_order,
        is_signed=is_signed,
        conversion=conversion,
        minimum=minimum,
        maximum=maximum,
        unit=signal.unit,
        comment=signal.comment,
        receivers=signal.receivers,
    )


def ascii_le(text: str) -> int:
    """Text as the little-endian integer a DBC signal carries it as (first character in the lowest byte)."""
    return int.from_bytes(text.encode("ascii"), "little")


def ascii_be(text: str, length: int) -> int:
    """Text as the big-endian integer of `length` bytes a DBC signal carries it as (first character first),
    padded with NULs."""
    return int.from_bytes(text.encode("ascii")[:length].ljust(length, b"\0"), "big")


def text_le(value: int, length: int) -> str:
    """The printable ASCII in a little-endian text signal; NULs and padding spaces dropped."""
    return "".join(chr(b) for b in value.to_bytes(length, "little") if 0x20 <= b < 0x7F).strip()
