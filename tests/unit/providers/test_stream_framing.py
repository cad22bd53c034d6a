"""Adapter-owned stream framing: the SSE decoder keeps event names, and decode + translate give the same
canonical chunks wherever the upstream's bytes are cut (Hypothesis)."""

from __future__ import annotations

import asyncio
import string

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.providers.base import ProviderError, StreamEvent, StreamTranslator
from gateway.providers.openai_compat import OpenAICompatAdapter
from gateway.providers.sse import SSEDecoder
from gateway.providers.stream import UpstreamStream
from tests.mock_transport import MockReply, chunk_doc, sse
from tests.unit.named_stream import NAMED_STEPS_DOC, NamedTranslator, named
from tests.unit.targets import target

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

line_text = st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b)
names = st.one_of(st.none(), st.text(string.ascii_letters + "._-", min_size=1, max_size=12))
sse_events = st.lists(st.tuples(names, st.lists(line_text, min_size=1, max_size=3)), max_size=6)


def render(events: list[tuple[str | None, list[bytes]]], nl: bytes, noise: bool) -> bytes:
    out = b""
    for name, lines in events:
        block = [b": comment"] if noise else []
        if name is not None:
            block.append(b"event: " + name.encode())
        if noise:
            block.append(b"id: 7")
        block += [b"data: " + line for line in lines]
        out += nl.join(block) + nl + nl
    return out


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(points, points[1:], strict=False)]


@PROPS
@given(
    sse_events,
    st.lists(st.integers(0, 2000), max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.booleans(),
)
def test_sse_events_and_their_names_survive_any_chunking(
    events: list[tuple[str | None, list[bytes]]], cuts: list[int], nl: bytes, noise: bool
) -> None:
    stream = render(events, nl, noise)
    expected = [StreamEvent(b"\n".join(line.lstrip(b" ") for line in lines), name) for name, lines in events]
    decoder = SSEDecoder()
    got: list[StreamEvent] = []
    for piece in cut(stream, cuts):
        got += decoder.feed(piece)
    assert got == expected and decoder.pending == b""


def test_an_event_without_data_is_dropped_and_a_name_kept_for_its_data() -> None:
    feed = SSEDecoder().feed(b"event: ping\n\nevent: delta\ndata: {}\n\n: only a comment\n\n")
    assert feed == [StreamEvent(b"{}", "delta")]


def test_a_name_longer_than_the_event_limit_is_refused() -> None:
    with pytest.raises(ProviderError) as exc:
        SSEDecoder(64).feed(b"event: " + b"x" * 100)
    assert exc.value.kind == "protocol"


def read_all(steps: list[bytes], translator: StreamTranslator) -> list[bytes]:
    async def run() -> list[bytes]:
        reply = MockReply(200, steps=steps)
        stream = UpstreamStream(reply.chunks(), SSEDecoder(), translator)
        out: list[bytes] = []
        while not stream.done:
            out += await stream.read()
        return out

    return asyncio.run(run())


texts = st.lists(st.text(max_size=8), min_size=1, max_size=6)


@PROPS
@given(texts, st.lists(st.integers(0, 3000), max_size=12), st.booleans())
def test_openai_stream_translation_is_independent_of_chunking(
    parts: list[str], cuts: list[int], show_usage: bool
) -> None:
    raw = b"".join(sse(*(chunk_doc(t) for t in parts), chunk_doc(None, usage=(2, len(parts)))))
    adapter = OpenAICompatAdapter()
    whole_tr = adapter.stream_translator("chat", target(), show_usage=show_usage)
    whole = read_all([raw], whole_tr)
    pieces_tr = adapter.stream_translator("chat", target(), show_usage=show_usage)
    assert read_all(cut(raw, cuts), pieces_tr) == whole
    assert len(whole) == len(parts) + show_usage  # the usage-only chunk only for a client that asked
    assert whole_tr.usage == pieces_tr.usage and pieces_tr.ended


@PROPS
@given(
    st.lists(st.text(string.ascii_letters, min_size=1, max_size=5), min_size=1, max_size=5),
    st.lists(st.integers(0, 3000), max_size=12),
)
def test_named_stream_translation_is_independent_of_chunking(words: list[str], cuts: list[int]) -> None:
    raw = b"".join(
        [named("start", {}), named("delta", {"text": "|".join(words)}), named("stop", NAMED_STEPS_DOC)]
    )
    whole = read_all([raw], NamedTranslator())
    assert read_all(cut(raw, cuts), NamedTranslator()) == whole
    assert [orjson.loads(c)["choices"][0]["delta"].get("content") for c in whole] == [*words, None]


def test_nothing_is_read_after_the_clean_end() -> None:
    reply = MockReply(200, steps=[*sse(chunk_doc("a")), b"data: not json\n\n"])
    tr = OpenAICompatAdapter().stream_translator("chat", target())

    async def run() -> list[bytes]:
        stream = UpstreamStream(reply.chunks(), SSEDecoder(), tr)
        out: list[bytes] = []
        while not stream.done:
            out += await stream.read()
        return out

    assert len(asyncio.run(run())) == 1 and reply.read_steps == 2  # the malformed tail is never read
