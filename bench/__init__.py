"""Benchmarks: each prints the figures it measured in one run."""
