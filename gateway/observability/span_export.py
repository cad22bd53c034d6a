"""Finished spans from the event loop to an OTLP receiver: a bounded queue, a batching thread, a sender.

The loop only appends an item (a finished request, worth a known number of spans) to a deque; when the
queue would exceed its bound in spans the item is dropped and its spans counted, never waited for. One
thread wakes when a batch's worth of spans is waiting, else every schedule delay, builds the spans of the
items it took, encodes them and sends them. Senders: OTLP/HTTP protobuf with our encoder (the default),
or any SDK SpanExporter (gRPC, tests' in-memory exporter) fed ReadableSpans."""

from __future__ import annotations

import http.client
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from gateway.observability.otlp_encode import Encoder, SpanRecord

log = logging.getLogger("routeway")
OnDrop = Callable[[str, int], None]  # (reason, spans): "queue_full" or "export_failed"


class Sender(Protocol):
    def send(self, spans: Sequence[SpanRecord]) -> bool: ...

    def shutdown(self) -> None: ...


class OtlpHttpSender:
    """POSTs encoded batches on one keep-alive connection (http.client: this thread is its only user)."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float, encoder: Encoder) -> None:
        url = urlsplit(endpoint)
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "localhost", url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._headers = {**headers, "content-type": "application/x-protobuf"}
        self._timeout_s = timeout_s
        self._encoder = encoder
        self._conn: http.client.HTTPConnection | None = None

    def send(self, spans: Sequence[SpanRecord]) -> bool:
        body = self._encoder.encode(spans)
        for _ in range(2):  # once more on a fresh connection: the receiver may have closed an idle one
            try:
                conn = self._conn = self._conn or self._connect()
                conn.request("POST", self._path, body, self._headers)
                resp = conn.getresponse()
                resp.read()
                return 200 <= resp.status < 300
            except (OSError, http.client.HTTPException):
                self.shutdown()
        return False

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout_s)

    def shutdown(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SdkSender:
    """Any SDK SpanExporter (OTLP/gRPC, in-memory in tests), given the records as ReadableSpans."""

    def __init__(self, exporter: SpanExporter, resource: Resource, scope: InstrumentationScope) -> None:
        self._exporter, self._resource, self._scope = exporter, resource, scope

    def send(self, spans: Sequence[SpanRecord]) -> bool:
        return self._exporter.export([self.readable(s) for s in spans]) == SpanExportResult.SUCCESS

    def readable(self, s: SpanRecord) -> ReadableSpan:
        state = TraceState.from_header([s.trace_state]) if s.trace_state else None
        ctx = SpanContext(s.trace_id, s.span_id, False, TraceFlags(TraceFlags.SAMPLED), state)
        parent = SpanContext(s.trace_id, s.parent_id, s.parent_remote) if s.parent_id else None
        return ReadableSpan(
            name=s.name,
            context=ctx,
            parent=parent,
            resource=self._resource,
            attributes={k: v for group in (*s.shared, s.attributes) for k, v in group.items()},
            kind=SpanKind(s.kind - 1),  # OTLP numbers from UNSPECIFIED=0, the SDK's from INTERNAL=0
            status=Status(StatusCode(s.status_code), s.status_message or None),
            start_time=s.start_ns,
            end_time=s.end_ns,
            instrumentation_scope=self._scope,
        )

    def shutdown(self) -> None:
        self._exporter.shutdown()


def _one(span: SpanRecord) -> Sequence[SpanRecord]:
    return (span,)


class SpanQueue:
    """Bounded in spans: `add` never blocks the loop; what does not fit is dropped and counted."""

    def __init__(
        self,
        sender: Sender,
        *,
        build: Callable[[Any], Sequence[SpanRecord]] = _one,
        max_queue: int = 2048,
        batch: int = 512,
        delay_s: float = 5.0,
        on_drop: OnDrop | None = None,
    ) -> None:
        self._sender, self._build = sender, build
        self._queue: deque[tuple[Any, int]] = deque()  # (item, its spans)
        # Spans ever queued and ever taken: one writer each (the loop, the thread), so no lock is needed.
        self._added = self._taken = 0
        self._max, self._batch, self._delay_s = max_queue, batch, delay_s
        self._on_drop = on_drop
        self._dropped = {"queue_full": 0, "export_failed": 0}  # one writer each: the loop, the thread
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="routeway-span-export", daemon=True)
        self._thread.start()

    def add(self, item: Any, spans: int = 1) -> None:
        """Queues `item`, which `build` turns into `spans` spans on the export thread."""
        waiting = self._added - self._taken
        if waiting + spans > self._max:
            self._drop("queue_full", spans)
            return
        self._queue.append((item, spans))
        self._added += spans
        if waiting < self._batch <= waiting + spans:  # a full batch: send now rather than at the next tick
            self._wake.set()

    @property
    def dropped(self) -> int:
        return sum(self._dropped.values())

    @property
    def waiting(self) -> int:
        """Spans queued and not yet taken by the export thread."""
        return self._added - self._taken

    def _drop(self, reason: str, n: int) -> None:
        self._dropped[reason] += n
        if self._on_drop is not None:
            self._on_drop(reason, n)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue, popleft, build = self._queue, self._queue.popleft, self._build
        while queue:
            items: list[Any] = []
            n = 0
            while queue and n < self._batch:
                item, spans = popleft()
                items.append(item)
                n += spans
            self._taken += n
            try:
                ok = self._sender.send([span for item in items for span in build(item)])
            except Exception as exc:  # noqa: BLE001 - the export thread must survive any sender failure
                log.warning("span export failed", extra={"exc_type": type(exc).__name__})
                ok = False
            if not ok:
                self._drop("export_failed", n)

    def shutdown(self) -> None:
        """Sends what is left and stops the thread and the sender (blocking: call off the event loop)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._sender.shutdown()
