"""Run the benchmarks and print one table: benchmark | measured | baseline | ratio | target | met?

    .venv/bin/python -m benchmarks              # full mode (about 30 minutes), results in benchmarks/results.json
    .venv/bin/python -m benchmarks --quick      # smoke run (well under a minute), no timing asserted
    .venv/bin/python -m benchmarks --only ingest --only latency --events 200

Progress goes to stderr, the table to stdout. The exit code is 1 when a benchmark failed to run (a missed
target is reported, not an error).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common
from benchmarks.common import Options, Row, ToolMissing
from gateway import logs

BENCHMARKS = ("ingest", "replay", "latency", "master", "modbus", "web", "mqtt", "memory", "startup", "history")
"""Each is the module benchmarks.<name> with `run(Options) -> list[Row]`, in the order they run."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run; asserts nothing about timings")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--events", type=int, help="latency: events, alternating protective/normal (default 1000, quick 20)"
    )
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logs.configure("error")
    opts = Options(quick=args.quick, events=args.events or (20 if args.quick else 1000))
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in names:
        common.progress(f"== {name}")
        started = time.perf_counter()
        try:
            rows += importlib.import_module(f"benchmarks.{name}").run(opts)
        except ToolMissing as err:
            skipped[name] = str(err)
        except Exception as err:
            traceback.print_exc()
            failed[name] = repr(err)
        seconds[name] = time.perf_counter() - started
        gc.collect()
    print(common.table(rows, skipped, failed))
    path = args.json or common.ROOT / "benchmarks" / ("results-quick.json" if opts.quick else "results.json")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "mode": "quick" if opts.quick else "full",
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {platform.processor() or platform.platform()}",
        "seconds": seconds,
    }
    results = {"meta": meta, "rows": [r.as_dict() for r in rows], "skipped": skipped, "failed": failed}
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    common.progress(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
