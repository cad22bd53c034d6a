"""Anthropic Messages requests -> chat, chat answers and chunks -> Anthropic's message, events and errors;
checked with the anthropic SDK's own types and stream accumulator (what `client.messages.stream` runs)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from gateway.endpoints.openai import validate_chat
from gateway.errors import (
    AllBackendsFailed,
    AuthenticationFailed,
    BadRequest,
    GatewayError,
    NotFound,
    Overloaded,
    RateLimited,
)
from gateway.frontdoors.anthropic_output import (
    InvalidToolArguments,
    MessagesStreamEncoder,
    error_body,
    from_chat,
)
from gateway.frontdoors.anthropic_request import MessagesCall, count_tokens, read_request
from gateway.providers.base import ProviderError
from tests.spec import SpecValidator, spec_validator
from tests.unit.frontdoors import chunks as c
from tests.unit.frontdoors.sse import named_events

EVENT = TypeAdapter(RawMessageStreamEvent)
BASE: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def to_chat(**body: Any) -> dict[str, Any]:
    out = read_request({**BASE, **body}).chat
    validate_chat(out)
    return out


def sdk_read(events: list[tuple[str, dict[str, Any]]]) -> Any:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, doc in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(
            event=EVENT.validate_python(doc), current_snapshot=snapshot, json_bufs=bufs
        )
    return snapshot


def test_system_sampling_and_metadata() -> None:
    out = to_chat(
        system=[
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}},
        ],
        temperature=0.3,
        top_p=0.8,
        top_k=5,
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        stream=True,
    )
    assert out == {
        "model": "m",
        "messages": [{"role": "system", "content": "a\nb"}, {"role": "user", "content": "hi"}],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["END"],
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_tool_use_round_trip_with_images(spec: SpecValidator) -> None:
    out = to_chat(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "rain"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/map.png"}},
                        ],
                    },
                    {"type": "text", "text": "and tomorrow?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
        ],
        tools=[{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert out["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "checking",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x/map.png"}},
                {"type": "text", "text": "and tomorrow?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object"}, "description": "w"},
        }
    ]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    spec.validate("CreateChatCompletionRequest", out)


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


@pytest.mark.parametrize(
    ("choice", "chat"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], chat: Any) -> None:
    assert to_chat(tools=[{"name": "f", "input_schema": {}}], tool_choice=choice)["tool_choice"] == chat


def test_errored_tool_result_says_so() -> None:
    out = to_chat(
        messages=[
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}],
            },
        ]
    )
    assert out["messages"][-1] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools", "web_search_20250305"),
        ({"mcp_servers": [{"url": "x"}]}, "mcp_servers", "mcp_servers"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages.0.content.0.type",
            "document",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use", "id": "x"}]}]},
            "messages.0.content.0.type",
            "server_tool_use",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages.0.content.0.source.type",
            "file",
        ),
    ],
)
def test_unserved_features_are_named_in_a_400(body: dict[str, Any], param: str, named: str) -> None:
    with pytest.raises(BadRequest) as info:
        read_request({**BASE, **body})
    assert info.value.param == param and named in info.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"temperature": 1.5}, "temperature"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ],
)
def test_invalid_fields_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        read_request({**BASE, **body})
    assert info.value.param == param


def test_count_tokens_needs_no_max_tokens_and_counts_tools() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    bare = count_tokens(read_request(body, count_only=True))
    tooled = count_tokens(
        read_request(
            {**body, "tools": [{"name": "f", "input_schema": {"type": "object", "description": "y" * 400}}]},
            count_only=True,
        )
    )
    assert 100 <= bare < tooled


def answer(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def call(**body: Any) -> MessagesCall:
    return read_request({**BASE, **body})


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_stop_reasons(finish: str, reason: str) -> None:
    doc = from_chat(call(), answer({"content": "hi"}, finish))
    Message.model_validate(doc)
    assert doc["stop_reason"] == reason and doc["stop_sequence"] is None


def test_stop_sequence_reported_by_the_backend() -> None:
    doc = from_chat(call(stop_sequences=["END"]), answer({"content": "hi"}, "stop", stop_reason="END"))
    assert (doc["stop_reason"], doc["stop_sequence"]) == ("stop_sequence", "END")


def test_text_and_tool_use_message() -> None:
    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": [1]}'}}]
    doc = from_chat(call(), answer({"content": "sure", "tool_calls": tool_calls}, "tool_calls"))
    msg = Message.model_validate(doc)
    assert doc["content"] == [
        {"type": "text", "text": "sure"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": [1]}},
    ]
    assert msg.usage.input_tokens == 9 and msg.usage.output_tokens == 3 and doc["model"] == "up-model"


def test_tool_arguments_that_are_not_an_object_are_a_502() -> None:
    tool_calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}]
    with pytest.raises(InvalidToolArguments) as info:
        from_chat(call(), answer({"content": None, "tool_calls": tool_calls}, "tool_calls"))
    assert info.value.status == 502


def test_stream_text_then_tools() -> None:
    enc = MessagesStreamEncoder(call())
    events = named_events(b"".join(enc.encode(ch) for ch in c.TEXT_THEN_TOOLS) + enc.finish())
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == doc["type"] for name, doc in events)
    msg = sdk_read(events)
    assert msg.content[0].text == "Let me look."
    assert [(b.id, b.name, b.input) for b in msg.content[1:]] == [
        ("call_a", "lookup", {"q": "cats"}),
        ("call_b", "count", {}),
    ]
    assert msg.stop_reason == "tool_use" and msg.usage.input_tokens == 7 and msg.usage.output_tokens == 5
    assert msg.model == "up-model"


def test_stream_error_event_and_sdk_raises() -> None:
    enc = MessagesStreamEncoder(call())
    events = named_events(enc.encode(c.text("he")) + enc.error(Overloaded("busy")))
    name, doc = events[-1]
    assert name == "error" and doc == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }
    ErrorResponse.model_validate(doc)


def test_a_tool_call_resumed_after_the_next_began_is_a_protocol_error() -> None:
    enc = MessagesStreamEncoder(call())
    enc.encode(c.tool_start(0, "a", "f"))
    enc.encode(c.tool_start(1, "b", "g"))
    with pytest.raises(ProviderError):
        enc.encode(c.tool_args(0, "{}"))


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (BadRequest("x"), "invalid_request_error"),
        (AuthenticationFailed("x"), "authentication_error"),
        (NotFound("x"), "not_found_error"),
        (RateLimited("x", retry_after=1), "rate_limit_error"),
        (Overloaded("x"), "overloaded_error"),
        (AllBackendsFailed("x"), "api_error"),
        (GatewayError("x", status=504), "timeout_error"),
    ],
)
def test_error_bodies(err: GatewayError, kind: str) -> None:
    doc = orjson.loads(error_body(err))
    ErrorResponse.model_validate(doc)
    assert doc == {"type": "error", "error": {"type": kind, "message": "x"}}
