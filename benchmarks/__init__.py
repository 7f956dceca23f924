"""Benchmarks: measured side by side in one process, never asserted in tests."""
