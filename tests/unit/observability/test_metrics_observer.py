"""The metrics observer on hand-made records: what moves, with which bounded labels, per registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


class PrometheusClientMetrics:
    """The oracle: the same hooks on prometheus_client's own Counter/Gauge/Histogram (what Metrics used
    before it kept plain dicts), with `labels()` on every event."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        lat = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
        ttft = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        over = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
        new = Metrics()  # the same names, help texts and label names
        docs = {f.name: (f.doc, f.labels) for f in new._families}

        def counter(name: str) -> Counter:
            return Counter(name, docs[name][0], docs[name][1], registry=r)

        def histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, docs[name][0], docs[name][1], buckets=buckets, registry=r)

        self.requests = counter("routeway_requests")
        name = "routeway_requests_in_flight"
        self.in_flight = Gauge(name, docs[name][0], docs[name][1], registry=r)
        self.duration = histogram("routeway_request_duration_seconds", lat)
        self.overhead = histogram("routeway_gateway_overhead_seconds", over)
        self.ttft = histogram("routeway_upstream_ttft_seconds", ttft)
        self.attempt_duration = histogram("routeway_upstream_attempt_duration_seconds", lat)
        self.attempts = counter("routeway_upstream_attempts")
        self.retries = counter("routeway_retries")
        self.hedges = counter("routeway_hedges")
        self.tokens = counter("routeway_tokens")
        self.cost = counter("routeway_cost_usd")
        self.team_tokens = counter("routeway_team_tokens")
        self.team_cost = counter("routeway_team_cost_usd")
        self.spans_dropped = counter("routeway_trace_spans_dropped")
        self.shadow_requests = counter("routeway_shadow_requests")
        self.shadow_skipped = counter("routeway_shadow_skipped")
        self.shadow_cost = counter("routeway_shadow_cost_usd")
        name = "routeway_shadow_in_flight"
        self.shadow_in_flight = Gauge(name, docs[name][0], docs[name][1], registry=r)
        self.shadow_duration = histogram("routeway_shadow_duration_seconds", lat)
        self.shadow_ttft = histogram("routeway_shadow_ttft_seconds", ttft)
        self.load_scrapes = counter("routeway_load_scrapes")

    def load_scraped(self, backend: str, ok: bool) -> None:
        self.load_scrapes.labels(backend, "ok" if ok else "failed").inc()

    def team_spend(self, team: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        self.team_tokens.labels(team, "input").inc(input_tokens)
        self.team_tokens.labels(team, "output").inc(output_tokens)
        self.team_cost.labels(team).inc(cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def request_started(self, req: RequestRecord) -> None:
        self.in_flight.labels(req.op).inc()

    def shadow_skip(self, route: str, reason: str) -> None:
        self.shadow_skipped.labels(route, reason).inc()

    def shadow_started(self) -> None:
        self.shadow_in_flight.inc()

    def shadow_finished(self, route: str, att: AttemptRecord, stream: bool, cost_usd: float | None) -> None:
        backend = att.target.backend
        self.shadow_in_flight.dec()
        self.shadow_requests.labels(route, backend, att.outcome).inc()
        if att.duration_s is not None:
            self.shadow_duration.labels(backend, str(stream).lower()).observe(att.duration_s)
        if stream and att.outcome == "ok" and att.ttft_s is not None:
            self.shadow_ttft.labels(backend).observe(att.ttft_s)
        if cost_usd:
            self.shadow_cost.labels(route, backend).inc(cost_usd)

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        if att.number > 1 and len(req.attempts) >= att.number:
            before = req.attempts[att.number - 2]
            if before.outcome == "pending":
                self.hedges.labels(before.target.backend).inc()
            else:
                self.retries.labels(before.target.backend, before.outcome).inc()

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        backend = att.target.backend
        self.attempts.labels(backend, att.target.model, att.outcome).inc()
        if att.duration_s is not None:
            self.attempt_duration.labels(backend, att.outcome).observe(att.duration_s)
        if att.ttft_s is not None and (att.status or 200) < 300:
            self.ttft.labels(backend, att.target.model, str(req.stream).lower()).observe(att.ttft_s)

    def request_finished(self, req: RequestRecord) -> None:
        self.in_flight.labels(req.op).dec()
        route = req.route or "none"
        model = req.model if req.route is not None and req.model else "unknown"
        backend = req.backend or "none"
        status = str(req.status) if req.status is not None else "unknown"
        self.requests.labels(req.op, route, model, backend, status).inc()
        duration = req.duration_s or 0.0
        self.duration.labels(req.op, route, model, str(req.stream).lower()).observe(duration)
        self.overhead.labels(req.op).observe(max(0.0, duration - req.upstream_s()))
        if req.backend is None:
            return
        if req.input_tokens:
            self.tokens.labels(backend, model, "input").inc(req.input_tokens)
        if req.output_tokens:
            self.tokens.labels(backend, model, "output").inc(req.output_tokens)
        if req.cost_usd:
            self.cost.labels(backend, model).inc(req.cost_usd)


def feed(m: Metrics | PrometheusClientMetrics, n: int) -> None:
    """Requests of every shape: failover, hedge, errors without a route or status, streams, empty route."""
    for i in range(n):
        req = RequestRecord(f"r{i}", ("chat", "embeddings")[i % 2], "/v1/x", stream=i % 3 == 0)
        m.request_started(req)
        if i % 5:
            req.model, req.route = f"model-{i % 2}", ("default", "fast", "")[i % 3]
        else:
            req.model = "whatever-the-client-sent"
        for k in range(1, 1 + i % 3):
            att = AttemptRecord(target(("a", "b", "c")[(i + k) % 3]), k)
            req.attempts.append(att)
            m.attempt_started(req, att, {})
            if i % 4 and k < i % 3:  # one still running when the next starts: a hedge
                continue
            att.outcome = "ok" if k == i % 3 else ("server", "timeout")[i % 2]
            att.status = (200 if att.outcome == "ok" else 503) if i % 7 else None
            att.ttft_s = 0.001 * (i % 11) if i % 6 else None
            att.duration_s = 0.002 * (i % 13) if i % 8 else None
            m.attempt_finished(req, att)
        if req.attempts and i % 9:
            req.backend = req.attempts[-1].target.backend
            req.input_tokens, req.output_tokens, req.cost_usd = i % 4, i % 5, (i % 3) * 1e-5
        req.status = (200, 404, 502, None)[i % 4]
        req.duration_s = 0.003 * (i % 17)
        m.request_finished(req)
        if i % 5 == 0:  # a virtual key's settlement
            m.team_spend(f"team-{i % 3}", i % 4, i % 5, (i % 3) * 1e-5)
        if i % 4 == 0:  # a self-hosted backend's metrics page scraped, or not
            m.load_scraped(("local-a", "local-b")[i % 3 == 0], i % 7 != 0)
        feed_shadow(m, i)


def feed_shadow(m: Metrics | PrometheusClientMetrics, i: int) -> None:
    """Shadow events of every shape: skipped, finished ok or failed, streamed or not, some still in flight."""
    if i % 5 == 1:
        m.shadow_skip(("default", "fast")[i % 2], ("concurrency", "daily_cap", "blocked")[i % 3])
        return
    if i % 3 == 2:
        return
    m.shadow_started()
    if i % 11 == 0:
        return  # still in flight
    att = AttemptRecord(target(("a", "b")[i % 2]), 1)
    att.outcome = ("ok", "timeout", "server")[i % 3]
    att.ttft_s = 0.001 * (i % 7) if i % 4 else None
    att.duration_s = 0.002 * (i % 13) if i % 8 else None
    m.shadow_finished("default", att, i % 2 == 0, (i % 3) * 1e-5 if att.outcome == "ok" else None)


def rendered(m: Metrics | PrometheusClientMetrics) -> str:
    # prometheus_client adds `_created` series (the wall time each was first seen, different in any two
    # registries, and not kept by Metrics): everything else must be the same.
    return "".join(line for line in m.render().decode().splitlines(True) if "_created" not in line)


def test_renders_exactly_like_prometheus_clients_own_metrics() -> None:
    ours, reference = Metrics(), PrometheusClientMetrics()
    feed(ours, 300)
    feed(reference, 300)
    body = rendered(ours)
    assert 'status="unknown"' in body and "routeway_hedges_total{" in body
    assert 'model="model-0",op="chat",route="none"' in body  # an empty route is "none", its model kept
    assert 'le="+Inf"' in body and "routeway_upstream_ttft_seconds_sum{" in body
    assert 'routeway_shadow_skipped_total{reason="daily_cap",route="fast"}' in body
    assert "routeway_shadow_ttft_seconds_sum{" in body and "routeway_shadow_in_flight " in body
    assert 'routeway_load_scrapes_total{backend="local-b",outcome="failed"}' in body
    assert body == rendered(reference)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    m = Metrics()
    req = RequestRecord("r", "chat", "/v1/chat/completions")
    req.duration_s = 0.005
    m.request_finished(req)
    labels = {"op": "chat", "route": "none", "model": "unknown", "stream": "false"}
    assert value(m, "routeway_request_duration_seconds_bucket", **labels, le="0.005") == 1
    assert value(m, "routeway_request_duration_seconds_bucket", **labels, le="0.001") == 0
