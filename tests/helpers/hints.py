"""Reading the config's type hints the way its parser does, for tests that walk every key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def table(hint: Any) -> Any:
    """The table of a list of tables (`[[can.modules]]`, its `polls`), else the hint itself; unset (None) is the
    default's."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint, args = args[0], list(typing.get_args(args[0]))
    if (
        typing.get_origin(hint) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and dataclasses.is_dataclass(args[0])
    ):
        return args[0]
    return hint
