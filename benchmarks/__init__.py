"""Reproducible performance benchmarks for lifelong (run as scripts, not collected as tests)."""
