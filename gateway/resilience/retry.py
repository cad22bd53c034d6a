"""The attempt loop: failover across ranked candidates with tenacity; the one place retries are decided."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
)
from tenacity.stop import stop_base

from gateway.errors import (
    AllBackendsFailed,
    ContextLengthExceeded,
    GatewayError,
    RateLimited,
    ServiceUnavailable,
    UpstreamRejected,
)
from gateway.providers.base import FailureKind, ProviderError, Target
from gateway.resilience.budget import RetryBudget
from gateway.resilience.cooldown import Cooldowns, wait_s

R = TypeVar("R")

# Kinds worth another attempt (on another backend first). "client" errors are the caller's: returned at once.
RETRYABLE: frozenset[FailureKind] = frozenset(
    {"connect", "timeout", "rate_limited", "server", "auth", "protocol", "context_length"}
)
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    deadline_s: float = 300.0


@dataclass(slots=True)
class AttemptLog:
    """Every attempt's error, in order, for the final report and the explain headers."""

    errors: list[ProviderError] = field(default_factory=list)
    attempts: int = 0
    budget_spent: bool = False


class Gate(Protocol):
    """Backend health as the attempt loop sees it (implemented by resilience.health.Health)."""

    cooldowns: Cooldowns  # the one record of Retry-After: the loop reads and writes the gate's

    def blocked(self, target: Target) -> tuple[str, float, bool] | None: ...

    def admit(self, target: Target) -> bool: ...


class _Picker:
    """Chooses the next candidate: rank order, never the same backend twice in a row while another is
    eligible, skipping backends that asked us to wait (retry-after) or whose window is too small."""

    def __init__(self, candidates: Sequence[Target], gate: Gate | None = None) -> None:
        self.candidates = list(candidates)
        self.gate = gate
        # Retry-After lives in one place: the gate's cooldowns (shared with the plan), else this request's.
        self.cooldowns = gate.cooldowns if gate is not None else Cooldowns()
        self.tried: list[Target] = []
        self.min_window = 0  # after a context-length error, only larger windows are eligible
        self.excluded: set[str] = set()

    def eligible(self) -> list[Target]:
        cooling = self.cooldowns if len(self.cooldowns) else None
        return [
            t
            for t in self.candidates
            if t.backend not in self.excluded
            and (cooling is None or cooling.remaining(t.health_key) <= 0.0)
            and (t.context_window or 1 << 62) > self.min_window
            # The plan checked health just before the first pick; later picks look again.
            and (self.gate is None or not self.tried or self.gate.blocked(t) is None)
        ]

    def next(self) -> Target | None:
        pool = self.eligible()
        if not pool or not self.tried:  # the first pick (most requests): the best eligible
            return pool[0] if pool else None
        untried = [t for t in pool if t not in self.tried]
        if untried:
            return untried[0]
        last = self.tried[-1] if self.tried else None
        others = [t for t in pool if t is not last]
        return others[0] if others else pool[0]

    def note_failure(self, target: Target, err: ProviderError) -> None:
        self.tried.append(target)
        if err.kind == "rate_limited":
            # Health (an observer) noted it already when there is a gate; noting again only keeps the later.
            self.cooldowns.note(target.health_key, err.retry_after)
        elif err.kind == "auth":
            self.excluded.add(target.backend)  # a bad key does not get better on a retry
        elif err.kind == "context_length":
            self.min_window = max(self.min_window, target.context_window or 0)
            self.excluded.add(target.backend)


class _NoCandidateLeft(stop_base):
    """Stops as soon as every candidate is excluded or asked us to wait (e.g. all rate-limited)."""

    def __init__(self, picker: _Picker) -> None:
        self.picker = picker

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.picker.next() is None


class _BudgetSpent(stop_base):
    """Stops when the retry budget has no extra attempt left (checked last, as it spends one otherwise)."""

    def __init__(self, budget: RetryBudget, log: AttemptLog) -> None:
        self.budget = budget
        self.log = log

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.budget.try_spend():
            return False
        self.log.budget_spent = True
        return True


class _NoneAdmitted(Exception):
    """Every remaining candidate refused at send time (e.g. its half-open trial slot was just taken)."""


def _admitted(picker: _Picker) -> Target:
    target = picker.next()
    while target is not None and picker.gate is not None and not picker.gate.admit(target):
        picker.excluded.add(target.backend)
        target = picker.next()
    if target is None:
        raise _NoneAdmitted()
    return target


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.kind in RETRYABLE


async def attempt(
    candidates: Sequence[Target],
    send: Callable[[Target], Awaitable[R]],
    policy: RetryPolicy,
    log: AttemptLog,
    *,
    gate: Gate | None = None,
    budget: RetryBudget | None = None,
) -> tuple[R, Target]:
    """Sends to candidates in order until one succeeds; raises a GatewayError summarising every failure.

    The first attempt runs outside tenacity: most requests succeed on it, and building the retry loop
    cost ~40 µs per request (docs/benchmarks.md). A first failure is replayed as the loop's first
    attempt, so every retry decision (stop, wait, budget) is still tenacity's."""
    picker = _Picker(candidates, gate)
    started = time.monotonic()
    try:
        return await _send_one(picker, send, log)
    except ProviderError as err:
        if not _retryable(err):
            raise final_error(log.errors, picker) from None
        replay: ProviderError | None = err
    except _NoneAdmitted:
        raise _none_admitted() from None
    retrying = _retrying(picker, policy, log, budget, time.monotonic() - started)
    try:
        async for step in retrying:
            with step:
                if replay is not None:
                    failed, replay = replay, None
                    raise failed
                return await _send_one(picker, send, log)
    except ProviderError:
        pass
    except _NoneAdmitted:
        pass  # the errors so far say why
    raise final_error(log.errors, picker, budget_spent=log.budget_spent)


async def _send_one(
    picker: _Picker, send: Callable[[Target], Awaitable[R]], log: AttemptLog
) -> tuple[R, Target]:
    target = _admitted(picker)
    log.attempts += 1
    try:
        return await send(target), target
    except ProviderError as err:
        err.backend = err.backend or target.backend
        log.errors.append(err)
        picker.note_failure(target, err)
        raise


def _retrying(
    picker: _Picker, policy: RetryPolicy, log: AttemptLog, budget: RetryBudget | None, elapsed_s: float
) -> AsyncRetrying:
    """The loop after a first failure: its first 'attempt' is that failure, replayed."""
    stops: list[stop_base] = [
        stop_after_attempt(policy.max_attempts),
        stop_after_delay(max(0.0, policy.deadline_s - elapsed_s)),
        _NoCandidateLeft(picker),
    ]
    if budget is not None:
        stops.append(_BudgetSpent(budget, log))

    def wait(state: RetryCallState) -> float:
        # Switching to another backend is immediate; coming back to one already tried backs off with jitter.
        nxt = picker.next()
        if nxt is None or nxt not in picker.tried:
            return 0.0
        n = state.attempt_number
        return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (n - 1)))

    return AsyncRetrying(stop=stop_any(*stops), wait=wait, retry=retry_if_exception(_retryable), reraise=True)


def _none_admitted() -> GatewayError:
    return ServiceUnavailable(
        "No backend can take the request right now (circuits open or trials in flight)",
        headers={"retry-after": "1"},
    )


def final_error(
    errors: list[ProviderError], picker: _Picker | None = None, *, budget_spent: bool = False
) -> GatewayError:
    """The one error the client sees once attempts are over, naming every backend's failure in order."""
    last = errors[-1]
    if last.kind == "client":
        return _passthrough(last)
    if all(e.kind == "context_length" for e in errors):
        return ContextLengthExceeded(
            f"The prompt exceeds the context window of every eligible backend: {last.message}",
            param="messages",
        )
    if all(e.kind == "rate_limited" for e in errors):
        waits = [picker.cooldowns.remaining(t.health_key) for t in picker.tried] if picker else []
        retry_after = min(waits) if waits else wait_s(last.retry_after)
        return RateLimited(
            f"Every backend is rate-limited; retry after {retry_after:.1f}s. " + _summary(errors),
            retry_after=retry_after,
        )
    why = "the retry budget is spent. " if budget_spent else ""
    return AllBackendsFailed(f"All {len(errors)} attempts failed; {why}" + _summary(errors))


def _summary(errors: list[ProviderError]) -> str:
    return "; ".join(f"[{i}] {e.summary()}" for i, e in enumerate(errors, 1))[:4000]


def _passthrough(err: ProviderError) -> GatewayError:
    """A backend's 4xx for the client's request goes back with its status and message, unretried."""
    body = err.body.get("error") if err.body else None
    param = body.get("param") if isinstance(body, dict) and isinstance(body.get("param"), str) else None
    code = body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else None
    return UpstreamRejected(err.message, status=err.status or 400, param=param, code=code)


__all__ = ["AttemptLog", "Gate", "RetryPolicy", "attempt", "final_error"]
