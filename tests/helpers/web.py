"""The web dashboard's tests: a token file, and a reader of Server-Sent Events from an aiohttp client response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

TOKEN = "test-token-0123456789abcdef"


def token_file(directory: Path, token: str = TOKEN) -> Path:
    path = directory / "web.token"
    path.write_text(token + "\n")
    return path


@dataclass(frozen=True, slots=True)
class Message:
    event: str
    id: str
    data: Any


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """The Server-Sent Events of a stream response, one at a time, as the browser's EventSource parses them."""
    event, ident = "message", ""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield Message(event, ident, json.loads("\n".join(data)))
            event, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            ident = value
        elif name == "data":
            data.append(value)
