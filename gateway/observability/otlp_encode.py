"""Finished spans to an OTLP ExportTraceServiceRequest, written straight in the protobuf wire format.

The SDK's encoder builds one protobuf message object per attribute through several Python calls each
(~65 µs for one of our spans); writing the bytes directly, with the fixed attribute keys encoded once,
costs a fraction of that. tests/unit/observability/test_otlp_encode.py checks it against the SDK's output."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class SpanRecord(NamedTuple):
    """A finished span, in plain values (ids as ints, times in ns since the epoch)."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int  # 0: a root span
    parent_remote: bool
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    status_code: int  # OTLP StatusCode: 0 unset, 2 error
    status_message: str
    trace_state: str
    shared: tuple[Fixed, ...] = ()  # attribute groups many spans share, written before `attributes`


_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_keys: dict[str, bytes] = {}  # KeyValue.key fields by key; the keys are a small fixed set
_cached: dict[tuple[int, str, Any], bytes] = {}
_heads: dict[tuple[int, str, int, int], bytes] = {}  # (tag, key, AnyValue kind, value length): head
_CACHE_MAX = 4096
_UNCACHED = frozenset({"routeway.request_id", "gen_ai.request.model"})  # unique, or client-chosen


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag already holds the field number and wire type 2)."""
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + _varint(n) + payload


def _any(value: Any) -> bytes:
    """An AnyValue message's bytes."""
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return _field(0x2A, b"".join(_field(0x0A, _any(v)) for v in value))
    return _field(0x0A, str(value).encode())


def _keys_field(key: str) -> bytes:
    head = _keys.get(key)
    if head is None:
        head = _keys[key] = _field(0x0A, key.encode())
    return head


def _key_value(key: str, value: Any) -> bytes:
    return _keys_field(key) + _field(0x12, _any(value))


def attributes(attrs: Mapping[str, Any], tag: int) -> bytes:
    """Repeated KeyValue fields under `tag` (Span.attributes 0x4A, Resource.attributes 0x0A).

    Most of our string values come from the policy (backend, model, route, hardware, outcome): the whole
    encoded field is kept for them (not for request ids or client-chosen text; the cache is bounded).
    For numbers and other strings, everything before the value's own bytes depends only on the key and
    the value's encoded length: that head is kept, so such a value costs a lookup and a concatenation.
    One loop, no call per attribute: this runs ~20 times a sampled request."""
    out = []
    for key, value in attrs.items():
        kind = type(value)
        if kind is str or kind is bool:
            hit = _cached.get((tag, key, value))
            if hit is None:
                hit = _whole(tag, key, value)
            out.append(hit)
            continue
        if kind is int:
            if 0 <= value < 0x80:
                raw = bytes((value,))
            elif 0 <= value < 0x4000:  # status codes, token counts: two bytes
                raw = bytes(((value & 0x7F) | 0x80, value >> 7))
            else:
                raw = _varint(value & 0xFFFFFFFFFFFFFFFF)
            any_kind = 0x18
        elif kind is float:
            raw, any_kind = _pack_d(value), 0x21
        else:
            out.append(_field(tag, _key_value(key, value)))
            continue
        head = _heads.get((tag, key, any_kind, len(raw)))
        if head is None:
            head = _head(tag, key, any_kind, raw)
        out.append(head + raw)
    return b"".join(out)


def _whole(tag: int, key: str, value: str | bool) -> bytes:
    """A string or bool attribute's field, kept unless the value is unique or client-chosen."""
    if type(value) is str and key in _UNCACHED:
        raw = value.encode()
        head = _heads.get((tag, key, 0x0A, len(raw)))
        return (head or _head(tag, key, 0x0A, raw)) + raw
    out = _field(tag, _key_value(key, value))
    if len(_cached) >= _CACHE_MAX:
        _cached.clear()
    _cached[(tag, key, value)] = out
    return out


def _head(tag: int, key: str, kind: int, raw: bytes) -> bytes:
    """What precedes `raw` in a KeyValue field whose AnyValue holds it under `kind` (0x0A string, 0x18
    int, 0x21 double): the same for every value of that key, kind and encoded length."""
    value = _field(0x0A, raw) if kind == 0x0A else bytes((kind,)) + raw
    whole = _field(tag, _keys_field(key) + _field(0x12, value))
    head = whole[: len(whole) - len(raw)]
    if len(_heads) >= _CACHE_MAX:
        _heads.clear()
    _heads[(tag, key, kind, len(raw))] = head
    return head


class Fixed(dict[str, Any]):
    """Span attributes many spans share (a target's, an endpoint's): encoded once, when made."""

    __slots__ = ("encoded",)

    def __init__(self, items: Mapping[str, Any]) -> None:
        super().__init__(items)
        self.encoded = attributes(self, 0x4A)


_pack_times = struct.Struct("<BQBQ").pack  # start_time_unix_nano (fixed64 7), end_time_unix_nano (8)
_KINDS = {kind: b"\x30" + bytes((kind,)) for kind in range(6)}
# Span.flags (field 16, fixed32): "is_remote is known" and whether the parent is remote, as the SDK writes.
_FLAGS = (b"\x85\x01" + _pack_i(0x100), b"\x85\x01" + _pack_i(0x300))
_UNSET = b"\x7a\x00"  # an empty Status: present even when unset, as the SDK writes it
_names: dict[str, bytes] = {}  # span names: a few per policy target


def _span(s: SpanRecord) -> bytes:
    name = _names.get(s.name)
    if name is None:
        if len(_names) >= _CACHE_MAX:
            _names.clear()
        name = _names[s.name] = _field(0x2A, s.name.encode())
    status = _UNSET
    if s.status_code or s.status_message:
        status = _field(0x12, s.status_message.encode()) if s.status_message else b""
        if s.status_code:
            status += b"\x18" + bytes((s.status_code,))
        status = _field(0x7A, status)
    return b"".join(
        (
            b"\x0a\x10",
            s.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            s.span_id.to_bytes(8, "big"),
            _field(0x1A, s.trace_state.encode()) if s.trace_state else b"",
            b"\x22\x08" + s.parent_id.to_bytes(8, "big") if s.parent_id else b"",
            name,
            _KINDS[s.kind],
            _pack_times(0x39, s.start_ns, 0x41, s.end_ns),
            *[group.encoded for group in s.shared],
            attributes(s.attributes, 0x4A),
            status,
            _FLAGS[s.parent_remote],
        )
    )


class Encoder:
    """One process's resource and scope, encoded once; `encode(spans)` gives a request body."""

    def __init__(self, resource: Mapping[str, Any], scope_name: str, scope_version: str) -> None:
        self._resource = _field(0x0A, attributes(resource, 0x0A))
        self._scope = _field(0x0A, _field(0x0A, scope_name.encode()) + _field(0x12, scope_version.encode()))

    def encode(self, spans: Sequence[SpanRecord]) -> bytes:
        scope_spans = self._scope + b"".join([_field(0x12, _span(s)) for s in spans])
        return _field(0x0A, self._resource + _field(0x12, scope_spans))
