"""Benchmarks run by `qianxing bench ...`; each prints one JSON object as its last line."""
