"""Our OTLP encoder against the SDK's, and the span queue's bounds (drops counted, never a wait)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.observability.otlp_encode import Encoder, Fixed, SpanRecord
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


KEYS = st.sampled_from(
    ["routeway.request_id", "gen_ai.request.model", "routeway.backend", "http.response.status_code", "k"]
) | st.text(min_size=1, max_size=200)
VALUES = st.one_of(
    st.text(max_size=300),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 127, 128, 200, 16383, 16384, 2**32, -1]),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=20), max_size=4).map(tuple),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=4).map(tuple),
)
ATTRS = st.dictionaries(KEYS, VALUES, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(ATTRS, max_size=3),
    own=ATTRS,
    name=st.text(min_size=1, max_size=200),
    status=st.sampled_from([(0, ""), (2, ""), (2, "upstream failed ✗" * 10)]),
    parent=st.sampled_from([(0, False), (0x00F067AA0BA902B7, True), (0x1, False)]),
)
def test_any_attributes_encode_as_the_sdk_does(
    groups: list[dict[str, object]],
    own: dict[str, object],
    name: str,
    status: tuple[int, str],
    parent: tuple[int, bool],
) -> None:
    """Cached fields, cached heads (per key and value length) and shared groups change nothing."""
    seen: set[str] = set()
    shared = []
    for group in [*groups, own]:  # a key appears once per span, as the span builder makes them
        shared.append({k: v for k, v in group.items() if k not in seen})
        seen.update(group)
    *fixed, attrs = shared
    span = SpanRecord(
        name,
        0xABC,
        0xDEF,
        parent[0],
        parent[1],
        3,
        10,
        20,
        attrs,
        status[0],
        status[1],
        "",
        tuple(map(Fixed, fixed)),
    )
    sdk = SdkSender(InMemorySpanExporter(), Resource(RESOURCE), InstrumentationScope("routeway", "1.2.3"))
    theirs = encode_spans([sdk.readable(span)])
    encoder = Encoder(RESOURCE, "routeway", "1.2.3")
    for _ in range(2):  # the second time from the caches
        assert ExportTraceServiceRequest.FromString(encoder.encode([span])) == theirs


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
