"""master: `Master.step` time for 1, 16 and 31 modules of 48 cells, p50 and p99.

Changing readings (realistic): a simulated stack (48 cells, 12 sensors per module, charging at 20 A per module)
feeds a real `ModuleStore`; every 0.1 s of simulated time the store's `readings()` are taken and the master
steps on them, exactly as in replay. Unchanged readings: the last tick's readings again and again (the same
objects), 0.5 ms of clock apart, so nothing goes stale. Only `Master.step` is timed; `readings()` (the store's
freeze, also on the live tick) is reported in the details.

Baseline: one plain-Python pass over the same readings, as little as any tick must do: max, min and sum of
every module's cell voltages and the sum of the module currents.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

from benchmarks import common
from benchmarks.common import Options, Row, Target
from gateway import config
from gateway.can.codec import ModuleCodec
from gateway.can.ingest import ModuleStore
from gateway.core import urgency
from gateway.master.master import Master
from gateway.master.model import Lifecycle, ModuleReading
from gateway.sim import Simulator

SIZES = (1, 16, 31)
CELLS = 48
WARM_TICKS = 40
"""4 s: the master admits the modules after bank.module_timeout (3 s)."""
TARGETS = {"changing": 0.5, "unchanged": 0.1}
"""Issue 19's p99 at 31 modules, ms: a tick with nothing new must be cheap (the master redoes only what changed)."""


def bare_pass(readings: Mapping[int, ModuleReading]) -> float:
    """The baseline's work: touch every cell voltage once and sum the currents."""
    total = 0.0
    for r in readings.values():
        cells = [v for v in r.cell_voltages if v is not None] or [0.0]
        total += max(cells) - min(cells) + sum(cells) + (r.current or 0.0)
    return total


def timed_ticks(modules: int, ticks: int) -> dict[str, list[float]]:
    """Seconds per call: master steps on changing and on unchanged readings, readings(), the baseline."""
    cfg = config.parse({"bank": {"cells_in_series": CELLS, "max_modules": 31}})
    codec = ModuleCodec(common.module_db())
    store = ModuleStore(codec, urgency=urgency(cfg.limits))
    master = Master(cfg, required_groups=codec.required_groups)
    sim = Simulator(modules=modules, cells=CELLS, sensors=12, current=20.0 * modules, seed=1)
    out: dict[str, list[float]] = {"changing": [], "unchanged": [], "readings": [], "baseline": []}
    perf = time.perf_counter
    t = 0.0
    readings: dict[int, ModuleReading] = {}
    for n in range(WARM_TICKS + ticks):
        t = round((n + 1) * 0.1, 6)
        for msg in sim.advance(until=t):
            store.feed(msg.arbitration_id, msg.data, msg.timestamp)
        started = perf()
        readings = store.readings()
        frozen = perf()
        tick = master.step(t, readings)
        stepped = perf()
        bare_pass(readings)
        if n >= WARM_TICKS:
            out["readings"].append(frozen - started)
            out["changing"].append(stepped - frozen)
            out["baseline"].append(perf() - stepped)
    online = len(tick.snapshot.addresses(Lifecycle.ONLINE))
    if not tick.snapshot.valid or online != modules:
        raise RuntimeError(f"{modules} modules: the bank is not running ({tick.snapshot.reason})")
    for n in range(ticks):
        started = perf()
        master.step(t + (n + 1) * 0.0005, readings)
        out["unchanged"].append(perf() - started)
    return out


def run(opts: Options) -> list[Row]:
    ticks = opts.pick(100, 3000)
    rows = []
    for modules in SIZES:
        times = timed_ticks(modules, ticks)
        ms = {k: [1e3 * v for v in values] for k, values in times.items()}
        base50, base99 = statistics.median(ms["baseline"]), common.percentile(ms["baseline"], 99)
        details = {
            "ticks": ticks,
            "readings_p50_ms": statistics.median(ms["readings"]),
            "readings_p99_ms": common.percentile(ms["readings"], 99),
            "max_ms": {k: max(v) for k, v in ms.items()},
        }
        common.progress(f"master: {modules} modules: {details}")
        for kind in ("changing", "unchanged"):
            label = f"{modules} modules, {kind}"
            target = Target(TARGETS[kind], at_most=True, unit="ms") if modules == 31 else None
            p50, p99 = statistics.median(ms[kind]), common.percentile(ms[kind], 99)
            rows.append(Row("master", f"p50 {label}", p50, "ms", base50, "plain pass", details=details))
            rows.append(Row("master", f"p99 {label}", p99, "ms", base99, "plain pass", target))
    return rows
