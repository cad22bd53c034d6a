"""The scorer on table-driven cases: objectives, ties, missing priors, context windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.policy.model import Objective, Weights
from gateway.routing.scoring import Constraints, Estimate, rank
from gateway.telemetry import Headroom, Stats
from gateway.telemetry.estimators import Estimates
from tests.unit.targets import target

BASE = target(backend="", ttft_ms=100, tokens_per_s=100)
CHEAP_SLOW = replace(
    BASE,
    backend="cheap",
    input_price=0.1,
    output_price=0.2,
    ttft_ms=800,
    tokens_per_s=40,
    hardware="aws-inferentia2",
)
FAST_PRICEY = replace(
    BASE, backend="fast", input_price=2.0, output_price=4.0, ttft_ms=50, tokens_per_s=500, hardware="groq-lpu"
)
MIDDLE = replace(
    BASE,
    backend="mid",
    input_price=0.6,
    output_price=0.8,
    ttft_ms=200,
    tokens_per_s=120,
    hardware="google-tpu-v5e",
)
EST = Estimate(input_tokens=1000, output_tokens=200)


@pytest.mark.parametrize(
    ("objective", "order"),
    [
        ("cheapest", ["cheap", "mid", "fast"]),
        ("fastest", ["fast", "mid", "cheap"]),
        ("greenest", ["cheap", "mid", "fast"]),
        ("balanced", ["mid", "cheap", "fast"]),
    ],
)
def test_objectives(objective: Objective, order: list[str]) -> None:
    ranked, dropped = rank([FAST_PRICEY, CHEAP_SLOW, MIDDLE], objective, EST)
    assert [s.target.backend for s in ranked] == order
    assert dropped == []


def test_ties_keep_policy_order() -> None:
    a, b = replace(BASE, backend="a"), replace(BASE, backend="b")
    assert [s.target.backend for s in rank([b, a], "cheapest", EST)[0]] == ["b", "a"]


def test_unmeasured_backend_is_tried_once_before_the_known_ones() -> None:
    # No declared speed and no telemetry: predicted just ahead of the best known, so it gets measured.
    unknown = replace(BASE, backend="unknown", ttft_ms=None, tokens_per_s=None)
    ranked, _ = rank([MIDDLE, unknown], "fastest", EST)
    assert [s.target.backend for s in ranked] == ["unknown", "mid"]
    assert ranked[0].latency_ms < ranked[1].latency_ms


def test_all_unmeasured_fall_back_to_priors_and_policy_order() -> None:
    a = replace(BASE, backend="a", ttft_ms=None, tokens_per_s=None)
    b = replace(BASE, backend="b", ttft_ms=None, tokens_per_s=None)
    assert [s.target.backend for s in rank([a, b], "fastest", EST)[0]] == ["a", "b"]


def test_context_window_drops_with_reason() -> None:
    small = replace(CHEAP_SLOW, context_window=500)
    ranked, dropped = rank([small, MIDDLE], "cheapest", EST)
    assert [s.target.backend for s in ranked] == ["mid"]
    assert dropped[0].backend == "cheap" and "context window 500" in dropped[0].reason


def test_empty_input() -> None:
    assert rank([], "fastest", EST) == ([], [])


def test_free_backend_does_not_break_balanced() -> None:
    free = replace(MIDDLE, backend="free", input_price=0, output_price=0)
    ranked, _ = rank([FAST_PRICEY, free], "balanced", EST)
    assert ranked[0].target.backend == "free"
    assert all(s.score < 1e6 for s in ranked)


def test_predictions() -> None:
    (s,), _ = rank([MIDDLE], "cheapest", EST)
    assert s.latency_ms == pytest.approx(200 + 200 / 120 * 1000)
    assert s.cost_usd == pytest.approx((1000 * 0.6 + 200 * 0.8) / 1e6)
    assert s.energy_j == pytest.approx(0.35 * (200 + 100))


def stats(**kw: object) -> Stats:
    base: dict[str, object] = dict(
        samples=10.0, outcomes={}, failure_rate=0.0, rate_limited_rate=0.0, ttft_s=None, ttft_p50_s=None,
        ttft_p95_s=None, ttft_samples=0.0, tokens_per_s=None, latency_s=None, in_flight=0, local_in_flight=0,
        concurrency_limit=None, headroom=None, headroom_at=None, retry_at=None,
    )  # fmt: skip
    base.update(kw)
    return Stats(**base)  # type: ignore[arg-type]


def test_live_ttft_replaces_declared_priors() -> None:
    # FAST_PRICEY declares 50 ms but measures 2 s; MIDDLE declares 200 ms and has no data.
    live = {("fast", "m"): stats(ttft_p50_s=2.0, ttft_samples=5.0, tokens_per_s=500.0)}
    ranked, _ = rank([FAST_PRICEY, MIDDLE], "fastest", EST, telemetry=live)
    assert [s.target.backend for s in ranked] == ["mid", "fast"]
    assert ranked[1].fresh and ranked[1].ttft_ms == 2000.0


def test_old_telemetry_still_beats_declared_priors() -> None:
    # Decayed to almost nothing, the measurement still says 2 s: it is not replaced by the declared 50 ms.
    live = {("fast", "m"): stats(samples=0.1, ttft_p50_s=2.0, ttft_samples=0.1)}
    ranked, _ = rank([FAST_PRICEY, MIDDLE], "fastest", EST, telemetry=live)
    assert [s.target.backend for s in ranked] == ["mid", "fast"]
    assert not ranked[1].fresh  # stale: a candidate for exploration


def test_exhausted_headroom_drops_and_low_headroom_demotes() -> None:
    now = 1000.0
    empty = Headroom(requests_remaining=0, requests_limit=100, requests_reset_s=30.0)
    low = Headroom(requests_remaining=5, requests_limit=100, requests_reset_s=30.0)
    live = {
        ("cheap", "m"): stats(headroom=empty, headroom_at=now),
        ("mid", "m"): stats(headroom=low, headroom_at=now),
    }
    ranked, dropped = rank([CHEAP_SLOW, MIDDLE, FAST_PRICEY], "cheapest", EST, telemetry=live, now=now)
    assert [d.backend for d in dropped] == ["cheap"] and "rate limit" in dropped[0].reason
    assert [s.target.backend for s in ranked] == ["fast", "mid"]  # mid is cheaper but nearly out
    assert ranked[1].demoted is not None
    # After the reset the projection refills it.
    ranked, dropped = rank([CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, now=now + 31)
    assert dropped == [] and ranked[0].target.backend == "cheap"


def test_failures_weigh_on_the_score() -> None:
    a = replace(MIDDLE, backend="a")
    b = replace(MIDDLE, backend="b", input_price=0.65)  # slightly pricier, but healthy
    live = {("a", "m"): stats(failure_rate=0.5)}
    ranked, _ = rank([a, b], "cheapest", EST, telemetry=live)
    assert [s.target.backend for s in ranked] == ["b", "a"]


def test_constraints_drop_with_reasons() -> None:
    c = Constraints(max_ttft_ms=150, hardware_deny=frozenset({"groq-lpu"}), max_input_price=0.5)
    ranked, dropped = rank([FAST_PRICEY, CHEAP_SLOW, MIDDLE], "cheapest", EST, constraints=c)
    reasons = {d.backend: d.reason for d in dropped}
    assert ranked == []
    assert (
        "denied" in reasons["fast"] and "max_ttft_ms" in reasons["cheap"] and "input price" in reasons["mid"]
    )


def test_equal_scores_break_ties_on_the_other_dimension_then_policy_order() -> None:
    slow = replace(MIDDLE, backend="slow", ttft_ms=900)
    twin = replace(MIDDLE, backend="twin")
    pricey = replace(MIDDLE, backend="pricey", input_price=0.9)  # as fast: ties on latency, loses on cost
    # cheapest: same cost, so the faster first; the exact twins keep the policy order.
    ranked, _ = rank([slow, MIDDLE, twin], "cheapest", EST)
    assert [s.target.backend for s in ranked] == ["mid", "twin", "slow"]
    ranked, _ = rank([pricey, MIDDLE], "fastest", EST)
    assert [s.target.backend for s in ranked] == ["mid", "pricey"]


def test_demoted_rank_after_every_healthy_candidate_whatever_their_score() -> None:
    now = 1000.0
    low = Headroom(requests_remaining=1, requests_limit=100, requests_reset_s=30.0)
    live = {("fast", "m"): stats(headroom=low, headroom_at=now)}
    for objective in ("cheapest", "fastest", "greenest", "balanced"):
        ranked, _ = rank([FAST_PRICEY, CHEAP_SLOW, MIDDLE], objective, EST, telemetry=live, now=now)
        assert ranked[-1].target.backend == "fast" and ranked[-1].demoted is not None


def test_balanced_weighs_each_dimension_against_the_worst_candidate() -> None:
    ranked, _ = rank([CHEAP_SLOW, FAST_PRICEY], "balanced", EST, weights=Weights(cost=1.0, latency=1.0))
    by_name = {s.target.backend: s for s in ranked}
    worst_cost = max(s.cost_usd for s in ranked)
    worst_latency = max(s.latency_ms for s in ranked)
    for s in ranked:
        assert s.score == pytest.approx(s.cost_usd / worst_cost + s.latency_ms / worst_latency)
    assert by_name["fast"].score == pytest.approx(1.0 + by_name["fast"].latency_ms / worst_latency)


# --- issue 14: recency-weighted estimates, forgiving with age, stuck attempts ---------------------------

NOW = 1_000_000.0


def estimates(
    ttft: list[tuple[float, float]] | None = None, fail: list[tuple[float, float]] | None = None
) -> Estimates:
    """Estimates fed (seconds before NOW, value) pairs, oldest first."""
    e = Estimates.empty()
    for ago, x in ttft or []:
        e.ttft.add(x, NOW - ago)
    for ago, x in fail or []:
        e.failure.add(x, NOW - ago)
    return e


def test_a_step_above_max_ttft_drops_the_backend_at_the_next_request() -> None:
    """Issue 14's 'slow to notice': one slow sample after many good ones is enough."""
    steady = [(10 - i * 0.01, 0.25) for i in range(900)]
    e = estimates(steady + [(0.0, 0.9)])
    live = {("cheap", "m"): stats(ttft_p50_s=0.25, ttft_samples=900.0, est=e)}
    c = Constraints(max_ttft_ms=500)
    ranked, dropped = rank([CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, constraints=c, now=NOW)
    assert [s.target.backend for s in ranked] == ["mid"]
    assert dropped[0].backend == "cheap" and "900 ms" in dropped[0].reason


@pytest.mark.parametrize(
    ("forgive_s", "age_s", "leads", "forgiven"),
    [
        (None, 30.0, "mid", False),  # exploration off: the peak stands however old
        (1.0, 0.0, "mid", False),  # just measured slow: no forgiving yet
        (1.0, 3.0, "fast", True),  # 3 half-lives later: decayed toward its last-good 50 ms, it leads
    ],
)
def test_an_old_peak_is_forgiven_with_age(
    forgive_s: float | None, age_s: float, leads: str, forgiven: bool
) -> None:
    """The blocker of the earlier attempt: a backend measured slow once and then never tried is forgiven."""
    e = estimates([(age_s + 1, 0.05), (age_s, 2.0)])
    live = {("fast", "m"): stats(est=e)}
    ranked, _ = rank([FAST_PRICEY, MIDDLE], "fastest", EST, telemetry=live, now=NOW, forgive_s=forgive_s)
    assert ranked[0].target.backend == leads
    assert ranked[0].forgiven is forgiven and ranked[0].forgiven_lead is forgiven  # leads only thanks to age
    fast = next(s for s in ranked if s.target.backend == "fast")
    assert fast.age_s == pytest.approx(age_s)


def test_nothing_is_forgiven_while_an_attempt_waits_on_it() -> None:
    e = estimates([(4.0, 0.05), (3.0, 2.0)])
    live = {("fast", "m"): stats(est=e)}
    waiting = {("fast", "m"): 10.0}
    ranked, _ = rank(
        [FAST_PRICEY, MIDDLE], "fastest", EST, telemetry=live, now=NOW, forgive_s=1.0, waiting_ms=waiting
    )
    assert ranked[0].target.backend == "mid"  # the probe is out: others serve until it answers


def test_failures_weigh_recency_weighted_and_are_forgiven_with_age() -> None:
    a = replace(MIDDLE, backend="a")
    b = replace(MIDDLE, backend="b", input_price=0.9)  # pricier: a wins once its failures are forgiven
    e = estimates(fail=[(3.0 - i * 0.01, 1.0) for i in range(100)])
    live = {("a", "m"): stats(est=e)}
    ranked, _ = rank([a, b], "cheapest", EST, telemetry=live, now=NOW)
    assert [s.target.backend for s in ranked] == ["b", "a"]
    ranked, _ = rank([a, b], "cheapest", EST, telemetry=live, now=NOW, forgive_s=0.5)
    assert [s.target.backend for s in ranked] == ["a", "b"] and ranked[0].forgiven_lead


def test_a_leader_that_would_lead_anyway_is_no_probe() -> None:
    """Under `cheapest` a decayed TTFT peak changes nothing: the cheap backend leads on price either way."""
    e = estimates([(4.0, 0.25), (3.0, 0.4)])
    live = {("cheap", "m"): stats(est=e)}
    ranked, _ = rank([CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, now=NOW, forgive_s=1.0)
    assert ranked[0].target.backend == "cheap" and ranked[0].forgiven and not ranked[0].forgiven_lead


def test_a_backend_over_max_ttft_is_retried_once_its_forgiven_estimate_meets_it() -> None:
    e = estimates([(4.0, 0.25), (3.0, 0.9)])
    live = {("cheap", "m"): stats(est=e)}
    c = Constraints(max_ttft_ms=500)
    ranked, dropped = rank([CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, constraints=c, now=NOW)
    assert [s.target.backend for s in ranked] == ["mid"] and dropped[0].backend == "cheap"
    ranked, dropped = rank(
        [CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, constraints=c, now=NOW, forgive_s=1.0
    )
    assert ranked[0].target.backend == "cheap" and ranked[0].forgiven_lead and dropped == []


@pytest.mark.parametrize("objective", ["cheapest", "fastest", "greenest", "balanced"])
def test_a_stuck_backend_is_demoted_under_every_objective(objective: Objective) -> None:
    stuck = {("cheap", "m"): 4000.0}
    ranked, _ = rank([CHEAP_SLOW, FAST_PRICEY, MIDDLE], objective, EST, stuck_ms=stuck)
    assert ranked[-1].target.backend == "cheap" and "stuck" in (ranked[-1].demoted or "")


def test_a_backend_stuck_on_another_replica_is_demoted_here() -> None:
    live = {("cheap", "m"): stats(stuck_since=NOW - 3.0)}
    ranked, _ = rank([CHEAP_SLOW, MIDDLE], "cheapest", EST, telemetry=live, now=NOW)
    assert ranked[-1].target.backend == "cheap"
    assert ranked[-1].demoted == "stuck: another replica's attempt has waited 3.0s"


@pytest.mark.parametrize(
    ("samples", "censored_s", "expected_ttft_ms", "well_ttft_ms"),
    [
        ([(2.0, 0.05)], None, 50.0, 50.0),  # well all along: the same figure
        ([(3.0, 0.05)], 2.0, 2000.0, 50.0),  # a hang's timed-out waits raised the peak, not the last-good
        ([(3.0, 0.3), (0.0, 0.1)], None, 110.0, 100.0),  # faster now: the last-good drops at once
    ],
)
def test_what_an_attempt_takes_once_well_comes_from_the_last_good_figure(
    samples: list[tuple[float, float]], censored_s: float | None, expected_ttft_ms: float, well_ttft_ms: float
) -> None:
    """A trial of a backend out for a hang gets a deadline from what it takes when well (`well_*`)."""
    e = estimates(samples)
    if censored_s is not None:
        e.ttft.censor(censored_s, NOW)
    live = {("fast", "m"): stats(est=e)}
    ranked, _ = rank([FAST_PRICEY], "fastest", EST, telemetry=live, now=NOW)
    assert ranked[0].expected_ttft_ms == pytest.approx(expected_ttft_ms, rel=0.01)
    assert ranked[0].well_ttft_ms == pytest.approx(well_ttft_ms, rel=0.01)
    assert ranked[0].well_ms < ranked[0].expected_ms or censored_s is None
