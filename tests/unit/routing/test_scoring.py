"""The scorer on table-driven cases: objectives, ties, missing priors, context windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.policy.model import Objective
from gateway.providers.base import Target
from gateway.routing.scoring import Estimate, rank

BASE = Target(
    backend="",
    provider="openai",
    base_url="http://x",
    model="m",
    model_id="m",
    api_key=None,
    headers={},
    hardware=None,
    input_price=1.0,
    output_price=1.0,
    context_window=None,
    ttft_ms=100,
    tokens_per_s=100,
)
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


def test_missing_speed_ranks_after_declared() -> None:
    unknown = replace(BASE, backend="unknown", ttft_ms=None, tokens_per_s=None)
    ranked, _ = rank([unknown, MIDDLE], "fastest", EST)
    assert [s.target.backend for s in ranked] == ["mid", "unknown"]


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
