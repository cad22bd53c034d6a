"""OpenTelemetry traces of each request (GenAI semantic conventions) exported over OTLP; an Observer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.events import AttemptRecord, RequestRecord
from gateway.providers.base import Target
from gateway.providers.registry import semconv_provider_name
from gateway.redact import scrub
from gateway.routing.scoring import Dropped, Scored
from gateway.settings import Settings

# gen_ai.operation.name for each of our operations.
OPERATION_NAMES: dict[str, str] = {
    "chat": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}

TRACE_ID_KEY = "trace_id"  # req.context key the access log reads
_SPAN = "otel.span"
_ROUTED = "otel.routed"


def parse_pairs(raw: str) -> dict[str, str]:
    """The `k=v,k=v` lists of OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES."""
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def build_sampler(name: str, arg: float | None) -> Sampler:
    ratio = 1.0 if arg is None else arg
    match name:
        case "always_on":
            return ALWAYS_ON
        case "always_off":
            return ALWAYS_OFF
        case "traceidratio":
            return TraceIdRatioBased(ratio)
        case "parentbased_always_off":
            return ParentBased(ALWAYS_OFF)
        case "parentbased_traceidratio":
            return ParentBasedTraceIdRatio(ratio)
        case _:
            return ParentBased(ALWAYS_ON)


def build_exporter(settings: Settings) -> SpanExporter:
    """OTLP over HTTP/protobuf (default) or gRPC; every value comes from Settings, none from the env."""
    headers = parse_pairs(settings.otel_exporter_otlp_headers)
    timeout_s = settings.otel_exporter_otlp_timeout_ms / 1000
    base = (settings.otel_exporter_otlp_endpoint or "").rstrip("/")
    if settings.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = settings.otel_exporter_otlp_traces_endpoint or base
        return GrpcExporter(
            endpoint=endpoint,
            insecure=endpoint.startswith("http://"),
            headers=headers or None,
            timeout=timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    endpoint = settings.otel_exporter_otlp_traces_endpoint or f"{base}/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=headers, timeout=timeout_s)


def build_tracing(settings: Settings, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracing observer, or None (nothing registered, nothing paid) when no endpoint is configured."""
    configured = settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_sdk_disabled or (exporter is None and not configured):
        return None
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        **parse_pairs(settings.otel_resource_attributes),
        "service.name": settings.otel_service_name,
        "service.version": __version__,
    }
    provider = TracerProvider(
        sampler=build_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
        resource=Resource(attributes),
        shutdown_on_exit=False,  # the app's lifespan shuts it down
    )
    processor = BatchSpanProcessor(
        exporter or build_exporter(settings),
        schedule_delay_millis=settings.otel_bsp_schedule_delay_ms,
        export_timeout_millis=settings.otel_exporter_otlp_timeout_ms,
    )
    provider.add_span_processor(processor)
    return Tracing(provider)


class Tracing:
    """Per request: a SERVER span, a routing span and one CLIENT span per upstream attempt.

    Spans are never made current (no contextvars): parents are passed explicitly, so concurrent requests on
    one loop cannot cross. Attributes are computed only for sampled spans. No prompt or completion text is
    recorded, and error texts are scrubbed of credentials."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("routeway", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def shutdown(self) -> None:
        """Flushes pending spans and stops the exporter (blocking: call off the event loop)."""
        self._provider.shutdown()

    def request_started(self, req: RequestRecord) -> None:
        parent = self._propagator.extract(req.incoming_headers or {}, context=Context())
        span = self._tracer.start_span(
            f"POST {req.path}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=int(req.started_wall * 1e9),
        )
        req.context[_SPAN] = span
        ctx = span.get_span_context()
        if ctx.is_valid:
            req.context[TRACE_ID_KEY] = format_trace_id(ctx.trace_id)

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        server: Span | None = req.context.get(_SPAN)
        if server is None:
            return
        if _ROUTED not in req.context:
            self._routing_span(req, server)
        t = att.target
        op = OPERATION_NAMES.get(req.op, req.op)
        span = self._tracer.start_span(
            f"{op} {t.model_id}", context=trace.set_span_in_context(server, Context()), kind=SpanKind.CLIENT
        )
        att.context[_SPAN] = span
        # W3C traceparent upstream; an unsampled span still carries the trace id (with the sampled flag off).
        self._propagator.inject(headers, context=trace.set_span_in_context(span, Context()))
        if span.is_recording():
            span.set_attributes(
                {
                    "gen_ai.operation.name": op,
                    "gen_ai.request.model": t.model_id,
                    "routeway.attempt": att.number,
                    "routeway.stream": req.stream,
                    **_target_attributes(t),
                }
            )

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        span: Span | None = att.context.pop(_SPAN, None)
        if span is None:
            return
        if span.is_recording():
            attrs: dict[str, Any] = {"routeway.outcome": att.outcome}
            if att.status is not None:
                attrs["http.response.status_code"] = att.status
            if att.ttft_s is not None:
                attrs["routeway.ttft_ms"] = round(att.ttft_s * 1000, 3)
            if att.input_tokens is not None:
                attrs["gen_ai.usage.input_tokens"] = att.input_tokens
            if att.output_tokens is not None:
                attrs["gen_ai.usage.output_tokens"] = att.output_tokens
            if att.retry_after is not None:
                attrs["routeway.retry_after_s"] = att.retry_after
            if att.partial:
                attrs["routeway.stream.partial"] = True
            if att.outcome == "ok":
                attrs["gen_ai.response.model"] = att.target.model_id
            elif att.outcome != "cancelled":  # a hedge's loser or a client gone: stopped, not failed
                attrs["error.type"] = att.outcome
                span.set_status(Status(StatusCode.ERROR, scrub(att.error or att.outcome, att.target.api_key)))
            span.set_attributes(attrs)
        span.end()

    def request_finished(self, req: RequestRecord) -> None:
        span: Span | None = req.context.pop(_SPAN, None)
        if span is None:
            return
        if _ROUTED not in req.context and req.model is not None:
            self._routing_span(req, span)  # routing ended the request (unknown model, nothing eligible)
        for att in req.attempts:  # an attempt the router never finished must not stay open forever
            leftover: Span | None = att.context.pop(_SPAN, None)
            if leftover is not None:
                leftover.end()
        if span.is_recording():
            span.set_attributes(_request_attributes(req))
            if req.status is not None and req.status >= 500:
                span.set_status(Status(StatusCode.ERROR, req.error or ""))
        span.end()

    def _routing_span(self, req: RequestRecord, server: Span) -> None:
        """The plan as a span from the request's start (parse, validation, scoring) to the first attempt;
        the router has no planning hook, so the start is the request's."""
        req.context[_ROUTED] = True
        span = self._tracer.start_span(
            "routeway.route",
            context=trace.set_span_in_context(server, Context()),
            start_time=int(req.started_wall * 1e9),
        )
        if span.is_recording():
            span.set_attributes(_routing_attributes(req))
            if req.route is None:
                span.set_status(Status(StatusCode.ERROR, req.error or "no route"))
        span.end()


def _target_attributes(t: Target) -> dict[str, Any]:
    url = urlsplit(t.base_url)  # only host and port: a URL's path or query may carry a key
    attrs: dict[str, Any] = {
        "gen_ai.provider.name": semconv_provider_name(t.provider),
        "routeway.backend": t.backend,
        "routeway.model": t.model,
    }
    if url.hostname:
        attrs["server.address"] = url.hostname
    if url.port:
        attrs["server.port"] = url.port
    if t.hardware:
        attrs["routeway.hardware"] = t.hardware
    return attrs


def _routing_attributes(req: RequestRecord) -> dict[str, Any]:
    ranked: list[Scored] = req.candidates
    dropped: list[Dropped] = req.dropped
    attrs: dict[str, Any] = {
        "gen_ai.request.model": _clip(req.model or ""),
        "routeway.candidates.count": len(ranked),
        "routeway.candidates.backend": [s.target.backend for s in ranked],
        "routeway.candidates.model_id": [s.target.model_id for s in ranked],
        "routeway.candidates.hardware": [s.target.hardware or "" for s in ranked],
        "routeway.candidates.score": [float(s.score) for s in ranked],
        "routeway.candidates.predicted_latency_ms": [round(s.latency_ms, 3) for s in ranked],
        "routeway.candidates.predicted_cost_usd": [float(s.cost_usd) for s in ranked],
        "routeway.dropped.backend": [d.backend for d in dropped],
        "routeway.dropped.reason": [scrub(d.reason) for d in dropped],
    }
    if req.route is not None:
        attrs["routeway.route"] = req.route
    if req.objective is not None:
        attrs["routeway.objective"] = req.objective
    return attrs


def _request_attributes(req: RequestRecord) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "http.request.method": "POST",
        "http.route": req.path,
        "url.path": req.path,
        "gen_ai.operation.name": OPERATION_NAMES.get(req.op, req.op),
        "routeway.request_id": req.request_id,
        "routeway.stream": req.stream,
        "routeway.attempts": len(req.attempts),
        "routeway.gateway_overhead_ms": round(max(0.0, (req.duration_s or 0.0) - req.upstream_s()) * 1000, 3),
    }
    optional: Mapping[str, Any] = {
        "http.response.status_code": req.status,
        "gen_ai.request.model": _clip(req.model) if req.model else None,
        "gen_ai.usage.input_tokens": req.input_tokens,
        "gen_ai.usage.output_tokens": req.output_tokens,
        "routeway.route": req.route,
        "routeway.objective": req.objective,
        "routeway.backend": req.backend,
        "routeway.cost_usd": req.cost_usd,
        "error.type": req.error,
    }
    attrs.update((k, v) for k, v in optional.items() if v is not None)
    served = next((a for a in reversed(req.attempts) if a.target.backend == req.backend), None)
    if served is not None:
        t = served.target
        attrs["gen_ai.response.model"] = t.model_id
        attrs["gen_ai.provider.name"] = semconv_provider_name(t.provider)
        if t.hardware:
            attrs["routeway.hardware"] = t.hardware
    return attrs


def _clip(text: str) -> str:
    """A client-chosen string (the model name) kept short and free of anything key-shaped."""
    return scrub(text, limit=128)
