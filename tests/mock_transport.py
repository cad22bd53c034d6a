"""An in-memory Transport for router tests (httpx's MockTransport is the model): a handler answers each
request with a canned reply, whole or as a stream whose steps may wait, cut or hang."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.providers.sse import MAX_EVENT_BYTES
from gateway.upstream import Deadlines


@dataclass(frozen=True, slots=True)
class Wait:
    """A pause of `s` seconds before the next stream step (the reply's idle deadline still applies)."""

    s: float


class Cut:
    """The connection drops here, as the aiohttp transport reports it."""


class Hang:
    """Nothing more ever arrives (only the idle deadline or a cancellation ends the wait)."""


Step = bytes | Wait | Cut | Hang
CUT, HANG = Cut(), Hang()


class MockReply:
    """A Reply with canned status, headers and body steps; records how it was let go (closed or released)."""

    def __init__(
        self,
        status: int = 200,
        body: bytes | dict[str, Any] = b"",
        headers: Mapping[str, str] | None = None,
        steps: Iterable[Step] | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.status = status
        self.headers: Mapping[str, str] = dict(headers or {})
        self.max_event_bytes = max_event_bytes
        raw = orjson.dumps(body) if isinstance(body, dict) else body
        self.steps: list[Step] = list(steps) if steps is not None else [raw]
        self.idle_s = 30.0
        self.closed = False
        self.released = False
        self.read_steps = 0  # how far the gateway read: a loser must stop early

    async def read(self) -> bytes:
        """The whole body; like the aiohttp reply, the connection is released however the read ends."""
        try:
            return b"".join([chunk async for chunk in self.chunks()])
        finally:
            self.released = True

    async def chunks(self) -> AsyncIterator[bytes]:
        for step in self.steps:
            try:
                async with asyncio.timeout(self.idle_s):
                    await _play(step)
            except TimeoutError:
                raise ProviderError("timeout", f"stream stalled for {self.idle_s:g}s") from None
            self.read_steps += 1
            if isinstance(step, bytes):
                yield step

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True

    @property
    def let_go(self) -> bool:
        return self.closed or self.released


async def _play(step: Step) -> None:
    if isinstance(step, Wait):
        await asyncio.sleep(step.s)
    elif isinstance(step, Cut):
        raise ProviderError("protocol", "stream cut: ClientPayloadError")
    elif isinstance(step, Hang):
        await asyncio.Event().wait()


Handler = Callable[[UpstreamRequest], "MockReply | ProviderError | Awaitable[MockReply | ProviderError]"]


class MockTransport:
    """Calls `handler(request)` for each send (sync or async; an async one may sleep to play a slow
    upstream, bounded by the first-byte deadline like the real one); a ProviderError it returns is raised."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[UpstreamRequest] = []
        self.replies: list[MockReply] = []
        self.cancelled: list[UpstreamRequest] = []  # requests abandoned before their headers arrived

    async def send(self, req: UpstreamRequest, deadlines: Deadlines) -> MockReply:
        self.requests.append(req)
        try:
            async with asyncio.timeout(deadlines.first_byte_s):
                result = self.handler(req)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            raise ProviderError("timeout", f"no response within {deadlines.first_byte_s:g}s") from None
        except asyncio.CancelledError:
            self.cancelled.append(req)
            raise
        if isinstance(result, ProviderError):
            raise result
        result.idle_s = deadlines.idle_s
        self.replies.append(result)
        return result


def backend_of(req: UpstreamRequest) -> str:
    """The backend a request went to, when tests give each backend the base URL http://<name>."""
    return req.url.split("//", 1)[1].split("/", 1)[0]


def sse(*docs: dict[str, Any], done: bool = True) -> list[Step]:
    """Stream steps: one SSE event per document, then [DONE]."""
    steps: list[Step] = [b"data: " + orjson.dumps(d) + b"\n\n" for d in docs]
    if done:
        steps.append(b"data: [DONE]\n\n")
    return steps


def chat_doc(text: str = "hi", usage: tuple[int, int] | None = (3, 2)) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        doc["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return doc


def chunk_doc(text: str | None = "hi", usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """A chat chunk; text=None makes the usage-only final chunk (empty choices)."""
    choices = [] if text is None else [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    doc: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        doc["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return doc
