"""Property tests for both front doors: arbitrary valid requests in, a valid chat request out; arbitrary chat
chunk streams in, a valid event sequence out (each event against its schema, read back by the official SDK's
accumulator to the same text and tool calls); arbitrary JSON in, only a typed 400 out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.endpoints.openai import validate_chat
from gateway.errors import BadRequest, ServiceUnavailable
from gateway.frontdoors import anthropic_request, responses_request
from gateway.frontdoors.anthropic_output import MessagesStreamEncoder
from gateway.frontdoors.responses_output import ResponsesStreamEncoder
from tests.spec import SpecValidator, spec_validator
from tests.unit.frontdoors import chunks as c
from tests.unit.frontdoors.sse import named_events, validate_responses_events

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPENAI_EVENT = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)

texts = st.text(max_size=12)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
json_args = st.dictionaries(names, st.integers(-(2**63), 2**63 - 1) | texts | st.booleans(), max_size=3)


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


def check_chat(spec: SpecValidator, body: dict[str, Any]) -> None:
    """What every backend gets: the gateway's chat checks, OpenAI's schema, tool results after their calls."""
    validate_chat(body)
    spec.validate("CreateChatCompletionRequest", body)
    called: set[str] = set()
    for msg in body["messages"]:
        for tc in msg.get("tool_calls") or ():
            called.add(tc["id"])
        if msg["role"] == "tool":
            assert msg["tool_call_id"] in called


# ---------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------


@st.composite
def responses_items(draw: st.DrawFn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["text", "parts", "assistant", "tools"]))
        if kind == "text":
            role = draw(st.sampled_from(["user", "system", "developer", "assistant"]))
            items.append({"role": role, "content": draw(texts)})
        elif kind == "parts":
            parts = draw(
                st.lists(
                    st.one_of(
                        st.builds(lambda t: {"type": "input_text", "text": t}, texts),
                        st.builds(
                            lambda d: {"type": "input_image", "image_url": "https://x/i.png", "detail": d},
                            st.sampled_from(["auto", "low", "high"]),
                        ),
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
            items.append({"type": "message", "role": "user", "content": parts})
        elif kind == "assistant":
            text = draw(texts)
            items.append({"role": "assistant", "content": [{"type": "output_text", "text": text}]})
        else:
            ids = [f"call_{n}_{k}" for k in range(draw(st.integers(1, 3)))]
            for call_id in ids:
                args = orjson.dumps(draw(json_args)).decode()
                items.append(
                    {"type": "function_call", "call_id": call_id, "name": draw(names), "arguments": args}
                )
            for call_id in ids:
                items.append({"type": "function_call_output", "call_id": call_id, "output": draw(texts)})
    return items


@st.composite
def responses_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": draw(names), "input": draw(st.one_of(texts, responses_items()))}
    optional = {
        "instructions": texts,
        "max_output_tokens": st.integers(16, 4096),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "user": texts,
        "store": st.booleans(),
        "stream": st.booleans(),
        "parallel_tool_calls": st.booleans(),
        "metadata": st.dictionaries(names, texts, max_size=3),
        "tools": st.lists(
            st.builds(
                lambda n, s: {"type": "function", "name": n, "parameters": {"type": "object"}, "strict": s},
                names,
                st.none() | st.booleans(),
            ),
            max_size=3,
        ),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "text": st.sampled_from(
            [
                {"format": {"type": "text"}},
                {"format": {"type": "json_object"}},
                {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
            ]
        ),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)))):
        body[key] = draw(optional[key])
    return body


@PROPS
@given(body=responses_bodies())
def test_responses_requests_become_valid_chat(spec: SpecValidator, body: dict[str, Any]) -> None:
    call = responses_request.read_request(body)
    chat = responses_request.chat_body(call, [])
    check_chat(spec, chat)
    for item in call.items:
        spec.validate("ItemResource", item)
    expected = len(call.items) - sum(i["type"] == "function_call" for i in call.items)
    # Function calls join an assistant message, or open one when none precedes them.
    assert (
        expected + bool(call.instructions)
        <= len(chat["messages"])
        <= len(call.items) + bool(call.instructions)
    )


@st.composite
def anthropic_bodies(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            messages.append({"role": draw(st.sampled_from(["user", "assistant"])), "content": draw(texts)})
            continue
        ids = [f"toolu_{n}_{k}" for k in range(draw(st.integers(1, 2)))]
        said = [{"type": "text", "text": draw(texts)}] if draw(st.booleans()) else []
        uses = [{"type": "tool_use", "id": i, "name": draw(names), "input": draw(json_args)} for i in ids]
        messages.append({"role": "assistant", "content": said + uses})
        results: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": i, "content": draw(texts), "is_error": draw(st.booleans())}
            for i in ids
        ]
        if draw(st.booleans()):
            img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
            results.append(img)
        messages.append({"role": "user", "content": results})
    body: dict[str, Any] = {
        "model": draw(names),
        "max_tokens": draw(st.integers(1, 4096)),
        "messages": messages,
    }
    optional = {
        "system": st.one_of(
            texts, st.lists(st.builds(lambda t: {"type": "text", "text": t}, texts), max_size=2)
        ),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(0, 50),
        "stop_sequences": st.lists(texts, max_size=3),
        "stream": st.booleans(),
        "metadata": st.builds(lambda u: {"user_id": u}, st.none() | texts),
        "tools": st.lists(
            st.builds(lambda n: {"name": n, "input_schema": {"type": "object"}}, names),
            min_size=1,
            max_size=3,
        ),
        "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}]),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)))):
        body[key] = draw(optional[key])
    return body


@PROPS
@given(body=anthropic_bodies())
def test_anthropic_requests_become_valid_chat(spec: SpecValidator, body: dict[str, Any]) -> None:
    call = anthropic_request.read_request(body)
    check_chat(spec, call.chat)
    assert call.chat["max_tokens"] == body["max_tokens"]
    assert anthropic_request.count_tokens(call) >= 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
# The shapes of the bodies that reach translation: no NaN, no integers orjson would not have parsed.
RESPONSES_KEYS = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "metadata",
    "store",
    "include",
]
ANTHROPIC_KEYS = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "metadata",
    "stop_sequences",
]


@PROPS
@given(body=st.dictionaries(st.sampled_from(RESPONSES_KEYS), json_values))
def test_any_json_is_served_or_a_400_responses(body: dict[str, Any]) -> None:
    try:
        responses_request.chat_body(responses_request.read_request(body), [])
    except BadRequest:
        pass


@PROPS
@given(body=st.dictionaries(st.sampled_from(ANTHROPIC_KEYS), json_values))
def test_any_json_is_served_or_a_400_anthropic(body: dict[str, Any]) -> None:
    try:
        anthropic_request.read_request(body)
    except BadRequest:
        pass


# ---------------------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    chunks: list[bytes]
    text: str  # everything said, refusals included
    calls: list[tuple[str, str, str]]  # (call id, name, arguments)
    fail: bool


@st.composite
def stream_plans(draw: st.DrawFn) -> Plan:
    chunks = [c.chunk({"role": "assistant", "content": ""})] if draw(st.booleans()) else []
    said, calls = "", []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["text", "refusal", "tool"]))
        if kind == "tool":
            index = len(calls)
            call_id, name = f"call_{index}", draw(names)
            args = orjson.dumps(draw(json_args)).decode()
            cuts = sorted(draw(st.sets(st.integers(0, len(args)), max_size=3)))
            pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
            chunks.append(c.tool_start(index, call_id, name))
            chunks.extend(c.tool_args(index, p) for p in pieces if p)
            calls.append((call_id, name, args))
        else:
            for piece in draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3)):
                chunks.append(c.chunk({"content" if kind == "text" else "refusal": piece}))
                said += piece
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    chunks.append(c.chunk({}, finish))
    if draw(st.booleans()):
        chunks.append(c.usage_chunk())
    fail = draw(st.booleans())
    if fail:
        chunks = chunks[: draw(st.integers(0, len(chunks)))]
    return Plan(chunks, said, calls, fail)


@PROPS
@given(plan=stream_plans())
def test_responses_streams_are_valid_event_sequences(spec: SpecValidator, plan: Plan) -> None:
    enc = ResponsesStreamEncoder(responses_request.read_request({"model": "m", "input": "hi"}))
    data = b"".join(enc.encode(ch) for ch in plan.chunks)
    data += enc.error(ServiceUnavailable("cut")) if plan.fail else enc.finish()
    events = named_events(data)
    validate_responses_events(spec, events)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for _, doc in events:
        state.handle_event(OPENAI_EVENT.validate_python(doc))
    final = events[-1][1]["response"]
    assert events[-1][0] == ("response.failed" if plan.fail else f"response.{final['status']}")
    if plan.fail:
        return
    said = "".join(
        p.get("text", p.get("refusal", ""))
        for item in final["output"]
        if item["type"] == "message"
        for p in item["content"]
    )
    calls = [
        (i["call_id"], i["name"], i["arguments"]) for i in final["output"] if i["type"] == "function_call"
    ]
    assert (said, calls) == (plan.text, plan.calls)
    if final["status"] == "completed":  # the SDK keeps a final response for response.completed only
        sdk = state._completed_response
        assert sdk is not None and len(sdk.output) == len(final["output"])


@PROPS
@given(plan=stream_plans())
def test_anthropic_streams_are_valid_event_sequences(plan: Plan) -> None:
    enc = MessagesStreamEncoder(
        anthropic_request.read_request(
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        )
    )
    data = b"".join(enc.encode(ch) for ch in plan.chunks)
    data += enc.error(ServiceUnavailable("cut")) if plan.fail else enc.finish()
    events = named_events(data)
    assert events[-1][0] == ("error" if plan.fail else "message_stop")
    if len(events) > 1:  # a stream that fails before its first chunk is its error event alone
        assert events[0][0] == "message_start" and events[1][0] == "ping"
    snapshot = None
    bufs: dict[int, bytes] = {}
    open_block = None
    for name, doc in events:
        assert name == doc["type"]
        if name in ("ping", "error"):
            continue
        if name == "content_block_start":
            assert open_block is None  # one block at a time
            open_block = doc["index"]
        elif name in ("content_block_delta", "content_block_stop"):
            assert doc["index"] == open_block
            if name == "content_block_stop":
                open_block = None
        snapshot = accumulate_event(
            event=ANTHROPIC_EVENT.validate_python(doc), current_snapshot=snapshot, json_bufs=bufs
        )
    if plan.fail:
        return
    assert snapshot is not None and open_block is None
    said = "".join(b.text for b in snapshot.content if b.type == "text")
    uses = [(b.id, b.name, b.input) for b in snapshot.content if b.type == "tool_use"]
    assert said == plan.text
    assert uses == [(i, n, orjson.loads(a)) for i, n, a in plan.calls]
    assert snapshot.stop_reason in ("end_turn", "max_tokens", "tool_use")
