"""Benchmarks: `make bench` (python -m bench) prints ratios measured in one run, so a noisy machine cancels out."""
