"""OpenTelemetry traces of each request (GenAI semantic conventions) exported over OTLP; an Observer."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from random import getrandbits
from time import time_ns
from typing import Any
from urllib.parse import urlsplit

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
from opentelemetry.trace import TraceState

from gateway import __version__
from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.otlp_encode import Encoder, Fixed, SpanRecord
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
        build=SpanBuilder(candidates=settings.trace_candidates).spans,
        max_queue=settings.otel_bsp_max_queue_size,
        batch=settings.otel_bsp_max_export_batch_size,
        delay_s=settings.otel_bsp_schedule_delay_ms / 1000,
        on_drop=on_drop,
    )
    decide = sampling_decision(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    return Tracing(decide, queue)


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
    """A request's trace: ids, the sampling decision, the incoming parent (if any), the first attempt's
    start (the routing span's end)."""

    __slots__ = ("trace_id", "hex", "span_id", "parent_id", "remote", "sampled", "state", "routed_ns")

    def __init__(self, trace_id: int, hex_id: str, parent_id: int, sampled: bool, state: str) -> None:
        self.trace_id = trace_id
        self.hex = hex_id  # the access log's trace_id and the upstream traceparent's
        self.parent_id = parent_id
        self.sampled = sampled
        self.state = state
        self.span_id = _new_id(64) if sampled else 0  # the SERVER span's: only a sampled request has spans
        self.remote = parent_id != 0
        self.routed_ns = 0


def _new_id(bits: int) -> int:
    while True:
        n = getrandbits(bits)
        if n:
            return n


# W3C Trace Context: version-trace_id-parent_id-flags, lowercase hex; a later version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACEPARENT_MAX = 512
_TRACESTATE_MAX = 8192


def parse_traceparent(value: str) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a valid `traceparent`, else None (then a new trace starts)."""
    if len(value) > _TRACEPARENT_MAX:
        return None
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        return None
    version, trace_hex, span_hex, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_hex == "0" * 32 or span_hex == "0" * 16:
        return None
    return int(trace_hex, 16), int(span_hex, 16), bool(int(flags, 16) & 1)


def _trace_state(value: str | None) -> str:
    """The incoming `tracestate`, validated and normalised by the SDK (rare: only with a parent)."""
    if not value or len(value) > _TRACESTATE_MAX:
        return ""
    return TraceState.from_header([value]).to_header()


# What a sampled request leaves for the export thread: the record, its trace, its end (ns), and the
# gateway's own share of its time (ms), taken when it finished (a hedge's loser may still change later).
Finished = tuple[RequestRecord, _Trace, int, float]
_OPEN = 2  # att.context[_SPAN]: (span id, start) while open; + (end, finished?) once closed


class Tracing:
    """Per request: a SERVER span, a routing span and one CLIENT span per upstream attempt.

    On the event loop the hooks only take ids, times and the sampling decision: an unsampled request
    carries its trace id upstream and nothing more; a sampled one leaves its finished RequestRecord in the
    span queue, and the export thread turns it into spans (SpanBuilder) and encodes them in batches. The
    standard sampler decides once per request, at its start. No prompt or completion text is recorded, and
    error texts are scrubbed of credentials."""

    def __init__(self, decide: Decide, queue: SpanQueue) -> None:
        self._decide = decide
        self._queue = queue

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def shutdown(self) -> None:
        """Sends the last spans and stops the exporter (blocking: call off the event loop)."""
        self._queue.shutdown()

    def request_started(self, req: RequestRecord) -> None:
        headers = req.incoming_headers
        parent = None
        if headers and "traceparent" in headers:
            parent = parse_traceparent(headers["traceparent"])
        if parent is None:
            trace_id = getrandbits(128) or _new_id(128)
            tr = _Trace(trace_id, f"{trace_id:032x}", 0, self._decide(trace_id, None), "")
        else:
            trace_id, parent_id, parent_sampled = parent
            state = _trace_state(headers.get("tracestate")) if headers else ""
            tr = _Trace(
                trace_id, f"{trace_id:032x}", parent_id, self._decide(trace_id, parent_sampled), state
            )
        req.context[_TRACE] = tr
        req.context[TRACE_ID_KEY] = tr.hex

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        tr: _Trace | None = req.context.get(_TRACE)
        if tr is None:
            return
        span_id = _new_id(64)
        # W3C traceparent upstream; an unsampled request still carries its trace id (sampled flag off).
        if tr.sampled:
            now = time_ns()
            if not tr.routed_ns:
                tr.routed_ns = now
            att.context[_SPAN] = (span_id, now)
            headers["traceparent"] = f"00-{tr.hex}-{span_id:016x}-01"
        else:
            headers["traceparent"] = f"00-{tr.hex}-{span_id:016x}-00"
        if tr.state:
            headers["tracestate"] = tr.state

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        opened: tuple[int, int] | None = att.context.get(_SPAN)
        if opened is not None and len(opened) == _OPEN:  # the attempt's record is final from here on
            att.context[_SPAN] = (*opened, time_ns(), True)

    def request_finished(self, req: RequestRecord) -> None:
        tr: _Trace | None = req.context.pop(_TRACE, None)
        if tr is None or not tr.sampled:
            return
        now = time_ns()
        spans = 2 if tr.routed_ns or req.model is not None else 1  # a routing span once a model was asked
        upstream_s = 0.0
        for att in req.attempts:
            opened = att.context.get(_SPAN)
            if opened is None:
                continue
            spans += 1
            if len(opened) == _OPEN:  # never finished: closed now; its later end is not recorded
                att.context[_SPAN] = (*opened, now, False)
            elif att.duration_s is not None:
                upstream_s += att.duration_s
        overhead_ms = round(max(0.0, (req.duration_s or 0.0) - upstream_s) * 1000, 3)
        finished: Finished = (req, tr, now, overhead_ms)
        self._queue.add(finished, spans)


class SpanBuilder:
    """A finished sampled request to its spans, on the export thread; the attributes a target or an
    endpoint always has are kept as encoded groups (otlp_encode.Fixed), made once per target or endpoint."""

    def __init__(self, *, candidates: bool = False) -> None:
        self._candidates = candidates
        self._fixed: dict[tuple[Any, ...], tuple[object, Fixed]] = {}  # by key: (the object it is of, group)
        self._models: dict[str, str] = {}  # client-chosen model names, scrubbed and clipped
        self._addresses: dict[str, dict[str, Any]] = {}  # by base URL: the policy's few, parsed once

    def spans(self, finished: Finished) -> list[SpanRecord]:
        req, tr, end, overhead_ms = finished
        start = int(req.started_wall * 1e9)
        out: list[SpanRecord] = []
        if tr.routed_ns or req.model is not None:
            out.append(self._routing_span(req, tr, start, tr.routed_ns or end))
        for att in req.attempts:
            closed: tuple[int, int, int, bool] | None = att.context.get(_SPAN)
            if closed is not None:
                out.append(self._attempt_span(req, tr, att, closed))
        failed = req.status is not None and req.status >= 500
        shared, attrs = self._request_attributes(req, overhead_ms)
        out.append(
            SpanRecord(
                f"POST {req.path}",
                tr.trace_id,
                tr.span_id,
                tr.parent_id,
                tr.remote,
                _SERVER,
                start,
                end,
                attrs,
                _ERROR if failed else 0,
                (req.error or "") if failed else "",
                tr.state,
                shared,
            )
        )
        return out

    def _attempt_span(
        self, req: RequestRecord, tr: _Trace, att: AttemptRecord, closed: tuple[int, int, int, bool]
    ) -> SpanRecord:
        span_id, start, end, finished = closed
        t = att.target
        op = req.operation_name or req.op
        attrs: dict[str, Any] = {"routeway.attempt": att.number}
        code, message = 0, ""
        if finished:
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
            if att.outcome == "ok":
                attrs["gen_ai.response.model"] = t.model_id
            elif att.outcome != "cancelled":  # a hedge's loser or a client gone: stopped, not failed
                attrs["error.type"] = att.outcome
                code, message = _ERROR, scrub(att.error or att.outcome, t.api_key)
        shared = (self._target_group(t, op, req.stream),)
        return SpanRecord(
            f"{op} {t.model_id}",
            tr.trace_id,
            span_id,
            tr.span_id,
            False,
            _CLIENT,
            start,
            end,
            attrs,
            code,
            message,
            tr.state,
            shared,
        )

    def _routing_span(self, req: RequestRecord, tr: _Trace, start: int, end: int) -> SpanRecord:
        """The plan as a span from the request's start (parse, validation, scoring) to the first attempt;
        the router has no planning hook, so the start is the request's."""
        attrs = _routing_attributes(req, self._candidates, self._clip(req.model or ""))
        code, message = (_ERROR, req.error or "no route") if req.route is None else (0, "")
        span_id = _new_id(64)
        return SpanRecord(
            "routeway.route",
            tr.trace_id,
            span_id,
            tr.span_id,
            False,
            _INTERNAL,
            start,
            end,
            attrs,
            code,
            message,
            tr.state,
        )

    def _request_attributes(
        self, req: RequestRecord, overhead_ms: float
    ) -> tuple[tuple[Fixed, ...], dict[str, Any]]:
        endpoint = self._group(
            ("endpoint", req.path, req.op, req.stream),
            lambda: {
                "http.request.method": "POST",
                "http.route": req.path,
                "url.path": req.path,
                "gen_ai.operation.name": req.operation_name or req.op,
                "routeway.stream": req.stream,
            },
        )
        attrs: dict[str, Any] = {
            "routeway.request_id": req.request_id,
            "routeway.attempts": len(req.attempts),
            "routeway.gateway_overhead_ms": overhead_ms,
        }
        optional: Mapping[str, Any] = {
            "http.response.status_code": req.status,
            "gen_ai.request.model": self._clip(req.model) if req.model else None,
            "gen_ai.usage.input_tokens": req.input_tokens,
            "gen_ai.usage.output_tokens": req.output_tokens,
            "routeway.route": req.route,
            "routeway.objective": req.objective,
            "routeway.backend": req.backend,
            "routeway.cost_usd": req.cost_usd,
            "routeway.probe": True if req.pick == "probe" else None,
            "error.type": req.error,
        }
        attrs.update((k, v) for k, v in optional.items() if v is not None)
        served = next((a for a in reversed(req.attempts) if a.target.backend == req.backend), None)
        if served is None:
            return (endpoint,), attrs
        t = served.target
        return (endpoint, self._group(("served", id(t)), lambda: _served_attributes(t), of=t)), attrs

    def _target_group(self, t: Target, op: str, stream: bool) -> Fixed:
        return self._group(
            ("target", id(t), op, stream),
            lambda: {
                "gen_ai.operation.name": op,
                "gen_ai.request.model": t.model_id,
                "routeway.stream": stream,
                **_target_attributes(t, self._addresses),
            },
            of=t,
        )

    def _group(self, key: tuple[Any, ...], make: Callable[[], Mapping[str, Any]], of: object = None) -> Fixed:
        """The group for `key`; `of`, the object whose id is in the key, is kept so the id is not reused."""
        hit = self._fixed.get(key)
        if hit is not None and hit[0] is of:
            return hit[1]
        if len(self._fixed) >= 4096:  # policy reloads bring new targets: stay bounded
            self._fixed.clear()
        group = Fixed(make())
        self._fixed[key] = (of, group)
        return group

    def _clip(self, model: str) -> str:
        clipped = self._models.get(model)
        if clipped is None:
            if len(self._models) >= 1024:
                self._models.clear()
            clipped = self._models[model] = _clip(model)
        return clipped


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


def _routing_attributes(req: RequestRecord, candidates: bool, model: str) -> dict[str, Any]:
    ranked: list[Scored] = req.candidates
    attrs: dict[str, Any] = {
        "gen_ai.request.model": model,
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


def _served_attributes(t: Target) -> dict[str, Any]:
    """The SERVER span's view of the backend that answered."""
    attrs: dict[str, Any] = {
        "gen_ai.response.model": t.model_id,
        "gen_ai.provider.name": semconv_provider_name(t.provider),
    }
    if t.hardware:
        attrs["routeway.hardware"] = t.hardware
    return attrs


def _clip(text: str) -> str:
    """A client-chosen string (the model name) kept short and free of anything key-shaped."""
    return scrub(text, limit=128)
