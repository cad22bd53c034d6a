"""The telemetry store's Redis connection: one server or a Redis Cluster, fast timeouts, no client retries."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

Client = Redis | RedisCluster
# RedisClusterException (no reachable node, slots not covered) is not a RedisError.
FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
CLOSE_S = 2.0  # the longest a shutdown waits on one Redis client (or on a task that uses one)
# Finding the topology is CLUSTER SLOTS plus, the first time, COMMAND, whose ~100 KB reply redis-py parses
# (~40 ms here) to route commands by key: more than one round trip's timeout, and paid only at start.
_DISCOVERY_S = 1.0


def store_keys(prefix: str, names: tuple[str, ...], cluster: bool) -> list[str]:
    """`{prefix}:{name}` for each name; on a cluster all in one hash slot, so one node takes the round trip.

    A prefix that already holds a hash tag (`{...}`) keeps it; otherwise the cluster's keys wrap the whole
    prefix in one, so the key names stay readable and the prefix still separates deployments.
    """
    tagged = f"{{{prefix}}}" if cluster and not _has_tag(prefix) else prefix
    keys = [f"{tagged}:{name}" for name in names]
    if cluster and len({key_slot(k.encode()) for k in keys}) != 1:
        raise ValueError(f"the telemetry prefix {prefix!r} cannot put its keys in one cluster slot")
    return keys


def _has_tag(prefix: str) -> bool:
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return end > start + 1


def connect(url: str, timeout_s: float, cluster: bool) -> Client:
    """A client that fails fast: the store's loop is the retry, and a client retry would stall it."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, retry_on_timeout=False, **options)


async def discover(client: Client, refresh: bool) -> None:
    """Learn a cluster's nodes and slots once; with `refresh` (after a failure) ask for the slot map again.

    No I/O for one server or a cluster already known. Only the first call reads COMMAND (redis-py's table
    for routing commands by key, ~40 ms of parsing that holds the event loop); a refresh is CLUSTER SLOTS.
    """
    if isinstance(client, RedisCluster):
        async with asyncio.timeout(_DISCOVERY_S):
            await client.initialize()
            if refresh:
                await client.nodes_manager.initialize()


async def close(client: Client | None) -> None:
    """Closes a client within `CLOSE_S`, and never raises: shutting down never waits on Redis. (In CI a
    replica told to stop by SIGTERM was still running 10 s later with only its Redis connection open.)"""
    if client is None:
        return
    with contextlib.suppress(*FAILURES):
        async with asyncio.timeout(CLOSE_S):
            await client.aclose()
