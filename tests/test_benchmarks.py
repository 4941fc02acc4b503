"""The benchmark suite in --quick mode: every benchmark runs and prints its rows. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
BENCHMARKS = ("ingest", "replay", "latency", "master", "modbus", "web", "mqtt", "memory", "startup", "history")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """One `python -m benchmarks --quick` run: its table and its JSON results."""
    results = tmp_path_factory.mktemp("benchmarks") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, json.loads(results.read_text())


def test_the_suite_runs_every_benchmark(quick: tuple[str, dict[str, Any]]) -> None:
    _, results = quick
    ran = {row["benchmark"] for row in results["rows"]} | set(results["skipped"])
    assert ran == set(BENCHMARKS)
    assert results["failed"] == {}
    assert results["meta"]["mode"] == "quick"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_prints_its_rows(quick: tuple[str, dict[str, Any]], name: str) -> None:
    table, results = quick
    if name in results["skipped"]:
        pytest.skip(results["skipped"][name])
    rows = [row for row in results["rows"] if row["benchmark"] == name]
    assert rows
    for row in rows:
        assert math.isfinite(row["measured"]) and row["measured"] >= 0, row
        assert f"{name}: {row['metric']}" in table
        if row["baseline"] is not None:
            assert math.isfinite(row["baseline"]) and row["baseline"] > 0, row
