"""Backend health for routing: circuit breakers, Retry-After cooldowns and the retry budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from gateway.events import AttemptRecord, Observer, RequestRecord
from gateway.policy.model import Resilience
from gateway.providers.base import Target
from gateway.providers.credentials import renew_rejected
from gateway.resilience.breaker import Breakers
from gateway.resilience.budget import RetryBudget
from gateway.resilience.cooldown import Cooldowns, health_key
from gateway.routing.probes import patience_s, trial_patience_s
from gateway.telemetry import TelemetryStore

# Attempt outcomes that say the backend is unwell; the client's own errors and cancellations say nothing.
BREAKER_FAILURES = frozenset({"connect", "timeout", "server", "protocol"})
# Failures that can be fast (a 5xx, a refused connection): when quick, re-trialling costs next to nothing.
FAST_KINDS = frozenset({"connect", "server"})
T = TypeVar("T")
SHARED_PREFIX = "breaker:"  # cooldown names in the shared store
# In AttemptRecord.context: this trial closed its breaker, at its status line ("replied": the failure share
# restarted then) or at a stream's first event ("answered": it restarts once the stream ends well).
_CLOSED = "health.closed"


class Health(Observer):
    """An Observer of attempts, and the router's view of which backends may take traffic right now.

    `blocked` is a query (the plan, the retry loop and hedging ask it; it changes nothing); `sync` (adopt
    other replicas' breaker openings), `admit` (take a half-open trial) and the observer hooks are the
    transitions.
    `cooldowns` is the one record of Retry-After: the retry loop reads the same one."""

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
        self.cooldowns = Cooldowns(clock)
        self.on_open: Callable[[str, float], None] | None = (
            None  # shares a breaker opening with other replicas
        )
        self._synced: object = None  # the store snapshot `sync` last adopted

    def configure(self, config: Resilience) -> None:
        """A policy reload changes thresholds, never the state learned so far."""
        self.config = config
        self.breakers.config = config.breaker
        self.budget.ratio = config.retry_budget.ratio
        self.budget.min_retries = config.retry_budget.min_retries

    def blocked(self, target: Target) -> tuple[str, float, bool] | None:
        """(reason, seconds to wait, is_rate_limit) when the target must not be tried now. Changes nothing."""
        key = target.health_key
        wait = self.cooldowns.remaining(key)
        if wait > 0:
            return f"rate-limited: retry after {wait:.2f}s", wait, True
        state, wait = self.breakers.peek(key)
        if state == "open":
            what = "circuit open" if wait > 0 else "circuit half-open, trial in flight"
            return f"{what}: trials in {wait:.2f}s", max(wait, 0.1), False
        if self._store is not None:
            snap = self._store.snapshot()  # most of the time it holds no cooldown: no lookup then
            shared = snap.cooldown_until(SHARED_PREFIX + key) if snap.cooldowns else None
            left = shared - time.time() if shared is not None else 0.0
            if left > 0:  # opened by another replica; `sync` makes it this replica's too
                return f"circuit open: trials in {left:.2f}s (opened by another replica)", left, False
        return None

    def sync(self) -> None:
        """Adopts breaker openings other replicas shared through the store, so this replica's breaker also
        comes back through a half-open trial. A transition: the router calls it once per plan."""
        if self._store is None:
            return
        snap = self._store.snapshot()
        if snap is self._synced:
            return
        self._synced = snap
        wall = time.time()
        for name, until in snap.cooldowns.items():
            if name.startswith(SHARED_PREFIX) and until > wall:
                self.breakers.force_open(name[len(SHARED_PREFIX) :], until - wall)

    def admit(self, target: Target) -> bool:
        """At send time: takes a half-open trial slot, refuses a backend that went bad meanwhile."""
        key = target.health_key
        if self.cooldowns.remaining(key) > 0:
            return False
        return self.breakers.admit(key)

    def trial_deadline_s(self, target: Target, expected_s: float | None) -> float | None:
        """A first-byte deadline for a trial of a backend out for a hang (`expected_s`: its last-good
        expectation): `probes.trial_patience_s`, so a trial sent into a hang costs well under a second,
        then fails over, and the next trial is not held back by it. None: the route's deadlines apply."""
        if not self.breakers.hung(target.health_key):
            return None
        return trial_patience_s(expected_s)

    def trial_ready(self, target: Target) -> bool:
        """Whether the target's breaker waits for a half-open trial that may be sent now (a query)."""
        key = target.health_key
        return self.cooldowns.remaining(key) <= 0 and self.breakers.peek(key) == ("half_open", 0.0)

    def demote_slow_starters(self, items: list[T], target_of: Callable[[T], Target]) -> list[T]:
        """A backend whose breaker just closed takes a growing share of traffic, not a herd at once."""
        keep: list[T] = []
        later: list[T] = []
        for item in items:
            w = self.breakers.weight(target_of(item).health_key)
            (keep if w >= 1.0 or random.random() < w else later).append(item)
        return keep + later if later else items

    # Observer hooks

    def request_started(self, req: RequestRecord) -> None:
        self.budget.note_request()

    def attempt_replied(self, req: RequestRecord, att: AttemptRecord) -> None:
        """A backend out for failures that never had a 2xx status line (an error status, a refused
        connection, a hang before the headers) that answers a trial with one has recovered from what
        tripped it: the breaker closes now, not a TTFT later at the first event (the answer still counts at
        its end: failing then reopens the breaker)."""
        if (
            _ok(att.status)
            and self.breakers.status_decides(att.target.health_key)
            and self._succeeded(att, _in_time(att.replied_s, att.expected_s))
        ):
            att.context[_CLOSED] = "replied"
            if self._store is not None:  # forgiven now: ranked on its price again while it ramps back
                self._store.recovered(att.target.key)

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None:
        """A stream's first event is a half-open trial's verdict: the breaker closes now, not at the stream's
        end (a stream cut after this still counts as a failure at its end, and reopens the breaker)."""
        if (
            req.stream
            and self.breakers.peek(att.target.health_key)[0] != "closed"
            and self._succeeded(att, answered_in_time(att))
        ):
            att.context[_CLOSED] = "answered"  # the failure share restarts once the stream ends well

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        key = att.target.health_key
        kind = att.outcome
        if kind == "ok":
            closed = att.context.pop(_CLOSED, None)
            if (
                self._succeeded(att, answered_in_time(att)) or closed == "answered"
            ) and self._store is not None:
                self._store.recovered(att.target.key)  # the trial proved it: forgiven on evidence
        elif kind in BREAKER_FAILURES or (
            kind == "auth" and att.status == 401 and renew_rejected(att.target)
        ):
            # A rejected OAuth token is being renewed: a failure like any other, not a key that stays bad.
            took = att.duration_s
            fast = kind in FAST_KINDS and took is not None and took < self.config.breaker.fast_failure_s
            hang_s = took if kind == "timeout" else None
            reopen = att.context.pop(_CLOSED, None) is not None  # the trial that closed it failed after all
            if self.breakers.failure(key, hard=reopen, fast=fast, hang_s=hang_s, after_ok=_ok(att.status)):
                self._share(key, self.breakers.peek(key)[1])
        elif kind == "auth":
            self.breakers.force_open(key, self.config.breaker.auth_cooldown_s)
            self._share(key, self.config.breaker.auth_cooldown_s)
        elif kind == "rate_limited":
            self.cooldowns.note(key, att.retry_after)
            self.breakers.release(key)
        else:
            self.breakers.release(key)

    def _succeeded(self, att: AttemptRecord, prompt: bool) -> bool:
        """Counts a success; True when it closed the breaker (a half-open trial's verdict). `prompt`: it
        answered in its expected time."""
        key = att.target.health_key
        was = self.breakers.advance(key)  # a success after the cooldown closes the breaker
        self.breakers.success(key, prompt=prompt)
        if was == "closed":
            return False
        if self._store is not None:
            self._store.clear_cooldown(SHARED_PREFIX + key)
        return self.breakers.peek(key)[0] == "closed"

    def _share(self, key: str, seconds: float) -> None:
        """Tells the other replicas (through the store) that this breaker opened, and for how long."""
        if self._store is not None:
            self._store.set_cooldown(SHARED_PREFIX + key, time.time() + seconds)


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def answered_in_time(att: AttemptRecord) -> bool:
    """The attempt's first byte came before it would have counted as stuck: the backend is well."""
    return _in_time(att.ttft_s, att.expected_s)


def _in_time(took_s: float | None, expected_s: float | None) -> bool:
    return took_s is not None and expected_s is not None and took_s <= patience_s(expected_s)


__all__ = ["BREAKER_FAILURES", "SHARED_PREFIX", "Health", "health_key"]
