"""Every stream is billed: the OpenAI adapter asks the upstream for usage and hides it from a client that
did not ask for it (the usage-only chunk dropped, a usage key on a content chunk removed)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.providers.base import Operation, StreamEvent
from gateway.providers.openai_compat import ChunkTranslator, OpenAICompatAdapter
from tests.mock_transport import chunk_doc
from tests.unit.targets import target

MSG = [{"role": "user", "content": "hi"}]


def sent(op: Operation, **body: Any) -> dict[str, Any]:
    req = OpenAICompatAdapter().build_request(op, {"model": "m", **body}, target())
    doc: dict[str, Any] = orjson.loads(req.body)
    return doc


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"stream": True}, {"include_usage": True}),
        ({"stream": True, "stream_options": {"include_usage": False}}, {"include_usage": True}),
        (
            {"stream": True, "stream_options": {"include_obfuscation": False}},
            {"include_obfuscation": False, "include_usage": True},
        ),
    ],
)
def test_every_stream_asks_for_usage(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent("chat", messages=MSG, **body)["stream_options"] == expected
    assert sent("completions", prompt="hi", **body)["stream_options"] == expected


def test_a_whole_answer_or_embeddings_are_sent_as_they_came() -> None:
    assert "stream_options" not in sent("chat", messages=MSG)
    assert "stream_options" not in sent("chat", messages=MSG, stream=False)
    assert "stream_options" not in sent("embeddings", input="hi", stream=True)


def translate(doc: dict[str, Any], show_usage: bool) -> tuple[dict[str, Any] | None, ChunkTranslator]:
    tr = ChunkTranslator("chat", "m", show_usage=show_usage)
    out = tr.translate(StreamEvent(orjson.dumps(doc)))
    assert len(out) <= 1
    return (orjson.loads(out[0]) if out else None), tr


def test_the_usage_only_chunk_is_read_but_not_relayed() -> None:
    out, tr = translate(chunk_doc(None, usage=(4, 2)), show_usage=False)
    assert out is None and tr.usage is not None and (tr.usage.input_tokens, tr.usage.output_tokens) == (4, 2)
    out, tr = translate(chunk_doc(None, usage=(4, 2)), show_usage=True)
    assert out is not None and out["usage"]["completion_tokens"] == 2


def test_usage_on_a_content_chunk_is_removed_and_the_content_kept() -> None:
    out, tr = translate(chunk_doc("bye", usage=(4, 2)), show_usage=False)
    assert out is not None and "usage" not in out and out["choices"][0]["delta"]["content"] == "bye"
    assert tr.usage is not None
    null_usage = {**chunk_doc("x"), "usage": None}  # what upstreams put on every chunk once usage is asked
    out, _ = translate(null_usage, show_usage=False)
    assert out is not None and "usage" not in out and out["choices"]


def test_a_chunk_without_usage_passes_untouched() -> None:
    raw = orjson.dumps(chunk_doc("hi"))
    assert ChunkTranslator("chat", "m", show_usage=False).translate(StreamEvent(raw)) == [raw]
