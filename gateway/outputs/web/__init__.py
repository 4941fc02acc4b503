"""The web dashboard and JSON API (aiohttp, in the gateway's own event loop)."""

from gateway.outputs.web.server import WebServer, read_token

__all__ = ["WebServer", "read_token"]
