"""A local OTLP/HTTP trace receiver for the tracing run: answers every export, keeps counts, stores nothing.

POST /v1/traces gets 200 with an empty ExportTraceServiceResponse (zero bytes is a valid protobuf message),
`content-type: application/x-protobuf`. GET /stats returns the counts as JSON. Raw asyncio + httptools on
uvloop, like bench/upstream.py, so that it costs the shared load core as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import uvloop

from bench.upstream import HttpProtocol

TRACES_PATH = b"/v1/traces"
_OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"  # empty response
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


def _span_counter() -> Callable[[bytes], int] | None:
    """Counts the spans of an ExportTraceServiceRequest (opentelemetry-proto, upb); None when unavailable."""
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError:
        return None

    def count(body: bytes) -> int:
        request = ExportTraceServiceRequest.FromString(body)
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)

    return count


class Counts:
    """What the sink received since it started."""

    def __init__(self, count_spans: bool) -> None:
        self.export_requests = 0  # POST /v1/traces
        self.bytes = 0  # their bodies, as received (compressed if the exporter compresses)
        self.undecodable = 0  # bodies that did not parse (e.g. gzip): their spans are not counted
        self.other_requests = 0  # anything else (not an export)
        self._count = _span_counter() if count_spans else None
        self.spans: int | None = None if self._count is None else 0

    def export(self, body: bytes, encoding: bytes) -> None:
        self.export_requests += 1
        self.bytes += len(body)
        if self._count is None or self.spans is None:
            return
        if encoding and encoding.lower() != b"identity":
            self.undecodable += 1
            return
        try:
            self.spans += self._count(body)
        except Exception:  # noqa: BLE001 - a body we cannot parse is still an export request
            self.undecodable += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "export_requests": self.export_requests,
            "bytes": self.bytes,
            "spans": self.spans,
            "undecodable": self.undecodable,
            "other_requests": self.other_requests,
            "cpu_s": round(time.process_time(), 3),  # the sink's own CPU on the load core
        }


class SinkProtocol(HttpProtocol):
    """Answers OTLP exports and GET /stats on one keep-alive connection."""

    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self._counts = counts
        self._encoding = b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._encoding = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-encoding":
            self._encoding = value

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0]
        if method == b"POST" and path == TRACES_PATH:
            self._counts.export(b"".join(self._body), self._encoding)
            transport.write(_OK)
        elif method == b"GET" and path == b"/stats":
            data = json.dumps(self._counts.as_dict()).encode()
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            transport.write(head + str(len(data)).encode() + b"\r\n\r\n" + data)
        else:
            self._counts.other_requests += 1
            transport.write(_NOT_FOUND)
        if not self._parser.should_keep_alive():
            transport.close()


async def serve(host: str, port: int, count_spans: bool) -> None:
    loop = asyncio.get_running_loop()
    counts = Counts(count_spans)
    server = await loop.create_server(lambda: SinkProtocol(counts), host, port, reuse_address=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def stats(port: int, timeout_s: float = 5.0) -> dict[str, Any]:
    """The sink's counts so far (GET /stats)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"OTLP sink /stats answered HTTP {resp.status}")
        result: dict[str, Any] = json.loads(body)
        return result
    finally:
        conn.close()


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What the sink received between two `stats()` snapshots."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        prior = before.get(key)
        if isinstance(value, int | float) and isinstance(prior, int | float):
            out[key] = round(value - prior, 3) if isinstance(value, float) else value - prior
        else:
            out[key] = value
    return out


def main() -> None:
    """`python -m bench.otlp_sink --port P [--no-span-count]`"""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--no-span-count", action="store_true", help="do not parse the bodies (requests and bytes only)"
    )
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, not args.no_span_count))


if __name__ == "__main__":
    main()
