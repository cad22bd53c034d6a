"""The tracing observer on hand-made records: span tree, attributes, propagation, sampling and scrubbing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.tracing import (
    Tracing,
    build_exporter,
    build_sampler,
    build_tracing,
    parse_pairs,
    parse_traceparent,
    sampling_decision,
    scrub,
)
from gateway.providers.base import Target
from gateway.providers.credentials import StaticKey
from gateway.routing.scoring import Dropped, Scored
from gateway.secret import Secret
from gateway.settings import Settings

KEY = "sk-unit-9d8e7f6a5b4c-secret"


def target(backend: str, **kw: Any) -> Target:
    values: dict[str, Any] = {
        "backend": backend,
        "provider": "openai",
        "base_url": f"https://{backend}.example:8443/v1",
        "model": "chat",
        "model_id": f"{backend}-model",
        "credential": StaticKey(Secret(KEY)),
        "headers": {},
        "hardware": "nvidia-h100",
        "input_price": 1.0,
        "output_price": 2.0,
        "context_window": None,
        "ttft_ms": 100.0,
        "tokens_per_s": 50.0,
    }
    values.update(kw)
    return Target(**values)


def traced(**settings: Any) -> tuple[Tracing, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    tracing = build_tracing(Settings(**settings), exporter=memory)
    assert tracing is not None
    return tracing, memory


def request(headers: dict[str, str] | None = None) -> RequestRecord:
    req = RequestRecord("rid-1", "chat", "/v1/chat/completions", incoming_headers=headers or {})
    return req


def plan(req: RequestRecord, *targets: Target) -> None:
    req.model, req.route, req.objective = "chat", "default", "cheapest"
    req.candidates = [
        Scored(t, 120.0 + i, 0.001 * (i + 1), 1.0, 0.001 * (i + 1)) for i, t in enumerate(targets)
    ]
    req.dropped = [Dropped("tiny", "prompt of ~9000 tokens exceeds context window 8192")]


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def test_no_endpoint_means_no_observer() -> None:
    assert build_tracing(Settings()) is None
    assert (
        build_tracing(Settings(otel_exporter_otlp_endpoint="http://c:4318", otel_sdk_disabled=True)) is None
    )


def test_failover_request_makes_server_routing_and_one_client_span_per_attempt() -> None:
    tracing, memory = traced(trace_candidates=True)
    a, b = target("a"), target("b", hardware="groq-lpu")
    req = request()
    tracing.request_started(req)
    plan(req, a, b)
    first = AttemptRecord(a, 1)
    req.attempts.append(first)
    h1: dict[str, str] = {"authorization": f"Bearer {KEY}"}
    tracing.attempt_started(req, first, h1)
    first.outcome, first.status, first.duration_s = "auth", 401, 0.01
    first.error = f"Incorrect API key provided: {KEY} (see https://a.example/?key={KEY})"
    tracing.attempt_finished(req, first)
    second = AttemptRecord(b, 2)
    req.attempts.append(second)
    h2: dict[str, str] = {}
    tracing.attempt_started(req, second, h2)
    second.outcome, second.status, second.ttft_s, second.duration_s = "ok", 200, 0.05, 0.06
    second.input_tokens, second.output_tokens = 10, 4
    tracing.attempt_finished(req, second)
    req.status, req.backend, req.cost_usd, req.input_tokens, req.output_tokens = 200, "b", 2e-5, 10, 4
    req.duration_s = 0.1
    tracing.request_finished(req)
    tracing.shutdown()

    spans = by_name(memory.get_finished_spans())
    (server,) = spans["POST /v1/chat/completions"]
    (routing,) = spans["routeway.route"]
    (try_a,) = spans["chat a-model"]
    (try_b,) = spans["chat b-model"]
    assert server.kind == SpanKind.SERVER and try_a.kind == SpanKind.CLIENT
    assert server.parent is None
    for child in (routing, try_a, try_b):
        assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert req.context["trace_id"] == f"{server.context.trace_id:032x}"
    version, trace_id, parent_id, flags = h1["traceparent"].split("-")
    assert (version, trace_id) == ("00", f"{server.context.trace_id:032x}")
    assert parent_id == f"{try_a.context.span_id:016x}" and int(flags, 16) & 1  # sampled
    assert h2["traceparent"].split("-")[2] == f"{try_b.context.span_id:016x}"

    s = dict(server.attributes or {})
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "chat"
    assert s["gen_ai.response.model"] == "b-model" and s["routeway.hardware"] == "groq-lpu"
    assert s["routeway.attempts"] == 2 and s["routeway.cost_usd"] == 2e-5
    assert s["routeway.gateway_overhead_ms"] == pytest.approx(30.0)
    r = dict(routing.attributes or {})
    assert r["routeway.candidates.backend"] == ("a", "b")
    assert r["routeway.candidates.score"] == (0.001, 0.002)
    assert r["routeway.dropped.backend"] == ("tiny",)
    a_attrs = dict(try_a.attributes or {})
    assert a_attrs["server.address"] == "a.example" and a_attrs["server.port"] == 8443
    assert a_attrs["error.type"] == "auth" and a_attrs["http.response.status_code"] == 401
    assert try_a.status.status_code == StatusCode.ERROR
    assert KEY not in (try_a.status.description or "")
    assert "key=[redacted]" in (try_a.status.description or "")
    b_attrs = dict(try_b.attributes or {})
    assert b_attrs["routeway.ttft_ms"] == 50.0 and b_attrs["gen_ai.usage.output_tokens"] == 4
    for span in memory.get_finished_spans():
        assert KEY not in repr(dict(span.attributes or {}))


def test_candidate_list_only_when_asked() -> None:
    tracing, memory = traced()
    req = request()
    tracing.request_started(req)
    plan(req, target("a"), target("b"))
    att = AttemptRecord(target("a"), 1)
    req.attempts.append(att)
    tracing.attempt_started(req, att, {})
    att.outcome = "ok"
    tracing.attempt_finished(req, att)
    req.status = 200
    tracing.request_finished(req)
    tracing.shutdown()
    (routing,) = by_name(memory.get_finished_spans())["routeway.route"]
    attrs = dict(routing.attributes or {})
    assert attrs["routeway.candidates.count"] == 2 and attrs["routeway.route"] == "default"
    assert not [k for k in attrs if k.startswith(("routeway.candidates.b", "routeway.dropped"))]


def test_incoming_traceparent_is_the_parent() -> None:
    tracing, memory = traced()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    req = request({"traceparent": parent})
    tracing.request_started(req)
    req.status = 400
    tracing.request_finished(req)
    tracing.shutdown()
    (server,) = memory.get_finished_spans()
    assert f"{server.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "b7ad6b7169203331"
    assert server.status.status_code == StatusCode.UNSET  # a client error is not a server fault


def test_unsampled_trace_records_nothing_but_still_propagates() -> None:
    tracing, memory = traced(otel_traces_sampler="always_off")
    req = request()
    tracing.request_started(req)
    plan(req, target("a"))
    att = AttemptRecord(target("a"), 1)
    req.attempts.append(att)
    headers: dict[str, str] = {}
    tracing.attempt_started(req, att, headers)
    tracing.attempt_finished(req, att)
    tracing.request_finished(req)
    tracing.shutdown()
    assert memory.get_finished_spans() == ()
    _, trace_id, _, flags = headers["traceparent"].split("-")
    assert trace_id == req.context["trace_id"] and not int(flags, 16) & 1  # carried, marked unsampled


def test_unfinished_attempt_is_closed_with_the_request() -> None:
    tracing, memory = traced()
    req = request()
    tracing.request_started(req)
    plan(req, target("a"))
    att = AttemptRecord(target("a"), 1)
    req.attempts.append(att)
    tracing.attempt_started(req, att, {})
    req.status = 502
    tracing.request_finished(req)
    tracing.shutdown()
    names = sorted(s.name for s in memory.get_finished_spans())
    assert names == ["POST /v1/chat/completions", "chat a-model", "routeway.route"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer [redacted]"),
        ("GET https://h/v1?key=AIzaSyABC123&alt=sse", "GET https://h/v1?key=[redacted]&alt=sse"),
        ("api_key=hunter22 token=xyz", "api_key=[redacted] token=[redacted]"),
        ("bad key sk-proj-abcdefghijkl", "bad key [redacted]"),
        ("aws AKIAABCDEFGHIJKLMNOP", "aws [redacted]"),
        ("monkey=banana is fine", "monkey=banana is fine"),
    ],
)
def test_scrub_removes_credentials(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_removes_the_exact_secret_and_shortens() -> None:
    assert scrub("x plainsecretvalue y", "plainsecretvalue") == "x [redacted] y"
    assert len(scrub("a" * 2000)) == 515


def test_settings_to_exporter_and_sampler() -> None:
    http = build_exporter(Settings(otel_exporter_otlp_endpoint="http://jaeger:4318/"))
    assert isinstance(http, HttpExporter) and http._endpoint == "http://jaeger:4318/v1/traces"
    exact = build_exporter(Settings(otel_exporter_otlp_traces_endpoint="http://c:4318/custom"))
    assert isinstance(exact, HttpExporter) and exact._endpoint == "http://c:4318/custom"
    grpc = build_exporter(
        Settings(otel_exporter_otlp_endpoint="http://jaeger:4317", otel_exporter_otlp_protocol="grpc")
    )
    assert isinstance(grpc, GrpcExporter)
    grpc.shutdown()
    assert isinstance(build_sampler("traceidratio", 0.25), TraceIdRatioBased)
    assert isinstance(build_sampler("parentbased_traceidratio", 0.25), ParentBased)
    assert parse_pairs("a=1, b = two ,bad,=x") == {"a": "1", "b": "two"}


def test_settings_read_the_standard_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-a")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    s = Settings()
    assert s.otel_exporter_otlp_endpoint == "http://jaeger:4318" and s.otel_exporter_otlp_protocol == "grpc"
    assert s.otel_service_name == "gw-a" and s.otel_traces_sampler == "parentbased_traceidratio"
    assert s.otel_traces_sampler_arg == 0.1


@pytest.mark.parametrize(
    "name",
    [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ],
)
def test_sampling_decision_is_the_sdk_samplers(name: str) -> None:
    import random

    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    sdk, ours, rng = build_sampler(name, 0.3), sampling_decision(name, 0.3), random.Random(7)
    for _ in range(2000):
        trace_id = rng.getrandbits(128) or 1
        for parent in (None, True, False):
            ctx = None
            if parent is not None:
                flags = TraceFlags(TraceFlags.SAMPLED if parent else TraceFlags.DEFAULT)
                ctx = set_span_in_context(NonRecordingSpan(SpanContext(trace_id, 5, True, flags)))
            expected = sdk.should_sample(ctx, trace_id, "POST /v1/chat/completions").decision.is_sampled()
            assert ours(trace_id, parent) == expected, (trace_id, parent)


HEX = "0123456789abcdef"
TRACEPARENTS = st.one_of(
    st.builds(
        lambda v, t, s, f, rest: f"{v}-{t}-{s}-{f}{rest}",
        st.sampled_from(["00", "01", "cc", "ff", "0", "0g", "AA"]),
        st.sampled_from(["0" * 32, "4bf92f3577b34da6a3ce929d0e0e4736", "4BF92F3577B34DA6A3CE929D0E0E4736"])
        | st.text(HEX, min_size=31, max_size=33),
        st.sampled_from(["0" * 16, "00f067aa0ba902b7"]) | st.text(HEX, min_size=15, max_size=17),
        st.sampled_from(["00", "01", "ff", "1", "0x"]),
        st.sampled_from(["", "-", "-extra", "extra", " ", "\t"]),
    ),
    st.text(max_size=80),
)


@settings(max_examples=500, deadline=None)
@given(value=TRACEPARENTS, padding=st.sampled_from(["", " ", "\t "]))
def test_traceparent_parsed_as_the_sdk_propagator_does(value: str, padding: str) -> None:
    header = padding + value + padding
    ctx = get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": header})
    ).get_span_context()
    expected = (ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled) if ctx.is_valid else None
    assert parse_traceparent(header) == expected


def test_incoming_tracestate_is_passed_upstream() -> None:
    tracing, _ = traced(otel_traces_sampler="parentbased_always_off")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    req = request({"traceparent": parent, "tracestate": "vendor=abc,other=1"})
    tracing.request_started(req)
    att = AttemptRecord(target("a"), 1)
    req.attempts.append(att)
    headers: dict[str, str] = {}
    tracing.attempt_started(req, att, headers)
    tracing.shutdown()
    assert headers["tracestate"] == "vendor=abc,other=1"
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert headers["traceparent"].endswith("-00")  # the parent's decision: not sampled


def test_attempt_ending_after_its_request_keeps_the_span_as_closed() -> None:
    """A hedge's loser may end after the request: its span was closed with the request and stays so,
    whatever the loop writes to the record while the export thread reads it."""
    tracing, memory = traced()
    req = request()
    tracing.request_started(req)
    plan(req, target("a"), target("b"))
    winner, loser = AttemptRecord(target("a"), 1), AttemptRecord(target("b"), 2)
    for att in (winner, loser):
        req.attempts.append(att)
        tracing.attempt_started(req, att, {})
    winner.outcome, winner.duration_s = "ok", 0.02
    tracing.attempt_finished(req, winner)
    req.status, req.backend, req.duration_s = 200, "a", 0.05
    tracing.request_finished(req)
    loser.outcome, loser.error, loser.duration_s = "server_error", "late", 9.0
    tracing.attempt_finished(req, loser)
    tracing.shutdown()
    spans = by_name(memory.get_finished_spans())
    (late,) = spans["chat b-model"]
    assert "routeway.outcome" not in dict(late.attributes or {})
    assert late.status.status_code == StatusCode.UNSET
    (server,) = spans["POST /v1/chat/completions"]
    assert dict(server.attributes or {})["routeway.gateway_overhead_ms"] == pytest.approx(30.0)
