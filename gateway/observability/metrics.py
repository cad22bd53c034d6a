"""Prometheus metrics of requests and upstream attempts (an Observer), in a registry owned by one app.

The hooks run on the event loop for every request, so the series are plain dicts of floats updated
without locks (the loop is their only writer); prometheus_client only renders them, at scrape time,
through one collector. Its own Counter/Histogram cost ~15 locked increments and ~10 µs per request."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from gateway.events import AttemptRecord, Observer, RequestRecord
from gateway.observability.shared_metrics import SharedMetricsDir, Snapshot, merge

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds. End to end spans quick embeddings to long streams; TTFT tops out at the first-token timeout;
# the gateway's own overhead should sit well under a millisecond.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
NONE = "none"
UNKNOWN = "unknown"

Key = tuple[str, ...]  # label values, in the order of the family's label names


class _Series:
    """A counter or gauge family: one float per label set."""

    __slots__ = ("name", "doc", "labels", "values", "gauge", "_family")

    def __init__(self, name: str, doc: str, labels: Sequence[str], gauge: bool = False) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[Key, float] = {}
        self.gauge = gauge
        self._family = GaugeMetricFamily if gauge else CounterMetricFamily

    def add(self, key: Key, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def collect(self, values: Mapping[Key, Any] | None = None) -> Metric:
        family = self._family(self.name, self.doc, labels=self.labels)
        for key, value in list((self.values if values is None else values).items()):  # a copy: a scrape
            family.add_metric(key, value)  # may run off the loop's thread
        return family


class _Histogram:
    """A histogram family: per label set, the count of each bucket (+Inf last) and then the sum."""

    __slots__ = ("name", "doc", "labels", "bounds", "values", "_les")
    gauge = False

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(float(b) for b in buckets)
        self.values: dict[Key, list[float]] = {}
        self._les = [repr(b) for b in self.bounds] + ["+Inf"]  # as prometheus_client writes `le`

    def observe(self, key: Key, value: float) -> None:
        row = self.values.get(key)
        if row is None:
            row = self.values[key] = [0.0] * (len(self.bounds) + 2)
        row[bisect_left(self.bounds, value)] += 1.0  # the first bucket whose bound is >= value
        row[-1] += value

    def collect(self, values: Mapping[Key, Any] | None = None) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, row in list((self.values if values is None else values).items()):
            row = list(row)
            family.add_metric(key, list(zip(self._les, accumulate(row[:-1]), strict=True)), row[-1])
        return family


class Metrics(Observer):
    """Counters, gauges and histograms updated from request and attempt records.

    Labels stay bounded: operations, route and backend names come from the policy, the model label is the
    logical model only once a route resolved it ("unknown" otherwise), and no request ids are used."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        shared_dir: Path | None = None,
        share_interval_s: float = 1.0,
    ) -> None:
        self.requests = _Series(
            "routeway_requests",
            "Requests finished, by operation, route, logical model, serving backend and HTTP status.",
            ["op", "route", "model", "backend", "status"],
        )
        self.in_flight = _Series(
            "routeway_requests_in_flight", "Requests started and not yet finished.", ["op"], gauge=True
        )
        self.duration = _Histogram(
            "routeway_request_duration_seconds",
            "End-to-end request latency as the gateway saw it (streams: until the last byte).",
            ["op", "route", "model", "stream"],
            _LATENCY_BUCKETS,
        )
        self.overhead = _Histogram(
            "routeway_gateway_overhead_seconds",
            "Request time not spent waiting on upstreams (parsing, routing, translation, queuing).",
            ["op"],
            _OVERHEAD_BUCKETS,
        )
        self.ttft = _Histogram(
            "routeway_upstream_ttft_seconds",
            "Time to first token of successful upstream attempts (non-streaming: the whole body).",
            ["backend", "model", "stream"],
            _TTFT_BUCKETS,
        )
        self.attempt_duration = _Histogram(
            "routeway_upstream_attempt_duration_seconds",
            "Duration of each upstream attempt, by backend and outcome.",
            ["backend", "outcome"],
            _LATENCY_BUCKETS,
        )
        self.attempts = _Series(
            "routeway_upstream_attempts",
            "Upstream attempts by backend, logical model and outcome (ok, cancelled or a failure kind).",
            ["backend", "model", "outcome"],
        )
        self.retries = _Series(
            "routeway_retries",
            "Attempts after the first, by the backend that failed before and why (its outcome).",
            ["backend", "reason"],
        )
        self.hedges = _Series(
            "routeway_hedges",
            "Attempts started while an earlier one was still running, by the backend that was slow.",
            ["backend"],
        )
        self.tokens = _Series(
            "routeway_tokens",
            "Tokens billed, by backend, logical model and type (input or output).",
            ["backend", "model", "type"],
        )
        self.cost = _Series(
            "routeway_cost_usd",
            "Cost in USD at the policy's prices, by backend and logical model.",
            ["backend", "model"],
        )
        # By the virtual key's team (never by key: a team is an operator's label, keys are unbounded).
        self.team_tokens = _Series(
            "routeway_team_tokens",
            "Tokens billed to virtual keys, by the key's team and type (input or output).",
            ["team", "type"],
        )
        self.team_cost = _Series(
            "routeway_team_cost_usd", "Cost in USD billed to virtual keys, by the key's team.", ["team"]
        )
        self.spans_dropped = _Series(
            "routeway_trace_spans_dropped",
            "Trace spans not exported: the export queue was full (queue_full) or the export failed.",
            ["reason"],
        )
        # Shadow traffic (gateway/routing/shadow.py): mirrored requests, kept apart from the clients' series.
        self.shadow_requests = _Series(
            "routeway_shadow_requests",
            "Shadow requests finished, by route, backend and outcome (ok, cancelled or a failure kind).",
            ["route", "backend", "outcome"],
        )
        self.shadow_skipped = _Series(
            "routeway_shadow_skipped",
            "Sampled shadow requests not sent: concurrency, daily_cap, cap_unavailable or blocked (breaker).",
            ["route", "reason"],
        )
        self.shadow_cost = _Series(
            "routeway_shadow_cost_usd",
            "Cost of shadow requests in USD at the policy's prices, by route and backend.",
            ["route", "backend"],
        )
        self.shadow_in_flight = _Series(
            "routeway_shadow_in_flight", "Shadow requests started and not yet finished.", [], gauge=True
        )
        self.shadow_in_flight.add((), 0.0)  # unlabelled: shown as 0 from the start, as prometheus_client does
        self.shadow_duration = _Histogram(
            "routeway_shadow_duration_seconds",
            "Duration of each shadow request (streams: read to the end and discarded).",
            ["backend", "stream"],
            _LATENCY_BUCKETS,
        )
        self.shadow_ttft = _Histogram(
            "routeway_shadow_ttft_seconds",
            "Time to first token of successful streamed shadow requests.",
            ["backend"],
            _TTFT_BUCKETS,
        )
        self.load_scrapes = _Series(
            "routeway_load_scrapes",
            "Scrapes of self-hosted backends' load pages (metrics_url), by backend and outcome (ok, failed).",
            ["backend", "outcome"],
        )
        self._families: tuple[_Series | _Histogram, ...] = (
            self.requests,
            self.in_flight,
            self.duration,
            self.overhead,
            self.ttft,
            self.attempt_duration,
            self.attempts,
            self.retries,
            self.hedges,
            self.tokens,
            self.cost,
            self.team_tokens,
            self.team_cost,
            self.spans_dropped,
            self.shadow_requests,
            self.shadow_skipped,
            self.shadow_cost,
            self.shadow_in_flight,
            self.shadow_duration,
            self.shadow_ttft,
            self.load_scrapes,
        )
        # Other --workers processes: this one's values reach their scrapes within share_interval_s.
        gauges = frozenset(f.name for f in self._families if f.gauge)
        self._share = SharedMetricsDir(shared_dir, gauges) if shared_dir is not None else None
        self._share_interval_s = share_interval_s
        self._write_due = False
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's Collector protocol: every family as it is now (all workers when shared)."""
        if self._share is None:
            for family in self._families:
                yield family.collect()
            return
        total: dict[str, dict[Key, float | list[float]]] = {}
        for snap in (self.snapshot(), *self._share.others()):
            merge(total, snap)
        for family in self._families:
            yield family.collect(total.get(family.name, {}))

    def snapshot(self) -> Snapshot:
        """Every family's values, as the shared folder's files hold them."""
        snap: Snapshot = {}
        for family in self._families:
            rows: list[tuple[list[str], Any]] = [(list(k), v) for k, v in list(family.values.items())]
            snap[family.name] = rows
        return snap

    def write_shared(self) -> None:
        """This worker's values to its file (on the timer, and once more at shutdown)."""
        self._write_due = False
        if self._share is not None:
            self._share.write(self.snapshot())

    def _schedule_write(self) -> None:
        # One timer per interval with traffic, none per request; an idle worker writes nothing.
        self._write_due = True
        asyncio.get_running_loop().call_later(self._share_interval_s, self.write_shared)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def span_dropped(self, reason: str, n: int) -> None:
        """Tracing's drop hook; "export_failed" comes from the export thread, the only writer of its key."""
        self.spans_dropped.add((reason,), float(n))

    def shadow_skip(self, route: str, reason: str) -> None:
        self.shadow_skipped.add((route, reason))
        self._touched()

    def shadow_started(self) -> None:
        self.shadow_in_flight.add(())
        self._touched()

    def shadow_finished(self, route: str, att: AttemptRecord, stream: bool, cost_usd: float | None) -> None:
        """One shadow attempt ended (called by the shadow runner, not through the observers)."""
        backend = att.target.backend
        self.shadow_in_flight.add((), -1.0)
        self.shadow_requests.add((route, backend, att.outcome))
        if att.duration_s is not None:
            self.shadow_duration.observe((backend, "true" if stream else "false"), att.duration_s)
        if stream and att.outcome == "ok" and att.ttft_s is not None:
            self.shadow_ttft.observe((backend,), att.ttft_s)
        if cost_usd:
            self.shadow_cost.add((route, backend), cost_usd)
        self._touched()

    def load_scraped(self, backend: str, ok: bool) -> None:
        """The load scraper's hook (telemetry/loadsignals.py): a failed scrape changes nothing else."""
        self.load_scrapes.add((backend, "ok" if ok else "failed"))
        self._touched()

    def team_spend(self, team: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """The key guard's settlement hook (access/tenancy.py), on the loop like the observer hooks."""
        self.team_tokens.add((team, "input"), float(input_tokens))
        self.team_tokens.add((team, "output"), float(output_tokens))
        self.team_cost.add((team,), cost_usd)
        self._touched()

    def _touched(self) -> None:
        if self._share is not None and not self._write_due:
            self._schedule_write()

    def request_started(self, req: RequestRecord) -> None:
        self.in_flight.add((req.op,))
        if self._share is not None and not self._write_due:
            self._schedule_write()

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        if att.number > 1 and len(req.attempts) >= att.number:
            before = req.attempts[att.number - 2]
            if before.outcome == "pending":  # still running: a hedge, not a retry
                self.hedges.add((before.target.backend,))
            else:
                self.retries.add((before.target.backend, before.outcome))

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        target = att.target
        outcome = att.outcome
        self.attempts.add((target.backend, target.model, outcome))
        if att.duration_s is not None:
            self.attempt_duration.observe((target.backend, outcome), att.duration_s)
        # An error status's body arriving is no first token.
        if att.ttft_s is not None and (att.status or 200) < 300:
            stream = "true" if req.stream else "false"
            self.ttft.observe((target.backend, target.model, stream), att.ttft_s)

    def request_finished(self, req: RequestRecord) -> None:
        op = req.op
        self.in_flight.add((op,), -1.0)
        if self._share is not None and not self._write_due:
            self._schedule_write()
        route = req.route or NONE
        model = req.model if req.route is not None and req.model else UNKNOWN
        backend = req.backend or NONE
        status = str(req.status) if req.status is not None else UNKNOWN
        self.requests.add((op, route, model, backend, status))
        duration = req.duration_s or 0.0
        stream = "true" if req.stream else "false"
        self.duration.observe((op, route, model, stream), duration)
        overhead = duration - req.upstream_s()
        self.overhead.observe((op,), overhead if overhead > 0.0 else 0.0)
        if req.backend is None:
            return
        if req.input_tokens:
            self.tokens.add((backend, model, "input"), req.input_tokens)
        if req.output_tokens:
            self.tokens.add((backend, model, "output"), req.output_tokens)
        if req.cost_usd:
            self.cost.add((backend, model), req.cost_usd)
