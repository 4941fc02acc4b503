"""Where a module bus puts the module address: one declaration per bus, and the valid addresses follow from it.

Five schemes cover the BMSs people have: `mask` (low bits of the ID, our protocol), `field` (ID bits at a shift and
width, e.g. a 29-bit ID's source byte), `stride` (`id = base + stride x n`, e.g. 0x350 + 2n), `signal` (a payload
signal names the module) and `fixed` (one battery per bus, its address from the config). `offset` moves the
address read from the wire (two identical stacks on two ports), `count` narrows the range to the modules a bus
really carries, so that addresses stay unique across buses. Pure: no DBC, no bus; the codec builds its frame-ID
table from `frame_id`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

MAX_MODULES = 31
"""Module addresses stop at 31 whatever the scheme: the Modbus map has 31 module blocks."""
MAX_FIELD_WIDTH = 8
"""The widest address field: a J1939-style source-address byte."""
EXTENDED_BITS = 29


class Scheme(enum.StrEnum):
    MASK = "mask"
    FIELD = "field"
    STRIDE = "stride"
    SIGNAL = "signal"
    FIXED = "fixed"


KEYS: dict[Scheme, tuple[str, ...]] = {
    Scheme.MASK: ("address_mask",),
    Scheme.FIELD: ("address_shift", "address_width"),
    Scheme.STRIDE: ("address_stride",),
    Scheme.SIGNAL: ("address_signal",),
    Scheme.FIXED: ("address",),
}
"""The config keys each scheme reads (besides `address_offset` and `address_count`, which all but `fixed` take)."""


@dataclass(frozen=True, slots=True)
class Addressing:
    """One bus's declaration. The wire address `w` of a frame is module address `w + offset`."""

    scheme: Scheme = Scheme.MASK
    mask: int = 0x1F
    shift: int = 0
    width: int = MAX_FIELD_WIDTH
    stride: int = 0
    signal: str = ""
    address: int = 0
    """`fixed`: the module this bus carries."""
    offset: int = 0
    count: int | None = None
    """At most this many addresses from the first one; None: all the declaration allows."""

    @property
    def wire_max(self) -> int:
        """The highest address the frames can carry."""
        if self.scheme is Scheme.MASK:
            return self.mask
        if self.scheme is Scheme.FIELD:
            return (1 << self.width) - 1
        return MAX_MODULES

    @property
    def addresses(self) -> range:
        """The module addresses this bus can carry: 1..31 at most (0 is MasterCommand's broadcast on the wire)."""
        if self.scheme is Scheme.FIXED:
            return range(self.address, self.address + 1)
        first = max(1, self.offset)
        last = min(self.wire_max + self.offset, MAX_MODULES)
        if self.count is not None:
            last = min(last, first + self.count - 1)
        return range(first, last + 1)

    def frame_id(self, base: int, address: int) -> int:
        """The ID of the message at `base` (its ID for wire address 0) from or to module `address`."""
        wire = address - self.offset
        if self.scheme is Scheme.MASK:
            return base | wire
        if self.scheme is Scheme.FIELD:
            return base | wire << self.shift
        if self.scheme is Scheme.STRIDE:
            return base + self.stride * wire
        return base

    def base(self, can_id: int) -> int:
        """`can_id` without its address bits: the ID a DBC defines the message at (mask and field only)."""
        if self.scheme is Scheme.MASK:
            return can_id & ~self.mask
        if self.scheme is Scheme.FIELD:
            return can_id & ~((1 << self.width) - 1 << self.shift)
        return can_id

    def problems(self) -> Iterator[tuple[str, str]]:
        """(key, reason) for a declaration no bus can have."""
        own = list(self._scheme_problems())
        yield from own
        if own or self.scheme is Scheme.FIXED:
            return
        first = max(1, self.offset)
        if not 0 <= self.offset < MAX_MODULES:
            yield "address_offset", f"must be within 0..{MAX_MODULES - 1}, got {self.offset}"
        elif self.count is not None and not 1 <= self.count <= MAX_MODULES - first + 1:
            yield "address_count", f"must be within 1..{MAX_MODULES - first + 1} from address {first}, got {self.count}"
        elif not self.addresses:
            yield "address_offset", f"leaves no address within 1..{MAX_MODULES}"

    def _scheme_problems(self) -> Iterator[tuple[str, str]]:
        if self.scheme is Scheme.MASK and (
            not 1 <= self.mask <= (1 << MAX_FIELD_WIDTH) - 1 or self.mask & (self.mask + 1)
        ):
            limit = (1 << MAX_FIELD_WIDTH) - 1
            yield "address_mask", f"must be a low-bit mask 2**n - 1 within 0x1..{limit:#x}, got {self.mask:#x}"
        if self.scheme is Scheme.FIELD:
            if not 1 <= self.width <= MAX_FIELD_WIDTH:
                yield "address_width", f"must be within 1..{MAX_FIELD_WIDTH} bits, got {self.width}"
            elif not 0 <= self.shift <= EXTENDED_BITS - self.width:
                why = f"{self.width} bits from bit {self.shift} do not fit a {EXTENDED_BITS}-bit ID"
                yield "address_shift", f"must be within 0..{EXTENDED_BITS - self.width}: {why}"
        if self.scheme is Scheme.STRIDE and not 1 <= self.stride <= 0x100:
            yield "address_stride", f"must be within 1..256 IDs per module, got {self.stride}"
        if self.scheme is Scheme.SIGNAL and not self.signal:
            yield "address_signal", "needs the name of the payload signal that carries the module address"
        if self.scheme is Scheme.FIXED and not 1 <= self.address <= MAX_MODULES:
            yield "address", f"must be within 1..{MAX_MODULES}, got {self.address}"
