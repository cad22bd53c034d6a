"""Breakers, retry-after cooldowns, the retry budget and context-length failover, through the real gateway."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]


def policy_with(sims: SimThread, **resilience: Any) -> dict[str, Any]:
    policy = default_policy(sims)
    policy["resilience"] = resilience
    return policy


def cheap_arrivals(sims: SimThread) -> list[dict[str, Any]]:
    return [a for a in sims.stats("cheap")["arrivals"] if a["path"].endswith("/chat/completions")]


def test_dead_backend_breaker_opens_then_only_trials(sims: SimThread, tmp_path: Path) -> None:
    policy = policy_with(sims, breaker={"cooldown_s": 0.25, "max_cooldown_s": 0.25, "slow_start_s": 0})
    sims.control("cheap", error_rate=1.0, error_status=503)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        client = gw.client()
        for _ in range(300):
            resp = client.chat.completions.create(model="chat", messages=MSG, max_tokens=1)  # type: ignore[arg-type]
            assert resp.choices
    arrivals = cheap_arrivals(sims)
    assert len(arrivals) >= 5
    # The first 5 failures open the breaker; after that, trials only: one at a time, a cool-down apart.
    trials = arrivals[5:]
    gaps = [b["t"] - a["t"] for a, b in zip(arrivals[4:], trials, strict=False)]
    assert all(g >= 0.2 for g in gaps), gaps
    assert len(trials) <= 300 * 0.1


def test_flaky_backend_attempts_stay_within_budget(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", error_rate=0.1, error_status=503)
    n = 200
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        for _ in range(n):
            assert client.chat.completions.create(model="chat", messages=MSG, max_tokens=1).choices  # type: ignore[arg-type]
    upstream = sims.stats("cheap")["total_requests"] + sims.stats("fast")["total_requests"]
    assert upstream <= 1.2 * n


def test_retry_after_is_honoured_across_requests(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", rate_limit_rate=0.3, retry_after_s=2)
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert client.chat.completions.create(model="chat", messages=MSG, max_tokens=1).choices  # type: ignore[arg-type]
            time.sleep(0.01)
    arrivals = cheap_arrivals(sims)
    limited = [a for a in arrivals if a["status"] == 429]
    assert limited, "the 30% 429 rate never fired"
    for hit in limited:
        too_soon = [a for a in arrivals if hit["t"] < a["t"] < hit["t"] + 1.95]
        assert not too_soon, f"request {too_soon[0]['t'] - hit['t']:.3f}s after a 429 with retry-after 2"


def test_every_backend_rate_limited_answers_429_fast(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", rate_limit_rate=1.0, retry_after_s=3)
    sims.control("fast", rate_limit_rate=1.0, retry_after_s=3)
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
            assert time.monotonic() - started < 0.1
            assert 1 <= int(info.value.response.headers["retry-after"]) <= 3
    # The later requests were answered from the cooldowns, without another upstream call.
    assert sims.stats("cheap")["total_requests"] == 1 and sims.stats("fast")["total_requests"] == 1


def test_retry_budget_caps_load_during_an_outage(sims: SimThread, tmp_path: Path) -> None:
    never_open = {"consecutive_failures": 10_000, "min_requests": 10_000}
    policy = policy_with(sims, breaker=never_open, retry_budget={"ratio": 0.2, "min_retries": 5})
    sims.control("cheap", error_rate=1.0, error_status=503)
    sims.control("fast", error_rate=1.0, error_status=503)
    n = 100
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        client = gw.client()
        for _ in range(n):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
            assert info.value.status_code == 502
    upstream = sims.stats("cheap")["total_requests"] + sims.stats("fast")["total_requests"]
    assert upstream <= 1.2 * n + 5, upstream


def test_context_length_error_goes_to_larger_window(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    del policy["backends"]["cheap"]["models"]["chat"]["context_window"]  # undeclared: learnt from its 400
    policy["backends"]["cheap"]["models"]["chat"]["context_window"] = 4096
    policy["backends"]["fast"]["models"]["chat"]["context_window"] = 200_000
    long_prompt = [{"role": "user", "content": "word " * 2600}]  # ~3,300 tokens: fits 4,096 until max_tokens
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        raw = gw.client().chat.completions.with_raw_response.create(
            model="chat",
            messages=long_prompt,  # type: ignore[arg-type]
            max_tokens=2000,
        )
        assert raw.headers["x-routeway-backend"] == "fast"
        assert raw.headers["x-routeway-attempts"] == "2"
    assert sims.stats("cheap")["status_counts"].get("400") == 1


def hedged_policy(sims: SimThread) -> dict[str, Any]:
    policy = default_policy(sims)
    policy["routes"][0]["hedge"] = {"enabled": True, "after_ms": 100}
    return policy


@pytest.mark.parametrize("stream", [False, True])
def test_hedging_uses_the_backup_when_the_first_token_is_late(
    sims: SimThread, tmp_path: Path, stream: bool
) -> None:
    sims.control("cheap", ttft_ms=3000)  # the cheapest backend is first in rank but stuck
    with GatewayThread(hedged_policy(sims), tmp_path, reload_policies=False) as gw:
        started = time.monotonic()
        raw = gw.client().chat.completions.with_raw_response.create(
            model="chat",
            messages=MSG,  # type: ignore[arg-type]
            max_tokens=2,
            stream=stream,
        )
        body = raw.parse()
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in body if c.choices)  # type: ignore[union-attr]
        assert time.monotonic() - started < 1.5
        assert raw.headers["x-routeway-backend"] == "fast"
        assert raw.headers["x-routeway-attempts"] == "2"
        if not stream:
            # Billed at the winner's prices: fast charges 2/4 USD per 1M tokens.
            usage = body.usage  # type: ignore[union-attr]
            expected = (usage.prompt_tokens * 2.0 + usage.completion_tokens * 4.0) / 1e6
            assert abs(float(raw.headers["x-routeway-cost-usd"]) - expected) < 1e-9
    deadline = time.monotonic() + 1.0
    while sims.stats("cheap")["cancelled"] < 1:
        assert time.monotonic() < deadline, "the losing upstream request was not cancelled"
        time.sleep(0.02)


def test_hedging_does_not_fire_when_the_first_answers_in_time(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(hedged_policy(sims), tmp_path, reload_policies=False) as gw:
        for _ in range(5):
            raw = gw.client().chat.completions.with_raw_response.create(
                model="chat", messages=MSG, max_tokens=1
            )  # type: ignore[arg-type]
            assert raw.headers["x-routeway-backend"] == "cheap" and raw.headers["x-routeway-attempts"] == "1"
    assert sims.stats("fast")["total_requests"] == 0
