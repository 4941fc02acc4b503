"""What the dashboard and the JSON API send: pure functions from a snapshot (or a join check) to JSON-ready dicts.

The bank is `payload.bank_dict`, the very payload MQTT publishes on `bank`; a module is `payload.module_dict`
(MQTT's `module/<address>`) and its cells `payload.cells_dict`. The live views add only what a page needs beside
them: the limits' `bound_by` in words, and each module's place in the stack for the cell monitor.
"""

from __future__ import annotations

from typing import Any

from gateway.clock import Anchor
from gateway.master.joining import JoinCheck
from gateway.master.model import BankSnapshot
from gateway.outputs.web.words import limit_words
from gateway.payload import bank_dict, cells_dict, module_dict

VIEWS = ("bank", "modules", "cells", "events")
"""What a page may follow live (`/api/stream?views=...`); events are sent per client, the rest per snapshot."""


def modules(s: BankSnapshot) -> list[dict[str, Any]]:
    """Every module the master knows, by address."""
    return [module_dict(view, s.t) for _, view in sorted(s.modules.items())]


def module(s: BankSnapshot, address: int) -> dict[str, Any] | None:
    """One module with its cells (as in replay's snapshots), or None when the master does not know it."""
    view = s.modules.get(address)
    if view is None:
        return None
    return {**module_dict(view, s.t), "cells": cells_dict(view)}


def cells(s: BankSnapshot) -> list[dict[str, Any]]:
    """Every module's cells, with its place in the stack and its state (the cell monitor's view)."""
    return [
        {**cells_dict(view), "position": view.position, "state": str(view.lifecycle)}
        for _, view in sorted(s.modules.items())
    ]


def live(view: str, s: BankSnapshot, wall: Anchor) -> dict[str, Any]:
    """The payload of one live view (not events) for snapshot `s`; `wall` converts times as MQTT does."""
    if view == "bank":
        bank = bank_dict(s, wall=wall)
        return {"seq": s.seq, "bank": bank, "words": limit_words(bank["limits"])}
    if view == "modules":
        listed = modules(s)
        words = {m["address"]: limit_words(m["limits"]) for m in listed if m["limits"] is not None}
        return {"seq": s.seq, "t": s.t, "modules": listed, "words": words}
    if view == "cells":
        return {"seq": s.seq, "cells": cells(s)}
    raise ValueError(f"no live view {view!r}")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def join(check: JoinCheck) -> dict[str, Any]:
    """The expansion assistant's answer as JSON (`/api/join-check/<address>`, `bms-gateway join-check --json`)."""
    mine, bank, eta = check.module, check.bank, check.eta
    return {
        "address": check.address,
        "verdict": str(check.verdict),
        "can_join": check.can_join,
        "summary": check.summary,
        "state": None if check.state is None else str(check.state),
        "reason": check.reason,
        "items": [{"kind": i.kind, "text": i.text, "action": i.action, "blocking": i.blocking} for i in check.items],
        "module": None if mine is None else {"soc": _round(mine.soc), "voltage": _round(mine.voltage)},
        "bank": None
        if bank is None
        else {
            "soc": _round(bank.soc),
            "voltage": _round(bank.voltage),
            "current": _round(bank.current),
            "power": _round(bank.voltage * bank.current),
        },
        "windows": {"soc": check.soc_window, "voltage": check.voltage_window},
        "eta": None
        if eta is None
        else {"target_soc": _round(eta.target), "hours": _round(eta.hours), "text": str(eta)},
    }
