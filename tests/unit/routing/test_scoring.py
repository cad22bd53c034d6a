"""The scorer on table-driven cases: objectives, ties, missing priors, context windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.policy.model import Objective, Weights
from gateway.routing.scoring import Constraints, Estimate, rank
from gateway.telemetry import Headroom, Stats
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
