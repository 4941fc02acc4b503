"""Random payloads for the messages of a DBC, to compare two decoders of them: any bytes of the message's length,
shorter and longer payloads, and valid frames of every multiplexer branch with random raw values in every signal
(placed by cantools' own encoder, so a decoder under test does not place the bits it then reads).

Also the DBC files whose messages every decoder must handle: the shipped ones (dbc/, module and inverter side) and
the test DBCs with what the shipped ones do not have (tests/data/decoders.dbc: big-endian, odd lengths and start
bits, float signals, nested multiplexers; tests/data/encoders.dbc: float signals with a range, value-table entries
outside the range, a range wider than the bits, a message without signals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cantools.database.can import Message, Signal
from hypothesis import strategies as st

from gateway.can import dbc

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data"
DBC_FILES: tuple[Path, ...] = (
    *sorted((ROOT / "dbc").rglob("*.dbc")),
    DATA / "decoders.dbc",
    DATA / "encoders.dbc",
    DATA / "pylontech_independent.dbc",
)
"""Every DBC we ship (whatever is added under dbc/ is included) and the test DBCs."""


def messages(paths: Sequence[Path] = DBC_FILES) -> list[tuple[str, Message]]:
    """("file:message", message) of every message of the DBCs, loaded as the gateway loads them."""
    out = []
    for path in paths:
        db = dbc.load(path, path.name, str(path))
        out += [(f"{path.name}:{m.name}", m) for m in db.messages]
    return out


def branches(message: Message) -> list[dict[str, int]]:
    """Every way through the message's multiplexers: the multiplexer values that select one branch of each."""
    return _paths(message.signal_tree)


def _paths(tree: Sequence[Any]) -> list[dict[str, int]]:
    paths: list[dict[str, int]] = [{}]
    for node in tree:
        if isinstance(node, str):
            continue
        for mux, by_id in node.items():
            ways = [{mux: mux_id, **below} for mux_id, subtree in by_id.items() for below in _paths(subtree)]
            paths = [{**p, **w} for p in paths for w in ways]
    return paths


def _raw(signal: Signal) -> st.SearchStrategy[Any]:
    """Any raw value of a signal: every bit pattern of an integer, any IEEE value (NaN, inf, -0.0) of a float."""
    n = signal.length
    if signal.is_float:
        return st.floats(width=32) if n == 32 else st.floats()
    if signal.is_signed:
        return st.integers(-(1 << (n - 1)), (1 << (n - 1)) - 1)
    return st.integers(0, (1 << n) - 1)


def _selected(signal: Signal, path: Mapping[str, int]) -> bool:
    if signal.multiplexer_signal is None:
        return True
    return path.get(signal.multiplexer_signal) in (signal.multiplexer_ids or ())


@st.composite
def _branch_payload(draw: st.DrawFn, message: Message, path: Mapping[str, int]) -> bytes:
    values: dict[str, Any] = {}
    for signal in message.signals:
        if signal.name in path:
            values[signal.name] = signal.conversion.numeric_scaled_to_raw(path[signal.name])
        elif _selected(signal, path):
            values[signal.name] = draw(_raw(signal))
    return bytes(message.encode(values, scaling=False, strict=False))


def payloads(message: Message) -> st.SearchStrategy[bytes]:
    """A valid frame of a random branch, any bytes of the right length, or a payload too short or too long."""
    n = message.length
    valid = st.sampled_from(branches(message)).flatmap(lambda path: _branch_payload(message, path))
    shapes = [valid, st.binary(min_size=n, max_size=n), st.binary(min_size=n + 1, max_size=n + 8)]
    if n:
        shapes.append(st.binary(max_size=n - 1))
    return st.one_of(shapes)
