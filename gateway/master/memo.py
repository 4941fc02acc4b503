"""Remembering a rule's per-module results while exactly their inputs stay the same.

The store hands the master the identical `ModuleReading` object for a module that sent nothing new, and a reload
replaces the config's sections: identity is the cheapest exact test of "unchanged?". Plain equality is not exact:
0.0 == -0.0 (which print differently in a `bound_by`), and NaN != NaN. So inputs count as the same when they are
the same objects, or floats that are equal and not zero (equal non-zero floats are the same number); anything
else recomputes, which is always correct.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.master.model import ModuleReading

V = TypeVar("V")


def same_values(a: tuple[float | None, ...], b: tuple[float | None, ...]) -> bool:
    """True when the numbers `a` and `b` must give the same result: equal, of the same types (1 == 1.0 print
    differently too), and none of them zero (so no 0.0 stands for a -0.0; a NaN is equal only to itself)."""
    return a == b and 0.0 not in a and all(map(operator.is_, map(type, a), map(type, b)))


def _same_numbers(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x is not y and not (type(x) is float and type(y) is float and x == y and x != 0.0):
            return False
    return True


@dataclass(slots=True)
class Memo(Generic[V]):
    """The last result per key (a module address, a string) with the inputs it was computed from: the same objects,
    or equal non-zero floats. Put the input most likely to change first: most misses are found there."""

    _last: dict[Hashable, tuple[tuple[object, ...], V]] = field(default_factory=dict)

    def get(self, key: Hashable, inputs: tuple[object, ...]) -> V | None:
        """The result remembered for `key` if it was computed from the same `inputs`, else None."""
        last = self._last.get(key)
        if last is None:
            return None
        old = last[0]
        if len(old) != len(inputs) or (old and old[0] is not inputs[0] and type(old[0]) is not float):
            return None  # the usual miss, found without a loop
        if all(map(operator.is_, old, inputs)) or _same_numbers(old, inputs):
            return last[1]
        return None

    def put(self, key: Hashable, inputs: tuple[object, ...], value: V) -> V:
        self._last[key] = (inputs, value)
        return value

    def forget(self) -> None:
        """Drop every result (full-recompute mode)."""
        self._last.clear()


@dataclass(slots=True)
class ByReading(Generic[V]):
    """The last result per module computed from its reading and the config's sections, all by identity: the
    cheapest memo, for rules of one module's reading alone."""

    _last: dict[int, tuple[ModuleReading, object, object, V]] = field(default_factory=dict)

    def get(self, r: ModuleReading, bank: object, limits: object) -> V | None:
        last = self._last.get(r.address)
        if last is not None and last[0] is r and last[1] is bank and last[2] is limits:
            return last[3]
        return None

    def put(self, r: ModuleReading, bank: object, limits: object, value: V) -> V:
        self._last[r.address] = (r, bank, limits, value)
        return value

    def forget(self) -> None:
        """Drop every result (full-recompute mode)."""
        self._last.clear()
