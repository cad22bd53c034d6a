"""Prometheus metrics of requests and upstream attempts (an Observer), in a registry owned by one app."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.events import AttemptRecord, Observer, RequestRecord

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds. End to end spans quick embeddings to long streams; TTFT tops out at the first-token timeout;
# the gateway's own overhead should sit well under a millisecond.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
NONE = "none"
UNKNOWN = "unknown"

_M = TypeVar("_M", Counter, Gauge, Histogram)


class _Children(dict[tuple[object, ...], _M], Generic[_M]):
    """One metric's labelled children by label values: `labels()` (validation, a lock, str() of every
    value) runs once per label set, every later event is one dict lookup. Values are passed to `labels()`,
    which turns them into str, so a key may hold e.g. an int status. Bounded by the metric's own label
    sets; children are never removed from our metrics, so a cached child never goes stale."""

    __slots__ = ("_metric",)

    def __init__(self, metric: _M) -> None:
        super().__init__()
        self._metric: _M = metric

    def __missing__(self, key: tuple[object, ...]) -> _M:
        child: _M = self._metric.labels(*key)
        self[key] = child
        return child


class Metrics(Observer):
    """Counters, gauges and histograms updated from request and attempt records.

    Labels stay bounded: operations, route and backend names come from the policy, the model label is the
    logical model only once a route resolved it ("unknown" otherwise), and no request ids are used. The
    hooks go through `_Children` caches (the `_by_*` attributes), never through `labels()` directly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "routeway_requests",
            "Requests finished, by operation, route, logical model, serving backend and HTTP status.",
            ["op", "route", "model", "backend", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "routeway_requests_in_flight", "Requests started and not yet finished.", ["op"], registry=r
        )
        self.duration = Histogram(
            "routeway_request_duration_seconds",
            "End-to-end request latency as the gateway saw it (streams: until the last byte).",
            ["op", "route", "model", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "routeway_gateway_overhead_seconds",
            "Request time not spent waiting on upstreams (parsing, routing, translation, queuing).",
            ["op"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "routeway_upstream_ttft_seconds",
            "Time to first token of successful upstream attempts (non-streaming: the whole body).",
            ["backend", "model", "stream"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "routeway_upstream_attempt_duration_seconds",
            "Duration of each upstream attempt, by backend and outcome.",
            ["backend", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "routeway_upstream_attempts",
            "Upstream attempts by backend, logical model and outcome (ok, cancelled or a failure kind).",
            ["backend", "model", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "routeway_retries",
            "Attempts after the first, by the backend that failed before and why (its outcome).",
            ["backend", "reason"],
            registry=r,
        )
        self.hedges = Counter(
            "routeway_hedges",
            "Attempts started while an earlier one was still running, by the backend that was slow.",
            ["backend"],
            registry=r,
        )
        self.tokens = Counter(
            "routeway_tokens",
            "Tokens billed, by backend, logical model and type (input or output).",
            ["backend", "model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "routeway_cost_usd",
            "Cost in USD at the policy's prices, by backend and logical model.",
            ["backend", "model"],
            registry=r,
        )
        self._by_requests = _Children(self.requests)
        self._by_in_flight = _Children(self.in_flight)
        self._by_duration = _Children(self.duration)
        self._by_overhead = _Children(self.overhead)
        self._by_ttft = _Children(self.ttft)
        self._by_attempt_duration = _Children(self.attempt_duration)
        self._by_attempts = _Children(self.attempts)
        self._by_retries = _Children(self.retries)
        self._by_hedges = _Children(self.hedges)
        self._by_tokens = _Children(self.tokens)
        self._by_cost = _Children(self.cost)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def request_started(self, req: RequestRecord) -> None:
        self._by_in_flight[(req.op,)].inc()

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        if att.number > 1 and len(req.attempts) >= att.number:
            before = req.attempts[att.number - 2]
            if before.outcome == "pending":  # still running: a hedge, not a retry
                self._by_hedges[(before.target.backend,)].inc()
            else:
                self._by_retries[before.target.backend, before.outcome].inc()

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        target = att.target
        outcome = att.outcome
        self._by_attempts[target.backend, target.model, outcome].inc()
        if att.duration_s is not None:
            self._by_attempt_duration[target.backend, outcome].observe(att.duration_s)
        # An error status's body arriving is no first token.
        if att.ttft_s is not None and (att.status or 200) < 300:
            stream = "true" if req.stream else "false"
            self._by_ttft[target.backend, target.model, stream].observe(att.ttft_s)

    def request_finished(self, req: RequestRecord) -> None:
        op = req.op
        self._by_in_flight[(op,)].dec()
        route = req.route or NONE
        model = req.model if req.route is not None and req.model else UNKNOWN
        backend = req.backend or NONE
        status = req.status if req.status is not None else UNKNOWN  # labels() makes the int a str
        self._by_requests[op, route, model, backend, status].inc()
        duration = req.duration_s or 0.0
        stream = "true" if req.stream else "false"
        self._by_duration[op, route, model, stream].observe(duration)
        overhead = duration - req.upstream_s()
        self._by_overhead[(op,)].observe(overhead if overhead > 0.0 else 0.0)
        if req.backend is None:
            return
        if req.input_tokens:
            self._by_tokens[backend, model, "input"].inc(req.input_tokens)
        if req.output_tokens:
            self._by_tokens[backend, model, "output"].inc(req.output_tokens)
        if req.cost_usd:
            self._by_cost[backend, model].inc(req.cost_usd)
