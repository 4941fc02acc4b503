"""Docs the code writes: a table the code owns sits between two markers in a Markdown file, and a test compares
each file with its regeneration, so the docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

END = "<!-- END GENERATED -->"


def begin(command: str) -> str:
    """The opening marker, naming the command that regenerates the part."""
    return f"<!-- BEGIN GENERATED: {command} -->"


def splice(text: str, command: str, body: str) -> str:
    """`text` with the part between `command`'s markers replaced by `body`."""
    head, found, rest = text.partition(begin(command))
    _, end, tail = rest.partition(END)
    if not found or not end:
        raise ValueError(f"docs need the markers {begin(command)!r} and {END!r}")
    return f"{head}{begin(command)}\n{body}\n{END}{tail}"


def rewrite(path: Path, command: str, body: str) -> None:
    """Write `body` between `command`'s markers in the file at `path`."""
    path.write_text(splice(path.read_text(encoding="utf-8"), command, body), encoding="utf-8")
