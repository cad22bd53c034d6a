"""Chat answers -> Response objects and stream events, each validated against OpenAI's schemas and read back
by the openai SDK's own stream accumulator (what `client.responses.stream` runs)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.errors import RateLimited, ServiceUnavailable
from gateway.frontdoors.responses_output import ResponsesStreamEncoder, from_chat
from gateway.frontdoors.responses_request import ResponsesCall, read_request
from gateway.providers.base import ProviderError
from tests.spec import SpecValidator, spec_validator
from tests.unit.frontdoors import chunks as c
from tests.unit.frontdoors.sse import named_events, validate_responses_events

EVENT = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


def a_call(**extra: Any) -> ResponsesCall:
    return read_request({"model": "m", "input": "hi", **extra})


def sdk_read(events: list[tuple[str, dict[str, Any]]]) -> ResponseStreamState[Any]:
    """Feeds the events to the SDK's accumulator, strictly typed first; it raises on any misordering."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for _, doc in events:
        state.handle_event(EVENT.validate_python(doc))
    return state


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


def test_text_answer(spec: SpecValidator) -> None:
    call = a_call(instructions="brief", metadata={"a": "b"}, temperature=0.2, user="u")
    doc = from_chat(call, "resp_1", 100, completion({"content": "Hello"}))
    spec.validate("Response", doc)
    assert doc["status"] == "completed" and doc["model"] == "up-model" and doc["instructions"] == "brief"
    assert doc["output"][0]["content"][0]["text"] == "Hello"
    assert doc["metadata"] == {"a": "b"} and doc["temperature"] == 0.2 and doc["user"] == "u"
    assert doc["usage"] == {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12,
    }


def test_tool_calls_and_echoed_tools(spec: SpecValidator) -> None:
    call = a_call(
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}], tool_choice="required"
    )
    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    doc = from_chat(
        call, "resp_1", 100, completion({"content": None, "tool_calls": tool_calls}, "tool_calls")
    )
    spec.validate("Response", doc)
    (item,) = doc["output"]
    assert item["type"] == "function_call" and item["call_id"] == "call_1" and item["arguments"] == '{"x": 1}'
    assert doc["tools"][0]["name"] == "f" and doc["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_answers_are_incomplete(spec: SpecValidator, finish: str, reason: str) -> None:
    doc = from_chat(a_call(), "resp_1", 100, completion({"content": "Hel"}, finish))
    spec.validate("Response", doc)
    assert doc["status"] == "incomplete" and doc["incomplete_details"] == {"reason": reason}


def test_refusal_and_no_usage(spec: SpecValidator) -> None:
    answer = completion({"content": None, "refusal": "no"})
    del answer["usage"]
    doc = from_chat(a_call(), "resp_1", 100, answer)
    spec.validate("Response", doc)
    assert doc["output"][0]["content"] == [{"type": "refusal", "refusal": "no"}] and "usage" not in doc


def test_stream_text_then_tools(spec: SpecValidator) -> None:
    enc = ResponsesStreamEncoder(a_call())
    data = b"".join(enc.encode(ch) for ch in c.TEXT_THEN_TOOLS) + enc.finish()
    events = named_events(data)
    validate_responses_events(spec, events)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = sdk_read(events)._completed_response
    assert final is not None
    assert final.output_text == "Let me look."
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(o.call_id, o.name, o.arguments) for o in calls] == [
        ("call_a", "lookup", '{"q": "cats"}'),
        ("call_b", "count", "{}"),
    ]
    assert final.usage is not None and final.usage.total_tokens == 12
    assert enc.response is not None and enc.response["output"] == events[-1][1]["response"]["output"]


def test_stream_cut_by_length_is_incomplete(spec: SpecValidator) -> None:
    enc = ResponsesStreamEncoder(a_call())
    data = enc.encode(c.text("abc")) + enc.encode(c.chunk({}, "length")) + enc.finish()
    events = named_events(data)
    validate_responses_events(spec, events)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_without_any_chunk_still_completes(spec: SpecValidator) -> None:
    enc = ResponsesStreamEncoder(a_call())
    events = named_events(enc.finish())
    validate_responses_events(spec, events)
    assert [n for n, _ in events] == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1][1]["response"]["output"] == []


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (ServiceUnavailable("upstream went away"), "server_error"),
        (RateLimited("slow down", retry_after=1), "rate_limit_exceeded"),
    ],
)
def test_mid_stream_failure(spec: SpecValidator, err: Any, code: str) -> None:
    enc = ResponsesStreamEncoder(a_call())
    data = enc.encode(c.text("Hel")) + enc.encode(c.tool_start(0, "call_1", "f")) + enc.error(err)
    events = named_events(data)
    validate_responses_events(spec, events)
    assert [n for n, _ in events[-2:]] == ["error", "response.failed"]
    assert events[-2][1]["message"] == err.message
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": code, "message": err.message}
    assert [item["status"] for item in failed["output"]] == ["completed", "incomplete"]
    assert enc.response == failed
    sdk_read(events)  # the SDK takes the failure without complaint


def test_refusal_stream(spec: SpecValidator) -> None:
    enc = ResponsesStreamEncoder(a_call())
    data = enc.encode(c.chunk({"refusal": "I can't"})) + enc.encode(c.chunk({}, "stop")) + enc.finish()
    events = named_events(data)
    validate_responses_events(spec, events)
    assert "response.refusal.delta" in [n for n, _ in events]
    assert events[-1][1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't"}]


def test_a_tool_call_resumed_after_the_next_began_is_a_protocol_error() -> None:
    enc = ResponsesStreamEncoder(a_call())
    enc.encode(c.tool_start(0, "a", "f"))
    enc.encode(c.tool_start(1, "b", "g"))
    with pytest.raises(ProviderError) as info:
        enc.encode(c.tool_args(0, "{}"))
    assert info.value.kind == "protocol"


def test_model_comes_from_the_backend_and_ids_stay_put() -> None:
    enc = ResponsesStreamEncoder(a_call(), rid="resp_fixed", created_at=5)
    events = named_events(enc.encode(c.text("x")) + enc.finish())
    assert {d["response"]["id"] for _, d in events if "response" in d} == {"resp_fixed"}
    assert events[-1][1]["response"]["model"] == "up-model" and events[0][1]["response"]["created_at"] == 5
    assert orjson.loads(orjson.dumps(enc.response))["id"] == "resp_fixed"
