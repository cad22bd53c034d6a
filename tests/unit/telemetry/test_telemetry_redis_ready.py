"""RedisStore.synced, the readiness gate: true after the first read, or after a long Redis outage at start."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.telemetry.redis_store import READY_WITHOUT_REDIS_S, RedisStore
from tests.conftest import free_port


async def _until(predicate: object, timeout_s: float = 5.0) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_synced_after_the_first_read(redis_url: str) -> None:
    async def scenario() -> None:
        store = RedisStore(redis_url, prefix="test:ready:read")
        assert not store.synced
        await store.start()
        try:
            await _until(lambda: store.synced)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_unblocks_readiness_only_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    now = [1000.0]
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", clock=lambda: now[0], flush_s=0.01)

    async def scenario() -> None:
        await store.start()
        try:
            await _until(lambda: "Redis unavailable" in caplog.text)  # a refused connection: down at once
            assert not store.synced
            now[0] += READY_WITHOUT_REDIS_S - 1
            assert not store.synced
            now[0] += 1
            assert store.synced
        finally:
            await store.close()

    asyncio.run(scenario())
