"""Benchmark scripts; see docs/benchmarks.md for what each measures and how to run it."""
