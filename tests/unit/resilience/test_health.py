"""Health: queries change nothing, transitions are explicit, and Retry-After lives in one record."""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import replace

import pytest

from gateway.endpoints import CHAT
from gateway.errors import RateLimited
from gateway.events import AttemptRecord, RequestRecord
from gateway.policy.model import BreakerConfig, Resilience
from gateway.providers.base import ProviderError, Target
from gateway.resilience.breaker import Breakers
from gateway.resilience.cooldown import DEFAULT_WAIT_S, MAX_WAIT_S, Cooldowns, health_key, wait_s
from gateway.resilience.health import SHARED_PREFIX, Health
from gateway.resilience.retry import AttemptLog, RetryPolicy, attempt
from gateway.telemetry import MemoryStore, Sample
from tests.unit.targets import target

A = target(backend="a")
B = replace(A, backend="b")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def health(store: MemoryStore | None = None, **breaker: float) -> tuple[Health, Clock]:
    clock = Clock()
    config = Resilience(breaker=BreakerConfig(**breaker))  # type: ignore[arg-type]
    return Health(config, clock, store), clock


def finished(h: Health, t: Target, outcome: str, retry_after: float | None = None) -> None:
    h.attempt_finished(
        RequestRecord("r", "chat", "/x"), AttemptRecord(t, 1, outcome=outcome, retry_after=retry_after)
    )


def state(h: Health) -> object:
    return copy.deepcopy((h.cooldowns._until, h.breakers._items))


@pytest.mark.parametrize(
    ("said", "waits"), [(None, DEFAULT_WAIT_S), (0.0, DEFAULT_WAIT_S), (float("nan"), DEFAULT_WAIT_S),
                        (2.5, 2.5), (1e9, MAX_WAIT_S)]
)  # fmt: skip
def test_one_rule_for_how_long_a_backend_waits(said: float | None, waits: float) -> None:
    assert wait_s(said) == waits


def test_cooldowns_only_extend_and_are_not_changed_by_reading() -> None:
    clock = Clock()
    c = Cooldowns(clock)
    assert c.note("k", 5.0) == 5.0
    assert c.note("k", 1.0) == 5.0  # a shorter wait never shortens a longer one
    clock.t += 6
    assert c.remaining("k") == 0.0 and len(c) == 1  # expired, and reading did not remove it


def test_a_rate_limited_attempt_blocks_its_backend_for_what_it_said() -> None:
    h, clock = health()
    finished(h, A, "rate_limited", 3.0)
    blocked = h.blocked(A)
    assert blocked is not None and blocked[1] == 3.0 and blocked[2] is True
    assert h.blocked(B) is None and not h.admit(A)
    clock.t += 3
    assert h.blocked(A) is None and h.admit(A)


def test_blocked_is_a_query_even_after_a_cooldown_expired() -> None:
    """Regression: `blocked` deleted the expired cooldown it looked at."""
    h, clock = health()
    finished(h, A, "rate_limited", 1.0)
    clock.t += 2
    before = state(h)
    assert h.blocked(A) is None
    assert state(h) == before


def test_blocked_does_not_open_a_breaker_another_replica_shared() -> None:
    """Regression: `blocked` force-opened the local breaker when it saw another replica's opening, so a
    read (explain, a hedge's look at its backup) changed breaker state. `sync` is now that step."""
    store = MemoryStore()
    store.set_cooldown(SHARED_PREFIX + health_key(A), time.time() + 30)
    h, _ = health(store)
    before = state(h)
    blocked = h.blocked(A)
    assert blocked is not None and "circuit open" in blocked[0] and blocked[2] is False
    assert state(h) == before
    h.sync()
    assert h.breakers.peek(health_key(A))[0] == "open"  # adopted: it comes back through a trial


def test_peek_does_not_move_an_open_breaker_to_half_open() -> None:
    clock = Clock()
    b = Breakers(BreakerConfig(consecutive_failures=1, cooldown_s=5), clock)
    b.failure("k")
    clock.t += 5
    assert b.peek("k")[0] == "half_open"
    assert b._items["k"].state == "open"  # the query only reports it
    assert b.states() == {"k": "half_open"} and b._items["k"].state == "open"
    assert b.admit("k") and b.advance("k") == "half_open"  # admit is the transition


def test_the_retry_loop_reads_and_writes_the_same_cooldowns_as_health() -> None:
    """One record: a 429 in one request is what the next request's loop (and plan) skip, and the wait the
    client is told comes from it."""
    h, _ = health()

    async def send(t: Target) -> str:
        raise ProviderError("rate_limited", "slow down", status=429, retry_after=4.0)

    with pytest.raises(RateLimited) as info:
        asyncio.run(attempt([A], send, RetryPolicy(max_attempts=3), AttemptLog(), gate=h))
    assert info.value.retry_after == pytest.approx(4.0)
    assert h.cooldowns.remaining(health_key(A)) == pytest.approx(4.0)
    assert h.blocked(A) is not None

    calls: list[str] = []

    async def ok(t: Target) -> str:
        calls.append(t.backend)
        return t.backend

    result, _ = asyncio.run(attempt([A, B], ok, RetryPolicy(), AttemptLog(), gate=h))
    assert result == "b" and calls == ["b"]  # the cooling backend is not even tried


def test_explain_plans_without_adopting_shared_openings_a_request_adopts_them() -> None:
    from gateway.routing.router import Router
    from tests.mock_transport import MockTransport
    from tests.unit.routing.router_kit import body, catalog

    cat = catalog("ab")
    cheap = cat.targets["m"][0]
    store = MemoryStore()
    store.set_cooldown(SHARED_PREFIX + health_key(cheap), time.time() + 30)
    h, _ = health(store)
    router = Router(MockTransport(lambda r: None), health=h, store=store)  # type: ignore[arg-type, arg-type, return-value]
    plan = router.plan(cat, CHAT, body(), probe=False)
    assert [s.target.backend for s in plan.ranked] == ["b"]
    assert any(d.backend == "a" and "circuit open" in d.reason for d in plan.dropped)
    assert h.breakers.peek(health_key(cheap))[0] == "closed"  # explain changed nothing
    router.plan(cat, CHAT, body())
    assert h.breakers.peek(health_key(cheap))[0] == "open"


@pytest.mark.parametrize(
    ("outcome", "took_s", "state"),
    [
        ("server", 0.005, ("open", 1.0)),  # a 503 in milliseconds: re-trialled in a second
        ("connect", 0.001, ("open", 1.0)),  # connection refused
        ("server", 3.0, ("open", 5.0)),  # a slow 5xx: the doubling cooldown
        # A timeout is never 'fast': the hang cadence, hang_trial_s (0.5 s) from when the attempt was sent...
        ("timeout", 0.2, ("open", 0.3)),
        # ...0.15 of the outage's age (1.2 s after 8 s), from the same start: already due, a trial now.
        ("timeout", 8.0, ("half_open", 0.0)),
        ("protocol", 3.0, ("open", 5.0)),  # a slow malformed answer is no hang: the doubling cooldown
    ],
)
def test_what_a_failure_cost_sets_the_retrial_cadence(
    outcome: str, took_s: float, state: tuple[str, float]
) -> None:
    h, _ = health(consecutive_failures=1, cooldown_s=5, fast_cooldown_s=1, fast_failure_s=0.5)
    rec = AttemptRecord(A, 1, outcome=outcome, duration_s=took_s)
    h.attempt_finished(RequestRecord("r", "chat", "/x"), rec)
    assert h.breakers.peek(health_key(A)) == pytest.approx(state)


def test_a_half_open_breaker_is_trial_ready_until_its_trial_is_taken() -> None:
    h, clock = health(consecutive_failures=1, fast_cooldown_s=1)
    h.attempt_finished(
        RequestRecord("r", "chat", "/x"), AttemptRecord(A, 1, outcome="server", duration_s=0.01)
    )
    assert not h.trial_ready(A) and not h.trial_ready(B)
    clock.t += 1
    assert h.trial_ready(A)
    assert h.admit(A)
    assert not h.trial_ready(A)


@pytest.mark.parametrize(
    ("ttft_s", "expected_s", "prompt"),
    [
        (0.3, 0.25, True),  # within max(1 s, 4x expected)
        (0.9, 0.1, True),  # the 1 s floor
        (1.5, 0.25, False),  # answered, but as late as a stuck attempt
        (0.3, None, False),  # no prediction: proves nothing
        (None, 0.25, False),  # no first byte recorded
    ],
)
def test_a_trial_that_answers_in_time_ramps_back_quickly(
    ttft_s: float | None, expected_s: float | None, prompt: bool
) -> None:
    h, clock = health(consecutive_failures=1, hang_trial_s=1, slow_start_s=10, fast_ramp_s=1)
    req = RequestRecord("r", "chat", "/x")
    h.attempt_finished(req, AttemptRecord(A, 1, outcome="timeout", duration_s=2.0))
    assert h.trial_deadline_s(A, 0.25) == 0.75  # out for a hang: its trial waits 3x its last-good TTFT
    clock.t += 1
    assert h.admit(A)
    h.attempt_finished(req, AttemptRecord(A, 2, outcome="ok", ttft_s=ttft_s, expected_s=expected_s))
    assert h.trial_deadline_s(A, 0.25) is None  # closed: the route's deadlines again
    clock.t += 0.5
    # A prompt answer ramps over fast_ramp_s (half-way after 0.5 s); otherwise over slow_start_s.
    assert h.breakers.weight(health_key(A)) == pytest.approx(0.5 if prompt else 0.1)


def test_only_a_hang_shortens_the_trial_deadline() -> None:
    h, clock = health(consecutive_failures=1, cooldown_s=5)
    h.attempt_finished(
        RequestRecord("r", "chat", "/x"), AttemptRecord(A, 1, outcome="server", duration_s=3.0)
    )
    clock.t += 5
    assert h.trial_deadline_s(A, 0.25) is None
    assert h.trial_deadline_s(B, 0.25) is None  # never failed


@pytest.mark.parametrize(
    ("stream", "end", "closed_at_first_byte", "failure_share_after"),
    [
        (True, "ok", True, 0.0),  # the trial's first event closes it; its clean end restarts the share
        (True, "protocol", True, 1.0),  # cut after its first event: closed, but the end is a failure
        (False, "ok", False, 0.0),  # a buffered answer: its first byte is its end, the verdict then
    ],
)
def test_a_streams_first_event_is_its_trials_verdict(
    stream: bool, end: str, closed_at_first_byte: bool, failure_share_after: float
) -> None:
    store = MemoryStore(clock=lambda: 2000.0, window_every_s=0)
    h, clock = health(store, consecutive_failures=1, fast_cooldown_s=0.25)
    failed = AttemptRecord(A, 1, outcome="server", duration_s=0.01)
    h.attempt_finished(RequestRecord("r", "chat", "/x"), failed)
    store.record(A.key, Sample("server"))  # what the telemetry recorder feeds beside it
    clock.t += 0.25
    assert h.admit(A)  # the half-open trial
    req = RequestRecord("t", "chat", "/x", stream=stream)
    trial = AttemptRecord(A, 1, ttft_s=0.2, expected_s=0.25)
    h.attempt_answered(req, trial)
    assert (h.breakers.peek(health_key(A))[0] == "closed") is closed_at_first_byte
    trial.outcome = end
    h.attempt_finished(req, trial)
    est = store.snapshot()[A.key].est
    assert est is not None and est.failure.value == failure_share_after
    # A cut counts as the failure it is (one trips it here, as it tripped the trial before first bytes).
    assert h.breakers.peek(health_key(A))[0] == ("closed" if end == "ok" else "open")


@pytest.mark.parametrize(
    ("tripped_by", "status", "closed_at_status_line"),
    [
        # Failures that never had a 2xx status line: a trial's 200 is what was missing.
        (AttemptRecord(A, 1, outcome="server", status=503, duration_s=0.01), 200, True),  # 503s in ms
        (AttemptRecord(A, 1, outcome="connect", duration_s=0.001), 200, True),  # refused connections
        (AttemptRecord(A, 1, outcome="server", status=500, duration_s=3.0), 200, True),  # a slow 500
        (AttemptRecord(A, 1, outcome="timeout", duration_s=2.0), 200, True),  # a hang before the headers
        (AttemptRecord(A, 1, outcome="server", status=503, duration_s=0.01), 503, False),  # still failing
        # Failures after a 200: its status line proves nothing, the first event decides.
        (AttemptRecord(A, 1, outcome="timeout", status=200, duration_s=2.0), 200, False),  # hung after it
        (AttemptRecord(A, 1, outcome="protocol", status=200, duration_s=0.3), 200, False),  # cut or garbled
    ],
)
def test_a_trial_is_judged_by_its_status_line_when_the_failures_had_none(
    tripped_by: AttemptRecord, status: int, closed_at_status_line: bool
) -> None:
    store = MemoryStore(clock=lambda: 2000.0, window_every_s=0)
    h, clock = health(store, consecutive_failures=1, cooldown_s=1, hang_trial_s=1, fast_cooldown_s=1)
    h.attempt_finished(RequestRecord("r", "chat", "/x"), tripped_by)
    store.record(A.key, Sample(tripped_by.outcome))
    clock.t += 1
    assert h.admit(A)  # the half-open trial
    trial = AttemptRecord(A, 2, status=status, expected_s=0.25)
    h.attempt_replied(RequestRecord("t", "chat", "/x", stream=True), trial)
    assert (h.breakers.peek(health_key(A))[0] == "closed") is closed_at_status_line
    est = store.snapshot()[A.key].est
    assert est is not None and est.failure.value == (0.0 if closed_at_status_line else 1.0)


@pytest.mark.parametrize(("replied_s", "weight"), [(0.01, 0.5), (1.5, 0.1), (None, 0.1)])
def test_a_trial_closed_at_a_prompt_status_line_ramps_back_quickly(
    replied_s: float | None, weight: float
) -> None:
    """Out for a hang before the headers: a status line within the trial's patience ramps back over
    fast_ramp_s (half-way after half of it), one as late as a stuck attempt over slow_start_s."""
    h, clock = health(consecutive_failures=1, hang_trial_s=1, slow_start_s=10, fast_ramp_s=1)
    h.attempt_finished(
        RequestRecord("r", "chat", "/x"), AttemptRecord(A, 1, outcome="timeout", duration_s=2.0)
    )
    clock.t += 1
    assert h.admit(A)
    trial = AttemptRecord(A, 2, status=200, replied_s=replied_s, expected_s=0.25)
    h.attempt_replied(RequestRecord("t", "chat", "/x", stream=True), trial)
    assert h.breakers.peek(health_key(A))[0] == "closed"
    clock.t += 0.5
    assert h.breakers.weight(health_key(A)) == pytest.approx(weight)


@pytest.mark.parametrize("verdict_at", ["status line", "first event"])
def test_a_trial_that_closed_its_breaker_and_then_fails_reopens_it(verdict_at: str) -> None:
    """Closed on its status line or first event, the trial's later failure reopens the breaker at once
    (five consecutive failures would otherwise be needed)."""
    h, clock = health(consecutive_failures=5, fast_cooldown_s=1, cooldown_s=5)
    for _ in range(5):
        h.attempt_finished(
            RequestRecord("r", "chat", "/x"), AttemptRecord(A, 1, outcome="server", duration_s=0.01)
        )
    clock.t += 1
    assert h.admit(A)
    req = RequestRecord("t", "chat", "/x", stream=True)
    trial = AttemptRecord(A, 2, status=200, ttft_s=0.2, expected_s=0.25)
    if verdict_at == "status line":
        h.attempt_replied(req, trial)
    else:
        h.attempt_answered(req, trial)
    assert h.breakers.peek(health_key(A))[0] == "closed"
    trial.outcome, trial.duration_s = "protocol", 1.5  # cut mid-stream
    h.attempt_finished(req, trial)
    assert h.breakers.peek(health_key(A)) == ("open", 5.0)


def test_a_success_that_is_no_trial_leaves_the_failure_share_to_the_estimate() -> None:
    store = MemoryStore(clock=lambda: 2000.0, window_every_s=0)
    h, _ = health(store)
    store.record(A.key, Sample("server"))
    h.attempt_finished(RequestRecord("r", "chat", "/x"), AttemptRecord(A, 1, outcome="ok", ttft_s=0.2))
    est = store.snapshot()[A.key].est
    assert est is not None and est.failure.value == 1.0  # the recorder's own sample moves it, not Health
