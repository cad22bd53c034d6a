"""Failover before the first byte, and the streaming contract after it, with faults injected upstream."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import GatewayThread, backend, default_policy

MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def gateway(fresh_gateway: GatewayThread) -> GatewayThread:
    """Every test here injects faults: each gets its own gateway, so breakers and cooldowns do not leak."""
    return fresh_gateway


def test_one_backend_503_all_requests_still_succeed(client: openai.OpenAI, sims: SimThread) -> None:
    sims.control("cheap", error_rate=1.0, error_status=503)
    for _ in range(30):
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=2)
        assert raw.headers["x-routeway-backend"] == "fast"
    # Failover on each, until the breaker opens after 5 consecutive failures (default threshold).
    assert sims.stats("cheap")["total_requests"] == 5


def test_connection_refused_fails_over(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    policy["backends"]["cheap"]["base_url"] = dead
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        client = gw.client()
        for _ in range(20):
            raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=2)
            assert raw.headers["x-routeway-backend"] == "fast"


@pytest.mark.parametrize("fault", [{"reset": True}, {"hang": True}, {"cut_after_tokens": 0}])
def test_fault_before_first_token_fails_over_for_streams(
    client: openai.OpenAI, sims: SimThread, fault: dict[str, Any]
) -> None:
    sims.control("cheap", **fault)
    stream = client.chat.completions.with_raw_response.create(
        model="chat", messages=MSG, max_tokens=4, stream=True
    )
    assert stream.headers["x-routeway-backend"] == "fast"
    chunks = list(stream.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split().__len__() == 4


def test_reset_before_headers_fails_over_for_non_streaming(client: openai.OpenAI, sims: SimThread) -> None:
    # Non-streaming requests wait for headers up to the route's total timeout (a whole generation happens
    # before them), so a hang is bounded by total_s; a reset before the headers fails over at once.
    sims.control("cheap", reset=True)
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=2)
    assert raw.headers["x-routeway-backend"] == "fast"


def test_stream_cut_midway_ends_with_error_event_not_done(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", cut_after_tokens=3)
    body = {"model": "chat", "messages": MSG, "max_tokens": 20, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200
        data = b"".join(r.iter_bytes())
    assert b"[DONE]" not in data
    last = data.strip().split(b"\n\n")[-1]
    assert last.startswith(b'data: {"error"')
    with pytest.raises(openai.APIError):
        list(gateway.client().chat.completions.create(model="chat", messages=MSG, max_tokens=20, stream=True))


def test_stream_stall_ends_with_error_event(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", stall_after_tokens=2)
    body = {"model": "chat", "messages": MSG, "max_tokens": 20, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as r:
        data = b"".join(r.iter_bytes())
    assert time.monotonic() - started < 6  # idle_s is 2 in the test policy
    assert b"[DONE]" not in data and b'"error"' in data


def test_all_backends_failing_is_502_naming_each(client: openai.OpenAI, sims: SimThread) -> None:
    sims.control("cheap", error_rate=1.0, error_status=500)
    sims.control("fast", error_rate=1.0, error_status=503)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="chat", messages=MSG)
    assert info.value.status_code == 502
    message = info.value.message
    assert "cheap" in message and "fast" in message and "500" in message and "503" in message


def test_all_backends_rate_limited_is_429_with_retry_after(client: openai.OpenAI, sims: SimThread) -> None:
    sims.control("cheap", rate_limit_rate=1.0, retry_after_s=3)
    sims.control("fast", rate_limit_rate=1.0, retry_after_s=5)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="chat", messages=MSG)
    assert time.monotonic() - started < 1.0
    retry_after = int(info.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 3
    # One attempt per backend, no retry storm.
    assert sims.stats("cheap")["total_requests"] == 1 and sims.stats("fast")["total_requests"] == 1


def test_client_error_from_backend_is_returned_unretried(client: openai.OpenAI, sims: SimThread) -> None:
    sims.control("cheap", bad_status_body={"status": 400})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=MSG)
    assert sims.stats("cheap")["total_requests"] == 1
    assert sims.stats("fast")["total_requests"] == 0


def test_bad_backend_key_fails_over(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    policy["backends"]["fast"].pop("api_key_env")  # the fast sim requires a key: it answers 401
    policy["backends"]["cheap"]["models"]["chat"]["input_price"] = 9.0  # so `fast` ranks first
    policy["backends"]["cheap"]["models"]["chat"]["output_price"] = 9.0
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        raw = gw.client().chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=1)
        assert raw.headers["x-routeway-backend"] == "cheap"


def test_client_disconnect_cancels_upstream(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", tokens_per_s=20)  # a slow stream: 200 tokens take 10 s
    body = {"model": "chat", "messages": MSG, "max_tokens": 200, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as r:
        for _ in r.iter_lines():
            break
    closed_at = time.monotonic()
    while sims.stats("cheap")["cancelled"] < 1:
        assert time.monotonic() - closed_at < 1.0, "upstream request not cancelled within 1 s"
        time.sleep(0.02)


def test_unreachable_only_backend_is_502(sims: SimThread, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    policy = {"backends": {"dead": backend(dead, {"m": {"id": "x"}})}}
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        with pytest.raises(openai.APIStatusError) as info:
            gw.client().chat.completions.create(model="m", messages=MSG)
        assert info.value.status_code == 502
        assert "connect" in info.value.message
