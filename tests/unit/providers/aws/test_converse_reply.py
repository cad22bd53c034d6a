"""Converse answers -> OpenAI chat, on fixtures from AWS's examples: whole responses, ConverseStream events
through the decoder cut at every boundary, exception frames, and the official SDK's own stream accumulator
reading the chunks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.providers.aws.bedrock import BedrockAdapter
from gateway.providers.aws.eventstream import event, exception
from gateway.providers.base import ProviderError
from gateway.providers.stream import UpstreamStream
from tests.unit.providers.aws.fixtures import load, no_reads
from tests.unit.targets import target

A = BedrockAdapter()
T = target(provider="bedrock", model_id="meta.llama3-3-70b-instruct-v1:0")
RESPONSES = load("bedrock", "responses.json")


@pytest.mark.parametrize("case", RESPONSES, ids=[c["name"][:50] for c in RESPONSES])
def test_responses_translate_as_the_docs_show(case: dict[str, Any]) -> None:
    parsed = A.parse_response("chat", orjson.dumps(case["converse"]), T)
    doc = orjson.loads(parsed.body)
    ChatCompletion.model_validate(doc)  # the SDK's own schema
    choice = doc["choices"][0]
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] == case["message"]["content"]
    assert message.get("tool_calls") == case["message"].get("tool_calls")
    assert choice["finish_reason"] == case["finish_reason"]
    assert doc["usage"] == case["usage"] and doc["model"] == T.model_id
    assert parsed.usage is not None and parsed.usage.input_tokens == case["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"output":{"message":{"content":"x"}}}',
        b'{"output":{"message":{"content":[{"toolUse":{}}]}}}',
    ],
)
def test_unexpected_shapes_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProviderError) as err:
        A.parse_response("chat", body, T)
    assert err.value.kind == "protocol"


def frames(case: dict[str, Any]) -> bytes:
    return b"".join(event(name, orjson.dumps(doc)) for name, doc in case["events"])


def run_stream(data: bytes, cut: int, show_usage: bool = True) -> tuple[list[bytes], UpstreamStream]:
    stream = UpstreamStream(
        no_reads(),
        A.stream_decoder("chat", T, max_event_bytes=1 << 20),
        A.stream_translator("chat", T, show_usage=show_usage),
    )
    out = stream.feed(data[:cut])
    if not stream.done:
        out += stream.feed(data[cut:])
    if not stream.done:
        out += stream.end()
    return out, stream


def accumulate(chunks: list[bytes]) -> ChatCompletion:
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(chunk)))
    return state.get_final_completion()  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["stream_text.json", "stream_tool.json"])
def test_streams_read_at_every_cut_make_the_documented_answer(name: str) -> None:
    case = load("bedrock", name)
    data = frames(case)
    for cut in range(0, len(data) + 1, 7):
        chunks, stream = run_stream(data, cut)
        assert stream.done
        final = accumulate(chunks)
        message = final.choices[0].message
        assert message.content == case["text"]
        assert final.choices[0].finish_reason == case["finish_reason"]
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in message.tool_calls or []
        ]
        assert calls == case.get("tool_calls", [])
        assert orjson.loads(chunks[-1])["usage"] == case["usage"]
        assert stream.usage is not None and stream.usage.output_tokens == case["usage"]["completion_tokens"]
        assert stream.translator.output_chars == len(case["text"]) + sum(len(c["arguments"]) for c in calls)


def test_message_start_alone_makes_no_chunk_so_the_router_can_still_fail_over() -> None:
    translator = A.stream_translator("chat", T)
    assert (
        translator.translate(
            A.stream_decoder("chat", T, max_event_bytes=1 << 20).feed(
                event("messageStart", b'{"role":"assistant"}')
            )[0]
        )
        == []
    )


def test_usage_is_read_but_not_relayed_when_the_client_did_not_ask() -> None:
    chunks, stream = run_stream(frames(load("bedrock", "stream_text.json")), 0, show_usage=False)
    assert all("usage" not in orjson.loads(c) for c in chunks)
    assert stream.usage is not None and stream.usage.input_tokens == 23


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("throttlingException", "rate_limited"),
        ("modelStreamErrorException", "server"),
        ("internalServerException", "server"),
        ("serviceUnavailableException", "server"),
        ("validationException", "client"),
    ],
)
def test_exception_frames_fail_the_stream_with_their_kind(name: str, kind: str) -> None:
    data = event("messageStart", b'{"role":"assistant"}') + exception(name, b'{"message":"it broke"}')
    with pytest.raises(ProviderError) as err:
        run_stream(data, 0)
    assert err.value.kind == kind and name in err.value.message and "it broke" in err.value.message


def test_a_validation_exception_about_length_is_a_context_length_failure() -> None:
    data = exception("validationException", b'{"message":"Input is too long for requested model."}')
    with pytest.raises(ProviderError) as err:
        run_stream(data, 0)
    assert err.value.kind == "context_length"


def test_a_stream_that_stops_before_message_stop_is_unfinished() -> None:
    data = frames(load("bedrock", "stream_text.json"))
    cut_before_stop = data.index(
        event("messageStop", orjson.dumps({"p": "abcdefghijklmnopqrstuvwxyzAB", "stopReason": "end_turn"}))
    )
    stream = UpstreamStream(
        no_reads(), A.stream_decoder("chat", T, max_event_bytes=1 << 20), A.stream_translator("chat", T)
    )
    stream.feed(data[:cut_before_stop])
    with pytest.raises(ProviderError, match="before it finished"):
        stream.end()


def test_a_stream_ending_after_message_stop_without_metadata_has_ended() -> None:
    data = event("messageStart", b"{}") + event("messageStop", b'{"stopReason":"end_turn"}')
    chunks, stream = run_stream(data, 0)
    assert stream.done and stream.usage is None and len(chunks) == 1
    assert orjson.loads(chunks[0])["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant"},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_unknown_events_and_reasoning_deltas_are_skipped() -> None:
    data = (
        event("messageStart", b"{}")
        + event("futureEvent", b'{"x":1}')
        + event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hm"}}}')
        + event("messageStop", b'{"stopReason":"end_turn"}')
        + event("metadata", b'{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}')
    )
    chunks, _ = run_stream(data, 0)
    assert len([c for c in chunks if orjson.loads(c)["choices"]]) == 1  # the finish chunk, then usage
    assert accumulate(chunks).choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "payload",
    [
        b"nope",
        b"[1]",
        b'{"delta":"x","contentBlockIndex":0}',
        b'{"delta":{"toolUse":{"input":"{"}},"contentBlockIndex":9}',
    ],
)
def test_malformed_events_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProviderError) as err:
        run_stream(event("contentBlockDelta", payload), 0)
    assert err.value.kind == "protocol"


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), max_size=8),
    args=st.lists(st.text(max_size=10), max_size=5),
    cut=st.integers(min_value=0, max_value=5000),
)
def test_any_text_and_tool_deltas_come_back_whole(texts: list[str], args: list[str], cut: int) -> None:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts]
    start = {"toolUse": {"toolUseId": "t1", "name": "f"}}
    events += [("contentBlockStart", {"contentBlockIndex": 1, "start": start})]
    events += [
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": a}}}) for a in args
    ]
    events += [("messageStop", {"stopReason": "tool_use"}), ("metadata", {"usage": {"inputTokens": 1}})]
    data = frames({"events": events})
    chunks, stream = run_stream(data, min(cut, len(data)))
    message = accumulate(chunks).choices[0].message
    assert (message.content or "") == "".join(texts)
    assert message.tool_calls is not None and message.tool_calls[0].function.arguments == "".join(args)
    assert stream.done and stream.translator.output_chars == len("".join(texts)) + len("".join(args))
