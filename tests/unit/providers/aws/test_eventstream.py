"""The AWS event-stream decoder: frames cut at every byte boundary, both CRCs, header types, bounds, and
botocore's own parser as the oracle for what the encoder writes."""

from __future__ import annotations

import struct
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.aws.eventstream import (
    EventStreamDecoder,
    ExceptionEvent,
    decode_headers,
    encode_message,
    event,
    exception,
)
from gateway.providers.base import ProviderError, StreamEvent

MAX = 1024 * 1024
STREAM = (
    event("messageStart", b'{"role":"assistant"}')
    + event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"},"p":"abc"}')
    + exception("throttlingException", b'{"message":"slow down"}')
)
EXPECTED = [
    StreamEvent(b'{"role":"assistant"}', "messageStart"),
    StreamEvent(b'{"contentBlockIndex":0,"delta":{"text":"hi"},"p":"abc"}', "contentBlockDelta"),
    ExceptionEvent(b'{"message":"slow down"}', "throttlingException"),
]


def decode_all(data: bytes, cuts: list[int]) -> list[StreamEvent]:
    decoder = EventStreamDecoder(MAX)
    out: list[StreamEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        out += decoder.feed(data[start:cut])
        start = cut
    assert decoder.pending == b""
    return out


def test_a_stream_cut_at_every_byte_boundary_decodes_the_same() -> None:
    for cut in range(len(STREAM) + 1):
        events = decode_all(STREAM, [cut])
        assert events == EXPECTED
        assert [type(e) for e in events] == [StreamEvent, StreamEvent, ExceptionEvent]


def test_one_byte_at_a_time() -> None:
    assert decode_all(STREAM, list(range(1, len(STREAM)))) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=300)), min_size=1, max_size=6
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
)
def test_any_messages_cut_anywhere_come_back_whole(
    messages: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    data = b"".join(event(name, payload) for name, payload in messages)
    events = decode_all(data, sorted(c for c in cuts if c <= len(data)))
    assert events == [StreamEvent(payload, name) for name, payload in messages]


@settings(max_examples=100, deadline=None)
@given(
    headers=st.dictionaries(
        st.text(min_size=1, max_size=30).filter(lambda s: len(s.encode()) < 256),
        st.one_of(
            st.text(max_size=50),
            st.binary(max_size=50),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        max_size=6,
    ),
    payload=st.binary(max_size=200),
)
def test_botocore_reads_what_the_encoder_writes(headers: dict[str, object], payload: bytes) -> None:
    data = encode_message(headers, payload)  # type: ignore[arg-type]
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    (message,) = list(buffer)
    assert message.payload == payload
    assert message.headers == headers
    assert decode_headers(data[12 : 12 + struct.unpack(">I", data[4:8])[0]]) == headers


def test_every_single_byte_corruption_is_a_protocol_error() -> None:
    frame = event("contentBlockDelta", b'{"delta":{"text":"hello"}}')
    for i in range(len(frame)):
        corrupt = bytearray(frame)
        corrupt[i] ^= 0x01
        decoder = EventStreamDecoder(MAX)
        with pytest.raises(ProviderError) as err:
            decoder.feed(bytes(corrupt) + frame)  # a following good frame does not hide it
        assert err.value.kind == "protocol"


@pytest.mark.parametrize(
    ("where", "message"),
    [(8, "prelude CRC mismatch"), (-1, "message CRC mismatch")],
)
def test_bad_crcs_are_named(where: int, message: str) -> None:
    frame = bytearray(event("messageStart", b"{}"))
    frame[where] ^= 0xFF
    with pytest.raises(ProviderError, match=message):
        EventStreamDecoder(MAX).feed(bytes(frame))


def test_an_event_above_the_limit_is_refused_before_it_is_buffered() -> None:
    frame = event("contentBlockDelta", b"x" * 2000)
    decoder = EventStreamDecoder(1000)
    with pytest.raises(ProviderError, match="exceeds 1000 bytes"):
        decoder.feed(frame[:12])  # the prelude alone says so


def test_impossible_lengths_are_refused() -> None:
    prelude = struct.pack(">II", 10, 0)  # shorter than a prelude and a CRC
    with pytest.raises(ProviderError, match="impossible lengths"):
        EventStreamDecoder(MAX).feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_error_messages_carry_their_code_and_text() -> None:
    frame = encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    (got,) = EventStreamDecoder(MAX).feed(frame)
    assert isinstance(got, ExceptionEvent) and got == ExceptionEvent(b"boom", "InternalFailure")


def test_headers_of_every_type_decode() -> None:
    block = (
        b"\x01a\x00"  # true
        + b"\x01b\x01"  # false
        + b"\x01c\x02\xff"  # byte -1
        + b"\x01d\x03\x00\x02"  # short 2
        + b"\x01e\x04\x00\x00\x00\x03"  # int 3
        + b"\x01f\x08"
        + (7).to_bytes(8, "big")  # timestamp
        + b"\x01g\x09"
        + bytes(range(16))  # uuid
    )
    assert decode_headers(block) == {
        "a": True,
        "b": False,
        "c": -1,
        "d": 2,
        "e": 3,
        "f": 7,
        "g": bytes(range(16)),
    }


@pytest.mark.parametrize("block", [b"\x05ab", b"\x01a\x07\x00\x09abc", b"\x01a\x0a", b"\x01a\x04\x00"])
def test_malformed_headers_are_protocol_errors(block: bytes) -> None:
    with pytest.raises(ProviderError) as err:
        decode_headers(block)
    assert err.value.kind == "protocol"
