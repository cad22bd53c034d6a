"""Backend health for routing: circuit breakers, retry-after cooldowns and the retry budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from gateway.events import AttemptRecord, Observer, RequestRecord
from gateway.policy.model import Resilience
from gateway.providers.base import Target
from gateway.resilience.breaker import Breakers
from gateway.resilience.budget import RetryBudget
from gateway.telemetry import TelemetryStore

# Attempt outcomes that say the backend is unwell; the client's own errors and cancellations say nothing.
BREAKER_FAILURES = frozenset({"connect", "timeout", "server", "protocol"})
T = TypeVar("T")
SHARED_PREFIX = "breaker:"  # cooldown names in the shared store


def health_key(target: Target) -> str:
    return f"{target.backend}/{target.model_id}"


class Health(Observer):
    """An Observer of attempts, and the router's view of which backends may take traffic right now."""

    def __init__(
        self,
        config: Resilience,
        clock: Callable[[], float] = time.monotonic,
        store: TelemetryStore | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self.breakers = Breakers(config.breaker, clock)
        self.budget = RetryBudget(
            config.retry_budget.ratio, config.retry_budget.min_retries, config.retry_budget.window_s, clock
        )
        self.config = config
        self._cooldowns: dict[
            str, float
        ] = {}  # key → monotonic time before which the backend asked us to wait
        self.on_open: Callable[[str, float], None] | None = (
            None  # shares a breaker opening with other replicas
        )

    def configure(self, config: Resilience) -> None:
        """A policy reload changes thresholds, never the state learned so far."""
        self.config = config
        self.breakers.config = config.breaker
        self.budget.ratio = config.retry_budget.ratio
        self.budget.min_retries = config.retry_budget.min_retries

    def cool_down(self, key: str, until: float) -> None:
        if self._cooldowns.get(key, 0.0) < until:
            self._cooldowns[key] = until

    def blocked(self, target: Target) -> tuple[str, float, bool] | None:
        """(reason, seconds to wait, is_rate_limit) when the target must not be tried now."""
        key = health_key(target)
        now = self._clock()
        until = self._cooldowns.get(key)
        if until is not None:
            if until > now:
                return f"rate-limited: retry after {until - now:.2f}s", until - now, True
            del self._cooldowns[key]
        if self._store is not None:
            shared = self._store.snapshot().cooldown_until(SHARED_PREFIX + key)
            wall = time.time()
            if shared is not None and shared > wall:
                self.breakers.force_open(key, shared - wall)  # opened by another replica
        state, wait = self.breakers.peek(key)
        if state == "open":
            what = "circuit open" if wait > 0 else "circuit half-open, trial in flight"
            return f"{what}: trials in {wait:.2f}s", max(wait, 0.1), False
        return None

    def admit(self, target: Target) -> bool:
        """At send time: takes a half-open trial slot, refuses a backend that went bad meanwhile."""
        key = health_key(target)
        until = self._cooldowns.get(key)
        if until is not None and until > self._clock():
            return False
        return self.breakers.admit(key)

    def demote_slow_starters(self, items: list[T], target_of: Callable[[T], Target]) -> list[T]:
        """A backend whose breaker just closed takes a growing share of traffic, not a herd at once."""
        keep: list[T] = []
        later: list[T] = []
        for item in items:
            w = self.breakers.weight(health_key(target_of(item)))
            (keep if w >= 1.0 or random.random() < w else later).append(item)
        return keep + later if later else items

    # Observer hooks

    def request_started(self, req: RequestRecord) -> None:
        self.budget.note_request()

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        key = health_key(att.target)
        kind = att.outcome
        if kind == "ok":
            was = self.breakers.peek(key)[0]
            self.breakers.success(key)
            if was != "closed" and self._store is not None:
                self._store.clear_cooldown(SHARED_PREFIX + key)
        elif kind in BREAKER_FAILURES:
            if self.breakers.failure(key):
                self._share(key, self.breakers.peek(key)[1])
        elif kind == "auth":
            self.breakers.force_open(key, self.config.breaker.auth_cooldown_s)
            self._share(key, self.config.breaker.auth_cooldown_s)
        elif kind == "rate_limited":
            self.cool_down(key, self._clock() + (att.retry_after if att.retry_after is not None else 1.0))
            self.breakers.release(key)
        else:
            self.breakers.release(key)

    def _share(self, key: str, seconds: float) -> None:
        """Tells the other replicas (through the store) that this breaker opened, and for how long."""
        if self._store is not None:
            self._store.set_cooldown(SHARED_PREFIX + key, time.time() + seconds)
