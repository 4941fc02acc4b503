"""Prometheus metrics: read from the live objects at scrape time, served over a small asyncio HTTP endpoint.

Nothing is counted twice: the ingest counters, the latest snapshot and the edges' counters are read when a
scraper asks, so the hot path pays nothing for metrics. Only the master tick duration is observed per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.hub import SnapshotHub
from gateway.master.model import AlarmCode, Extreme, Level, Lifecycle

TICK_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
LEVELS = {None: 0, Level.WARNING: 1, Level.PROTECTION: 2}


class _Collector(Collector):
    def __init__(
        self,
        hub: SnapshotHub,
        ingest: Callable[[], Mapping[str, int]],
        edges: Callable[[], Mapping[str, Mapping[str, int]]],
        clock: Callable[[], float],
    ) -> None:
        self._hub = hub
        self._ingest = ingest
        self._edges = edges
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        counters = dict(self._ingest())
        frames = CounterMetricFamily("bms_frames", "Module bus frames by outcome", labels=["outcome"])
        frames.add_metric(["received"], counters.pop("received", 0))
        frames.add_metric(["decoded"], counters.pop("decoded", 0))
        yield frames
        rejected = CounterMetricFamily("bms_frames_rejected", "Module frames not used, by kind", labels=["kind"])
        for kind, n in counters.items():
            rejected.add_metric([kind], n)
        yield rejected
        edge = CounterMetricFamily("bms_edge_events", "Counters of the outputs and buses", labels=["edge", "event"])
        for name, values in self._edges().items():
            for event, n in values.items():
                edge.add_metric([name, event], n)
        yield edge

        s = self._hub.latest
        yield _gauge("bms_snapshot_seq", "Master tick number", s.seq)
        yield _gauge("bms_snapshot_age_seconds", "Age of the latest snapshot", max(0.0, self._clock() - s.t))
        yield _gauge("bms_bank_valid", "1 when the master vouches for the bank", int(s.valid))
        for name, value, doc in (
            ("bms_bank_voltage_volts", s.voltage, "Bank voltage"),
            ("bms_bank_current_amperes", s.current, "Bank current, positive = charging"),
            ("bms_bank_soc_percent", s.soc, "State of charge"),
            ("bms_bank_soh_percent", s.soh, "State of health"),
            ("bms_cell_voltage_max_volts", _value(s.cell_voltage_max), "Highest cell"),
            ("bms_cell_voltage_min_volts", _value(s.cell_voltage_min), "Lowest cell"),
            ("bms_temperature_max_celsius", _value(s.temperature_max), "Highest temperature"),
            ("bms_temperature_min_celsius", _value(s.temperature_min), "Lowest temperature"),
            ("bms_fan_duty_percent", s.fan_duty, "Fan duty"),
        ):
            if value is not None:
                yield _gauge(name, doc, value)
        limits = GaugeMetricFamily("bms_limit", "Bank limits sent to the inverter (A or V)", labels=["limit"])
        for name in ("charge_current", "discharge_current", "charge_voltage", "discharge_voltage"):
            limits.add_metric([name], getattr(s.limits, name).value)
        yield limits
        flags = GaugeMetricFamily("bms_flag", "Request flags sent to the inverter", labels=["flag"])
        for name in ("charge_enable", "discharge_enable", "force_charge", "full_charge"):
            flags.add_metric([name], int(getattr(s.flags, name)))
        yield flags
        modules = GaugeMetricFamily("bms_modules", "Modules by life-cycle state", labels=["state"])
        for state in Lifecycle:
            modules.add_metric([str(state)], len(s.addresses(state)))
        yield modules
        module_state = GaugeMetricFamily(
            "bms_module_state", "1 for the life-cycle state each module is in", labels=["module", "state"]
        )
        for address, view in s.modules.items():
            module_state.add_metric([str(address), str(view.lifecycle)], 1)
        yield module_state
        active = {a.code: LEVELS[a.level] for a in s.alarms}
        alarms = GaugeMetricFamily(
            "bms_alarm", "Alarm level per code: 0 none, 1 warning, 2 protection", labels=["code"]
        )
        for code in AlarmCode:
            alarms.add_metric([code], active.get(code, 0))
        yield alarms
        yield _gauge("bms_alarm_level", "Worst active alarm: 0 none, 1 warning, 2 protection", LEVELS[s.worst_level()])


def _value(extreme: Extreme | None) -> float | None:
    return None if extreme is None else extreme.value


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """The gateway's registry: a collector over the live objects plus the master tick histogram."""

    def __init__(
        self,
        hub: SnapshotHub,
        *,
        ingest: Callable[[], Mapping[str, int]],
        edges: Callable[[], Mapping[str, Mapping[str, int]]],
        clock: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(hub, ingest, edges, clock))
        self.tick = Histogram(
            "bms_master_tick_seconds", "Duration of a master tick", buckets=TICK_BUCKETS, registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int, started: asyncio.Event | None = None) -> None:
        """Answer every HTTP GET with the metrics text until cancelled."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(5.0):
                    request = await reader.readuntil(b"\r\n\r\n")
                ok = request.startswith(b"GET ")
                body = self.render() if ok else b"only GET\n"
                status = b"200 OK" if ok else b"405 Method Not Allowed"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
                )
                await writer.drain()
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        server = await asyncio.start_server(handle, host, port)
        self.port = server.sockets[0].getsockname()[1]
        if started is not None:
            started.set()
        async with server:
            await server.serve_forever()
