"""AWS event-stream framing (`application/vnd.amazon.eventstream`): an incremental, bounded decoder with
both CRC32 checks, and the encoder the simulator and the tests use.

A message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), the headers, the
payload and a CRC32 of everything before it. Headers are (name, type, value); `:message-type` says whether
the message is an `event` (`:event-type` names it), an `exception` (`:exception-type`) or an `error`
(`:error-code`, `:error-message`)."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Mapping

from gateway.providers.base import ProviderError, StreamEvent

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_PRELUDE_BYTES = 12
_OVERHEAD = 16  # prelude + message CRC
MAX_HEADERS_BYTES = 128 * 1024  # AWS's own limit on one message's headers
# Fixed-size header value types: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long, 8 timestamp, 9 uuid;
# 6 (bytes) and 7 (string) carry a 2-byte length.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}

HeaderValue = str | bytes | bool | int


class ExceptionEvent(StreamEvent):
    """An `exception` or `error` message: `name` is its `:exception-type` (or `:error-code`), `data` its
    payload (or `:error-message`). A subclass, so translators tell it from an event by type alone."""

    __slots__ = ()


class EventStreamDecoder:
    """Feeds byte chunks cut anywhere; returns each whole message as a StreamEvent. A bad CRC, an impossible
    length or a message longer than `max_event` is a ProviderError("protocol"): the stream is corrupt."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_event: int) -> None:
        self._buf = bytearray()
        self._max = max_event

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buf = self._buf
        buf += chunk
        out: list[StreamEvent] = []
        pos = 0
        while len(buf) - pos >= _PRELUDE_BYTES:
            total = self._check_prelude(buf, pos)
            if len(buf) - pos < total:
                break
            out.append(_message(bytes(buf[pos : pos + total])))
            pos += total
        del buf[:pos]
        return out

    def _check_prelude(self, buf: bytearray, pos: int) -> int:
        total, headers_len = _PRELUDE.unpack_from(buf, pos)
        (crc,) = _U32.unpack_from(buf, pos + 8)
        if zlib.crc32(buf[pos : pos + 8]) != crc:
            raise _corrupt("event-stream prelude CRC mismatch")
        if total < _OVERHEAD or headers_len > total - _OVERHEAD or headers_len > MAX_HEADERS_BYTES:
            raise _corrupt("event-stream message has impossible lengths")
        if total - _OVERHEAD - headers_len > self._max:
            raise _corrupt(f"an upstream stream event exceeds {self._max} bytes")
        return int(total)

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)


def _corrupt(message: str) -> ProviderError:
    return ProviderError("protocol", message)


def _message(frame: bytes) -> StreamEvent:
    (crc,) = _U32.unpack_from(frame, len(frame) - 4)
    if zlib.crc32(memoryview(frame)[:-4]) != crc:
        raise _corrupt("event-stream message CRC mismatch")
    (headers_len,) = _U32.unpack_from(frame, 4)
    failed, name, text = _meaning(frame[_PRELUDE_BYTES : _PRELUDE_BYTES + headers_len])
    payload = frame[_PRELUDE_BYTES + headers_len : -4]
    if not failed:
        return StreamEvent(payload, name)
    return ExceptionEvent(payload if text is None else text, name)


@functools.lru_cache(maxsize=64)
def _meaning(block: bytes) -> tuple[bool, str | None, bytes | None]:
    """(failed, name, error text) of a headers block. A stream repeats a few blocks (one per event type),
    so each is parsed once: a pure function's bounded cache."""
    headers = decode_headers(block)
    kind = headers.get(":message-type", "event")
    if kind == "event":
        name = headers.get(":event-type")
        return False, name if isinstance(name, str) else None, None
    if kind == "exception":
        name = headers.get(":exception-type")
        return True, name if isinstance(name, str) else "exception", None
    code, text = headers.get(":error-code"), headers.get(":error-message")
    return True, code if isinstance(code, str) else "error", text.encode() if isinstance(text, str) else None


def decode_headers(raw: bytes) -> dict[str, HeaderValue]:
    """Every header of one message; a header that runs past the block is a protocol error."""
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(raw)
    try:
        while pos < end:
            size = raw[pos]
            name = raw[pos + 1 : pos + 1 + size].decode()
            pos += 1 + size
            kind = raw[pos]
            pos += 1
            value, pos = _header_value(raw, pos, kind)
            if pos > end or not name:
                raise _corrupt("event-stream header runs past its block")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise _corrupt("malformed event-stream header") from None
    return headers


def _header_value(raw: bytes, pos: int, kind: int) -> tuple[HeaderValue, int]:
    if kind in (6, 7):
        (size,) = struct.unpack_from(">H", raw, pos)
        data = raw[pos + 2 : pos + 2 + size]
        if len(data) != size:
            raise _corrupt("event-stream header runs past its block")
        return (data.decode() if kind == 7 else bytes(data)), pos + 2 + size
    width = _FIXED.get(kind)
    if width is None:
        raise _corrupt(f"unknown event-stream header type {kind}")
    if kind in (0, 1):
        return kind == 0, pos
    data = raw[pos : pos + width]
    if len(data) != width:
        raise _corrupt("event-stream header runs past its block")
    if kind == 9:
        return bytes(data), pos + width
    return int.from_bytes(data, "big", signed=True), pos + width


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """One message with real CRCs (str headers as strings, bytes as byte arrays, bool, int as long)."""
    block = b"".join(_encode_header(name, value) for name, value in headers.items())
    total = _OVERHEAD + len(block) + len(payload)
    prelude = _PRELUDE.pack(total, len(block))
    prelude += _U32.pack(zlib.crc32(prelude))
    body = prelude + block + payload
    return body + _U32.pack(zlib.crc32(body))


def _encode_header(name: str, value: HeaderValue) -> bytes:
    key = name.encode()
    head = bytes([len(key)]) + key
    if isinstance(value, bool):
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        return head + bytes([5]) + value.to_bytes(8, "big", signed=True)
    data = value.encode() if isinstance(value, str) else value
    return head + bytes([7 if isinstance(value, str) else 6]) + struct.pack(">H", len(data)) + data


def event(event_type: str, payload: bytes) -> bytes:
    """An `event` message as AWS sends them (JSON content type)."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An `exception` message (throttlingException, modelStreamErrorException, ...)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, payload)
