"""Snapshots as JSON lines (what `replay --snapshots` writes), each module's part serialised once per module state.

A line is exactly `dumps(payload.snapshot_dict(s))`; tests/test_snapshot_json.py checks it byte for byte, and that
it holds the values the stdlib's `json.dumps` writes. What it saves is work: per tick only the bank's part is built
and serialised; a module's part is kept as text and reused while the module's view is the same object (the master
hands out the same view for a module that did not change; only its `age`, which moves with the clock, and its
lifetime `energy` are written anew), and its per-cell part while its cell tuples are the same objects (the store
keeps them until a cell value arrives). Objects are compared by identity and kept alive by the cache, never by
equality: 0.0 == -0.0 and 1 == 1.0, and their JSON differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway import payload
from gateway.master.model import BankSnapshot, Energy, ModuleView

_AGE = "\0age\0"
"""Stands for a module's age while its part is serialised; its JSON, in `_AGE_JSON`, is cut out afterwards."""


def dumps(value: Any) -> str:
    """Compact JSON by orjson: a tenth of the stdlib encoder's time on a snapshot, a quarter more frames/s for
    `replay --snapshots` (see "Performance" in the README). Floats are the shortest text that reads back the same
    number (`1e-5` where json writes `1e-05`); a NaN or an infinity is `null`, valid JSON, where json writes `NaN`."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _number(value: float | None) -> str:
    """A module's age as `dumps` writes it."""
    return "null" if value is None else dumps(value)


_AGE_JSON = f',"age":{dumps(_AGE)},'
"""`"age":` between two other keys: a quote after a comma is structural (within a JSON string it is escaped)."""


@dataclass(slots=True)
class _Module:
    """One module's part as text: the view it was made from, the text before its age, and the text after it up to
    its energy (the last key of `payload.module_dict`) and the cells, which follow."""

    view: ModuleView
    head: str
    tail: str
    cells: str


@dataclass(slots=True)
class _Cells:
    """One module's per-cell part as text, and the tuples it was made from."""

    voltages: tuple[float | None, ...]
    balancing: tuple[bool, ...]
    temperatures: tuple[float | None, ...]
    text: str


class SnapshotLines:
    """Turns snapshots into JSON lines, reusing what did not change since the last one."""

    def __init__(self, encode: Callable[[Any], str] = dumps) -> None:
        self._encode = encode
        self._modules: dict[int, _Module] = {}
        self._cells: dict[int, _Cells] = {}

    def line(self, snapshot: BankSnapshot) -> str:
        """The snapshot's JSON text (without an end of line)."""
        bank = self._encode(payload.bank_dict(snapshot))
        now = snapshot.t
        parts = ",".join(
            f'"{address}":{self._module(address, view, now, payload.module_energy(snapshot, address))}'
            for address, view in snapshot.modules.items()
        )
        for gone in self._modules.keys() - snapshot.modules.keys():
            del self._modules[gone]
            self._cells.pop(gone, None)
        return f'{bank[:-1]},"modules":{{{parts}}}}}'

    def _module(self, address: int, view: ModuleView, now: float, energy: Energy | None) -> str:
        cached = self._modules.get(address)
        if cached is None or cached.view is not view:
            part = payload.module_dict(view, now)
            part["age"] = _AGE
            assert list(part)[-1] == "energy", "module_dict ends with the energy"
            del part["energy"]
            text = self._encode(part)
            head, found, tail = text.partition(_AGE_JSON)
            assert found, "module_dict has an age between two other keys"
            cached = self._modules[address] = _Module(view, head, f'{tail[:-1]},"energy":', self._cells_of(view))
        age = _number(payload.age(view.reading, now))
        lifetime = self._encode(payload.energy_dict(energy))
        return f'{cached.head},"age":{age},{cached.tail}{lifetime},"cells":{cached.cells}}}'

    def _cells_of(self, view: ModuleView) -> str:
        r = view.reading
        cached = self._cells.get(r.address)
        if (
            cached is None
            or cached.voltages is not r.cell_voltages
            or cached.balancing is not r.cell_balancing
            or cached.temperatures is not r.cell_temperatures
        ):
            text = self._encode(payload.cells_dict(view))
            cached = self._cells[r.address] = _Cells(r.cell_voltages, r.cell_balancing, r.cell_temperatures, text)
        return cached.text
