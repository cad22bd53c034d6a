"""Routeway's benchmark suite: `make bench` (or `python -m bench --help`), results in docs/benchmarks.md."""
