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


async def drive(
    host: str,
    port: int,
    payload: bytes,
    rate: float,
    duration_s: float,
    *,
    max_inflight: int = 1024,
    drain_s: float = 10.0,
    prewarm: int = 16,
) -> OpenLoopResult:
    """Request `i` leaves at `t0 + i / rate` whatever happened to earlier ones (a new keep-alive connection
    is opened when none is idle), so a slow server shows up as latency instead of slowing the client down,
    unlike wrk's closed loop. Latency is timed from the moment a request is written."""
    pool = _Pool(host, port)
    warm = [await pool.acquire() for _ in range(prewarm)]
    pool.idle.extend(warm)
    latencies: list[float] = []
    ttfbs: list[float] = []
    lags: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    inflight: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        nonlocal errors
        start = _clock()
        lags.append(start - scheduled)
        conn: _Conn | None = None
        try:
            conn = await pool.acquire()
            status, first = await conn.send(payload)
        except (OSError, httptools.HttpParserError):
            errors += 1
            statuses["conn-error"] += 1
            return
        end = _clock()
        pool.release(conn)
        statuses[str(status)] += 1
        if status != 200:
            errors += 1
            return
        latencies.append(end - start)
        ttfbs.append((first or end) - start)

    total = int(rate * duration_s)
    shed = 0
    t0 = _clock() + 0.01
    i = 0
    while i < total:
        due = min(total, int((_clock() - t0) * rate) + 1)
        while i < due:
            if len(inflight) >= max_inflight:
                shed += 1
            else:
                task = asyncio.create_task(one(t0 + i / rate))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - _clock()))
    send_window = _clock() - t0
    timeouts = 0
    if inflight:
        _, pending = await asyncio.wait(set(inflight), timeout=drain_s)
        timeouts = len(pending)
        for task in pending:
            task.cancel()
    for conn in pool.idle:
        if conn.transport is not None:
            conn.transport.close()
    latencies.sort()
    ttfbs.sort()
    lags.sort()
    ms = 1000.0
    return OpenLoopResult(
        offered_rps=rate,
        duration_s=round(send_window, 3),
        sent=total - shed,
        completed=len(latencies),
        errors=errors,
        timeouts=timeouts,
        shed=shed,
        achieved_rps=round(len(latencies) / send_window, 1) if send_window else 0.0,
        p50_ms=round(percentile(latencies, 50) * ms, 3),
        p90_ms=round(percentile(latencies, 90) * ms, 3),
        p99_ms=round(percentile(latencies, 99) * ms, 3),
        p999_ms=round(percentile(latencies, 99.9) * ms, 3),
        max_ms=round((latencies[-1] if latencies else 0.0) * ms, 3),
        ttfb_p50_ms=round(percentile(ttfbs, 50) * ms, 3),
        ttfb_p99_ms=round(percentile(ttfbs, 99) * ms, 3),
        send_lag_p99_ms=round(percentile(lags, 99) * ms, 3),
        connections=pool.opened,
        statuses=dict(statuses),
    )


async def _main(args: argparse.Namespace) -> OpenLoopResult:
    body = Path(args.body_file).read_bytes()
    payload = request_bytes(args.host, args.port, args.path, body)
    if args.warmup > 0:
        await drive(args.host, args.port, payload, args.rate, args.warmup, drain_s=args.drain)
    return await drive(args.host, args.port, payload, args.rate, args.duration, drain_s=args.drain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the same rate, not recorded")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    args = parser.parse_args()
    result = uvloop.run(_main(args))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
