"""OpenTelemetry traces of each request (GenAI semantic conventions) exported over OTLP; an Observer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from random import getrandbits
from time import time_ns
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import INVALID_SPAN_CONTEXT
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.otlp_encode import Encoder, SpanRecord
from gateway.observability.span_export import OnDrop, OtlpHttpSender, SdkSender, Sender, SpanQueue
from gateway.providers.base import Target
from gateway.providers.registry import semconv_provider_name
from gateway.redact import scrub
from gateway.routing.scoring import Dropped, Scored
from gateway.settings import Settings

TRACE_ID_KEY = "trace_id"  # req.context key the access log reads
_TRACE = "otel.trace"
_SPAN = "otel.span"
_INTERNAL, _SERVER, _CLIENT = 1, 2, 3  # OTLP SpanKind
_ERROR = 2  # OTLP StatusCode


def parse_pairs(raw: str) -> dict[str, str]:
    """The `k=v,k=v` lists of OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES."""
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def build_sampler(name: str, arg: float | None) -> Sampler:
    """The SDK sampler a setting names: the reference `sampling_decision` is checked against."""
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

    return HttpExporter(endpoint=http_traces_endpoint(settings), headers=headers, timeout=timeout_s)


def http_traces_endpoint(settings: Settings) -> str:
    """OTLP/HTTP: the traces endpoint as given, else the base endpoint's /v1/traces."""
    base = (settings.otel_exporter_otlp_endpoint or "").rstrip("/")
    return settings.otel_exporter_otlp_traces_endpoint or f"{base}/v1/traces"


def build_tracing(
    settings: Settings, exporter: SpanExporter | None = None, on_drop: OnDrop | None = None
) -> Tracing | None:
    """The tracing observer, or None (nothing registered, nothing paid) when no endpoint is configured.

    OTLP/HTTP protobuf goes through our encoder; gRPC, or an exporter given here (tests), through the SDK's
    exporters. `on_drop(reason, n)` hears of spans dropped (a full queue, a failed export)."""
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
    resource = Resource(attributes)
    sender: Sender
    if exporter is None and settings.otel_exporter_otlp_protocol == "http/protobuf":
        encoder = Encoder(resource.attributes, "routeway", __version__)
        timeout_s = settings.otel_exporter_otlp_timeout_ms / 1000
        headers = parse_pairs(settings.otel_exporter_otlp_headers)
        sender = OtlpHttpSender(http_traces_endpoint(settings), headers, timeout_s, encoder)
    else:
        scope = InstrumentationScope("routeway", __version__)
        sender = SdkSender(exporter or build_exporter(settings), resource, scope)
    queue = SpanQueue(
        sender,
        max_queue=settings.otel_bsp_max_queue_size,
        batch=settings.otel_bsp_max_export_batch_size,
        delay_s=settings.otel_bsp_schedule_delay_ms / 1000,
        on_drop=on_drop,
    )
    decide = sampling_decision(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    return Tracing(decide, queue, candidates=settings.trace_candidates)


Decide = Callable[[int, bool | None], bool]  # (trace id, the incoming parent's sampled flag or None)


def sampling_decision(name: str, arg: float | None) -> Decide:
    """The decision of build_sampler's SDK sampler, without its per-call objects (~4 µs a request):
    ratios compare the trace id's low 64 bits with the SDK's own bound, parent-based ones follow a
    parent's sampled flag (the SDK's defaults for remote parents)."""
    bound = TraceIdRatioBased(1.0 if arg is None else arg).bound
    root: Callable[[int], bool]
    if name.endswith("always_on"):
        root = _yes
    elif name.endswith("always_off"):
        root = _no
    else:
        root = lambda trace_id: trace_id & 0xFFFFFFFFFFFFFFFF < bound  # noqa: E731
    if not name.startswith("parentbased_"):
        return lambda trace_id, parent: root(trace_id)
    return lambda trace_id, parent: root(trace_id) if parent is None else parent


def _yes(trace_id: int) -> bool:
    return True


def _no(trace_id: int) -> bool:
    return False


class _Trace:
    """A request's trace: ids, the sampling decision, and the incoming parent (if any)."""

    __slots__ = ("trace_id", "span_id", "parent_id", "remote", "sampled", "state", "routed")

    def __init__(self, trace_id: int, parent_id: int, sampled: bool, state: str) -> None:
        self.trace_id, self.parent_id, self.sampled, self.state = trace_id, parent_id, sampled, state
        self.span_id = _new_id(64)
        self.remote = parent_id != 0
        self.routed = False


def _new_id(bits: int) -> int:
    while True:
        n = getrandbits(bits)
        if n:
            return n


class Tracing:
    """Per request: a SERVER span, a routing span and one CLIENT span per upstream attempt.

    Spans are plain records built from the request and attempt records, never SDK Span objects: no
    context, no locks, no per-attribute validation on the loop (our attribute values are typed by us).
    The standard sampler decides once per request, at its start; an unsampled request only carries its
    trace id upstream. No prompt or completion text is recorded, and error texts are scrubbed of
    credentials. The candidate list goes on the routing span only when asked (it is the costliest part)."""

    def __init__(self, decide: Decide, queue: SpanQueue, *, candidates: bool = False) -> None:
        self._decide = decide
        self._queue = queue
        self._candidates = candidates
        self._propagator = TraceContextTextMapPropagator()
        self._addresses: dict[str, dict[str, Any]] = {}  # by base URL: the policy's few, parsed once

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def shutdown(self) -> None:
        """Sends the last spans and stops the exporter (blocking: call off the event loop)."""
        self._queue.shutdown()

    def request_started(self, req: RequestRecord) -> None:
        headers = req.incoming_headers
        parent = INVALID_SPAN_CONTEXT
        if headers and "traceparent" in headers:
            parent_ctx = self._propagator.extract(headers, context=Context())
            parent = trace.get_current_span(parent_ctx).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else _new_id(128)
        sampled = self._decide(trace_id, parent.trace_flags.sampled if parent.is_valid else None)
        state = parent.trace_state.to_header() if parent.is_valid and parent.trace_state else ""
        tr = _Trace(trace_id, parent.span_id if parent.is_valid else 0, sampled, state)
        req.context[_TRACE] = tr
        req.context[TRACE_ID_KEY] = f"{trace_id:032x}"

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        tr: _Trace | None = req.context.get(_TRACE)
        if tr is None:
            return
        now = time_ns()
        if not tr.routed:
            self._routing_span(req, tr, now)
        span_id = _new_id(64)
        # W3C traceparent upstream; an unsampled request still carries its trace id (sampled flag off).
        headers["traceparent"] = f"00-{tr.trace_id:032x}-{span_id:016x}-{'01' if tr.sampled else '00'}"
        if tr.state:
            headers["tracestate"] = tr.state
        if tr.sampled:
            t = att.target
            op = req.operation_name or req.op
            attrs = {
                "gen_ai.operation.name": op,
                "gen_ai.request.model": t.model_id,
                "routeway.attempt": att.number,
                "routeway.stream": req.stream,
                **_target_attributes(t, self._addresses),
            }
            att.context[_SPAN] = (span_id, now, f"{op} {t.model_id}", attrs)

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        open_span: tuple[int, int, str, dict[str, Any]] | None = att.context.pop(_SPAN, None)
        if open_span is None:
            return
        span_id, start, name, attrs = open_span
        attrs["routeway.outcome"] = att.outcome
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
        code, message = 0, ""
        if att.outcome == "ok":
            attrs["gen_ai.response.model"] = att.target.model_id
        elif att.outcome != "cancelled":  # a hedge's loser or a client gone: stopped, not failed
            attrs["error.type"] = att.outcome
            code, message = _ERROR, scrub(att.error or att.outcome, att.target.api_key)
        self._child(req.context[_TRACE], name, span_id, _CLIENT, start, time_ns(), attrs, code, message)

    def request_finished(self, req: RequestRecord) -> None:
        tr: _Trace | None = req.context.pop(_TRACE, None)
        if tr is None or not tr.sampled:
            return
        now = time_ns()
        if not tr.routed and req.model is not None:
            self._routing_span(req, tr, now)  # routing ended the request (unknown model, nothing eligible)
        for att in req.attempts:  # an attempt the router never finished must not stay open forever
            leftover: tuple[int, int, str, dict[str, Any]] | None = att.context.pop(_SPAN, None)
            if leftover is not None:
                span_id, start, name, attrs = leftover
                self._child(tr, name, span_id, _CLIENT, start, now, attrs, 0, "")
        failed = req.status is not None and req.status >= 500
        self._queue.add(
            SpanRecord(
                f"POST {req.path}",
                tr.trace_id,
                tr.span_id,
                tr.parent_id,
                tr.remote,
                _SERVER,
                int(req.started_wall * 1e9),
                now,
                _request_attributes(req),
                _ERROR if failed else 0,
                (req.error or "") if failed else "",
                tr.state,
            )
        )

    def _routing_span(self, req: RequestRecord, tr: _Trace, end: int) -> None:
        """The plan as a span from the request's start (parse, validation, scoring) to the first attempt;
        the router has no planning hook, so the start is the request's."""
        tr.routed = True
        if not tr.sampled:
            return
        attrs = _routing_attributes(req, self._candidates)
        code, message = (_ERROR, req.error or "no route") if req.route is None else (0, "")
        start = int(req.started_wall * 1e9)
        self._child(tr, "routeway.route", _new_id(64), _INTERNAL, start, end, attrs, code, message)

    def _child(
        self,
        tr: _Trace,
        name: str,
        span_id: int,
        kind: int,
        start: int,
        end: int,
        attrs: dict[str, Any],
        code: int,
        message: str,
    ) -> None:
        parent = tr.span_id
        record = SpanRecord(
            name, tr.trace_id, span_id, parent, False, kind, start, end, attrs, code, message, tr.state
        )
        self._queue.add(record)


def _target_attributes(t: Target, addresses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.provider.name": semconv_provider_name(t.provider),
        "routeway.backend": t.backend,
        "routeway.model": t.model,
        **_server_address(t.base_url, addresses),
    }
    if t.hardware:
        attrs["routeway.hardware"] = t.hardware
    return attrs


def _server_address(base_url: str, addresses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found = addresses.get(base_url)
    if found is None:
        url = urlsplit(base_url)  # only host and port: a URL's path or query may carry a key
        found = {"server.address": url.hostname} if url.hostname else {}
        if url.port:
            found["server.port"] = url.port
        if len(addresses) >= 1024:  # policy reloads with ever new URLs: stay bounded
            addresses.clear()
        addresses[base_url] = found
    return found


def _routing_attributes(req: RequestRecord, candidates: bool) -> dict[str, Any]:
    ranked: list[Scored] = req.candidates
    attrs: dict[str, Any] = {
        "gen_ai.request.model": _clip(req.model or ""),
        "routeway.candidates.count": len(ranked),
    }
    if candidates:  # ROUTEWAY_TRACE_CANDIDATES: the whole ranking, and why others were left out
        dropped: list[Dropped] = req.dropped
        attrs["routeway.candidates.backend"] = tuple(s.target.backend for s in ranked)
        attrs["routeway.candidates.model_id"] = tuple(s.target.model_id for s in ranked)
        attrs["routeway.candidates.hardware"] = tuple(s.target.hardware or "" for s in ranked)
        attrs["routeway.candidates.score"] = tuple(float(s.score) for s in ranked)
        attrs["routeway.candidates.predicted_latency_ms"] = tuple(round(s.latency_ms, 3) for s in ranked)
        attrs["routeway.candidates.predicted_cost_usd"] = tuple(float(s.cost_usd) for s in ranked)
        attrs["routeway.dropped.backend"] = tuple(d.backend for d in dropped)
        attrs["routeway.dropped.reason"] = tuple(scrub(d.reason) for d in dropped)
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
        "gen_ai.operation.name": req.operation_name or req.op,
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
