"""POST /v1/messages (and /count_tokens) through the real gateway with the official anthropic SDK, upstreams
played by the simulator: messages.create, messages.stream with text and tool use, a tool_result round trip,
count_tokens, errors in Anthropic's shape, the key from x-api-key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy
from tests.unit.frontdoors.sse import named_events

WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI: Any = [{"role": "user", "content": "Say hello"}]
# The simulator writes until max_tokens (always set here): a stop sequence ends its answer early, as a real
# model's natural end would (chat does not say which stop hit, so the reason is end_turn).
STOP = ["dog"]


@pytest.fixture(scope="module")
def gw(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with GatewayThread(
        default_policy(sims), tmp_path_factory.mktemp("gw"), reload_policies=False, api_keys=CLIENT_KEY
    ) as gateway:
        yield gateway


@pytest.fixture
def claude(gw: GatewayThread) -> anthropic.Anthropic:
    """The SDK as Claude Code configures it: ANTHROPIC_BASE_URL at the gateway, the key in x-api-key."""
    return anthropic.Anthropic(base_url=gw.root, api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_create(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="chat",
        max_tokens=200,
        system="Be brief",
        messages=HI,
        metadata={"user_id": "u-1"},
        stop_sequences=STOP,
    )
    assert raw.headers["x-routeway-backend"] == "cheap"
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_max_tokens_stop(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="chat", max_tokens=5, messages=HI)
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 5


def test_stream_text(gw: GatewayThread, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="chat", max_tokens=200, messages=HI, stop_sequences=STOP) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    with httpx.stream(
        "POST",
        gw.root + "/v1/messages",
        json={"model": "chat", "max_tokens": 50, "messages": HI, "stream": True},
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        timeout=20,
    ) as r:
        names = [name for name, _ in named_events(r.read())]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_stream_tool_use_and_the_tool_result_round_trip(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="chat",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
    ) as stream:
        final = stream.get_final_message()
    (use,) = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use" and use.name == "get_weather"
    assert isinstance(use.input, dict) and use.input["city"]
    answer = claude.messages.create(
        model="chat",
        max_tokens=200,
        stop_sequences=STOP,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [block.model_dump() for block in final.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "clear sky"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model="chat", messages=HI)
    longer = claude.messages.count_tokens(model="chat", system="x" * 400, messages=HI, tools=[WEATHER])
    assert 0 < short.input_tokens < longer.input_tokens


def test_errors_in_anthropic_shape(gw: GatewayThread, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=HI)
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": missing.value.body["error"]["message"]},
    }  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(
            model="chat",
            max_tokens=10,
            messages=HI,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )  # type: ignore[list-item]
    assert "web_search_20250305" in str(bad.value)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=gw.root, api_key="wrong", max_retries=0).messages.create(
            model="chat", max_tokens=10, messages=HI
        )
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=HI)
    raw = httpx.post(gw.root + "/v1/messages", content=b"{", headers={"x-api-key": CLIENT_KEY})
    assert raw.status_code == 400 and raw.json()["type"] == "error"
    assert raw.json()["error"]["type"] == "invalid_request_error"


def test_every_backend_failing_is_an_api_error(sims: SimThread, claude: anthropic.Anthropic) -> None:
    """(The gateway's own overload is an overloaded_error: test_edge_http's in-flight cap test.)"""
    sims.control("cheap", error_rate=1.0, error_status=503)
    sims.control("fast", error_rate=1.0, error_status=503)
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="chat", max_tokens=10, messages=HI)
    assert info.value.status_code == 502
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "cheap: server 503" in info.value.body["error"]["message"]  # type: ignore[index]


def test_mid_stream_failure_is_an_error_event(sims: SimThread, claude: anthropic.Anthropic) -> None:
    sims.control("cheap", cut_after_tokens=3)
    with pytest.raises(anthropic.APIStatusError) as info:
        with claude.messages.stream(
            model="chat", max_tokens=200, messages=HI, extra_body={"provider": {"only": ["cheap"]}}
        ) as stream:
            for _ in stream:
                pass
    assert "failed after it started" in str(info.value)
