"""Benchmarks of issue 6: ``python -m bench.run`` (see docs/performance.md)."""
