"""A Sparkplug B host application for tests, decoding with pysparkplug: an independent decoder, not our codec.

pysparkplug pins paho-mqtt < 2 while aiomqtt needs paho-mqtt >= 2, so pip cannot install both from one
requirement list; .ci/run installs it with `pip install --no-deps` (its decoding needs only protobuf). Only its
payload classes are used here (`NBirth.decode`, `DData.decode(raw, birth=...)`, `NCmd(...).encode()`), never its
MQTT client: messages reach the test through `helpers.mosquitto.subscriber` (aiomqtt). Without pysparkplug the
tests that need it skip, except under CI (CI=true), where that is an error.

`decode(messages)` replays what a host saw in order, resolving the aliases of data messages through the last
birth of the node or device, as a host application does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest

if os.environ.get("CI"):
    import pysparkplug
else:
    pysparkplug = pytest.importorskip(
        "pysparkplug", reason="pysparkplug is the independent decoder: pip install --no-deps 'pysparkplug>=0.6.1'"
    )

from pysparkplug._payload import Birth, Payload
from pysparkplug._protobuf import Payload as PbPayload

DataType = pysparkplug.DataType
NBirth = pysparkplug.NBirth
DDeath = pysparkplug.DDeath


@dataclass(frozen=True)
class Received:
    """One Sparkplug message as the host decoded it."""

    kind: str
    """NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH, NCMD, DCMD."""
    edge_node_id: str
    device_id: str | None
    payload: Any
    """The pysparkplug payload (NBirth, DData, NDeath, ...)."""
    raw: bytes
    qos: int
    retain: bool

    @property
    def seq(self) -> int | None:
        return getattr(self.payload, "seq", None)

    @property
    def values(self) -> dict[str, Any]:
        """Metric name -> value (names resolved from the birth for data messages)."""
        return {m.name: m.value for m in self.payload.metrics}

    @property
    def metrics(self) -> dict[str, Any]:
        """Metric name -> pysparkplug Metric."""
        return {m.name: m for m in self.payload.metrics}

    def properties(self) -> dict[str, dict[str, Any]]:
        """Metric name -> its properties (key -> value), read with pysparkplug's generated protobuf classes (its
        Metric class does not carry properties)."""
        decoded = PbPayload.FromString(self.raw)
        out = {}
        for m in decoded.metrics:
            values = [getattr(v, v.WhichOneof("value")) for v in m.properties.values]
            out[m.name] = dict(zip(m.properties.keys, values, strict=True))
        return out


def decode(messages: Iterable[aiomqtt.Message]) -> list[Received]:
    """Every Sparkplug message (STATE left out) in order, decoded by pysparkplug."""
    births: dict[tuple[str, str | None], Birth] = {}
    out = []
    for message in messages:
        topic = message.topic.value
        if not topic.startswith("spBv1.0/") or topic.startswith("spBv1.0/STATE/"):
            continue
        parsed = pysparkplug.Topic.from_str(topic)
        message_type, edge_node_id = parsed.message_type, parsed.edge_node_id
        assert isinstance(message_type, pysparkplug.MessageType) and edge_node_id is not None, topic  # no wildcards
        kind = str(message_type)
        key = (edge_node_id, parsed.device_id)
        payload_type: type[Payload] = message_type.payload
        raw = bytes(message.payload)
        payload = payload_type.decode(raw, birth=births.get(key))
        if isinstance(payload, Birth):
            births[key] = payload
        out.append(Received(kind, edge_node_id, parsed.device_id, payload, raw, message.qos, message.retain))
    return out


def rebirth_request() -> bytes:
    """An NCMD payload asking for a rebirth, as a host application sends it."""
    metric = pysparkplug.Metric(timestamp=now_ms(), name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=True)
    return pysparkplug.NCmd(timestamp=now_ms(), metrics=(metric,)).encode(include_dtypes=True)


def write(name: str, datatype: Any, value: Any, *, device: bool = False) -> bytes:
    """An NCMD (or DCMD) payload writing `value` to metric `name`."""
    metric = pysparkplug.Metric(timestamp=now_ms(), name=name, datatype=datatype, value=value)
    kind = pysparkplug.DCmd if device else pysparkplug.NCmd
    return kind(timestamp=now_ms(), metrics=(metric,)).encode(include_dtypes=True)


def state(*, online: bool, timestamp: int) -> bytes:
    """A Sparkplug 3.0 host application's STATE payload."""
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


def now_ms() -> int:
    return int(time.time() * 1000)
