"""Per-request CPU of the metrics hooks: our dicts alone, shared across workers, and prometheus_client's
multiprocess mode (mmap files per worker) doing the same updates. `python -m bench.metrics_cost`."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.metrics import Metrics
from gateway.providers.base import Target

N = 50_000


def _records() -> tuple[RequestRecord, AttemptRecord]:
    t = Target("b", "openai", "http://x/v1", "chat", "m", None, {}, None, 0.5, 1.5, None, None, None)
    req = RequestRecord("id", "chat", "/v1/chat/completions", model="chat", route="default", backend="b")
    att = AttemptRecord(t, 1, ttft_s=0.01, duration_s=0.02, outcome="ok", status=200)
    req.attempts.append(att)
    req.status, req.duration_s, req.input_tokens, req.output_tokens, req.cost_usd = 200, 0.03, 10, 5, 1e-5
    return req, att


def _ours(m: Metrics) -> float:
    req, att = _records()
    started = time.perf_counter()
    for _ in range(N):
        m.request_started(req)
        m.attempt_started(req, att, {})
        m.attempt_finished(req, att)
        m.request_finished(req)
    return (time.perf_counter() - started) / N * 1e6


def _prometheus_multiprocess(folder: str) -> float:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # read by prometheus_client at import
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = CollectorRegistry()
    req_c = Counter("r", "", ["op", "route", "model", "backend", "status"], registry=reg)
    flight = Gauge("f", "", ["op"], registry=reg, multiprocess_mode="livesum")
    dur = Histogram("d", "", ["op", "route", "model", "stream"], registry=reg)
    over = Histogram("o", "", ["op"], registry=reg)
    ttft = Histogram("t", "", ["backend", "model", "stream"], registry=reg)
    att_d = Histogram("a", "", ["backend", "outcome"], registry=reg)
    att_c = Counter("ac", "", ["backend", "model", "outcome"], registry=reg)
    tok = Counter("tk", "", ["backend", "model", "type"], registry=reg)
    cost = Counter("c", "", ["backend", "model"], registry=reg)
    started = time.perf_counter()
    for _ in range(N):  # the same updates as Metrics' hooks, labels looked up each time as they vary
        flight.labels("chat").inc()
        att_c.labels("b", "chat", "ok").inc()
        att_d.labels("b", "ok").observe(0.02)
        ttft.labels("b", "chat", "false").observe(0.01)
        flight.labels("chat").dec()
        req_c.labels("chat", "default", "chat", "b", "200").inc()
        dur.labels("chat", "default", "chat", "false").observe(0.03)
        over.labels("chat").observe(0.01)
        tok.labels("b", "chat", "input").inc(10)
        tok.labels("b", "chat", "output").inc(5)
        cost.labels("b", "chat").inc(1e-5)
    return (time.perf_counter() - started) / N * 1e6


async def _shared(folder: Path) -> float:
    return _ours(Metrics(None, folder, 1.0))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        alone = _ours(Metrics())
        shared = asyncio.run(_shared(Path(folder)))
        m = Metrics(None, Path(folder), 1.0)
        started = time.perf_counter()
        for _ in range(100):
            m.write_shared()
        write_ms = (time.perf_counter() - started) / 100 * 1e3
    with tempfile.TemporaryDirectory() as folder:
        prom = _prometheus_multiprocess(folder)
    print(f"Metrics hooks, one process:           {alone:6.2f} µs/request")
    print(f"Metrics hooks, shared across workers: {shared:6.2f} µs/request", end="")
    print(f" (+ one file write per second with traffic: {write_ms:.2f} ms)")
    print(f"prometheus_client multiprocess mode:  {prom:6.2f} µs/request")


if __name__ == "__main__":
    main()
