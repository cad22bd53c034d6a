"""Property tests: arbitrary JSON or bytes in, only our typed errors out (client input, upstream input)."""

from __future__ import annotations

import base64
import gzip
import string
import zlib
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.depth import too_deep
from gateway.api.relay import parse_body
from gateway.bounded import Inflater, inflater_for
from gateway.endpoints import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.errors import GatewayError
from gateway.policy.model import Route
from gateway.providers import conform
from gateway.providers.base import ProviderError, StreamEvent
from gateway.providers.openai_compat import ChunkTranslator, OpenAICompatAdapter
from gateway.providers.sse import SSEDecoder
from gateway.redact import REDACTED, scrub
from tests.unit.targets import target

ROUTE = Route(name="r")
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)
# Objects that look like requests or responses, with every field's type up for grabs.
KEYS = [
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "max_tokens",
    "n",
    "temperature",
    "top_p",
    "tools",
    "stream_options",
    "encoding_format",
    "choices",
    "usage",
    "data",
    "error",
    "id",
    "object",
    "created",
    "system_fingerprint",
    "message",
    "delta",
    "finish_reason",
    "content",
    "role",
    "text",
]
shaped = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=30,
)
objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), shaped | json_values, max_size=8)


@PROPS
@given(objects)
def test_parse_and_validate_raise_only_bad_request(doc: dict[str, Any]) -> None:
    raw = orjson.dumps(doc)
    for spec in (CHAT, COMPLETIONS, EMBEDDINGS):
        try:
            body = parse_body(raw)
            spec.validate(body)
        except GatewayError as err:
            assert 400 <= err.status < 500
            continue
        est = spec.estimate(spec.to_backend(body), ROUTE)
        assert est.input_tokens >= 1


@PROPS
@given(st.binary(max_size=200))
def test_parse_body_of_any_bytes(raw: bytes) -> None:
    try:
        assert isinstance(parse_body(raw), dict)
    except GatewayError as err:
        assert err.status == 400


def nested(depth: int) -> bytes:
    return b'{"model":"m","metadata":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [126, 127, 200, 253, 300, 1000, 1030])
def test_depth_limit(depth: int) -> None:
    if depth + 1 <= 128:
        assert parse_body(nested(depth))["model"] == "m"
        return
    with pytest.raises(GatewayError) as exc:
        parse_body(nested(depth))
    assert exc.value.status == 400


def reference_depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((reference_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((reference_depth(v) for v in node), default=0)
    return 0


@PROPS
@given(json_values, st.integers(0, 6))
def test_too_deep_agrees_with_a_recursive_count(doc: Any, limit: int) -> None:
    assert too_deep(orjson.dumps(doc), doc, limit) == (reference_depth(doc) > limit)


@PROPS
@given(objects, st.sampled_from(["chat", "completions", "embeddings"]))
def test_conformers_are_total(doc: dict[str, Any], op: str) -> None:
    adapter = OpenAICompatAdapter()
    try:
        parsed = adapter.parse_response(op, orjson.dumps(doc), target())  # type: ignore[arg-type]
    except ProviderError as err:
        assert err.kind == "protocol"
        return
    out = orjson.loads(parsed.body)
    assert isinstance(out["choices" if op != "embeddings" else "data"], list)


@PROPS
@given(
    st.one_of(objects.map(orjson.dumps), st.binary(max_size=100)), st.sampled_from(["chat", "completions"])
)
def test_stream_translator_is_total(data: bytes, op: str) -> None:
    translator = ChunkTranslator(op, "m", "secret-key-123456")  # type: ignore[arg-type]
    try:
        out = translator.translate(StreamEvent(data))
    except ProviderError as err:
        assert "secret-key-123456" not in err.message
        return
    if data == b"[DONE]":  # the clean end: no chunk, and the stream has ended
        assert out == [] and translator.ended
        return
    assert len(out) == 1 and isinstance(orjson.loads(out[0]), dict)


def test_conform_rejects_non_object_choices_and_delta() -> None:
    for doc in ({"choices": [1]}, {"choices": "x"}, {"choices": [{"delta": [1]}]}):
        with pytest.raises(ProviderError):
            conform.chat_chunk(doc, "m")
    with pytest.raises(ProviderError):
        conform.embeddings({"data": [None]}, "m")


def test_deep_upstream_response_is_a_protocol_error() -> None:
    deep = b'{"x":' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(ProviderError) as exc:
        OpenAICompatAdapter().parse_response("chat", deep, target())
    assert exc.value.kind == "protocol"


events = st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=6)


@PROPS
@given(events, st.lists(st.integers(0, 400), max_size=8), st.sampled_from([b"\n\n", b"\r\n\r\n"]))
def test_sse_decoder_is_independent_of_chunking(payloads: list[bytes], cuts: list[int], sep: bytes) -> None:
    stream = b"".join(b"data: " + p + sep for p in payloads)
    whole = [e.data for e in SSEDecoder().feed(stream)]
    decoder = SSEDecoder()
    got: list[bytes] = []
    last = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        got += [e.data for e in decoder.feed(stream[last:cut])]
        last = cut
    got += [e.data for e in decoder.feed(stream[last:])]
    assert got == whole == [p.lstrip(b" ") for p in payloads]


@PROPS
@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(1, 200))
def test_sse_decoder_bounds_its_buffer(chunks: list[bytes], limit: int) -> None:
    decoder = SSEDecoder(limit)
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except ProviderError as err:
            assert err.kind == "protocol"
            return
        assert len(decoder.pending) <= limit


KEY_CHARS = string.ascii_letters + string.digits + "_-+/="
FILLER = st.text(alphabet=" .,;!?()[]{}<>é字\n\"'", max_size=600)


def forms(key: str) -> list[tuple[str, str]]:
    """(the text an upstream writes, the part of it that only the key determines)."""
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    alone = base64.b64encode(key.encode()).decode()
    trailing = base64.urlsafe_b64encode(f"{key}:".encode()).decode()
    return [
        (key, key),
        (key.upper(), key.upper()),
        (key.lower(), key.lower()),
        (basic, basic[8:]),
        (alone, alone),
        (trailing, trailing[:-8]),
        (quote(key, safe=""), quote(key, safe="")),
    ]


def leaks(out: str, secret_part: str) -> bool:
    return any(secret_part[i : i + 8] in out for i in range(len(secret_part) - 7))


def unmarked(out: str) -> str:
    """The scrubbed text without the scrubber's own placeholder, whole or cut short by the limit (each
    becomes a NUL, which no key contains): a key that contains "redacted" is not leaked by the placeholder
    that replaced it (Hypothesis found key="REDACTED00000000", limit=9: "[redacted...")."""
    text = out.replace(REDACTED, "\0")
    if text.endswith("..."):
        body = text[:-3]
        cut = next((n for n in range(len(REDACTED) - 1, 0, -1) if body.endswith(REDACTED[:n])), 0)
        text = (body[:-cut] + "\0" if cut else body) + "..."
    return text


@PROPS
@given(st.text(alphabet=KEY_CHARS, min_size=16, max_size=64), FILLER, FILLER, st.integers(1, 600), st.data())
def test_scrub_leaves_no_piece_of_the_key(key: str, before: str, after: str, limit: int, data: Any) -> None:
    text, part = data.draw(st.sampled_from(forms(key)))
    out = scrub(before + text + after, key, limit=limit)
    assert len(out) <= limit + 3
    assert not leaks(unmarked(out), part)
    assert not leaks(unmarked(out).lower(), key.lower())


def test_a_key_that_spells_the_placeholder_is_still_scrubbed() -> None:
    key = "REDACTED00000000"
    assert scrub(key, key, limit=9) == "[redacted..."
    assert scrub(f"a {key} b", key) == "a [redacted] b"
    assert unmarked(scrub(f"a {key} b {key.lower()}", key, limit=18)) == "a \0 b \0..."


def test_scrub_cuts_after_redacting() -> None:
    key = "Zq7Ux3Wm9Kp2Lr5Tn8Vb4Yc6Hd1Jf0G"
    for offset in range(440, 520):
        out = scrub("x" * offset + key + " tail", key, limit=500)
        assert not leaks(out, key), offset


def test_inflater_round_trip_and_cap() -> None:
    data = bytes(range(256)) * 1000
    packed = gzip.compress(data)
    inflater = Inflater("gzip", len(data))
    got = b"".join(p for i in range(0, len(packed), 777) for p in inflater.feed(packed[i : i + 777]))
    inflater.finish()
    assert got == data
    with pytest.raises(ProviderError, match="size limit"):
        list(Inflater("gzip", len(data) - 1).feed(packed))
    for raw in (True, False):
        c = zlib.compressobj(wbits=-15 if raw else 15)
        assert b"".join(Inflater("deflate", 10**6).feed(c.compress(data) + c.flush())) == data


@PROPS
@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "x-gzip"]))
def test_inflater_on_any_bytes_raises_only_provider_error(data: bytes, encoding: str) -> None:
    inflater = inflater_for(encoding, 10_000)
    assert inflater is not None
    try:
        assert sum(len(p) for p in inflater.feed(data)) <= 10_000
        inflater.finish()
    except ProviderError as err:
        assert err.kind == "protocol"


def test_unknown_encoding_is_a_protocol_error() -> None:
    assert inflater_for(None, 1) is None and inflater_for(" Identity ", 1) is None
    with pytest.raises(ProviderError):
        inflater_for("br", 1)
