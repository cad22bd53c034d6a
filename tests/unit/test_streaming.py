"""SSE decoding across arbitrary chunk boundaries."""

from __future__ import annotations

import pytest

from gateway.endpoints.openai import encode, error_event
from gateway.providers.sse import SSEDecoder

STREAM = (
    b'data: {"a":1}\n\n: keep-alive comment\n\ndata: {"b":2}\r\n\r\n'
    b"event: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n"
)
EXPECTED = [b'{"a":1}', b'{"b":2}', b"line1\nline2", b"[DONE]"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(STREAM)])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    dec = SSEDecoder()
    events: list[bytes] = []
    for i in range(0, len(STREAM), size):
        events += [e.data for e in dec.feed(STREAM[i : i + size])]
    assert events == EXPECTED
    assert dec.pending == b""


def test_incomplete_event_waits() -> None:
    dec = SSEDecoder()
    assert dec.feed(b'data: {"a"') == []
    assert dec.feed(b":1}\n") == []
    assert [e.data for e in dec.feed(b"\n")] == [b'{"a":1}']


def test_data_without_space() -> None:
    assert [e.data for e in SSEDecoder().feed(b"data:x\n\n")] == [b"x"]


def test_encode_and_error_event() -> None:
    assert encode(b"{}") == b"data: {}\n\n"
    ev = error_event("boom")
    assert ev.startswith(b'data: {"error":{"message":"boom"') and ev.endswith(b"\n\n")
