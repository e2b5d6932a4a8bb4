"""Benchmarks with recorded results (bench/RESULTS.md)."""
