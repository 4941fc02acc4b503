"""Sparkplug B payloads as our own frozen values, and their protobuf encoding: the one module that sees protobuf.

The schema is gateway/outputs/sparkplug_b.proto (the specification's, see its header for why the package differs
and how the generated `sparkplug_b_pb2` was made). `encode` and `decode` map between the values below and
protobuf messages; the edge node (`gateway.outputs.sparkplug`) and its MQTT adapter never touch protobuf types.

Only scalar metrics are carried: the gateway publishes numbers, flags and text. Signed integers travel in the
unsigned `int_value`/`long_value` fields as two's complement of their own width (Int8 -1 is 255), as Tahu's
Python library and pysparkplug write them; reading also takes the 32-bit form Tahu's Java library writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import DecodeError as ProtobufDecodeError

from gateway.errors import DecodeError
from gateway.outputs import sparkplug_b_pb2 as pb


class DataType(enum.IntEnum):
    """The Sparkplug B scalar data types (the schema's `DataType` numbers)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


Value = bool | int | float | str | None
"""A metric's value; None is sent as `is_null`."""

_INT = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UINT = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64, DataType.DATETIME: 64}
_TEXT = (DataType.STRING, DataType.TEXT)


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric. A birth carries name, alias, datatype and properties; a data message only alias and value."""

    name: str | None = None
    alias: int | None = None
    datatype: DataType = DataType.UNKNOWN
    """Picks the value field; sent only where the payload is encoded `with_datatypes` (births and the will)."""
    value: Value = None
    properties: tuple[tuple[str, str], ...] = ()
    """Text properties, e.g. ("engUnit", "V"): what Sparkplug hosts show as a metric's engineering unit."""


@dataclass(frozen=True, slots=True)
class Payload:
    timestamp: int
    """Milliseconds since the Unix epoch, UTC."""
    metrics: tuple[Metric, ...] = ()
    seq: int | None = None
    """0..255; None for NDEATH, STATE and commands, which carry none."""


def encode(payload: Payload, *, with_datatypes: bool) -> bytes:
    """The protobuf bytes of `payload`; metric datatypes are written only `with_datatypes` (births, NDEATH)."""
    message = pb.Payload(timestamp=payload.timestamp)
    if payload.seq is not None:
        message.seq = payload.seq
    for metric in payload.metrics:
        _put_metric(message.metrics.add(), metric, with_datatype=with_datatypes)
    return message.SerializeToString()


def decode(raw: bytes) -> Payload:
    """A received payload (NCMD, DCMD); DecodeError when it is not a Sparkplug B payload.

    A metric without a datatype gets its value from whichever value field is set (UNKNOWN as its datatype).
    """
    try:
        message = pb.Payload.FromString(raw)
    except (ProtobufDecodeError, RuntimeWarning) as err:
        raise DecodeError(f"not a Sparkplug B payload: {err}") from err
    metrics = tuple(_get_metric(m) for m in message.metrics)
    return Payload(timestamp=message.timestamp, metrics=metrics, seq=message.seq if message.HasField("seq") else None)


def _put_metric(out: pb.Payload.Metric, metric: Metric, *, with_datatype: bool) -> None:
    if metric.name is not None:
        out.name = metric.name
    if metric.alias is not None:
        out.alias = metric.alias
    if with_datatype:
        out.datatype = metric.datatype
    for key, text in metric.properties:
        out.properties.keys.append(key)
        out.properties.values.add(type=DataType.STRING, string_value=text)
    value, datatype = metric.value, metric.datatype
    if value is None:
        out.is_null = True
    elif datatype is DataType.BOOLEAN:
        out.boolean_value = bool(value)
    elif datatype in _TEXT:
        out.string_value = str(value)
    elif datatype is DataType.FLOAT:
        out.float_value = float(value)
    elif datatype is DataType.DOUBLE:
        out.double_value = float(value)
    elif (_INT.get(datatype) or _UINT.get(datatype)) == 64:
        out.long_value = int(value) & (1 << 64) - 1
    elif datatype in _INT:
        out.int_value = int(value) & (1 << _INT[datatype]) - 1
    elif datatype in _UINT:
        out.int_value = int(value)
    else:
        raise ValueError(f"metric {metric.name or metric.alias}: cannot encode a {datatype.name} value")


def _signed(value: int, bits: int, field_bits: int) -> int:
    """A signed value from its two's complement in `bits` (Tahu's Python and pysparkplug write Int8 -1 as 255) or
    in the whole field (Tahu's Java writes it as 2**32 - 1)."""
    if value >= 1 << (field_bits - 1):
        return value - (1 << field_bits)
    if value >= 1 << (bits - 1):
        return value - (1 << bits)
    return value


def _get_metric(m: pb.Payload.Metric) -> Metric:
    datatype = DataType(m.datatype) if m.datatype in DataType._value2member_map_ else DataType.UNKNOWN
    field = m.WhichOneof("value")
    value: Value = None
    if not m.is_null and field is not None:
        raw = getattr(m, field)
        if isinstance(raw, bool | int | float | str):
            value = raw
        if isinstance(value, int) and not isinstance(value, bool) and datatype in _INT:
            value = _signed(value, _INT[datatype], 64 if field == "long_value" else 32)
    properties = tuple(
        (key, v.string_value)
        for key, v in zip(m.properties.keys, m.properties.values, strict=False)
        if v.WhichOneof("value") == "string_value"
    )
    return Metric(
        name=m.name if m.HasField("name") else None,
        alias=m.alias if m.HasField("alias") else None,
        datatype=datatype,
        value=value,
        properties=properties,
    )
