"""Live telemetry per (backend, model): header headroom, decayed windows, stores, the recording observer."""

from __future__ import annotations

from gateway.settings import Settings
from gateway.telemetry.headroom import Headroom, parse_duration, parse_headroom
from gateway.telemetry.recorder import TelemetryRecorder
from gateway.telemetry.redis_store import RedisStore
from gateway.telemetry.store import Key, MemoryStore, Snapshot, TelemetryStore
from gateway.telemetry.window import OUTCOMES, Sample, Stats

__all__ = [
    "OUTCOMES",
    "Headroom",
    "Key",
    "MemoryStore",
    "RedisStore",
    "Sample",
    "Snapshot",
    "Stats",
    "TelemetryRecorder",
    "TelemetryStore",
    "make_store",
    "parse_duration",
    "parse_headroom",
]


def make_store(settings: Settings) -> TelemetryStore:
    """Redis-shared telemetry when a Redis URL is configured, else this process's own."""
    if settings.redis_url:
        return RedisStore(
            settings.redis_url,
            half_life_s=settings.telemetry_half_life_s,
            flush_s=settings.telemetry_flush_ms / 1000,
            refresh_s=settings.telemetry_refresh_ms / 1000,
            timeout_s=settings.redis_timeout_ms / 1000,
            replica_ttl_s=settings.telemetry_replica_ttl_s,
            prefix=settings.telemetry_redis_prefix,
            cluster=settings.redis_cluster,
        )
    return MemoryStore(settings.telemetry_half_life_s, max_age_s=settings.telemetry_refresh_ms / 1000)
