"""Shadow traffic through the real gateway (uvicorn, simulated upstreams, the openai SDK): the client's answer
never waits for a shadow, shadows follow their sampled share and daily cap (shared through a real Redis), a
shadow's failure never reaches a client nor opens a breaker, and telemetry shows the shadow backend after."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.runtime import Runtime
from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]


def shadow_policy(sims: SimThread, **shadow: Any) -> dict[str, Any]:
    """`chat` is answered by `cheap` only; `fast` is its shadow. Other models keep the default route."""
    policy = default_policy(sims)
    timeouts = policy["routes"][0]["timeouts"]
    config = {"backends": ["fast"], "sample": 1.0, "max_usd_per_day": 5.0, **shadow}
    chat = {"name": "chat", "match": {"model": "chat"}, "objective": "cheapest", "backends": ["cheap"]}
    policy["routes"].insert(0, {**chat, "timeouts": timeouts, "probe_interval_s": 0, "shadow": config})
    return policy


def runtime(gw: GatewayThread) -> Runtime:
    rt: Runtime = gw.server.config.app.state.runtime
    return rt


def metric(gw: GatewayThread, sample: str, **labels: str) -> float:
    """The sum of one sample's values over the series whose labels include `labels` (0 when absent)."""
    text = httpx.get(gw.root + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def settled(gw: GatewayThread) -> None:
    wait_for(lambda: runtime(gw).shadow.in_flight == 0, "shadows to finish")  # type: ignore[union-attr]


def chat(gw: GatewayThread, stream: bool = False, **extra: Any) -> str:
    """One client request; returns the backend that answered (the whole answer has been read)."""
    client = gw.client()
    if not stream:
        raw = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=MSG,
            max_tokens=4,
            **extra,  # type: ignore[arg-type]
        )
        assert raw.parse().choices[0].message.content
        return raw.headers["x-routeway-backend"]
    with client.chat.completions.with_streaming_response.create(
        model="chat",
        messages=MSG,
        max_tokens=4,
        stream=True,
        **extra,  # type: ignore[arg-type]
    ) as response:
        chunks = list(response.parse())
        assert chunks and any(c.choices and c.choices[0].delta.content for c in chunks)
        return response.headers["x-routeway-backend"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_hanging_shadow_backend_does_not_delay_the_answer(
    sims: SimThread, tmp_path: Path, stream: bool
) -> None:
    sims.control("fast", hang=True)
    with GatewayThread(shadow_policy(sims, timeout_s=60), tmp_path, reload_policies=False) as gw:
        for n in range(1, 4):
            assert chat(gw, stream=stream) == "cheap"  # the whole answer, read to its end
            # ... while the shadow of this very request is still waiting at the hung backend.
            wait_for(lambda n=n: sims.stats("fast")["in_flight"] == n, "the shadow to reach the backend")  # type: ignore[misc]
            assert runtime(gw).shadow.in_flight == n  # type: ignore[union-attr]
            assert metric(gw, "routeway_shadow_requests_total") == 0  # none of them has finished
        assert metric(gw, "routeway_shadow_in_flight") == 3
        assert metric(gw, "routeway_requests_total", route="chat", status="200") == 3


def test_shadow_failures_never_reach_the_client_nor_open_its_breakers(
    sims: SimThread, tmp_path: Path
) -> None:
    sims.control("fast", error_rate=1.0, error_status=500)
    with GatewayThread(shadow_policy(sims), tmp_path, reload_policies=False) as gw:
        for _ in range(10):  # twice the breaker's consecutive failures
            assert chat(gw) == "cheap"
        settled(gw)
        assert metric(gw, "routeway_shadow_requests_total", backend="fast", outcome="server") == 10
        sims.control("fast", error_rate=0.0, reset=True)
        for _ in range(3):
            assert chat(gw, stream=True) == "cheap"
        settled(gw)
        assert (
            metric(gw, "routeway_shadow_requests_total", backend="fast", outcome="connect")
            + metric(gw, "routeway_shadow_requests_total", backend="fast", outcome="protocol")
            == 3
        )
        sims.control("fast", reset=False)
        # Telemetry knows fast failed; its breaker for client traffic is still closed: it serves at once.
        raw = gw.client().chat.completions.with_raw_response.create(
            model="fast-only",
            messages=MSG,
            max_tokens=2,  # type: ignore[arg-type]
        )
        assert raw.headers["x-routeway-backend"] == "fast"
        assert metric(gw, "routeway_upstream_attempts_total", backend="fast") == 1  # shadows not in it


def test_the_sampled_share_follows_the_injected_rng(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(shadow_policy(sims, sample=0.25), tmp_path, reload_policies=False) as gw:
        runtime(gw).shadow.rng = random.Random(7).random  # type: ignore[union-attr]
        requests = 120
        for _ in range(requests):
            chat(gw)
        settled(gw)
        replay = random.Random(7)
        expected = sum(replay.random() < 0.25 for _ in range(requests))
        assert sims.stats("fast")["total_requests"] == expected
        assert 15 <= expected <= 45  # about a quarter: the seed is not a degenerate one
        assert (
            metric(gw, "routeway_shadow_requests_total", route="chat", backend="fast", outcome="ok")
            == expected
        )


def test_the_daily_cap_is_shared_by_replicas_through_redis(
    sims: SimThread, tmp_path: Path, redis_url: str
) -> None:
    # A shadow on fast costs ~(10 prompt + 4 output tokens) at $2/$4 per 1M: ~$0.00004; the cap fits a few.
    cap = 0.0002
    prefix = f"test:shadow:{uuid.uuid4().hex[:8]}"
    settings = {"reload_policies": False, "redis_url": redis_url, "telemetry_redis_prefix": prefix}
    policy = shadow_policy(sims, max_usd_per_day=cap)
    with (
        GatewayThread(policy, tmp_path / "a", **settings) as a,
        GatewayThread(policy, tmp_path / "b", **settings) as b,
    ):
        for _ in range(12):
            chat(a)
            settled(a)
        sent = sims.stats("fast")["total_requests"]
        assert 2 <= sent < 12
        assert metric(a, "routeway_shadow_skipped_total", reason="daily_cap") == 12 - sent
        spent = metric(a, "routeway_shadow_cost_usd_total", backend="fast")
        assert 0 < spent <= cap
        for _ in range(3):  # the other replica finds the day's cap spent
            chat(b)
            settled(b)
        assert sims.stats("fast")["total_requests"] == sent
        assert metric(b, "routeway_shadow_skipped_total", reason="daily_cap") == 3
        explained = httpx.post(
            b.base_url + "/route/explain", json={"model": "chat", "messages": MSG}, timeout=5
        ).json()["shadow"]
        assert explained["backends"] == ["fast"] and explained["max_usd_per_day"] == cap
        assert explained["spent_usd_today"] == pytest.approx(spent, rel=1e-6)


def test_telemetry_learns_the_shadow_backend_and_explain_shows_it(sims: SimThread, tmp_path: Path) -> None:
    sims.control("fast", ttft_ms=40)
    policy = shadow_policy(sims)
    policy["backends"]["fast"]["models"]["fast-only"]["ttft_ms"] = 5000  # a declared figure, far from true
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:

        def fast_figures() -> dict[str, Any]:
            body = {"model": "fast-only", "messages": MSG, "max_tokens": 4}
            doc = httpx.post(gw.base_url + "/route/explain", json=body, timeout=5).json()
            assert doc["shadow"] is None  # that route has none
            found: dict[str, Any] = doc["candidates"][0]
            return found

        before = fast_figures()
        assert before["live_telemetry"] is False and before["ttft_ms"] == 5000
        for _ in range(5):
            chat(gw, stream=True)  # only the shadow reaches fast
        settled(gw)
        after = fast_figures()
        assert after["live_telemetry"] is True
        assert 30 <= after["ttft_ms"] < 5000  # measured on the shadows' streams, not declared
        assert metric(gw, "routeway_shadow_ttft_seconds_count", backend="fast") == 5
        assert metric(gw, "routeway_upstream_attempts_total", backend="fast") == 0
        shadow = httpx.post(
            gw.base_url + "/route/explain", json={"model": "chat", "messages": MSG}, timeout=5
        ).json()["shadow"]
        assert shadow["sample"] == 1.0 and shadow["in_flight"] == 0 and shadow["spent_usd_today"] > 0
