"""Request bodies: the one reader every route uses, under a per-request limit and a process-wide budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive

from gateway.api.relay import ClientGone, parse_body
from gateway.errors import GatewayError, Overloaded, PayloadTooLarge


class BodyBudget:
    """Bytes of request bodies held by this process right now; one event loop, so a plain int, no lock."""

    __slots__ = ("limit", "held")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            if size > self.limit:
                raise _too_large(self.limit)
            raise Overloaded("The gateway is holding too many request bodies right now; retry shortly")
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


class Bodies:
    """The limits every body reader of one app shares."""

    __slots__ = ("max_body_bytes", "budget")

    def __init__(self, max_body_bytes: int, max_buffered_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.budget = BodyBudget(max_buffered_bytes)

    def reader(self, receive: Receive, headers: Mapping[str, str]) -> BodyReader:
        return BodyReader(receive, headers, self.max_body_bytes, self.budget)


class BodyReader:
    """Reads the whole request body, refusing one over the limits before buffering it.

    Its bytes count against the budget from the read until `release()`, which the caller runs once the
    request is answered (the parsed body lives that long)."""

    __slots__ = ("headers", "_receive", "_declared", "_limit", "_budget", "_held")

    def __init__(self, receive: Receive, headers: Mapping[str, str], limit: int, budget: BodyBudget) -> None:
        self.headers = headers
        self._receive = receive
        self._declared = headers.get("content-length", "")
        self._limit = limit
        self._budget = budget
        self._held = 0

    async def read(self) -> bytes | bytearray:
        declared = int(self._declared) if self._declared.isdigit() else -1
        if declared > self._limit:
            raise _too_large(self._limit)
        if declared >= 0:
            self._take(declared)  # the server stops a body at its declared length
        message: Message = await self._receive()
        body: bytes = message.get("body", b"")
        if len(body) > self._limit:
            raise _too_large(self._limit)
        if declared < 0:
            self._take(len(body))
        if message["type"] == "http.request" and not message.get("more_body", False):
            return body  # the common case: one message
        # Grown in place: at most one copy of the body is held (a list of parts and their join held two).
        buf = bytearray(body)
        while message["type"] == "http.request" and message.get("more_body", False):
            message = await self._receive()
            chunk: bytes = message.get("body", b"")
            if len(buf) + len(chunk) > self._limit:
                raise _too_large(self._limit)
            if declared < 0:
                self._take(len(chunk))
            buf += chunk
        if message["type"] == "http.disconnect":
            raise ClientGone()
        return buf

    def release(self) -> None:
        self._budget.give(self._held)
        self._held = 0

    def _take(self, size: int) -> None:
        self._budget.take(size)
        self._held += size


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object body of a FastAPI route, read like the hot routes' (the budget holds it while read)."""
    bodies: Bodies = request.app.state.bodies
    reader = bodies.reader(request.receive, request.headers)
    try:
        return parse_body(await reader.read())
    finally:
        reader.release()


def _too_large(limit: int) -> GatewayError:
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {limit} bytes")
