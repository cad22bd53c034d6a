"""Traces over OTLP to an in-process receiver, Prometheus metrics at /metrics, and a provider-key canary."""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.logging import JsonFormatter
from gateway.sim import SimThread
from tests.integration.conftest import BACKEND_KEY, GatewayThread, default_policy

PROMPT = "observability-canary-prompt-7c1d please say hello"
MSG = [{"role": "user", "content": PROMPT}]
SERVER, CLIENT = Span.SpanKind.SPAN_KIND_SERVER, Span.SpanKind.SPAN_KIND_CLIENT
# An upstream that quotes the key it was sent in its error (and in a URL), as some providers do.
ECHOING_401 = {
    "status": 401,
    "body": {
        "error": {
            "message": f"Incorrect API key provided: {BACKEND_KEY}. "
            f"Docs: https://p.example/keys?key={BACKEND_KEY}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    },
}


class OtlpReceiver:
    """A tiny OTLP/HTTP trace receiver: keeps every raw export and the decoded spans."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._take(self.path, body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, path: str, body: bytes) -> None:
        assert path == "/v1/traces"
        req = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.raw.append(body)
            for rs in req.resource_spans:
                self.resources.append(attributes(rs.resource.attributes))
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self.raw)

    def trace(self, trace_id: bytes) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_server_span(self, request_id: str, timeout: float = 5.0) -> Span:
        """The SERVER span of a request; its children ended before it, so they were exported with it."""
        return wait_for(lambda: self._server_span(request_id), timeout)

    def _server_span(self, request_id: str) -> Span | None:
        with self._lock:
            for s in self.spans:
                if s.kind == SERVER and attributes(s.attributes).get("routeway.request_id") == request_id:
                    return s
        return None


def wait_for(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for spans")
        time.sleep(0.02)


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def gw(sims: SimThread, receiver: OtlpReceiver, tmp_path: Path) -> Iterator[GatewayThread]:
    """A fresh traced gateway per test, so breaker state from one failover test cannot leak into another."""
    with GatewayThread(
        default_policy(sims),
        tmp_path,
        reload_policies=False,
        otel_exporter_otlp_endpoint=receiver.url,
        otel_service_name="routeway-test",
        otel_bsp_schedule_delay_ms=20,
        trace_candidates=True,  # the tests below read the routing span's candidate list
    ) as gateway:
        yield gateway


def post(gw: GatewayThread, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gw.root + path, json=body, headers=headers, timeout=10)


def chat(gw: GatewayThread, rid: str, model: str = "chat", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": MSG, "max_tokens": 4, **extra}
    return post(gw, "/v1/chat/completions", body, **{"x-request-id": rid})


def children(receiver: OtlpReceiver, server: Span) -> tuple[list[Span], list[Span]]:
    """(routing spans, attempt spans ordered by attempt number) under a server span."""
    spans = [s for s in receiver.trace(server.trace_id) if s.parent_span_id == server.span_id]
    routing = [s for s in spans if s.name == "routeway.route"]
    tries = sorted(
        (s for s in spans if s.kind == CLIENT), key=lambda s: attributes(s.attributes)["routeway.attempt"]
    )
    return routing, tries


def test_span_tree_with_genai_attributes_and_candidates(
    gw: GatewayThread, receiver: OtlpReceiver, sims: SimThread
) -> None:
    r = chat(gw, "trace-tree-1")
    assert r.status_code == 200
    server = receiver.wait_server_span("trace-tree-1")
    assert server.name == "POST /v1/chat/completions"
    assert server.kind == SERVER
    attrs = attributes(server.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.response.model"] == "up-cheap"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["http.response.status_code"] == 200
    assert attrs["routeway.backend"] == "cheap" and attrs["routeway.hardware"] == "aws-inferentia2"
    assert attrs["routeway.objective"] == "cheapest" and attrs["routeway.route"] == "default"
    assert attrs["routeway.cost_usd"] == pytest.approx(float(r.headers["x-routeway-cost-usd"]), rel=1e-6)
    assert attrs["routeway.attempts"] == 1
    assert server.status.code != Status.StatusCode.STATUS_CODE_ERROR
    assert {"service.name": "routeway-test"}.items() <= receiver.resources[-1].items()

    routing, tries = children(receiver, server)
    assert len(routing) == 1 and len(tries) == 1
    route = attributes(routing[0].attributes)
    assert route["routeway.candidates.backend"] == ["cheap", "fast"]
    scores = route["routeway.candidates.score"]
    assert scores == sorted(scores) and scores[0] < scores[1]  # cheapest: score is the predicted cost
    assert route["routeway.candidates.predicted_cost_usd"] == scores
    assert len(route["routeway.candidates.predicted_latency_ms"]) == 2
    assert route["routeway.dropped.backend"] == []
    assert routing[0].start_time_unix_nano == server.start_time_unix_nano
    assert routing[0].end_time_unix_nano <= tries[0].start_time_unix_nano

    att = attributes(tries[0].attributes)
    assert tries[0].name == "chat up-cheap"
    assert att["gen_ai.operation.name"] == "chat" and att["gen_ai.request.model"] == "up-cheap"
    assert att["gen_ai.response.model"] == "up-cheap" and att["gen_ai.provider.name"] == "openai"
    assert att["server.address"] == "127.0.0.1"
    assert att["server.port"] == int(sims.urls["cheap"].rsplit(":", 1)[1].split("/")[0])
    assert att["routeway.backend"] == "cheap" and att["routeway.hardware"] == "aws-inferentia2"
    assert att["routeway.outcome"] == "ok" and att["http.response.status_code"] == 200
    assert att["routeway.ttft_ms"] > 0 and att["routeway.attempt"] == 1
    assert att["gen_ai.usage.output_tokens"] == 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", {"model": "chat", "input": "hi", "max_output_tokens": 4}),
        ("/v1/messages", {"model": "chat", "max_tokens": 4, "messages": MSG}),
    ],
)
def test_responses_and_messages_are_traced_as_chat(
    gw: GatewayThread, receiver: OtlpReceiver, path: str, body: dict[str, Any]
) -> None:
    rid = f"trace-door-{path.rsplit('/', 1)[1]}"
    assert post(gw, path, body, **{"x-request-id": rid}).status_code == 200
    server = receiver.wait_server_span(rid)
    attrs = attributes(server.attributes)
    assert server.name == f"POST {path}" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "chat" and attrs["gen_ai.usage.output_tokens"] == 4
    routing, tries = children(receiver, server)
    assert len(routing) == 1 and [t.name for t in tries] == ["chat up-cheap"]


def test_dropped_candidate_listed_with_reason(gw: GatewayThread, receiver: OtlpReceiver) -> None:
    long = [{"role": "user", "content": "word " * 4000}]  # ~5000 tokens: over cheap's 4096 window
    r = post(
        gw,
        "/v1/chat/completions",
        {"model": "chat", "messages": long, "max_tokens": 2},
        **{"x-request-id": "drop-1"},
    )
    assert r.status_code == 200 and r.headers["x-routeway-backend"] == "fast"
    server = receiver.wait_server_span("drop-1")
    routing, _ = children(receiver, server)
    route = attributes(routing[0].attributes)
    assert route["routeway.candidates.backend"] == ["fast"]
    assert route["routeway.dropped.backend"] == ["cheap"]
    assert "context window 4096" in route["routeway.dropped.reason"][0]


def test_failover_has_one_client_span_per_attempt(
    gw: GatewayThread, receiver: OtlpReceiver, sims: SimThread
) -> None:
    sims.control("cheap", error_rate=1.0)
    r = chat(gw, "failover-1")
    assert r.status_code == 200 and r.headers["x-routeway-backend"] == "fast"
    server = receiver.wait_server_span("failover-1")
    assert attributes(server.attributes)["routeway.attempts"] == 2
    _, tries = children(receiver, server)
    assert [attributes(s.attributes)["routeway.backend"] for s in tries] == ["cheap", "fast"]
    first, second = (attributes(s.attributes) for s in tries)
    assert first["routeway.outcome"] == "server" and first["error.type"] == "server"
    assert first["http.response.status_code"] == 503
    assert tries[0].status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert second["routeway.outcome"] == "ok" and second["routeway.attempt"] == 2
    assert tries[0].end_time_unix_nano <= tries[1].start_time_unix_nano


def test_traceparent_is_continued_and_propagated(
    gw: GatewayThread, receiver: OtlpReceiver, sims: SimThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    trace_hex, parent_hex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    body = {"model": "chat", "messages": MSG, "max_tokens": 2}
    headers = {"x-request-id": "tp-1", "traceparent": f"00-{trace_hex}-{parent_hex}-01"}
    assert post(gw, "/v1/chat/completions", body, **headers).status_code == 200
    server = receiver.wait_server_span("tp-1")
    assert server.trace_id.hex() == trace_hex and server.parent_span_id.hex() == parent_hex
    _, tries = children(receiver, server)
    sent = sims.stats("cheap")["last_headers"]["traceparent"]
    version, upstream_trace, upstream_parent, flags = sent.split("-")
    assert (version, upstream_trace, flags) == ("00", trace_hex, "01")
    assert upstream_parent == tries[0].span_id.hex()
    access = [
        r for r in caplog.records if r.name == "routeway.access" and getattr(r, "request_id", "") == "tp-1"
    ]
    assert access and getattr(access[0], "trace_id", None) == trace_hex


def test_stream_attempt_span_has_ttft_and_usage(gw: GatewayThread, receiver: OtlpReceiver) -> None:
    r = chat(gw, "stream-1", stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    server = receiver.wait_server_span("stream-1")
    assert attributes(server.attributes)["routeway.stream"] is True
    _, tries = children(receiver, server)
    att = attributes(tries[0].attributes)
    assert att["routeway.outcome"] == "ok" and att["routeway.ttft_ms"] > 0
    assert att["gen_ai.usage.output_tokens"] == 4
    assert tries[0].end_time_unix_nano <= server.end_time_unix_nano


def test_unknown_model_has_failed_routing_span_and_no_attempt(
    gw: GatewayThread, receiver: OtlpReceiver
) -> None:
    assert chat(gw, "nf-1", model="no-such-model").status_code == 404
    server = receiver.wait_server_span("nf-1")
    attrs = attributes(server.attributes)
    assert attrs["http.response.status_code"] == 404 and attrs["error.type"] == "model_not_found"
    assert server.status.code != Status.StatusCode.STATUS_CODE_ERROR  # a 4xx is the client's, not ours
    routing, tries = children(receiver, server)
    assert tries == [] and len(routing) == 1
    assert routing[0].status.code == Status.StatusCode.STATUS_CODE_ERROR


def test_hedge_loser_is_cancelled_not_failed(sims: SimThread, receiver: OtlpReceiver, tmp_path: Path) -> None:
    policy = default_policy(sims)
    policy["routes"][0]["hedge"] = {"enabled": True, "after_ms": 50}
    sims.control("cheap", ttft_ms=2000)  # ranked first, answers late: `fast` is asked too and wins
    with GatewayThread(
        policy,
        tmp_path,
        reload_policies=False,
        otel_exporter_otlp_endpoint=receiver.url,
        otel_bsp_schedule_delay_ms=20,
    ) as gw:
        r = chat(gw, "hedge-1")
        assert r.status_code == 200 and r.headers["x-routeway-backend"] == "fast"
        server = receiver.wait_server_span("hedge-1")
        metrics = scrape(gw)
    _, tries = children(receiver, server)
    outcomes = {
        attributes(s.attributes)["routeway.backend"]: attributes(s.attributes)["routeway.outcome"]
        for s in tries
    }
    assert outcomes == {"cheap": "cancelled", "fast": "ok"}
    assert all(s.status.code != Status.StatusCode.STATUS_CODE_ERROR for s in tries)
    assert metrics[("routeway_hedges_total", frozenset({("backend", "cheap")}))] == 1
    assert not any(name == "routeway_retries_total" for name, _ in metrics)


# --- metrics ---------------------------------------------------------------------------------------------


def scrape(gw: GatewayThread) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(gw.root + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    """The change of the sum of every series of `name` whose labels include `labels`."""

    def total(snapshot: dict[Any, float]) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in snapshot.items() if n == name and want <= ls)

    return total(after) - total(before)


def test_metrics_move_with_success_failover_and_404(gw: GatewayThread, sims: SimThread) -> None:
    before = scrape(gw)
    assert chat(gw, "m-ok").status_code == 200
    ok = scrape(gw)
    common = {"op": "chat", "route": "default", "model": "chat"}
    assert delta(before, ok, "routeway_requests_total", **common, backend="cheap", status="200") == 1
    assert delta(before, ok, "routeway_request_duration_seconds_count", **common, stream="false") == 1
    assert delta(before, ok, "routeway_gateway_overhead_seconds_count", op="chat") == 1
    assert delta(before, ok, "routeway_upstream_ttft_seconds_count", backend="cheap", model="chat") == 1
    assert delta(before, ok, "routeway_upstream_attempts_total", backend="cheap", outcome="ok") == 1
    assert delta(before, ok, "routeway_tokens_total", backend="cheap", type="output") == 4
    assert delta(before, ok, "routeway_tokens_total", backend="cheap", type="input") > 0
    assert delta(before, ok, "routeway_cost_usd_total", backend="cheap", model="chat") > 0
    assert ok[("routeway_requests_in_flight", frozenset({("op", "chat")}))] == 0

    sims.control("cheap", error_rate=1.0)
    assert chat(gw, "m-failover").status_code == 200
    failover = scrape(gw)
    assert delta(ok, failover, "routeway_requests_total", **common, backend="fast", status="200") == 1
    assert delta(ok, failover, "routeway_upstream_attempts_total", backend="cheap", outcome="server") == 1
    assert delta(ok, failover, "routeway_upstream_attempts_total", backend="fast", outcome="ok") == 1
    assert delta(ok, failover, "routeway_retries_total", backend="cheap", reason="server") == 1
    assert delta(ok, failover, "routeway_upstream_attempt_duration_seconds_count", outcome="server") == 1

    assert chat(gw, "m-404", model="no-such-model").status_code == 404
    nf = scrape(gw)
    labels = {"op": "chat", "route": "none", "model": "unknown", "backend": "none", "status": "404"}
    assert delta(failover, nf, "routeway_requests_total", **labels) == 1
    assert not any(("model", "no-such-model") in ls for _, ls in nf)  # client strings never become labels
    assert delta(failover, nf, "routeway_upstream_attempts_total") == 0


def test_metrics_can_be_disabled(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False, metrics=False) as gw:
        assert httpx.get(gw.root + "/metrics").status_code == 404


# --- canary: the provider key never leaves the request it authenticates ---------------------------------


def test_backend_key_never_in_logs_spans_metrics_or_responses(
    gw: GatewayThread, receiver: OtlpReceiver, sims: SimThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="routeway")
    responses: list[httpx.Response] = []
    body = {"model": "fast-only", "messages": MSG, "max_tokens": 3}

    def call(
        path: str = "/v1/chat/completions", payload: dict[str, Any] | None = None, **headers: str
    ) -> None:
        responses.append(post(gw, path, payload or body, **headers))

    call(**{"x-request-id": "canary-ok"})
    call(payload={**body, "stream": True, "stream_options": {"include_usage": True}})
    call("/v1/embeddings", {"model": "embed", "input": PROMPT})
    assert sims.stats("fast")["last_headers"]["authorization"] == f"Bearer {BACKEND_KEY}"  # the key was used
    # Failures, ordered so that no backend health state (cooldowns, open circuits) hides the next one.
    sims.control("fast", rate_limit_rate=1.0, retry_after_s=0.05)
    call()
    sims.reset("fast")
    time.sleep(0.1)  # past the cooldown the 429 asked for
    sims.control("fast", error_rate=1.0, error_status=500)
    call()
    sims.reset("fast")
    sims.control("fast", cut_after_tokens=1)
    call(payload={**body, "stream": True, "max_tokens": 5})
    sims.reset("fast")
    call(payload={"model": "no-such-model", "messages": MSG})
    call(payload={"model": "fast-only", "messages": "not a list"})
    sims.control("fast", bad_status_body=ECHOING_401)
    call(**{"x-request-id": "canary-401"})  # last on `fast`: a bad key opens its circuit for a while
    call(payload={**body, "model": "chat"}, **{"x-request-id": "canary-last"})
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 429, 502, 200, 404, 400, 502, 200], statuses

    receiver.wait_server_span("canary-last")
    key = BACKEND_KEY.encode()
    echoed = responses[-2]  # relaying an echoed key: test_upstream_error_echoing_the_key_is_not_relayed
    for r in responses:
        assert BACKEND_KEY not in str(r.headers)
        assert r is echoed or key not in r.content
    assert b'"error"' in responses[5].content and b"[DONE]" not in responses[5].content  # the cut stream
    server = receiver.wait_server_span("canary-401")
    _, tries = children(receiver, server)
    assert "[redacted]" in tries[0].status.message and "Incorrect API key" in tries[0].status.message
    exported = receiver.all_bytes()
    assert exported and key not in exported
    assert PROMPT.encode() not in exported and b"please say hello" not in exported
    metrics = httpx.get(gw.root + "/metrics").text
    assert "routeway_requests_total" in metrics and BACKEND_KEY not in metrics
    formatter = JsonFormatter()
    lines = [formatter.format(rec) for rec in caplog.records if rec.name.startswith("routeway")]
    assert sum('"msg":"request"' in line for line in lines) >= len(responses)  # the access lines were seen
    for line in lines:
        assert BACKEND_KEY not in line and PROMPT not in line
        assert "observer" not in line  # no observer raised along the way
    assert BACKEND_KEY not in caplog.text


def test_upstream_error_echoing_the_key_is_not_relayed(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        sims.control("fast", bad_status_body=ECHOING_401)
        r = post(gw, "/v1/chat/completions", {"model": "fast-only", "messages": MSG})
        assert r.status_code == 502
        assert BACKEND_KEY not in r.text
