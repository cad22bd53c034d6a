"""What a client sees in answers: why a backend was picked (`x-routeway-pick`), what error answers say was
tried, which `model` the body names, and where a stream's cost is found. Real sockets, simulated upstreams."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]
# A backend that could not win is probed once per probe_interval_s, the first time that long after the
# gateway began: short enough to wait for, long enough that the next request is not a probe again.
PROBE_EVERY_S = 2.0


@pytest.fixture
def gateway(fresh_gateway: GatewayThread) -> GatewayThread:
    """Each test gets its own gateway: telemetry, probes, breakers and metrics start empty."""
    return fresh_gateway


def chat_raw(gw: GatewayThread, rid: str, **extra: Any) -> Any:
    return gw.client().chat.completions.with_raw_response.create(
        model=extra.pop("model", "chat"),
        messages=MSG,
        max_tokens=3,
        extra_headers={"x-request-id": rid},
        **extra,
    )


def access_line(caplog: pytest.LogCaptureFixture, rid: str) -> dict[str, Any]:
    """The request's access log fields (written when the request finished, maybe just after the answer)."""
    deadline = time.monotonic() + 2
    while True:
        for r in caplog.records:
            if r.name == "routeway.access" and getattr(r, "request_id", None) == rid:
                return vars(r)
        assert time.monotonic() < deadline, f"no access line for {rid}"
        time.sleep(0.02)


def error_of(call: Callable[[], Any]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    return info.value


# --- x-routeway-pick -------------------------------------------------------------------------------------


def test_a_normal_pick_is_best(gateway: GatewayThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    raw = chat_raw(gateway, "pick-best")
    assert (raw.headers["x-routeway-backend"], raw.headers["x-routeway-pick"]) == ("cheap", "best")
    assert access_line(caplog, "pick-best")["pick"] == "best"


def test_a_probe_says_so_then_the_objective_wins_again(
    sims: SimThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    policy = default_policy(sims)
    # `fast` was never tried: due `probe_interval_s` after the gateway began, then not for as long again. A
    # route saves its probe share up before its first probe: a share of 1 allows one at once.
    policy["routes"][0].update(probe_interval_s=PROBE_EVERY_S, probe_share=1.0)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        time.sleep(PROBE_EVERY_S)
        first = chat_raw(gw, "pick-probe")
        assert (first.headers["x-routeway-backend"], first.headers["x-routeway-pick"]) == ("fast", "probe")
        assert first.headers["x-routeway-probe"] == "true"
        assert access_line(caplog, "pick-probe")["pick"] == "probe"
        second = chat_raw(gw, "pick-after-probe")
        assert (second.headers["x-routeway-backend"], second.headers["x-routeway-pick"]) == ("cheap", "best")
        assert "x-routeway-probe" not in second.headers


def test_a_probe_answered_by_a_failover_still_says_it_was_a_probe(sims: SimThread, tmp_path: Path) -> None:
    """The request paid for the probe (an upstream attempt) even when another backend answered it: clients
    and benchmarks counting probes by the header see every one."""
    policy = default_policy(sims)
    policy["routes"][0].update(probe_interval_s=PROBE_EVERY_S, probe_share=1.0)
    sims.control("fast", error_rate=1.0, error_status=503)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        time.sleep(PROBE_EVERY_S)
        raw = chat_raw(gw, "probe-failed-over")
    assert (raw.headers["x-routeway-backend"], raw.headers["x-routeway-pick"]) == ("cheap", "fallback")
    assert raw.headers["x-routeway-probe"] == "true"


def test_a_fresh_route_does_not_probe_a_newcomers_first_requests(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    policy["routes"][0]["probe_interval_s"] = 60  # the default probe_share (1%) saves up for 100 requests
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        seen = [chat_raw(gw, f"newcomer-{i}").headers for i in range(5)]
    assert [(h["x-routeway-backend"], h["x-routeway-pick"]) for h in seen] == [("cheap", "best")] * 5


def test_an_unmeasured_backend_first_try_says_so(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    for entry in (
        policy["backends"]["fast"]["models"]["chat"],
        policy["backends"]["cheap"]["models"]["chat"],
    ):
        entry.pop("ttft_ms")  # no declared speed, and a fresh gateway has no telemetry
    policy["routes"][0]["objective"] = "fastest"
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        assert chat_raw(gw, "pick-unmeasured").headers["x-routeway-pick"] == "unmeasured"
        # Once its first answer is recorded, the pick rests on a measurement.
        deadline = time.monotonic() + 3
        while (pick := chat_raw(gw, "pick-measured").headers["x-routeway-pick"]) == "unmeasured":
            assert time.monotonic() < deadline, "the backend stayed unmeasured after answering"
            time.sleep(0.05)
        assert pick == "best"


def test_a_failover_answer_is_a_fallback(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", error_rate=1.0, error_status=503)
    raw = chat_raw(gateway, "pick-fallback")
    assert raw.headers["x-routeway-backend"] == "fast"
    assert (raw.headers["x-routeway-pick"], raw.headers["x-routeway-attempts"]) == ("fallback", "2")


def test_a_stream_carries_the_pick(gateway: GatewayThread) -> None:
    body = {"model": "chat", "messages": MSG, "max_tokens": 2, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200 and r.headers["x-routeway-pick"] == "best"
        r.read()


# --- error answers say what was tried ----------------------------------------------------------------------


def test_an_upstream_4xx_passed_back_names_the_backend(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", bad_status_body={"status": 400})
    err = error_of(lambda: chat_raw(gateway, "err-4xx"))
    assert err.status_code == 400
    h = err.response.headers
    assert (h["x-request-id"], h["x-routeway-attempts"], h["x-routeway-backends-tried"]) == (
        "err-4xx",
        "1",
        "cheap",
    )
    assert set(err.response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_502_lists_every_backend_tried_in_order(gateway: GatewayThread, sims: SimThread) -> None:
    sims.control("cheap", error_rate=1.0, error_status=500)
    sims.control("fast", error_rate=1.0, error_status=503)
    err = error_of(lambda: chat_raw(gateway, "err-502"))
    assert err.status_code == 502 and err.response.json()["error"]["code"] == "all_backends_failed"
    h = err.response.headers
    # max_attempts 3: after `fast`, the route comes back to `cheap` (never back to back on one backend).
    assert (h["x-request-id"], h["x-routeway-attempts"], h["x-routeway-backends-tried"]) == (
        "err-502",
        "3",
        "cheap,fast,cheap",
    )
    assert (sims.stats("cheap")["total_requests"], sims.stats("fast")["total_requests"]) == (2, 1)


def test_a_429_says_what_was_tried_and_a_fail_fast_one_that_nothing_was(
    gateway: GatewayThread, sims: SimThread
) -> None:
    sims.control("cheap", rate_limit_rate=1.0, retry_after_s=5)
    sims.control("fast", rate_limit_rate=1.0, retry_after_s=5)
    err = error_of(lambda: chat_raw(gateway, "err-429"))
    assert err.status_code == 429 and int(err.response.headers["retry-after"]) >= 1
    h = err.response.headers
    assert (h["x-routeway-attempts"], h["x-routeway-backends-tried"]) == ("2", "cheap,fast")
    # Both backends now cool down: the next request is refused before any upstream call.
    again = error_of(lambda: chat_raw(gateway, "err-429-fast"))
    assert again.status_code == 429
    assert (again.response.headers["x-request-id"], again.response.headers["x-routeway-attempts"]) == (
        "err-429-fast",
        "0",
    )
    assert "x-routeway-backends-tried" not in again.response.headers


def test_a_503_says_no_backend_was_tried(gateway: GatewayThread) -> None:
    err = error_of(
        lambda: chat_raw(gateway, "err-503", extra_body={"provider": {"ignore": ["cheap", "fast"]}})
    )
    assert err.status_code == 503 and err.response.json()["error"]["code"] == "service_unavailable"
    h = err.response.headers
    assert (h["x-request-id"], h["x-routeway-attempts"]) == ("err-503", "0")
    assert "x-routeway-backends-tried" not in h


# --- the body's `model` -------------------------------------------------------------------------------------


def test_the_body_names_the_provider_model_like_the_header(gateway: GatewayThread) -> None:
    raw = chat_raw(gateway, "model-json")
    assert raw.parse().model == raw.headers["x-routeway-model"] == "up-cheap"
    emb = gateway.client().embeddings.with_raw_response.create(model="embed", input="hi")
    assert emb.parse().model == emb.headers["x-routeway-model"] == "up-embed"


def test_every_stream_chunk_names_the_provider_model(gateway: GatewayThread) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="chat", messages=MSG, max_tokens=4, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert len(chunks) >= 4
    assert {c.model for c in chunks} == {raw.headers["x-routeway-model"]} == {"up-cheap"}


# --- a stream's cost ----------------------------------------------------------------------------------------


def cost_total(gw: GatewayThread) -> float:
    text = httpx.get(gw.root + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "routeway_cost_usd_total" and s.labels.get("backend") == "cheap"
    )


def test_a_streaming_client_finds_its_cost_in_usage_access_log_and_metrics(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    before = cost_total(gateway)
    stream = gateway.client().chat.completions.create(
        model="chat",
        messages=MSG,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "cost-stream"},
    )
    usage = list(stream)[-1].usage
    assert usage is not None and usage.completion_tokens == 5
    expected = (usage.prompt_tokens * 0.1 + usage.completion_tokens * 0.2) / 1e6  # the `cheap` prices
    line = access_line(caplog, "cost-stream")
    assert line["cost_usd"] == pytest.approx(expected)
    assert cost_total(gateway) - before == pytest.approx(expected)


def test_a_stream_without_include_usage_is_billed_and_shows_no_usage(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway asks every upstream stream for usage; a client that did not ask never sees it."""
    caplog.set_level(logging.INFO, logger="routeway")
    before = cost_total(gateway)
    chunks = list(
        gateway.client().chat.completions.create(
            model="chat", messages=MSG, max_tokens=3, stream=True, extra_headers={"x-request-id": "cost-none"}
        )
    )
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    line = access_line(caplog, "cost-none")
    assert line["output_tokens"] == 3 and line["input_tokens"] > 0
    expected = (line["input_tokens"] * 0.1 + 3 * 0.2) / 1e6  # the `cheap` prices
    assert line["cost_usd"] == pytest.approx(expected)
    assert cost_total(gateway) - before == pytest.approx(expected)


def test_a_stream_with_include_usage_sees_exactly_one_usage_chunk(gateway: GatewayThread) -> None:
    chunks = list(
        gateway.client().chat.completions.create(
            model="chat", messages=MSG, max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and not with_usage[0].choices


def test_a_completions_stream_is_billed_without_a_usage_chunk(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    chunks = list(
        gateway.client().completions.create(
            model="chat",
            prompt="Say hello",
            max_tokens=2,
            stream=True,
            extra_headers={"x-request-id": "cmpl-s"},
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert access_line(caplog, "cmpl-s")["cost_usd"] > 0
