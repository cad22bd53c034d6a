"""The shadow daily cap: per process, per UTC day, reservations settled with the real cost; shared across
replicas through a real redis-server (atomic under concurrency), and failing closed when Redis is gone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.routing.shadow_cap import CapUnavailable, LocalCap, RedisCap, Ticket, utc_day
from tests.conftest import free_port
from tests.redis_cluster import BOTH, SharedRedis

NOON = 1_767_268_800.0  # 2026-01-01 12:00 UTC


def test_local_cap_refuses_what_would_cross_it_and_settles_the_real_cost() -> None:
    async def scenario() -> None:
        cap = LocalCap(clock=lambda: NOON)
        first = await cap.reserve("r", 0.4, 1.0)
        second = await cap.reserve("r", 0.4, 1.0)
        assert first is not None and second is not None
        assert await cap.reserve("r", 0.4, 1.0) is None  # 1.2 > 1.0
        assert await cap.reserve("other", 0.4, 1.0) is not None  # each route has its own count
        await cap.settle(first, 0.1)  # it cost less than reserved: room again
        assert await cap.spent("r") == pytest.approx(0.5)
        assert await cap.reserve("r", 0.4, 1.0) is not None

    asyncio.run(scenario())


def test_local_cap_starts_again_each_utc_day_and_settles_on_the_day_reserved() -> None:
    now = [NOON]

    async def scenario() -> None:
        cap = LocalCap(clock=lambda: now[0])
        ticket = await cap.reserve("r", 0.9, 1.0)
        assert ticket is not None and ticket.day == "2026-01-01"
        assert await cap.reserve("r", 0.2, 1.0) is None
        now[0] += 12 * 3600  # midnight
        assert await cap.spent("r") == 0.0
        assert await cap.reserve("r", 0.2, 1.0) is not None
        await cap.settle(ticket, 0.0)  # yesterday's late settlement leaves today's count alone
        assert await cap.spent("r") == pytest.approx(0.2)
        now[0] += 3 * 86_400
        await cap.reserve("r", 0.1, 1.0)
        assert len(cap._spent) <= 2  # old days pruned

    asyncio.run(scenario())


@BOTH
def test_redis_cap_is_shared_and_atomic_across_replicas(shared_redis: SharedRedis) -> None:
    prefix = f"test:shadowcap:{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:  # on a cluster, each replica starts from a different node
        a = RedisCap(shared_redis.url(0), prefix=prefix, cluster=shared_redis.cluster)
        b = RedisCap(shared_redis.url(1), prefix=prefix, cluster=shared_redis.cluster)
        try:
            tickets = await asyncio.gather(*(cap.reserve("r", 0.1, 1.0) for cap in [a, b] * 15))
            granted = [t for t in tickets if t is not None]
            assert len(granted) == 10  # 30 racing reservations of 0.1 against 1.0: exactly ten fit
            assert await a.spent("r") == pytest.approx(1.0)
            await b.settle(granted[0], 0.05)
            assert await a.spent("r") == pytest.approx(0.95)
            assert await a.reserve("r", 0.05, 1.0) is not None
            assert await b.reserve("r", 0.01, 1.0) is None
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_redis_cap_unreachable_fails_closed() -> None:
    async def scenario() -> None:
        cap = RedisCap(f"redis://127.0.0.1:{free_port()}/0", prefix="test:down", timeout_s=0.05)
        try:
            with pytest.raises(CapUnavailable):
                await cap.reserve("r", 0.1, 1.0)
            with pytest.raises(CapUnavailable):
                await cap.settle(Ticket("r", utc_day(NOON), 0.1), 0.0)
        finally:
            await cap.close()

    asyncio.run(scenario())
