"""The history read back the way an installer reads it: `bms-gateway events --json` and `history --json`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from gateway.cli import main


def cli(*args: str) -> str:
    """Run `bms-gateway ARGS` in this process; its stdout (it must exit 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0, f"bms-gateway {' '.join(args)} exited {code}"
    return out.getvalue()


def events(db: Path, *args: str) -> list[dict[str, Any]]:
    """`bms-gateway events --db DB --json ARGS`, one dict per event."""
    return [json.loads(line) for line in cli("events", "--db", str(db), "--json", *args).splitlines()]


def history(db: Path, *args: str) -> dict[str, Any]:
    """`bms-gateway history --db DB --json ARGS`."""
    document: dict[str, Any] = json.loads(cli("history", "--db", str(db), "--json", *args))
    return document


def named(found: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """The events called one of `names` ("gateway start", "module offline", ...), in order."""
    return [e for e in found if e["event"] in names]
