"""A virtual key's RPM/TPM limits and USD budgets: one atomic check-and-reserve per request, reconciled after.

Redis layout, every key of one virtual key under one hash tag (`{routeway:limits:v1:vk_…}`), so each script
touches one Redis Cluster slot and different keys spread over the cluster:

- `…:rpm:<minute>`, `…:tpm:<minute>`: requests and tokens in the current UTC minute (fixed windows).
- `…:usd:d:<YYYYMMDD>`, `…:usd:m:<YYYYMM>`: spend in the UTC day and month, in nano-dollars (integers).
- `…:r:<request id>`: one request's reservation (tokens, nano-dollars) until it is settled.
- `…:ledger:<YYYYMMDD>`: the spend ledger, fields `<model>\\x1f<backend>\\x1f{n,in,out,usd}` (ledger.py).

`admit` checks every limit against count + this request and, only if all hold, adds the request to all of
them and writes its reservation: one EVALSHA. `settle` replaces the reservation with the real tokens and cost
and adds the ledger row in another; it does nothing when the reservation is gone, so a settle that is retried
or that follows an admit whose reply was lost can never charge twice. Times come from the gateway's clock
(injectable), not Redis's, so tests can cross a day or a month.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gateway.access.keys import VirtualKey
from gateway.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from gateway.telemetry import redis_client

log = logging.getLogger("routeway.limits")

NANO = 1_000_000_000  # budgets and spend are counted in integer nano-dollars: exact sums in Redis and Lua
_WINDOW_TTL_MS = 120_000
_RESERVATION_TTL_MS = 24 * 3600 * 1000  # longer than any request; then an unsettled one lapses
SEP = "\x1f"

_ADMIT = """
local function cur(k) return tonumber(redis.call('GET', k) or '0') end
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local lim = tonumber(ARGV[1])
if lim >= 0 and cur(KEYS[1]) + 1 > lim then return {1, 0, 0} end
lim = tonumber(ARGV[2])
if lim >= 0 and cur(KEYS[2]) + tokens > lim then return {2, 0, 0} end
lim = tonumber(ARGV[3])
if lim >= 0 and cur(KEYS[3]) + cost > lim then return {3, 0, 0} end
lim = tonumber(ARGV[4])
if lim >= 0 and cur(KEYS[4]) + cost > lim then return {4, 0, 0} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('INCRBY', KEYS[2], tokens)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local day = redis.call('INCRBY', KEYS[3], cost)
redis.call('PEXPIRE', KEYS[3], ARGV[8])
local month = redis.call('INCRBY', KEYS[4], cost)
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('HSET', KEYS[5], 't', tokens, 'c', cost)
redis.call('PEXPIRE', KEYS[5], ARGV[10])
return {0, day, month}
"""
_SPENT = """
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
_SETTLE = """
local r = redis.call('HMGET', KEYS[1], 't', 'c')
if not r[1] then return 0 end
redis.call('DEL', KEYS[1])
local dt = tonumber(ARGV[1]) - tonumber(r[1])
local dc = tonumber(ARGV[2]) - tonumber(r[2])
if dt ~= 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], dt) end
if dc ~= 0 then
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBY', KEYS[3], dc) end
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], dc) end
end
if ARGV[3] ~= '' then
  local f = ARGV[3]
  redis.call('HINCRBY', KEYS[5], f .. 'n', 1)
  redis.call('HINCRBY', KEYS[5], f .. 'in', ARGV[5])
  redis.call('HINCRBY', KEYS[5], f .. 'out', ARGV[6])
  redis.call('HINCRBY', KEYS[5], f .. 'usd', ARGV[2])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
return 1
"""

_REFUSALS = {1: "rpm", 2: "tpm", 3: "daily budget", 4: "monthly budget"}


@dataclass(frozen=True, slots=True)
class Periods:
    """The UTC windows a moment falls in, and how long until each resets."""

    minute: int
    day: str
    month: str
    minute_left_s: float
    day_left_s: float
    month_left_s: float

    @classmethod
    def at(cls, now: float) -> Periods:
        t = datetime.fromtimestamp(now, UTC)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        next_day = midnight + timedelta(days=1)
        first = midnight.replace(day=1)
        next_month = (first + timedelta(days=32)).replace(day=1)
        return cls(
            minute=int(now // 60),
            day=t.strftime("%Y%m%d"),
            month=t.strftime("%Y%m"),
            minute_left_s=60 - now % 60,
            day_left_s=(next_day - t).total_seconds(),
            month_left_s=(next_month - t).total_seconds(),
        )


@dataclass(slots=True)
class Reservation:
    """What admit took for one request, and where, so settle can reconcile exactly that."""

    key_id: str
    request_id: str
    tokens: int
    cost_nano: int
    periods: Periods
    local: bool = False  # taken from the per-replica fallback (Redis down): nothing to settle in Redis
    budgets_checked: bool = True
    budget_used: float = 0.0  # the larger share of the day's or month's budget spent, this one included


def budget_used(key: VirtualKey, day_nano: int, month_nano: int) -> float:
    """The larger share of the key's daily or monthly budget that is spent (0 without budgets)."""
    lim = key.limits
    shares = [day_nano / nano(lim.daily_usd) if lim.daily_usd else 0.0]
    shares.append(month_nano / nano(lim.monthly_usd) if lim.monthly_usd else 0.0)
    return max(shares)


def nano(usd: float | None) -> int:
    return -1 if usd is None else math.ceil(usd * NANO)


def tag(prefix: str, key_id: str) -> str:
    return f"{{{prefix}:{key_id}}}"


def refusal(code: int, key: VirtualKey, p: Periods) -> RateLimited:
    what = _REFUSALS[code]
    if code <= 2:
        limit = key.limits.rpm if code == 1 else key.limits.tpm
        return RateLimited(
            f"This key's {what.upper()} limit ({limit}) is reached for this minute; retry after the reset",
            retry_after=p.minute_left_s,
        )
    budget = key.limits.daily_usd if code == 3 else key.limits.monthly_usd
    left = p.day_left_s if code == 3 else p.month_left_s
    return BudgetExceeded(
        f"This key's {what} (${budget:.2f}) has no room for this request's maximum cost; it resets at the "
        f"start of the next UTC {'day' if code == 3 else 'month'}",
        retry_after=left,
    )


class Limiter(Protocol):
    async def admit(self, key: VirtualKey, rid: str, tokens: int, cost: int, p: Periods) -> Reservation: ...
    async def settle(self, key: VirtualKey, res: Reservation, tokens: int, cost: int,
                     row: LedgerRow | None) -> None: ...  # fmt: skip
    async def spent(self, key: VirtualKey, p: Periods) -> tuple[int, int]: ...


class Ledger(Protocol):
    """Where a local limiter writes the spend ledger (SQLite without Redis)."""

    async def add(self, key: VirtualKey, day: str, row: LedgerRow) -> None: ...


@dataclass(frozen=True, slots=True)
class LedgerRow:
    model: str
    backend: str
    input_tokens: int
    output_tokens: int
    cost_nano: int


class LocalLimiter:
    """The same windows and budgets in this process: the whole limiter without Redis, and the per-replica
    fallback (rate limits only, at `share` of each limit) while Redis is unreachable."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self._counts: dict[tuple[str, str, object], int] = {}
        self._reserved: dict[str, Reservation] = {}
        self._ledger = ledger
        self._minute = -1

    async def admit(self, key: VirtualKey, rid: str, tokens: int, cost: int, p: Periods) -> Reservation:
        return self.take(key, rid, tokens, cost, p)

    def take(self, key: VirtualKey, rid: str, tokens: int, cost: int, p: Periods, share: float = 1.0,
             budgets: bool = True) -> Reservation:  # fmt: skip
        if p.minute != self._minute:  # keep only the current minute's windows, day's and month's spend
            self._minute = p.minute
            current = {"d": p.day, "m": p.month}
            self._counts = {k: v for k, v in self._counts.items() if current.get(k[1]) == k[2]}
        lim = key.limits
        slots: list[tuple[tuple[str, str, object], int, int]] = [
            ((key.id, "rpm", p.minute), 1, _share(lim.rpm, share)),
            ((key.id, "tpm", p.minute), tokens, _share(lim.tpm, share)),
        ]
        if budgets:
            slots += [((key.id, "d", p.day), cost, nano(lim.daily_usd)),
                      ((key.id, "m", p.month), cost, nano(lim.monthly_usd))]  # fmt: skip
        for code, (slot, amount, limit) in enumerate(slots, start=1):
            if limit >= 0 and self._counts.get(slot, 0) + amount > limit:
                raise refusal(code, key, p)
        for slot, amount, _ in slots:
            self._counts[slot] = self._counts.get(slot, 0) + amount
        res = Reservation(key.id, rid, tokens, cost, p, local=True, budgets_checked=budgets)
        if budgets:
            res.budget_used = budget_used(key, self._counts[slots[2][0]], self._counts[slots[3][0]])
        self._reserved[rid] = res
        return res

    async def spent(self, key: VirtualKey, p: Periods) -> tuple[int, int]:
        return self._counts.get((key.id, "d", p.day), 0), self._counts.get((key.id, "m", p.month), 0)

    async def settle(self, key: VirtualKey, res: Reservation, tokens: int, cost: int,
                     row: LedgerRow | None) -> None:  # fmt: skip
        if self._reserved.pop(res.request_id, None) is None:
            return
        p = res.periods
        self._adjust((key.id, "tpm", p.minute), tokens - res.tokens)
        if res.budgets_checked:
            self._adjust((key.id, "d", p.day), cost - res.cost_nano)
            self._adjust((key.id, "m", p.month), cost - res.cost_nano)
        if row is not None and self._ledger is not None:
            await self._ledger.add(key, p.day, row)

    def _adjust(self, slot: tuple[str, str, object], delta: int) -> None:
        if slot in self._counts:
            self._counts[slot] += delta


def _share(limit: int | None, share: float) -> int:
    return -1 if limit is None else max(1, math.floor(limit * share)) if share < 1 else limit


class RedisLimiter:
    """Exact limits across replicas: one script per admit and per settle, one slot per virtual key."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        cluster: bool,
        timeout_s: float,
        budget_fail_open: bool = False,
        ledger_days: int = 400,
        replicas: Callable[[], int] = lambda: 1,
    ) -> None:
        self.client = redis_client.connect(url, timeout_s, cluster)
        self.prefix = prefix
        self._admit = self.client.register_script(_ADMIT)
        self._settle = self.client.register_script(_SETTLE)
        self._spent = self.client.register_script(_SPENT)
        self._fallback = LocalLimiter()
        self._budget_fail_open = budget_fail_open
        self._ledger_ms = ledger_days * 86_400_000
        self._replicas = replicas
        self._discovered = False
        self._discovery = asyncio.Lock()  # one cluster discovery at a time, not one per waiting request
        self._down = False

    async def start(self) -> None:
        """Learns a cluster's slots before the first request needs them (no I/O for one server)."""
        try:
            await self._discover()
        except redis_client.FAILURES:
            pass  # the first admit tries again, and falls back if Redis is still away

    async def close(self) -> None:
        await redis_client.close(self.client)

    async def _discover(self) -> None:
        async with self._discovery:
            if not self._discovered:
                await redis_client.discover(self.client, refresh=self._down)
                self._discovered = True

    def keys(self, key_id: str, rid: str, p: Periods) -> list[str]:
        t = tag(self.prefix, key_id)
        return [f"{t}:rpm:{p.minute}", f"{t}:tpm:{p.minute}", f"{t}:usd:d:{p.day}", f"{t}:usd:m:{p.month}",
                f"{t}:r:{rid}"]  # fmt: skip

    async def admit(self, key: VirtualKey, rid: str, tokens: int, cost: int, p: Periods) -> Reservation:
        lim = key.limits
        args = [lim.rpm if lim.rpm is not None else -1, lim.tpm if lim.tpm is not None else -1,
                nano(lim.daily_usd), nano(lim.monthly_usd), tokens, cost, _WINDOW_TTL_MS,
                int((p.day_left_s + 86_400) * 1000), int((p.month_left_s + 86_400) * 1000),
                _RESERVATION_TTL_MS]  # fmt: skip
        try:
            if not self._discovered:
                await self._discover()
            code, day, month = (int(v) for v in await self._admit(keys=self.keys(key.id, rid, p), args=args))
        except redis_client.FAILURES as exc:
            self._discovered = False
            return self._admit_locally(key, rid, tokens, cost, p, exc)
        if self._down:
            self._down = False
            log.info("limits: Redis reachable again; exact limits resumed")
        if code:
            raise refusal(code, key, p)
        return Reservation(key.id, rid, tokens, cost, p, budget_used=budget_used(key, day, month))

    async def spent(self, key: VirtualKey, p: Periods) -> tuple[int, int]:
        """The key's spend this day and month, in nano-dollars (explain); zeros when Redis cannot say."""
        names = self.keys(key.id, "-", p)
        try:
            day, month = await self._spent(keys=[names[2], names[3]])
        except redis_client.FAILURES:
            return 0, 0
        return int(day), int(month)

    def _admit_locally(self, key: VirtualKey, rid: str, tokens: int, cost: int, p: Periods,
                       exc: BaseException) -> Reservation:  # fmt: skip
        has_budget = key.limits.daily_usd is not None or key.limits.monthly_usd is not None
        if not self._down:
            self._down = True
            log.warning(
                "limits: Redis unreachable; rate limits fall back to this replica's share, budgets %s",
                "are not enforced (ROUTEWAY_BUDGET_FAIL_OPEN)" if self._budget_fail_open else "refuse",
                extra={"exc_type": type(exc).__name__},
            )
        if has_budget and not self._budget_fail_open:
            raise ServiceUnavailable(
                "Budgets cannot be checked right now (the limit store is unreachable); retry shortly",
                code="budget_unavailable",
                headers={"retry-after": "1"},
            )
        share = 1.0 / max(1, self._replicas())
        return self._fallback.take(key, rid, tokens, cost, p, share=share, budgets=False)

    async def settle(self, key: VirtualKey, res: Reservation, tokens: int, cost: int,
                     row: LedgerRow | None) -> None:  # fmt: skip
        if res.local:
            # Admitted while Redis was down; the admit may still have reached Redis before its reply was
            # lost, so its reservation (if any) is reconciled too: the script is a no-op when there is none.
            await self._fallback.settle(key, res, tokens, cost, None)
        p = res.periods
        names = self.keys(key.id, res.request_id, p)
        ledger = f"{tag(self.prefix, key.id)}:ledger:{p.day}"
        field = f"{row.model}{SEP}{row.backend}{SEP}" if row is not None else ""
        args: list[int | str] = [tokens, cost, field, self._ledger_ms, row.input_tokens if row else 0,
                row.output_tokens if row else 0]  # fmt: skip
        try:
            await self._settle(keys=[names[4], names[1], names[2], names[3], ledger], args=args)
        except redis_client.FAILURES as exc:
            # The reservation stays (it lapses after a day): spend is over-counted, never double-charged.
            self._discovered = False
            if not self._down:
                self._down = True
                log.warning("limits: Redis unreachable at settle; the reservation stands",
                            extra={"exc_type": type(exc).__name__})  # fmt: skip
