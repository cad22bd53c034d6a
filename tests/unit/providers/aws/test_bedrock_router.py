"""Bedrock streams through the real router on the in-memory transport: a corrupt frame or an exception
frame before the first chunk fails over; after it, the stream fails (the client's error event)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.policy.model import Policy
from gateway.providers.aws.eventstream import event, exception
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.routing.candidates import build_catalog
from tests.mock_transport import MockReply, Step, backend_of, chunk_doc, sse
from tests.unit.providers.aws.fixtures import load
from tests.unit.routing.router_kit import Kit, body

POLICY = Policy.model_validate(
    {
        "backends": {
            "a": {
                "provider": "bedrock",
                "region": "us-east-1",
                "base_url": "http://a",
                "models": {
                    "m": {"id": "meta.llama3-3-70b-instruct-v1:0", "input_price": 1, "output_price": 1}
                },
            },
            "b": {
                "provider": "openai",
                "base_url": "http://b",
                "models": {"m": {"id": "up-b", "input_price": 2, "output_price": 2}},
            },
        },
        "routes": [{"name": "r", "objective": "cheapest", "probe_interval_s": 0}],
    }
)
START = event("messageStart", b'{"role":"assistant"}')
DELTA = event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"}}')
END = event("messageStop", b'{"stopReason":"end_turn"}') + event(
    "metadata", b'{"usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}'
)


def corrupt(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def kit_with(bedrock_steps: list[Step] | MockReply) -> Kit:
    def handler(req: UpstreamRequest) -> MockReply:
        if backend_of(req) == "a":
            return (
                bedrock_steps if isinstance(bedrock_steps, MockReply) else MockReply(200, steps=bedrock_steps)
            )
        return MockReply(200, steps=sse(chunk_doc("from b")))

    return Kit(handler, build_catalog(POLICY, {}))


@pytest.mark.parametrize(
    ("steps", "outcome"),
    [
        ([corrupt(START)], "protocol"),
        ([START[:5], corrupt(START)[5:]], "protocol"),
        ([exception("throttlingException", b'{"message":"Too many requests"}')], "rate_limited"),
        ([START, exception("modelStreamErrorException", b'{"message":"boom"}')], "server"),
    ],
)
def test_a_bad_start_fails_over_before_the_first_byte(steps: list[Step], outcome: str) -> None:
    kit = kit_with(steps)
    opened = asyncio.run(kit.router.open_stream(kit.plan(body(True)), body(True), kit.req))
    assert kit.tried() == ["a", "b"] and kit.outcomes()[0] == outcome
    assert opened.target.backend == "b" and b"from b" in b"".join(opened.first)
    opened.attempt.end_stream(True, None)
    assert kit.balanced()


def test_a_throttled_converse_call_fails_over() -> None:
    reply = MockReply(
        429,
        b'{"message":"Too many requests, please wait before trying again."}',
        {"x-amzn-errortype": "ThrottlingException"},
    )
    kit = kit_with(reply)
    opened = asyncio.run(kit.router.open_stream(kit.plan(body(True)), body(True), kit.req))
    assert kit.tried() == ["a", "b"] and kit.outcomes()[0] == "rate_limited"
    opened.attempt.end_stream(True, None)


@pytest.mark.parametrize(
    "after",
    [corrupt(DELTA), exception("modelStreamErrorException", b'{"message":"The model stopped"}')],
)
def test_after_the_first_chunk_a_bad_frame_fails_the_stream(after: bytes) -> None:
    kit = kit_with([START + DELTA, after])

    async def run() -> list[bytes]:
        opened = await kit.router.open_stream(kit.plan(body(True)), body(True), kit.req)
        assert opened.target.backend == "a"
        got = list(opened.first)
        try:
            while not opened.upstream.done:
                got += await opened.upstream.read()
        finally:
            opened.attempt.end_stream(False, None)
        return got

    with pytest.raises(ProviderError):
        asyncio.run(run())
    assert kit.tried() == ["a"]


def test_a_whole_stream_and_a_whole_answer() -> None:
    kit = kit_with([START, DELTA, END])

    async def run() -> list[bytes]:
        opened = await kit.router.open_stream(kit.plan(body(True)), body(True), kit.req)
        got = list(opened.first)
        while not opened.upstream.done:
            got += await opened.upstream.read()
        opened.attempt.end_stream(True, opened.upstream.usage)
        return got

    chunks = [orjson.loads(c) for c in asyncio.run(run())]
    assert [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]] == ["hi", None]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # messageStart's role rides on "hi"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    converse = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
    }
    whole = kit_with(MockReply(200, converse))
    done = asyncio.run(whole.router.complete(whole.plan(body()), body(), whole.req))
    assert orjson.loads(done.parsed.body)["choices"][0]["message"]["content"] == "hello"
    assert whole.transport.requests[0].url == "http://a/model/meta.llama3-3-70b-instruct-v1:0/converse"
    assert done.parsed.usage is not None and done.parsed.usage.input_tokens == 3


@pytest.mark.parametrize("case", load("bedrock", "requests.json"), ids=lambda c: c["name"][:40])
def test_fixture_requests_reach_the_transport_as_converse(case: dict[str, Any]) -> None:
    answer = load("bedrock", "responses.json")[1]  # a tool call: the answer's shape is not the point here
    kit = kit_with(MockReply(200, answer["converse"]))
    request = {**case["openai"], "model": "m", "stream": False}
    done = asyncio.run(kit.router.complete(kit.plan(request), request, kit.req))
    sent = kit.transport.requests[0]
    assert sent.url.endswith("/converse") and orjson.loads(sent.body) == case["converse"]
    assert (
        orjson.loads(done.parsed.body)["choices"][0]["message"]["tool_calls"]
        == answer["message"]["tool_calls"]
    )


@pytest.mark.parametrize("name", ["stream_text.json", "stream_tool.json"])
def test_fixture_streams_through_the_transport_cut_into_small_reads(name: str) -> None:
    case = load("bedrock", name)
    data = b"".join(event(n, orjson.dumps(doc)) for n, doc in case["events"])
    kit = kit_with([data[i : i + 37] for i in range(0, len(data), 37)])
    request = body(True, stream_options={"include_usage": True})

    async def run() -> list[bytes]:
        opened = await kit.router.open_stream(kit.plan(request), request, kit.req)
        got = list(opened.first)
        while not opened.upstream.done:
            got += await opened.upstream.read()
        opened.attempt.end_stream(True, opened.upstream.usage)
        return got

    chunks = [orjson.loads(c) for c in asyncio.run(run())]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == case["text"] and chunks[-1]["usage"] == case["usage"]
    assert kit.transport.requests[0].url.endswith("/converse-stream") and kit.balanced()
