"""CPU of tracing per request, in-process, on hand-made records (a chat request: one attempt, two
candidates), split as in the server: the observer's hooks on the calling thread (the event loop), and the
export thread's building and encoding of the sampled requests' spans (everything but the POST), in batches
as the span queue hands them over. CPU time per thread (`time.thread_time`), so a busy machine inflates it
less than wall time. `python -m bench.tracing_hooks`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.otlp_encode import Encoder, SpanRecord
from gateway.observability.span_export import SpanQueue
from gateway.observability.tracing import SpanBuilder, Tracing, sampling_decision
from gateway.providers.base import Target
from gateway.routing.scoring import Dropped, Scored

N = 30_000


class Timed:
    """The export thread's work without the network: builds with SpanBuilder and encodes each batch the
    queue hands over, adding up the thread's CPU time for each step."""

    def __init__(self, candidates: bool) -> None:
        self._builder = SpanBuilder(candidates=candidates)
        self._encoder = Encoder({"service.name": "routeway"}, "routeway", "0")
        self.build_s = self.encode_s = 0.0
        self.spans = 0

    def build(self, item: Any) -> Sequence[SpanRecord]:
        started = time.thread_time()
        spans = self._builder.spans(item)
        self.build_s += time.thread_time() - started
        return spans

    def send(self, spans: Sequence[SpanRecord]) -> bool:
        started = time.thread_time()
        self._encoder.encode(spans)
        self.encode_s += time.thread_time() - started
        self.spans += len(spans)
        return True

    def shutdown(self) -> None:
        pass


def _target(name: str) -> Target:
    return Target(
        name,
        "openai",
        f"https://{name}.example:8443/v1",
        "chat",
        f"{name}-m",
        None,
        {},
        "h100",
        1,
        2,
        None,
        None,
        None,
    )


def run(n: int, tracing: Tracing | None, queue: SpanQueue | None = None) -> float:
    """CPU µs per request on this thread: the records a request fills, plus the hooks when tracing.

    Every batch's worth of requests it waits (sleeping: no CPU) for the export thread to take the queued
    spans, as a server's export thread keeps up; a loop far faster than a server's would pile up spans."""
    a, b = _target("a"), _target("b")
    started = time.thread_time()
    for i in range(n):
        if queue is not None and i % 128 == 0:
            while queue.waiting >= 512:
                time.sleep(0.0002)
        req = RequestRecord(f"rid-{i}", "chat", "/v1/chat/completions", incoming_headers={})
        if tracing:
            tracing.request_started(req)
        req.model, req.route, req.objective = "chat", "default", "cheapest"
        req.candidates = [Scored(a, 120.0, 0.001, 1.0, 0.001), Scored(b, 130.0, 0.002, 1.0, 0.002)]
        req.dropped = [Dropped("tiny", "prompt exceeds context window 8192")]
        att = AttemptRecord(a, 1)
        req.attempts.append(att)
        if tracing:
            tracing.attempt_started(req, att, {})
        att.outcome, att.status, att.ttft_s, att.duration_s = "ok", 200, 0.01, 0.02
        att.input_tokens, att.output_tokens = 10, 5
        if tracing:
            tracing.attempt_finished(req, att)
        req.status, req.backend, req.duration_s, req.cost_usd = 200, "a", 0.03, 1e-5
        if tracing:
            tracing.request_finished(req)
    return (time.thread_time() - started) / n * 1e6


def main() -> None:
    run(2000, None)
    base = min(run(N, None) for _ in range(3))
    print(f"records alone (subtracted below): {base:.1f} µs/request")
    for sampler, arg, candidates in (
        ("parentbased_always_on", None, False),
        ("parentbased_always_on", None, True),
        ("parentbased_traceidratio", 0.1, False),
        ("parentbased_always_off", None, False),
    ):
        timed = Timed(candidates)
        # Batches of 512 spans as in the server (the default), but room for all: nothing is dropped.
        queue = SpanQueue(timed, build=timed.build, max_queue=10**7, batch=512, delay_s=5.0)
        tracing = Tracing(sampling_decision(sampler, arg), queue)
        run(2000, tracing, queue)
        hooks = min(run(N, tracing, queue) for _ in range(3)) - base
        queue.shutdown()
        n = 2000 + 3 * N
        build, encode = timed.build_s / n * 1e6, timed.encode_s / n * 1e6
        label = f"{sampler}{f' {arg}' if arg else ''}{', candidates on' if candidates else ''}"
        print(
            f"{label:<45} loop hooks {hooks:5.1f} µs/request; export thread: build {build:5.1f}, "
            f"encode {encode:5.1f}; total {hooks + build + encode:5.1f} µs/request ({timed.spans:,} spans)"
        )


if __name__ == "__main__":
    main()
