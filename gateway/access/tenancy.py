"""Virtual keys at work: the guard (allowed models, limits and budgets, the ledger) and what it is built from.

`KeyGuard.admit` runs last among the guards: a model outside the key's globs is a 403 with no round trip;
otherwise the request's maximum cost (the plan's input estimate plus `max_tokens`, or the route's expected
output when the client set none, at the priciest candidate left, since failover may land there) and tokens
are reserved in one round trip. `settle` replaces the reservation with the real usage and writes the ledger.
Requests of static keys and anonymous callers pass through untouched and owe no settlement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.access.guards import Guard
from gateway.access.identity import Identity
from gateway.access.keystore import KeyStore, RedisKeyStore, make_keystore
from gateway.access.ledger import RedisLedger, SqliteLedger, UsageReader
from gateway.access.limits import (
    LedgerRow,
    Limiter,
    LocalLimiter,
    Periods,
    RedisLimiter,
    Reservation,
    budget_used,
    nano,
)
from gateway.access.principal import Keys, Principal
from gateway.errors import ModelNotAllowed
from gateway.events import RequestRecord
from gateway.providers.base import Usage
from gateway.routing.router import Plan
from gateway.settings import Settings

_RESERVATION = "routeway.reservation"  # req.context key: admit's reservation, read by settle

SpendHook = Callable[[str, int, int, float], None]  # team, input tokens, output tokens, USD


class KeyGuard(Guard):
    """Allowed models, RPM/TPM and budgets of the calling virtual key; the ledger after the answer."""

    keyed = True  # a caller without a virtual key is none of its business: admit and settle return at once

    def __init__(
        self, limiter: Limiter, clock: Callable[[], float] = time.time, on_spend: SpendHook | None = None
    ) -> None:
        self.limiter = limiter
        self.clock = clock
        self.on_spend = on_spend

    def owes(self, principal: Principal) -> bool:
        return principal.key is not None

    async def admit(self, principal: Principal, plan: Plan, req: RequestRecord) -> None:
        key = principal.key
        if key is None:
            return
        model = req.model or ""
        if not key.allows(model):
            raise ModelNotAllowed(f"This key may not use the model '{model}'", param="model")
        est = plan.estimate
        cost = max((s.cost_usd for s in plan.ranked), default=0.0)
        tokens = est.input_tokens + est.output_tokens
        res = await self.limiter.admit(key, req.request_id, tokens, nano(cost), Periods.at(self.clock()))
        req.context[_RESERVATION] = res
        if press(plan, res.budget_used):
            req.pick = plan.pick

    async def pressure(self, principal: Principal, plan: Plan) -> dict[str, object] | None:
        """What budget pressure does to this plan now, for explain (reads the spend, reserves nothing)."""
        key, threshold = principal.key, plan.route.budget_pressure
        if key is None or threshold is None:
            return None
        day, month = await self.limiter.spent(key, Periods.at(self.clock()))
        cost = nano(max((s.cost_usd for s in plan.ranked), default=0.0))  # as admit would reserve it
        used = budget_used(key, day + cost, month + cost)
        return {"threshold": threshold, "budget_used": round(used, 6), "applied": press(plan, used)}

    async def settle(
        self,
        principal: Principal,
        plan: Plan,
        req: RequestRecord,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        key = principal.key
        res: Reservation | None = req.context.get(_RESERVATION)
        if key is None or res is None:
            return  # refused before (or by) this guard: nothing was reserved
        row = None
        if usage is not None:
            tokens, cost = usage.input_tokens + usage.output_tokens, nano(cost_usd or 0.0)
            row = LedgerRow(req.model or "", req.backend or "", usage.input_tokens, usage.output_tokens, cost)
            if self.on_spend is not None:
                self.on_spend(key.team, usage.input_tokens, usage.output_tokens, cost_usd or 0.0)
        elif req.status == 200:
            # Served, but no usage was read: keep the reservation as the charge (never bill less than
            # the request may have cost); the ledger has no tokens to record.
            tokens, cost = res.tokens, res.cost_nano
        else:
            tokens, cost = 0, 0  # refused or failed upstream: released
        await self.limiter.settle(key, res, tokens, cost, row)


def press(plan: Plan, used: float) -> bool:
    """Under budget pressure (the key spent at least the route's `budget_pressure` share of a budget) the
    cheapest candidates go first; the plan's pick says so. True when it applied."""
    threshold = plan.route.budget_pressure
    if threshold is None or used < threshold or len(plan.ranked) < 2:
        return False
    plan.ranked = sorted(plan.ranked, key=lambda s: s.cost_usd)  # stable: equal prices keep their order
    plan.pick = "budget"
    return True


@dataclass(slots=True)
class Tenancy:
    """The virtual-key machinery of one process: the key store, the identity cache, limits and ledger."""

    store: KeyStore
    identity: Identity
    guard: KeyGuard
    usage: UsageReader
    limiter: Limiter

    @classmethod
    def from_settings(
        cls, settings: Settings, replicas: Callable[[], int] = lambda: 1, on_spend: SpendHook | None = None
    ) -> Tenancy:
        store = make_keystore(settings)
        keys = Keys.from_settings(settings)
        identity = Identity(keys, store, cache_s=settings.key_cache_s, require_keys=settings.require_keys)
        limiter: Limiter
        usage: UsageReader
        if isinstance(store, RedisKeyStore):
            assert settings.redis_url is not None
            redis_limiter = RedisLimiter(
                settings.redis_url,
                prefix=settings.limits_redis_prefix,
                cluster=settings.redis_cluster,
                timeout_s=settings.redis_timeout_ms / 1000,
                budget_fail_open=settings.budget_fail_open,
                ledger_days=settings.ledger_days,
                replicas=replicas,
            )
            limiter, usage = redis_limiter, RedisLedger(store.client, settings.limits_redis_prefix)
        else:
            ledger = SqliteLedger(settings.keys_db)
            limiter, usage = LocalLimiter(ledger), ledger
        return cls(store, identity, KeyGuard(limiter, on_spend=on_spend), usage, limiter)

    async def start(self) -> None:
        await self.store.start()
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.start()

    async def close(self) -> None:
        await self.store.close()
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.close()
