"""Observability: logs (and, later, traces and metrics)."""
