"""The limits' Lua scripts on a real Redis (one server and a Cluster), with an injected clock.

The HTTP behaviour across two gateway processes is in test_tenancy_replicas.py; here the limiter is driven
directly so that time can cross a day or a month boundary and Redis can be taken away.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from gateway.access.keys import Limits, VirtualKey
from gateway.access.limits import NANO, LedgerRow, Periods, RedisLimiter
from gateway.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from tests.conftest import free_port
from tests.redis_cluster import BOTH, SharedRedis


def key(**limits: float) -> VirtualKey:
    return VirtualKey(f"vk_{uuid.uuid4().hex[:8]}", "t", "h", "rwk-", limits=Limits(**limits))  # type: ignore[arg-type]


def limiter(shared: SharedRedis, **kw: object) -> RedisLimiter:
    prefix = f"test:limits:{uuid.uuid4().hex[:8]}"
    return RedisLimiter(shared.url(), prefix=prefix, cluster=shared.cluster, timeout_s=2.0, **kw)  # type: ignore[arg-type]


def at(*args: int) -> Periods:
    return Periods.at(datetime(*args, tzinfo=UTC).timestamp())


@BOTH
def test_rpm_admits_exactly_n_under_concurrency(shared_redis: SharedRedis) -> None:
    async def main() -> list[bool]:
        lim = limiter(shared_redis)
        k = key(rpm=7)
        p = at(2026, 5, 1, 12, 0, 30)

        async def one(i: int) -> bool:
            try:
                await lim.admit(k, f"r{i}", 1, 0, p)
                return True
            except RateLimited:
                return False

        try:
            return await asyncio.gather(*(one(i) for i in range(40)))
        finally:
            await lim.close()

    assert sum(asyncio.run(main())) == 7


@BOTH
def test_tpm_is_reserved_then_reconciled_to_the_real_tokens(shared_redis: SharedRedis) -> None:
    async def main() -> None:
        lim = limiter(shared_redis)
        k = key(tpm=100)
        p = at(2026, 5, 1, 12, 0, 30)
        try:
            first = await lim.admit(k, "a", 80, 0, p)
            with pytest.raises(RateLimited) as info:
                await lim.admit(k, "b", 30, 0, p)
            assert "TPM" in info.value.message and info.value.headers["retry-after"] == "30"
            await lim.settle(k, first, 20, 0, None)  # it used 20 of the 80 it reserved
            await lim.admit(k, "b", 80, 0, p)  # 20 + 80 fits now
            await lim.settle(k, first, 20, 0, None)  # settled twice: no effect the second time
            with pytest.raises(RateLimited):
                await lim.admit(k, "c", 1, 0, p)
            await lim.admit(k, "d", 1, 0, at(2026, 5, 1, 12, 1, 0))  # the next minute starts empty
        finally:
            await lim.close()

    asyncio.run(main())


@BOTH
def test_monthly_budget_carries_across_a_day_boundary_and_resets_with_the_month(
    shared_redis: SharedRedis,
) -> None:
    async def main() -> None:
        lim = limiter(shared_redis)
        k = key(daily_usd=3.0, monthly_usd=5.0)
        usd = NANO
        try:
            late = at(2026, 5, 31, 23, 59, 50)
            r1 = await lim.admit(k, "a", 1, 3 * usd, late)
            await lim.settle(k, r1, 1, int(2.5 * usd), LedgerRow("m", "b", 1, 1, int(2.5 * usd)))
            with pytest.raises(BudgetExceeded) as day:
                await lim.admit(k, "b", 1, 1 * usd, late)  # 2.5 + 1 > 3 today
            assert day.value.headers["retry-after"] == "10"  # ten seconds to midnight
            # A new day: the daily budget is fresh, the month's (still May? no: June) resets too.
            june = at(2026, 6, 1, 0, 0, 5)
            await lim.admit(k, "c", 1, 3 * usd, june)
            # Within one month, the month's budget spans days.
            d1 = at(2026, 7, 10, 23, 59, 0)
            d2 = at(2026, 7, 11, 0, 1, 0)
            await lim.admit(k, "d", 1, 3 * usd, d1)
            await lim.admit(k, "e", 1, 2 * usd, d2)  # day 2 has room, the month exactly 5
            with pytest.raises(BudgetExceeded) as month:
                await lim.admit(k, "f", 1, 1, d2)  # one nano-dollar more than the month allows
            assert "monthly" in month.value.message
            left = (
                datetime(2026, 8, 1, tzinfo=UTC) - datetime(2026, 7, 11, 0, 1, tzinfo=UTC)
            ).total_seconds()
            assert month.value.headers["retry-after"] == str(int(left))
        finally:
            await lim.close()

    asyncio.run(main())


def test_redis_down_rate_limits_fail_open_to_a_share_and_budgets_fail_closed() -> None:
    async def main() -> None:
        shared = SharedRedis((f"redis://127.0.0.1:{free_port()}/0",), cluster=False)  # nobody listens
        lim = limiter(shared, replicas=lambda: 2)
        p = at(2026, 5, 1, 12, 0, 30)
        try:
            rated = key(rpm=10)
            admitted = 0
            for i in range(10):
                try:
                    await lim.admit(rated, f"r{i}", 1, 0, p)
                    admitted += 1
                except RateLimited:
                    pass
            assert admitted == 5  # this replica's half of the fleet's 10
            with pytest.raises(ServiceUnavailable) as info:
                await lim.admit(key(daily_usd=1.0), "b", 1, 1, p)
            assert info.value.code == "budget_unavailable"
            open_lim = limiter(shared, budget_fail_open=True)
            await open_lim.admit(key(daily_usd=1.0), "c", 1, 1, p)
            await open_lim.close()
        finally:
            await lim.close()

    asyncio.run(main())
