"""The attempt loop's decisions, driven with a scripted `send` (pure logic, no network)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from gateway.errors import AllBackendsFailed, ContextLengthExceeded, RateLimited, UpstreamRejected
from gateway.providers.base import ProviderError, Target
from gateway.resilience.budget import RetryBudget
from gateway.resilience.retry import AttemptLog, RetryPolicy, attempt
from tests.unit.targets import target

BASE = target(backend="")
A, B, C = (replace(BASE, backend=n) for n in "abc")


def run(
    targets: list[Target], script: dict[str, list[ProviderError | None]], max_attempts: int = 3
) -> tuple[str, AttemptLog, list[str]]:
    calls: list[str] = []

    async def send(t: Target) -> str:
        calls.append(t.backend)
        outcome = script[t.backend].pop(0) if script[t.backend] else None
        if outcome is not None:
            raise outcome
        return t.backend

    log = AttemptLog()
    result, _ = asyncio.run(attempt(targets, send, RetryPolicy(max_attempts=max_attempts), log))
    return result, log, calls


def err(kind: str, status: int | None = None, retry_after: float | None = None) -> ProviderError:
    return ProviderError(kind, f"{kind} happened", status=status, retry_after=retry_after)  # type: ignore[arg-type]


def test_first_success_is_one_attempt() -> None:
    result, log, calls = run([A, B], {"a": [], "b": []})
    assert (result, log.attempts, calls) == ("a", 1, ["a"])


@pytest.mark.parametrize("kind", ["connect", "timeout", "server", "rate_limited", "auth", "protocol"])
def test_retryable_failure_moves_to_next_backend(kind: str) -> None:
    result, log, calls = run([A, B], {"a": [err(kind, 500)], "b": []})
    assert result == "b" and calls == ["a", "b"]
    assert [e.backend for e in log.errors] == ["a"]


def test_client_error_is_not_retried() -> None:
    with pytest.raises(UpstreamRejected) as info:
        run([A, B], {"a": [err("client", 422)], "b": []})
    assert info.value.status == 422


def test_single_backend_retried_after_transient_failure() -> None:
    result, log, calls = run([A], {"a": [err("server", 503)]})
    assert result == "a" and calls == ["a", "a"]


def test_never_same_backend_back_to_back_when_another_exists() -> None:
    result, _, calls = run([A, B], {"a": [err("server", 500), None], "b": [err("server", 500)]})
    assert calls == ["a", "b", "a"] and result == "a"


def test_max_attempts_then_all_backends_failed_names_each() -> None:
    with pytest.raises(AllBackendsFailed) as info:
        run([A, B, C], {n: [err("server", 500)] * 3 for n in "abc"}, max_attempts=2)
    assert (
        "[1] a:" in info.value.message and "[2] b:" in info.value.message and "c:" not in info.value.message
    )


def test_all_rate_limited_is_429_without_waiting() -> None:
    with pytest.raises(RateLimited) as info:
        run([A, B], {"a": [err("rate_limited", 429, 5)], "b": [err("rate_limited", 429, 2)]}, max_attempts=5)
    assert 1.5 < info.value.retry_after <= 2
    assert info.value.headers["retry-after"] == "2"


def test_auth_failure_excludes_backend() -> None:
    with pytest.raises(AllBackendsFailed):
        run([A], {"a": [err("auth", 401), None]}, max_attempts=3)


def test_context_length_goes_to_a_larger_window_only() -> None:
    small, same, large = (
        replace(BASE, backend=n, context_window=w) for n, w in [("s", 8), ("e", 8), ("l", 64)]
    )
    result, _, calls = run([small, same, large], {"s": [err("context_length", 400)], "e": [], "l": []})
    assert calls == ["s", "l"] and result == "l"


def test_context_length_everywhere_is_400() -> None:
    with pytest.raises(ContextLengthExceeded):
        run([replace(A, context_window=8)], {"a": [err("context_length", 400)]})


# The first attempt runs outside tenacity and its failure is replayed into the loop: the loop's limits
# must count it exactly as if tenacity had made it.


def test_one_attempt_allowed_means_no_retry_after_the_first_failure() -> None:
    with pytest.raises(AllBackendsFailed) as info:
        run([A, B], {"a": [err("server", 503)], "b": []}, max_attempts=1)
    assert "[1] " in info.value.message and "[2] " not in info.value.message


def test_max_attempts_counts_the_first_attempt() -> None:
    script: dict[str, list[ProviderError | None]] = {n: [err("server", 503)] for n in "abc"}
    calls: list[str] = []

    async def send(t: Target) -> str:
        calls.append(t.backend)
        raise script[t.backend].pop(0) or err("server")

    with pytest.raises(AllBackendsFailed):
        asyncio.run(attempt([A, B, C], send, RetryPolicy(max_attempts=2), AttemptLog()))
    assert calls == ["a", "b"]


def test_deadline_counts_the_first_attempts_time() -> None:
    calls: list[str] = []

    async def slow_failure(t: Target) -> str:
        calls.append(t.backend)
        await asyncio.sleep(0.05)
        raise err("server", 503)

    with pytest.raises(AllBackendsFailed):
        asyncio.run(attempt([A, B], slow_failure, RetryPolicy(max_attempts=3, deadline_s=0.01), AttemptLog()))
    assert calls == ["a"]  # the deadline passed during the first attempt: no second one


def test_spent_retry_budget_stops_after_the_first_failure() -> None:
    budget = RetryBudget(ratio=0.0, min_retries=0)
    log = AttemptLog()
    calls: list[str] = []

    async def send(t: Target) -> str:
        calls.append(t.backend)
        if t.backend == "a":
            raise err("server", 503)
        return t.backend

    with pytest.raises(AllBackendsFailed) as info:
        asyncio.run(attempt([A, B], send, RetryPolicy(), log, budget=budget))
    assert calls == ["a"] and log.budget_spent
    assert "retry budget" in info.value.message
