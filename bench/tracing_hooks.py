"""CPU of the tracing observer's hooks and of the OTLP encoding per request, in-process, on hand-made
records (a chat request: one attempt, two candidates). `python -m bench.tracing_hooks`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.otlp_encode import Encoder, SpanRecord
from gateway.observability.span_export import SpanQueue
from gateway.observability.tracing import Tracing, sampling_decision
from gateway.providers.base import Target
from gateway.routing.scoring import Dropped, Scored

N = 20_000


class Keep:
    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    def send(self, spans: Sequence[SpanRecord]) -> bool:
        self.spans.extend(spans)
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


def run(n: int, tracing: Tracing | None) -> float:
    a, b = _target("a"), _target("b")
    started = time.perf_counter()
    for i in range(n):
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
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    run(2000, None)
    base = run(N, None)
    print(f"records alone (subtracted below): {base:.1f} µs/request")
    for sampler, arg, candidates in (
        ("parentbased_always_on", None, False),
        ("parentbased_always_on", None, True),
        ("parentbased_traceidratio", 0.1, False),
        ("parentbased_always_off", None, False),
    ):
        keep = Keep()
        queue = SpanQueue(keep, max_queue=10**7, batch=10**7, delay_s=3600)
        tracing = Tracing(sampling_decision(sampler, arg), queue, candidates=candidates)
        run(2000, tracing)
        cost = run(N, tracing) - base
        queue.shutdown()
        started = time.perf_counter()
        encoder = Encoder({"service.name": "routeway"}, "routeway", "0")
        for k in range(0, len(keep.spans), 512):
            encoder.encode(keep.spans[k : k + 512])
        encode = (time.perf_counter() - started) / (N + 2000) * 1e6
        label = f"{sampler}{f' {arg}' if arg else ''}{', candidates on' if candidates else ''}"
        print(f"{label:<45} hooks {cost:6.1f} µs/request, encoding {encode:6.1f} µs/request")


if __name__ == "__main__":
    main()
