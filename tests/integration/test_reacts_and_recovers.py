"""Issue 14 over real sockets: a hanging backend costs one per-try deadline and is demoted while its attempts
are stuck, on every replica through a real Redis; a backend failing fast is re-trialled within seconds; a
trial's status line brings a backend back when its failures had none."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]


def policy_for(sims: SimThread, **route: Any) -> dict[str, Any]:
    policy = default_policy(sims)
    policy["routes"][0].update(route)
    return policy


def chat(gw: GatewayThread, **extra: Any) -> Any:
    return gw.client().chat.completions.with_raw_response.create(
        model="chat", messages=MSG, max_tokens=2, **extra
    )


def explain(gw: GatewayThread) -> dict[str, Any]:
    body = {"model": "chat", "messages": MSG, "max_tokens": 2}
    r = httpx.post(gw.base_url + "/route/explain", json=body, timeout=5)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_a_hang_costs_one_per_try_deadline_and_the_failover_fits(sims: SimThread, tmp_path: Path) -> None:
    """cheap accepts and never answers: a non-streaming request fails over within total_s, not after it."""
    sims.control("cheap", hang=True)
    timeouts = {"connect_s": 1, "first_token_s": 0.5, "idle_s": 2, "total_s": 6}
    with GatewayThread(policy_for(sims, timeouts=timeouts), tmp_path, reload_policies=False) as gw:
        began = time.monotonic()
        raw = chat(gw)  # cheap's try ends at 4 x its predicted 0.44 s (400 ms declared, 2 tokens at ~50/s)
        assert time.monotonic() - began < 4  # well inside total_s: room for the failover
        assert (raw.headers["x-routeway-backend"], raw.headers["x-routeway-attempts"]) == ("fast", "2")
        assert raw.parse().choices
        cheap = next(c for c in explain(gw)["candidates"] if c["backend"] == "cheap")
        assert cheap["ttft_ms"] is not None and cheap["ttft_ms"] >= 1000  # censored: at least its wait


def test_stuck_attempts_demote_the_backend_on_every_replica(
    sims: SimThread, tmp_path: Path, redis_url: str
) -> None:
    sims.control("cheap", hang=True)
    timeouts = {"connect_s": 1, "first_token_s": 4, "idle_s": 4, "total_s": 8}
    policy = policy_for(sims, timeouts=timeouts)
    shared = {"redis_url": redis_url, "telemetry_redis_prefix": "rw-stuck-test", "reload_policies": False}
    with (
        GatewayThread(policy, tmp_path / "a", **shared) as a,
        GatewayThread(policy, tmp_path / "b", **shared) as b,
    ):
        assert explain(b)["candidates"][0]["backend"] == "cheap"
        answers: list[str] = []
        waiting = threading.Thread(target=lambda: answers.append(chat(a).headers["x-routeway-backend"]))
        waiting.start()  # stuck on cheap for its per-try deadline (4 s), then fails over to fast

        def b_demotes_cheap() -> bool:
            doc = explain(b)
            cheap = next((c for c in doc["candidates"] if c["backend"] == "cheap"), None)
            return cheap is not None and "another replica" in (cheap["demoted"] or "")

        deadline = time.monotonic() + 3.5  # stuck after max(1 s, 4 x ~0.44 s), plus a flush or two
        while not b_demotes_cheap():
            assert time.monotonic() < deadline, explain(b)
            time.sleep(0.05)
        assert explain(b)["candidates"][0]["backend"] == "fast"  # under `cheapest`, before any timeout
        assert chat(b).headers["x-routeway-backend"] == "fast"
        waiting.join(timeout=10)
        assert answers == ["fast"]


def test_a_fast_failing_backend_is_retrialled_within_seconds(sims: SimThread, tmp_path: Path) -> None:
    policy = policy_for(sims, probe_interval_s=10)
    policy["resilience"] = {"breaker": {"consecutive_failures": 2, "cooldown_s": 30, "fast_cooldown_s": 0.5}}
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        sims.control("cheap", error_rate=1.0, error_status=503)
        for _ in range(4):  # 503s in milliseconds: the breaker opens on a fast failure
            assert chat(gw).headers["x-routeway-backend"] == "fast"
        sims.control("cheap", error_rate=0.0)
        began = time.monotonic()
        seen: list[str] = []
        while not (len(seen) >= 5 and seen[-5:] == ["cheap"] * 5):
            assert time.monotonic() - began < 5, seen[-20:]  # not the 30 s cooldown of a slow failure
            seen.append(chat(gw).headers["x-routeway-backend"])
            time.sleep(0.02)


def _stream_backend(gw: GatewayThread, into: list[str]) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="chat", messages=MSG, max_tokens=2, stream=True
    )
    into.append(raw.headers["x-routeway-backend"])
    for _ in raw.parse():
        pass


def _goes_to_cheap_during_its_trial(gw: GatewayThread) -> None:
    """Streams one at a time until one is cheap's trial (trials are paced like probes), then a request sent
    0.5 s into it, well before its first token, must go to cheap, and the trial must be cheap's."""
    began = time.monotonic()
    while True:
        assert time.monotonic() - began < 8
        trial: list[str] = []
        waiting = threading.Thread(target=_stream_backend, args=(gw, trial))
        waiting.start()
        time.sleep(0.5)
        if waiting.is_alive():  # cheap's trial: its first token is ~1 s away; fast's comes at once
            break
        assert trial == ["fast"]
    sent = time.monotonic()
    assert chat(gw).headers["x-routeway-backend"] == "cheap"  # sent 0.5 s into the trial
    waiting.join(timeout=10)
    assert trial == ["cheap"]
    assert time.monotonic() - sent < 3  # one cheap answer, not a wait for a breaker first


def test_a_fast_failed_backend_is_back_at_its_trials_status_line(sims: SimThread, tmp_path: Path) -> None:
    """A stream trial of a backend out for 503s closes its breaker when its 200 arrives: the next request
    goes to it while the trial still waits for its first token (1.5 s here), not a TTFT later."""
    policy = policy_for(sims, probe_interval_s=10)
    breaker = {"consecutive_failures": 2, "cooldown_s": 30, "fast_cooldown_s": 0.5, "fast_ramp_s": 0.01}
    policy["resilience"] = {"breaker": breaker}
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        sims.control("cheap", error_rate=1.0, error_status=503)
        for _ in range(4):  # 503s in milliseconds: the breaker opens on a fast failure
            assert chat(gw).headers["x-routeway-backend"] == "fast"
        sims.control("cheap", error_rate=0.0, ttft_ms=1500)
        _goes_to_cheap_during_its_trial(gw)


def test_a_backend_that_hung_before_its_headers_is_back_at_its_trials_status_line(
    sims: SimThread, tmp_path: Path
) -> None:
    """The same after a hang that never sent headers: the trial's 200 is what the hang lacked."""
    timeouts = {"connect_s": 1, "first_token_s": 2, "idle_s": 2, "total_s": 6}
    policy = policy_for(sims, probe_interval_s=10, timeouts=timeouts)
    policy["resilience"] = {"breaker": {"consecutive_failures": 1, "hang_trial_s": 0.5, "fast_ramp_s": 0.01}}
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        sims.control("cheap", hang=True)
        raw = chat(gw)  # cheap's try times out at its per-try deadline, then fast answers
        assert (raw.headers["x-routeway-backend"], raw.headers["x-routeway-attempts"]) == ("fast", "2")
        # Slower than declared (400 ms) yet within the trial's patience (3x), so the trial itself passes.
        sims.control("cheap", hang=False, ttft_ms=900)
        _goes_to_cheap_during_its_trial(gw)
