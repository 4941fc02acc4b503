"""The benchmark suite: `python -m benchmarks [--quick] [--only NAME]` (see benchmarks/README.md)."""
