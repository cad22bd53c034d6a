"""Open-loop load at a fixed rate (raw asyncio + httptools on uvloop), measuring each request's latency."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import httptools
import uvloop

from bench import payloads

_clock = time.perf_counter


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


@dataclass(slots=True)
class OpenLoopResult:
    offered_rps: float
    duration_s: float
    sent: int
    completed: int
    errors: int  # non-200 answers and broken connections
    timeouts: int  # still unanswered when the drain period ended
    shed: int  # not sent: the in-flight cap was reached (the server is far behind)
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    ttfb_p50_ms: float  # first body byte (the first SSE event of a stream)
    ttfb_p99_ms: float
    send_lag_p99_ms: float  # how late the generator sent compared to schedule: near 0 = not the bottleneck
    connections: int
    statuses: dict[str, int]


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, float]] | None = None
        self.first_byte = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        if not self.first_byte:
            self.first_byte = _clock()

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self._parser.get_status_code(), self.first_byte))
        if not self._parser.should_keep_alive() and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("closed by server"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, payload: bytes) -> asyncio.Future[tuple[int, float]]:
        assert self.transport is not None
        self.first_byte = 0.0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Conn] = []
        self.opened = 0

    async def acquire(self) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        self.opened += 1
        return proto

    def release(self, conn: _Conn) -> None:
        if not conn.closed:
            self.idle.append(conn)


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {payloads.BENCH_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Target:
    """One server's connections and what its requests measured."""

    def __init__(self, host: str, port: int, payload: bytes) -> None:
        self.pool = _Pool(host, port)
        self.payload = payload
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.lags: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors = 0
        self.sent = 0
        self.shed = 0

    async def one(self, scheduled: float) -> None:
        start = _clock()
        self.lags.append(start - scheduled)
        try:
            conn = await self.pool.acquire()
            status, first = await conn.send(self.payload)
        except (OSError, httptools.HttpParserError):
            self.errors += 1
            self.statuses["conn-error"] += 1
            return
        end = _clock()
        self.pool.release(conn)
        self.statuses[str(status)] += 1
        if status != 200:
            self.errors += 1
            return
        self.latencies.append(end - start)
        self.ttfbs.append((first or end) - start)

    def result(self, rate: float, send_window: float, timeouts: int) -> OpenLoopResult:
        latencies, ttfbs, lags = sorted(self.latencies), sorted(self.ttfbs), sorted(self.lags)
        ms = 1000.0
        return OpenLoopResult(
            offered_rps=rate,
            duration_s=round(send_window, 3),
            sent=self.sent,
            completed=len(latencies),
            errors=self.errors,
            timeouts=timeouts,
            shed=self.shed,
            achieved_rps=round(len(latencies) / send_window, 1) if send_window else 0.0,
            p50_ms=round(percentile(latencies, 50) * ms, 3),
            p90_ms=round(percentile(latencies, 90) * ms, 3),
            p99_ms=round(percentile(latencies, 99) * ms, 3),
            p999_ms=round(percentile(latencies, 99.9) * ms, 3),
            max_ms=round((latencies[-1] if latencies else 0.0) * ms, 3),
            ttfb_p50_ms=round(percentile(ttfbs, 50) * ms, 3),
            ttfb_p99_ms=round(percentile(ttfbs, 99) * ms, 3),
            send_lag_p99_ms=round(percentile(lags, 99) * ms, 3),
            connections=self.pool.opened,
            statuses=dict(self.statuses),
        )


async def drive(
    targets: list[_Target],
    rate: float,
    duration_s: float,
    *,
    slice_s: float = 0.0,
    max_inflight: int = 1024,
    drain_s: float = 10.0,
    prewarm: int = 16,
) -> list[OpenLoopResult]:
    """Request `i` leaves at `t0 + i / rate` whatever happened to earlier ones (a new keep-alive connection
    is opened when none is idle), so a slow server shows up as latency instead of slowing the client down,
    unlike wrk's closed loop. Latency is timed from the moment a request is written.

    Several targets take turns of `slice_s` seconds each (round-robin, `duration_s` of requests each): a
    burst of load on the machine, which lasts seconds, then falls on all of them alike instead of on
    whichever server one long run happened to measure at that moment."""
    for target in targets:
        warm = [await target.pool.acquire() for _ in range(prewarm)]
        target.pool.idle.extend(warm)
    inflight: dict[asyncio.Task[None], _Target] = {}
    per_slice = max(1, round(rate * slice_s)) if slice_s > 0 else 1
    total = int(rate * duration_s) * len(targets)
    t0 = _clock() + 0.01
    i = 0
    while i < total:
        due = min(total, int((_clock() - t0) * rate) + 1)
        while i < due:
            target = targets[(i // per_slice) % len(targets)]
            if len(inflight) >= max_inflight:
                target.shed += 1
            else:
                target.sent += 1
                task = asyncio.create_task(target.one(t0 + i / rate))
                inflight[task] = target
                task.add_done_callback(inflight.pop)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - _clock()))
    send_window = (_clock() - t0) / len(targets)
    timeouts: Counter[_Target] = Counter()
    if inflight:
        _, pending = await asyncio.wait(set(inflight), timeout=drain_s)
        timeouts.update(inflight[task] for task in pending)
        for task in pending:
            task.cancel()
    for target in targets:
        for conn in target.pool.idle:
            if conn.transport is not None:
                conn.transport.close()
    return [target.result(rate, send_window, timeouts[target]) for target in targets]


async def _main(args: argparse.Namespace) -> list[OpenLoopResult]:
    body = Path(args.body_file).read_bytes()

    def fresh() -> list[_Target]:
        host, path = args.host, args.path
        return [_Target(host, port, request_bytes(host, port, path, body)) for port in args.port]

    if args.warmup > 0:
        await drive(fresh(), args.rate, args.warmup, slice_s=args.slice, drain_s=args.drain)
    return await drive(fresh(), args.rate, args.duration, slice_s=args.slice, drain_s=args.drain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="repeat to take turns between servers"
    )
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending, per server")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per turn when several servers")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the same rate, not recorded")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    args = parser.parse_args()
    results = uvloop.run(_main(args))
    print(json.dumps(asdict(results[0]) if len(results) == 1 else [asdict(r) for r in results]))


if __name__ == "__main__":
    main()
