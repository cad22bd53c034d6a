"""Retry-After kept in one place: how long a backend asked to be left alone, and the one rule for it."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.providers.base import Target

DEFAULT_WAIT_S = 1.0  # a 429 that did not say how long
MAX_WAIT_S = 3600.0  # an upstream's Retry-After is outside input: bounded like the rest
_PRUNE_AT = 1024  # entries before a write drops the expired ones


def health_key(target: Target) -> str:
    """The key health and cooldowns are kept by: one (backend, provider model), as "backend/model id"
    (computed once per Target: hot paths read `target.health_key`)."""
    return target.health_key


def wait_s(retry_after: float | None) -> float:
    """Seconds a rate-limited backend is left alone, from what it said (None: it said nothing)."""
    # "0" (or NaN) is read as saying nothing: calling a backend again at once that just refused is no use.
    if retry_after is None or not retry_after > 0.0:
        return DEFAULT_WAIT_S
    return min(MAX_WAIT_S, retry_after)


class Cooldowns:
    """Rate-limit cooldowns by key (`backend/model`): written when an upstream answers 429, read by the plan,
    the send-time check and the retry loop. Queries never change it; writes prune expired entries."""

    __slots__ = ("_clock", "_until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def note(self, key: str, retry_after: float | None) -> float:
        """A 429 from `key`: it waits `wait_s(retry_after)` from now (never shortening a longer wait).
        Returns the seconds it now waits."""
        now = self._clock()
        until = now + wait_s(retry_after)
        if self._until.get(key, 0.0) < until:
            if len(self._until) >= _PRUNE_AT:
                self._until = {k: u for k, u in self._until.items() if u > now}
            self._until[key] = until
        return self._until[key] - now

    def remaining(self, key: str) -> float:
        """Seconds `key` still waits; 0.0 when it may be called."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        return max(0.0, until - self._clock())

    def __len__(self) -> int:
        return len(self._until)
