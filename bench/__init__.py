"""Benchmarks run side by side with their floor: `make bench` (see docs/BENCHMARKS.md).

Not part of the test suite: tests assert behaviour, this package reports figures. The smoke test
(tests/integration/test_bench_smoke.py) runs the same cases at tiny sizes so the harness cannot rot.
"""
