"""Server-sent events: an incremental decoder for upstream streams and the encoder for ours."""

from __future__ import annotations

import re

import orjson

from gateway.providers.base import ProviderError

MAX_EVENT_BYTES = 1024 * 1024
DONE = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class SSEDecoder:
    """Feeds arbitrary byte chunks, returns the `data:` payload of each complete event.

    Upstream chunk boundaries fall anywhere (mid-line, mid-event), so bytes are buffered until an event ends.
    Comments (`: ping`) and events without data are dropped; multi-line data is joined with newlines.
    An event longer than `max_event` bytes (an upstream that never ends one) is a ProviderError, so
    the buffer cannot grow without bound.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._max = max_event

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        pos = 0
        while True:
            m = _EVENT_END.search(buf, pos)
            if m is None:
                break
            if m.start() - pos > self._max:
                raise self._too_long()
            data = _event_data(buf[pos : m.start()])
            if data is not None:
                out.append(data)
            pos = m.end()
        self._buf = buf[pos:]
        if len(self._buf) > self._max:
            raise self._too_long()
        return out

    def _too_long(self) -> ProviderError:
        self._buf = b""
        return ProviderError("protocol", f"an upstream stream event exceeds {self._max} bytes")

    @property
    def pending(self) -> bytes:
        return self._buf


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data:") and b"\n" not in event and b"\r" not in event:
        return event[5:].lstrip(b" ")  # the common case: one data line
    parts = [
        line[5:].lstrip(b" ")
        for line in event.replace(b"\r\n", b"\n").split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(parts) if parts else None


def encode(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def error_event(message: str, *, type_: str = "upstream_error", code: str = "stream_interrupted") -> bytes:
    """The OpenAI-shaped error event ending a stream that cannot finish cleanly (never followed by DONE)."""
    return encode(orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}))
