"""A minimal upstream: canned OpenAI chat completions and SSE streams over raw asyncio + httptools, 0 ms."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import cast

import httptools
import uvloop

from bench import payloads

_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _head(status: bytes, ctype: bytes, length: int | None, keep_alive: bool) -> bytes:
    lines = [b"HTTP/1.1 " + status, b"content-type: " + ctype]
    if length is None:
        lines.append(b"transfer-encoding: chunked")
    else:
        lines.append(b"content-length: " + str(length).encode())
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_END = b"0\r\n\r\n"
_SSE = b"text/event-stream"
_JSON = b"application/json"
_NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}'


def _canned(keep_alive: bool) -> dict[str, bytes]:
    return {
        "completion": _head(b"200 OK", _JSON, len(payloads.COMPLETION), keep_alive) + payloads.COMPLETION,
        "stream": _head(b"200 OK", _SSE, None, keep_alive) + _chunked(payloads.FAST_STREAM) + _END,
        "models": _head(b"200 OK", _JSON, len(payloads.MODELS), keep_alive) + payloads.MODELS,
        "not_found": _head(b"404 Not Found", _JSON, len(_NOT_FOUND), keep_alive) + _NOT_FOUND,
        "slow_head": _head(b"200 OK", _SSE, None, keep_alive) + _chunked(payloads.FIRST_EVENT),
    }


CANNED = {True: _canned(True), False: _canned(False)}
_TOKEN = _chunked(payloads.TOKEN_EVENT)
_TAIL = _chunked(payloads.LAST_EVENTS) + _END


class SlowStream:
    """Writes one token event per interval on a timer (no task per stream), then the tail."""

    __slots__ = ("_transport", "_loop", "_left", "_interval", "_keep_alive")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, events: int, interval: float
    ) -> None:
        self._transport, self._loop = transport, loop
        self._left, self._interval = events, interval

    def start(self, keep_alive: bool) -> None:
        self._keep_alive = keep_alive
        self._transport.write(CANNED[keep_alive]["slow_head"])
        self._loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        if self._transport.is_closing():
            return
        if self._left > 0:
            self._left -= 1
            self._transport.write(_TOKEN)
            self._loop.call_later(self._interval, self._tick)
            return
        self._transport.write(_TAIL)
        if not self._keep_alive:
            self._transport.close()


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection parsed with httptools; subclasses answer in on_message_complete
    from `_parser`, `_url` and `_body` (also the base of bench/otlp_sink.py)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)


class UpstreamProtocol(HttpProtocol):
    """Answers each request from prebuilt bytes."""

    def __init__(self, slow_events: int, slow_interval: float) -> None:
        super().__init__()
        self._slow = (slow_events, slow_interval)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = bool(self._parser.should_keep_alive())
        canned = CANNED[keep_alive]
        path = self._url.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            body = b"".join(self._body)
            if not _STREAM.search(body):
                transport.write(canned["completion"])
            elif payloads.SLOW_MODEL.encode() in body:
                SlowStream(transport, asyncio.get_running_loop(), *self._slow).start(keep_alive)
                return
            else:
                transport.write(canned["stream"])
        elif path.endswith(b"/models"):
            transport.write(canned["models"])
        else:
            transport.write(canned["not_found"])
        if not keep_alive:
            transport.close()


async def serve(host: str, port: int, slow_events: int, slow_interval: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(slow_events, slow_interval), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """`python -m bench.upstream --port P`: HTTP/1.1 with keep-alive on one uvloop event loop. A request for
    the slow model streams one event per `--slow-interval` seconds, `--slow-events` times, so that many
    streams can be held open through a gateway."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slow-events", type=int, default=15)
    parser.add_argument("--slow-interval", type=float, default=1.0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.slow_events, args.slow_interval))


if __name__ == "__main__":
    main()
