"""Our OTLP encoder against the SDK's, and the span queue's bounds (drops counted, never a wait)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.observability.otlp_encode import Encoder, SpanRecord
from gateway.observability.span_export import SdkSender, SpanQueue

RESOURCE = {"service.name": "routeway", "service.version": "1.2.3", "deployment.environment": "test"}


def records() -> list[SpanRecord]:
    server = SpanRecord(
        "POST /v1/chat/completions",
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        0x00F067AA0BA902B7,
        True,
        2,
        1_700_000_000_000_000_000,
        1_700_000_000_123_456_789,
        {
            "http.response.status_code": 502,
            "routeway.stream": False,
            "routeway.partial": True,
            "routeway.cost_usd": 2.5e-05,
            "routeway.negative": -3,
            "gen_ai.request.model": "llama-3.3-70b ✓",
            "routeway.candidates.backend": ("a", "b"),
            "routeway.candidates.score": (0.001, 0.002),
            "routeway.empty": (),
        },
        2,
        "upstream failed: 502",
        "vendor=abc",
    )
    tid, sid = server.trace_id, server.span_id
    client = SpanRecord("chat m", tid, 0x1, sid, False, 3, 5, 6, {"a": "b"}, 0, "", "")
    routing = SpanRecord("routeway.route", tid, 0x2, sid, False, 1, 5, 5, {}, 0, "", "")
    return [server, client, routing]


def test_same_message_as_the_sdk_encoder() -> None:
    sdk = SdkSender(InMemorySpanExporter(), Resource(RESOURCE), InstrumentationScope("routeway", "1.2.3"))
    spans = records()
    theirs = encode_spans([sdk.readable(s) for s in spans])
    ours = ExportTraceServiceRequest.FromString(Encoder(RESOURCE, "routeway", "1.2.3").encode(spans))
    assert ours == theirs
    encoder = Encoder(RESOURCE, "routeway", "1.2.3")
    assert encoder.encode(spans) == encoder.encode(spans)  # the cached attribute fields change nothing
    assert len(ours.resource_spans[0].scope_spans[0].spans) == 3


class Gate:
    """A sender that waits until released, then records what it got (or fails when told to)."""

    def __init__(self, ok: bool = True) -> None:
        self.release, self.ok = threading.Event(), ok
        self.sent: list[SpanRecord] = []

    def send(self, spans: Sequence[SpanRecord]) -> bool:
        self.release.wait(10)
        self.sent.extend(spans)
        return self.ok

    def shutdown(self) -> None:
        pass


def test_full_queue_drops_and_counts_without_waiting() -> None:
    gate, drops = Gate(), []
    queue = SpanQueue(gate, max_queue=10, batch=4, delay_s=0.01, on_drop=lambda r, n: drops.append((r, n)))
    span = records()[1]
    started = time.monotonic()
    for _ in range(1000):  # the sender is stuck: the queue fills and the rest is dropped
        queue.add(span)
    assert time.monotonic() - started < 2.0
    gate.release.set()
    queue.shutdown()
    assert queue.dropped == 1000 - len(gate.sent) and 10 <= len(gate.sent) <= 14  # one batch was in flight
    assert {r for r, _ in drops} == {"queue_full"} and sum(n for _, n in drops) == queue.dropped


def test_failed_export_is_counted() -> None:
    gate, drops = Gate(ok=False), []
    gate.release.set()
    queue = SpanQueue(gate, max_queue=100, batch=5, delay_s=0.01, on_drop=lambda r, n: drops.append((r, n)))
    for _ in range(7):
        queue.add(records()[2])
    queue.shutdown()
    assert sum(n for r, n in drops if r == "export_failed") == 7 == queue.dropped
