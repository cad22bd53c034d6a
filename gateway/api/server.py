"""The HTTP edge: uvicorn's httptools protocol with request-head limits, a head timeout and JSON 503s.

uvicorn gives the keep-alive idle timeout; it has no limit on a request head's size, count or read time
(httptools concatenates a header's pieces as they arrive, so one 60 MiB header stalls the event loop), and
its `limit_concurrency` answers text/plain. Those three live here, before any route or authentication."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.api.disconnect import DISCONNECT_HOOK
from gateway.endpoints import ENDPOINTS
from gateway.errors import BadRequest, GatewayError, HeadersTooLarge, Overloaded
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int
    max_header_count: int
    header_timeout_s: float
    max_connections: int
    max_inflight: int


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's keyword arguments, the same for one process, `--workers N` and the test harness."""
    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        max_inflight=settings.max_inflight,
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # A partial of a module-level class: picklable, so `--workers` processes get the same limits.
        "http": functools.partial(EdgeProtocol, limits=limits),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,  # nothing reads the client address: skip the per-request middleware
    }


class EdgeProtocol(HttpToolsProtocol):
    """Counts a request head's bytes and headers as they arrive; a head that is late closes the connection."""

    def __init__(self, *args: Any, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # waiting for the rest of a request line and headers
        self._head_fed = 0  # bytes fed to the parser while the head was incomplete
        self._head_size = 0  # the head's url, header names and values, counted by the parser's callbacks
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: GatewayError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:  # the client left before its answer was complete
            hook: Callable[[], None] | None = cycle.scope.get(DISCONNECT_HOOK)  # type: ignore[assignment]
            if hook is not None:
                hook()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_fed += len(data)
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Still inside a head: checked per read, so at most the limit plus one read is ever buffered.
        if self._head_fed > self.limits.max_header_bytes:
            self._answer(self._head_too_large())
        elif self._head_timer is None:
            # Armed only for a head split across reads: a whole head in one read costs no timer.
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DISCONNECT_HOOK] = None  # type: ignore[literal-required]  # see api/disconnect.py
        self._in_head = True
        self._head_size = self._head_count = 0

    # The head's size is counted inline in these two callbacks (no helper): they run for every header.
    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.limits.max_header_bytes:
            raise self._head_too_large()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.limits.max_header_count:
            self._refusal = HeadersTooLarge(f"More than {self.limits.max_header_count} request headers")
            raise self._refusal
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_header_bytes:
            raise self._head_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_fed = 0
        self._cancel_head_timer()
        limits = self.limits
        if len(self.connections) <= limits.max_connections and len(self.tasks) < limits.max_inflight:
            super().on_headers_complete()
            return
        if self.url == b"/healthz":  # liveness stays true under load: a restart would only add to it
            super().on_headers_complete()
            return
        # uvicorn's limit_concurrency makes the same check but answers text/plain: serve this request with
        # the JSON 503 instead of the app (uvicorn reads `self.app` once, when it starts the request).
        app, self.app = self.app, _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer when the parser stops: OpenAI-shaped JSON, a 431 when a head limit stopped it."""
        self._answer(self._refusal or BadRequest("Invalid HTTP request"))

    def _head_too_large(self) -> GatewayError:
        limit = self.limits.max_header_bytes
        self._refusal = HeadersTooLarge(f"The request line and headers exceed {limit} bytes")
        return self._refusal

    def _answer(self, err: GatewayError) -> None:
        """Answers before any app runs, then closes: the rest of what the client sent is never read."""
        body = err.body()
        head = [STATUS_LINE[err.status], b"content-type: application/json\r\nconnection: close\r\n"]
        head += [b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in err.headers.items()]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


_OVERLOADED = Overloaded("The gateway is serving as many requests as it allows; retry shortly")


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    endpoint = ENDPOINTS.get(scope.get("path", ""))  # in the client's shape (Anthropic's overloaded_error)
    body = endpoint.error_body(_OVERLOADED) if endpoint is not None else _OVERLOADED.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", _OVERLOADED.headers["retry-after"].encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
