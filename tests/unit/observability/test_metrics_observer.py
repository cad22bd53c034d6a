"""The metrics observer on hand-made records: what moves, with which bounded labels, per registry."""

from __future__ import annotations

import pytest

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.metrics import Metrics
from gateway.providers.base import Target


def target(backend: str) -> Target:
    return Target(
        backend=backend,
        provider="openai",
        base_url=f"http://{backend}/v1",
        model="chat",
        model_id=f"{backend}-id",
        api_key=None,
        headers={},
        hardware=None,
        input_price=1.0,
        output_price=2.0,
        context_window=None,
        ttft_ms=None,
        tokens_per_s=None,
    )


def value(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_failover_request_updates_every_family() -> None:
    m = Metrics()
    req = RequestRecord("r1", "chat", "/v1/chat/completions")
    m.request_started(req)
    assert value(m, "routeway_requests_in_flight", op="chat") == 1
    req.model, req.route = "chat", "default"
    bad = AttemptRecord(target("a"), 1)
    req.attempts.append(bad)
    m.attempt_started(req, bad, {})
    bad.outcome, bad.status, bad.ttft_s, bad.duration_s = "server", 503, 0.01, 0.01
    m.attempt_finished(req, bad)
    good = AttemptRecord(target("b"), 2)
    req.attempts.append(good)
    m.attempt_started(req, good, {})
    good.outcome, good.status, good.ttft_s, good.duration_s = "ok", 200, 0.2, 0.3
    m.attempt_finished(req, good)
    req.status, req.backend, req.input_tokens, req.output_tokens, req.cost_usd = 200, "b", 10, 5, 2e-5
    req.duration_s = 0.35
    m.request_finished(req)

    assert value(m, "routeway_requests_in_flight", op="chat") == 0
    labels = {"op": "chat", "route": "default", "model": "chat", "backend": "b", "status": "200"}
    assert value(m, "routeway_requests_total", **labels) == 1
    assert value(m, "routeway_retries_total", backend="a", reason="server") == 1
    assert value(m, "routeway_upstream_attempts_total", backend="a", model="chat", outcome="server") == 1
    assert value(m, "routeway_upstream_attempts_total", backend="b", model="chat", outcome="ok") == 1
    # The 503's body is no first token; the good attempt's is.
    assert value(m, "routeway_upstream_ttft_seconds_count", backend="a", model="chat", stream="false") == 0
    assert value(m, "routeway_upstream_ttft_seconds_sum", backend="b", model="chat", stream="false") == 0.2
    assert value(m, "routeway_gateway_overhead_seconds_sum", op="chat") == pytest.approx(0.04)
    assert value(m, "routeway_tokens_total", backend="b", model="chat", type="input") == 10
    assert value(m, "routeway_tokens_total", backend="b", model="chat", type="output") == 5
    assert value(m, "routeway_cost_usd_total", backend="b", model="chat") == 2e-5
    body = m.render().decode()
    assert "# TYPE routeway_request_duration_seconds histogram" in body


def test_unresolved_model_is_unknown_and_registries_are_separate() -> None:
    first, second = Metrics(), Metrics()  # two apps in one process: no duplicate registration
    req = RequestRecord("r2", "embeddings", "/v1/embeddings")
    first.request_started(req)
    req.model, req.status, req.duration_s = "whatever-the-client-sent", 404, 0.001
    first.request_finished(req)
    labels = {"op": "embeddings", "route": "none", "model": "unknown", "backend": "none", "status": "404"}
    assert value(first, "routeway_requests_total", **labels) == 1
    assert value(second, "routeway_requests_total", **labels) == 0
    assert "whatever-the-client-sent" not in first.render().decode()
