"""Loading DBC files: strict, once, and refusing what cantools only warns about."""

from __future__ import annotations

import importlib.resources
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import cantools
from cantools.database.can import Database, Message

from gateway.errors import ConfigError


def shipped(name: str) -> Path:
    """Path of a DBC shipped with the gateway (`module.dbc`, `inverters/pylontech.dbc`, ...)."""
    return Path(str(importlib.resources.files("gateway.dbc") / name))


def load(path: Path | None, default: str, key: str) -> Database:
    """Load a DBC strictly; `key` names the config key in errors, `default` the shipped file for None."""
    path = path or shipped(default)
    try:
        db = cantools.database.load_file(path, database_format="dbc", strict=True)
    except FileNotFoundError as err:
        raise ConfigError([f"{key}: no such file: {path}"]) from err
    except Exception as err:
        raise ConfigError([f"{key}: {path} is not a valid DBC: {err}"]) from err
    assert isinstance(db, Database)
    duplicates = [hex(i) for i, n in Counter(m.frame_id for m in db.messages).items() if n > 1]
    if duplicates:
        raise ConfigError([f"{key}: {path} defines frame IDs more than once: {', '.join(duplicates)}"])
    return db


def decode(message: Message, data: bytes | bytearray) -> Mapping[str, float]:
    """The message's signals as numbers (raw value tables not applied): cantools' own decode, typed for what it
    returns with `decode_choices=False` on a single frame. Raises what cantools raises for a bad payload."""
    return cast("Mapping[str, float]", message.decode(data, decode_choices=False))  # type: ignore[arg-type]
