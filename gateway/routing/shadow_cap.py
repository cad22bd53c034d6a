"""Shadow traffic's daily spend cap per route: in this process, or shared by every replica through Redis.

A shadow reserves its predicted cost before it is sent and settles with what it really cost (router.cost_usd
at the policy's prices) when it ends; a reservation that would cross the cap is refused. Days are UTC days.
The Redis cap is one key per route and day, checked and incremented by one Lua script (atomic across
replicas), kept two days. Redis failing answers `CapUnavailable`: the shadow is skipped (fail closed, it is
money), never the client's request, which never waits on this.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.telemetry import redis_client

_DAY_S = 86_400
_KEEP_S = 2 * _DAY_S  # a settlement may arrive after midnight, on the day it was reserved on

_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class CapUnavailable(Exception):
    """The shared cap could not be checked (Redis unreachable or slow)."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A granted reservation: settled against the day it was made on."""

    route: str
    day: str
    usd: float


def utc_day(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_s))


class DailyCap(Protocol):
    async def reserve(self, route: str, usd: float, cap_usd: float) -> Ticket | None:
        """A ticket, or None when `usd` more would cross `cap_usd` today; CapUnavailable if it cannot tell."""
        ...

    async def settle(self, ticket: Ticket, actual_usd: float) -> None: ...

    async def spent(self, route: str) -> float:
        """Today's spend (reservations in flight included)."""
        ...

    async def close(self) -> None: ...


class LocalCap:
    """This process's own count: the cap holds per process (n replicas may spend n times it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._spent: dict[tuple[str, str], float] = {}

    async def reserve(self, route: str, usd: float, cap_usd: float) -> Ticket | None:
        day = utc_day(self._clock())
        key = (route, day)
        spent = self._spent.get(key, 0.0)
        if spent + usd > cap_usd:
            return None
        if key not in self._spent:
            self._prune(day)
        self._spent[key] = spent + usd
        return Ticket(route, day, usd)

    async def settle(self, ticket: Ticket, actual_usd: float) -> None:
        key = (ticket.route, ticket.day)
        if key in self._spent:
            self._spent[key] += actual_usd - ticket.usd

    async def spent(self, route: str) -> float:
        return self._spent.get((route, utc_day(self._clock())), 0.0)

    async def close(self) -> None:
        return None

    def _prune(self, today: str) -> None:
        """Keeps today and yesterday (whose late settlements may still come): bounded by routes x 2."""
        yesterday = utc_day(self._clock() - _DAY_S)
        for key in [k for k in self._spent if k[1] not in (today, yesterday)]:
            del self._spent[key]


class RedisCap:
    """Every replica's shadows against one count per route and day, in Redis (one server or a cluster)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout_s: float = 0.2,
        cluster: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url, self._cluster, self._prefix = url, cluster, prefix
        self._timeout_s = timeout_s
        self._clock = clock
        self._redis: redis_client.Client | None = None
        self._stale = False

    def _key(self, route: str, day: str) -> str:
        return redis_client.store_keys(self._prefix, (f"shadow-spend:{route}:{day}",), self._cluster)[0]

    async def _client(self) -> redis_client.Client:
        if self._redis is None:
            self._redis = redis_client.connect(self._url, self._timeout_s, self._cluster)
        await redis_client.discover(self._redis, self._stale)
        self._stale = False
        return self._redis

    async def reserve(self, route: str, usd: float, cap_usd: float) -> Ticket | None:
        day = utc_day(self._clock())
        key = self._key(route, day)

        async def run(r: redis_client.Client) -> Any:
            return await r.eval(_RESERVE, 1, key, repr(usd), repr(cap_usd), str(_KEEP_S))

        granted = await self._call(run)
        return Ticket(route, day, usd) if int(granted) == 1 else None

    async def settle(self, ticket: Ticket, actual_usd: float) -> None:
        key = self._key(ticket.route, ticket.day)

        async def run(r: redis_client.Client) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.incrbyfloat(key, actual_usd - ticket.usd)
            pipe.expire(key, _KEEP_S)
            return await pipe.execute()

        await self._call(run)

    async def spent(self, route: str) -> float:
        key = self._key(route, utc_day(self._clock()))

        async def run(r: redis_client.Client) -> Any:
            return await r.get(key)

        value = await self._call(run)
        return float(value) if value is not None else 0.0

    async def close(self) -> None:
        client, self._redis = self._redis, None
        await redis_client.close(client)

    async def _call(self, op: Callable[[redis_client.Client], Awaitable[Any]]) -> Any:
        try:
            # Off every client's path: room for a cluster's first topology discovery (~1 s at most).
            async with asyncio.timeout(self._timeout_s * 4 + 1.0):
                return await op(await self._client())
        except redis_client.FAILURES as exc:
            self._stale = True  # on a cluster: ask for the slot map again next time
            raise CapUnavailable(f"{type(exc).__name__}: {exc}") from None
