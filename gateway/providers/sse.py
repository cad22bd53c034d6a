"""Server-sent events from upstreams: an incremental decoder giving each event's data and name."""

from __future__ import annotations

import re

from gateway.providers.base import ProviderError, StreamEvent

MAX_EVENT_BYTES = 1024 * 1024
_tuple_new = tuple.__new__  # StreamEvent without its Python-level __new__: one frame less per event
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class SSEDecoder:
    """Feeds arbitrary byte chunks, returns each complete event (`data:` payload and `event:` name).

    Upstream chunk boundaries fall anywhere (mid-line, mid-event), so bytes are buffered until an event ends.
    Comments (`: ping`) and events without data are dropped; multi-line data is joined with newlines; `id:`
    and `retry:` are ignored. An event longer than `max_event` bytes (an upstream that never ends one) is a
    ProviderError, so the buffer cannot grow without bound.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._max = max_event

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[StreamEvent] = []
        pos = 0
        while True:
            m = _EVENT_END.search(buf, pos)
            if m is None:
                break
            if m.start() - pos > self._max:
                raise self._too_long()
            event = _event(buf[pos : m.start()])
            if event is not None:
                out.append(event)
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


def _event(block: bytes) -> StreamEvent | None:
    if block.startswith(b"data:") and b"\n" not in block and b"\r" not in block:
        return _tuple_new(StreamEvent, (block[5:].lstrip(b" "), None))  # the common case: one data line
    data: list[bytes] = []
    name: str | None = None
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        field, _, value = line.partition(b":")
        if field == b"data":
            data.append(value.lstrip(b" "))
        elif field == b"event":
            name = value.strip().decode("utf-8", "replace") or None
        # an empty field is a comment; `id`, `retry` and unknown fields are ignored
    return StreamEvent(b"\n".join(data), name) if data else None
