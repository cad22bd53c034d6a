"""Responses API requests -> chat: every field the issue lists, the conversation's shape, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.endpoints.openai import validate_chat
from gateway.errors import BadRequest
from gateway.frontdoors.responses_request import chat_body, read_request
from tests.spec import SpecValidator, spec_validator


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


def to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = chat_body(read_request(body), history or [])
    validate_chat(out)
    return out


def test_string_input_and_instructions() -> None:
    out = to_chat({"model": "m", "input": "hi", "instructions": "be brief"})
    assert out == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }


def test_every_sampling_field_maps(spec: SpecValidator) -> None:
    body = {
        "model": "m",
        "input": "hi",
        "max_output_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
        "metadata": {"k": "v"},
        "store": False,
        "stream": True,
        "reasoning": {"effort": "low"},
        "text": {
            "format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}
        },
    }
    out = to_chat(body)
    assert out["max_tokens"] == 64 and out["temperature"] == 0.5 and out["top_p"] == 0.9
    assert out["user"] == "u-1" and out["reasoning_effort"] == "low"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
    }
    assert "metadata" not in out and "store" not in out  # the gateway's, not the backend's
    spec.validate("CreateChatCompletionRequest", out)


def test_json_object_format() -> None:
    out = to_chat({"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}})
    assert out["response_format"] == {"type": "json_object"}
    assert "response_format" not in to_chat(
        {"model": "m", "input": "hi", "text": {"format": {"type": "text"}}}
    )


def test_items_messages_images_and_a_tool_round_trip(spec: SpecValidator) -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "rules"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "let me check", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "look", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a cat"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "x"}],
            },
        ],
        "tools": [{"type": "function", "name": "look", "parameters": {"type": "object"}, "strict": False}],
        "tool_choice": {"type": "function", "name": "look"},
        "parallel_tool_calls": False,
    }
    out = to_chat(body)
    assert out["messages"] == [
        {"role": "system", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "let me check",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "look", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        {"role": "tool", "tool_call_id": "c2", "content": "x"},
    ]
    assert out["tools"] == [
        {"type": "function", "function": {"name": "look", "parameters": {"type": "object"}, "strict": False}}
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "look"}}
    assert out["parallel_tool_calls"] is False
    spec.validate("CreateChatCompletionRequest", out)


def test_items_are_stored_in_the_listing_shape(spec: SpecValidator) -> None:
    call = read_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "1"},
            ],
        }
    )
    for item in call.items:
        spec.validate("ItemResource", item)
    assert len({item["id"] for item in call.items}) == 4


def test_history_comes_before_this_turn() -> None:
    history = read_request({"model": "m", "input": [{"role": "user", "content": "first"}]}).items
    history.append({"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})
    out = to_chat(
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "ok"}]}, history
    )
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool"]


def test_previous_response_alone_needs_no_input() -> None:
    call = read_request({"model": "m", "previous_response_id": "resp_1"})
    assert call.items == [] and call.previous_response_id == "resp_1"
    with pytest.raises(BadRequest):
        read_request({"model": "m"})


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        (
            {"tools": [{"type": "web_search"}, {"type": "file_search"}]},
            "tools",
            "'file_search', 'web_search'",
        ),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "web_search_preview"),
        ({"background": True}, "background", "background"),
        ({"conversation": "conv_1"}, "conversation", "conversation"),
        ({"prompt": {"id": "p"}}, "prompt", "prompt"),
        ({"truncation": "auto"}, "truncation", "truncation"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]", "logprobs"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]", "item_reference"),
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type", "web_search_call"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
            "input_file",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0]",
            "file_id",
        ),
    ],
)
def test_unserved_features_are_named_in_a_400(body: dict[str, Any], param: str, named: str) -> None:
    with pytest.raises(BadRequest) as info:
        read_request({"model": "m", "input": "hi", **body})
    assert info.value.param == param and named in info.value.message
    assert info.value.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": ""}, "model"),
        ({"input": 3}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content",
        ),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        (
            {"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
    ],
)
def test_invalid_fields_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        read_request({"model": "m", "input": "hi", **body})
    assert info.value.param == param


def test_an_output_for_an_unknown_call_is_refused() -> None:
    call = read_request(
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "nope", "output": ""}]}
    )
    with pytest.raises(BadRequest, match="nope"):
        chat_body(call, [])
