"""Breaker and retry-budget state machines, on an injected clock (no sleeping, no timing)."""

from __future__ import annotations

import pytest

from gateway.policy.model import BreakerConfig
from gateway.resilience.breaker import Breakers, hang_gap_s
from gateway.resilience.budget import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**cfg: float) -> tuple[Breakers, Clock]:
    clock = Clock()
    return Breakers(BreakerConfig(**cfg), clock), clock  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_trials_after_cooldown() -> None:
    b, clock = make(consecutive_failures=3, cooldown_s=5, slow_start_s=0)
    for _ in range(2):
        assert b.failure("k") is False
    assert b.failure("k") is True
    assert b.peek("k") == ("open", 5.0)
    assert b.admit("k") is False
    clock.t += 5
    assert b.peek("k")[0] == "half_open"
    assert b.admit("k") is True  # the one trial
    assert b.admit("k") is False  # no second trial while one is in flight
    assert b.peek("k")[0] == "open"
    b.success("k")
    assert b.peek("k")[0] == "closed" and b.admit("k")


def test_failed_trial_reopens_with_doubled_cooldown_capped() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=2, max_cooldown_s=5)
    b.failure("k")
    clock.t += 2
    assert b.admit("k")
    assert b.failure("k") is True
    assert b.peek("k") == ("open", 4.0)
    clock.t += 4
    assert b.admit("k")
    b.failure("k")
    assert b.peek("k") == ("open", 5.0)


def test_error_rate_trips_only_with_enough_requests() -> None:
    b, clock = make(consecutive_failures=100, error_rate=0.5, min_requests=10, window_s=10)
    for _ in range(4):
        b.success("k")
        b.failure("k")
    assert b.peek("k")[0] == "closed"  # 8 requests: below min_requests
    b.success("k")
    assert b.failure("k") is True  # 10 requests, 50% failed


def test_old_outcomes_leave_the_window() -> None:
    b, clock = make(consecutive_failures=100, error_rate=0.5, min_requests=4, window_s=5)
    for _ in range(3):
        b.failure("k")
        b.success("k")  # resets the consecutive count, keeps the window
    clock.t += 6
    assert b.failure("k") is False  # the old failures no longer count


def test_slow_start_ramps_weight() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=1, slow_start_s=10)
    b.failure("k")
    clock.t += 1
    b.admit("k")
    b.success("k")
    assert b.weight("k") == 0.1
    clock.t += 5
    assert 0.49 < b.weight("k") < 0.51
    clock.t += 5
    assert b.weight("k") == 1.0
    assert b.weight("never-seen") == 1.0


def test_release_frees_a_trial_and_force_open() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=1)
    b.failure("k")
    clock.t += 1
    assert b.admit("k") and not b.admit("k")
    b.release("k")
    assert b.admit("k")
    b.force_open("other", 30)
    assert b.peek("other") == ("open", 30.0)


def test_retry_budget() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_retries=2, window_s=10, clock=clock)
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()  # the floor is spent, no requests yet
    for _ in range(20):
        budget.note_request()
    assert budget.try_spend() and budget.try_spend()  # 20% of 20 = 4
    assert not budget.try_spend()
    clock.t += 11
    assert budget.try_spend()  # the window moved on


def test_fast_failures_retrial_every_fast_cooldown_without_doubling() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=5, fast_cooldown_s=1, fast_ramp_s=1, slow_start_s=10)
    assert b.failure("k", fast=True) is True
    assert b.peek("k") == ("open", 1.0)
    for _ in range(3):  # each failed trial: open again for 1 s, not 2, 4, 8
        clock.t += 1
        assert b.admit("k")
        assert b.failure("k", fast=True)
        assert b.peek("k") == ("open", 1.0)
    clock.t += 1
    assert b.admit("k")
    b.success("k")
    assert b.weight("k") == 0.1  # slow start, over fast_cooldown_s rather than slow_start_s
    clock.t += 0.5
    assert b.weight("k") == 0.5
    clock.t += 0.5
    assert b.weight("k") == 1.0


@pytest.mark.parametrize(
    ("after_s", "weight"),
    [
        (0.0, 0.1),  # the floor: a tenth of its traffic at once
        (0.125, 0.5),
        (0.225, 0.9),
        (0.25, 1.0),  # back to its full share one trial interval later
        (5.0, 1.0),
    ],
)
def test_by_default_a_fast_failure_is_retrialled_every_half_second_and_ramps_back_over_a_quarter(
    after_s: float, weight: float
) -> None:
    """A 503 in milliseconds costs a trial next to nothing: about twice a second (a shared opening lasts
    that long, so other replicas see it through the store); the ramp lasts `fast_ramp_s` (a relapse trips
    it again and is re-trialled at that cadence): each tenth of a second of ramp is traffic the backend
    should have (route6: 0.5 -> 0.25 s, ~12 requests fewer kept off a recovered backend at 100 req/s)."""
    b, clock = make(consecutive_failures=1)
    assert b.failure("k", fast=True)
    assert b.peek("k") == ("open", 0.5)
    clock.t += 0.5
    assert b.admit("k")
    b.success("k")
    clock.t += after_s
    assert b.weight("k") == pytest.approx(weight)


def test_a_hang_after_fast_failures_starts_the_doubling_afresh() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=2, max_cooldown_s=60, fast_cooldown_s=1)
    b.failure("k", fast=True)
    clock.t += 1
    b.admit("k")
    assert b.failure("k")  # a timeout: slow
    assert b.peek("k") == ("open", 2.0)
    clock.t += 2
    b.admit("k")
    b.failure("k")
    assert b.peek("k") == ("open", 4.0)


@pytest.mark.parametrize(
    ("down_s", "gap_s"),
    [
        (0.0, 1.0),  # floor: hang_trial_s
        (2.0, 1.0),
        (4.0, 1.0),
        (8.0, 2.0),  # a quarter of the outage's age
        (40.0, 10.0),
        (1000.0, 60.0),  # capped at max_cooldown_s
    ],
)
def test_hang_gap_grows_with_the_outage(down_s: float, gap_s: float) -> None:
    cfg = BreakerConfig(hang_trial_s=1, hang_trial_share=0.25, max_cooldown_s=60)
    assert hang_gap_s(cfg, down_s) == gap_s


def test_a_hung_backend_is_retrialled_at_the_hang_cadence_and_back_off_exponentially() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=5, hang_trial_s=1, hang_trial_share=0.25)
    assert b.failure("k", hang_s=2.0) is True  # the outage began 2 s ago, when the attempt was sent
    assert b.hung("k")
    assert b.peek("k") == ("half_open", 0.0)  # a gap (1 s) after that attempt was sent: already over
    starts = []
    for _ in range(12):
        clock.t += b.peek("k")[1]
        starts.append(clock.t)
        assert b.admit("k")  # the trial, one request (a short deadline: Health.trial_deadline_s)
        clock.t += 1.0  # ...which times out after a second
        assert b.failure("k", hang_s=1.0) is True
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    # A gap runs from the trial's start, so its own deadline is part of it: one trial a second early on
    # (the deadline and the 1 s floor overlap; they used to add up to 2 s), a recovery found quickly...
    assert gaps[:2] == [1.0, 1.0]
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:], strict=False))
    # ...then each gap is a quarter of the outage's age at the last failed trial: x1.25 per trial.
    assert gaps[-1] == pytest.approx(0.25 * (starts[-2] + 1.0 - 998.0))
    assert gaps[-1] / gaps[-4] > 1.5
    clock.t += b.peek("k")[1]
    assert b.admit("k")
    b.success("k", prompt=True)
    assert b.peek("k")[0] == "closed" and not b.hung("k")
    assert b.failure("k", hang_s=0.25) is True  # a new outage starts its cadence afresh
    assert b.peek("k") == ("open", 0.75)


def test_a_slow_failure_that_is_no_hang_keeps_the_doubling_cooldown() -> None:
    b, clock = make(consecutive_failures=1, cooldown_s=5, hang_trial_s=1)
    assert b.failure("k") is True
    assert b.peek("k") == ("open", 5.0) and not b.hung("k")
    clock.t += 5
    assert b.admit("k")
    b.failure("k")
    assert b.peek("k") == ("open", 10.0)


def test_a_hung_backends_next_trial_does_not_wait_for_the_one_still_out() -> None:
    """A trial sent into a hang stays hung however soon the backend recovers: the next goes a hang gap after
    it; the older one's timeout then says nothing the newer cannot, and the newer decides."""
    b, clock = make(consecutive_failures=1, hang_trial_s=0.5, hang_trial_share=0.15, max_cooldown_s=60)
    assert b.failure("k", hang_s=4.0) is True  # the outage began 4 s ago: gap 0.6 s, already over
    assert b.admit("k")  # trial 1 (its deadline is ~1 s)
    clock.t += 0.3
    assert b.peek("k") == ("open", 0.0) and not b.admit("k")  # under way, the gap not over
    clock.t += 0.45  # 0.75 s: past the gap (0.15 x 4.75 s = 0.71 s), trial 1 still out
    assert b.peek("k") == ("half_open", 0.0)
    assert b.admit("k")  # trial 2
    clock.t += 0.3
    assert b.failure("k", hang_s=1.0) is False  # trial 1 times out: sent before trial 2, which decides
    assert b.peek("k") == ("open", 0.0)  # still half-open, trial 2 out
    b.success("k")  # trial 2 answers: the backend is back
    assert b.peek("k")[0] == "closed"


def test_without_a_hang_one_trial_at_a_time() -> None:
    b, clock = make(consecutive_failures=1, fast_cooldown_s=0.5)
    assert b.failure("k", fast=True) is True
    clock.t += 0.5
    assert b.admit("k")
    clock.t += 30
    assert not b.admit("k")  # a trial that never ends (a stream trial still going) holds the slot
