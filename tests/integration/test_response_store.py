"""Stored responses in a real Redis: shared by two store instances (two replicas), expired by Redis,
deleted, and a 503 (never a 500) while Redis is unreachable."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import NotFound, ServiceUnavailable
from gateway.frontdoors.conversations import Conversations, RedisResponses, StoredResponse
from gateway.frontdoors.responses_output import from_chat
from gateway.frontdoors.responses_request import read_request
from tests.conftest import free_port


def a_record(owner: str, rid: str) -> StoredResponse:
    call = read_request({"model": "m", "input": "hello"})
    answer = {"model": "m", "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}
    return StoredResponse(owner, from_chat(call, rid, 1, answer), call.items, [])


def test_two_replicas_share_and_redis_expires(redis_url: str) -> None:
    async def scenario() -> None:
        one = RedisResponses(redis_url, 60, prefix="test:responses", timeout_s=1.0)
        two = RedisResponses(redis_url, 60, prefix="test:responses", timeout_s=1.0)
        short = RedisResponses(redis_url, 0.3, prefix="test:responses", timeout_s=1.0)
        a, b = Conversations(one, 1 << 20), Conversations(two, 1 << 20)
        try:
            await a.save(a_record("key-1", "resp_shared"))
            found = await b.load("key-1", "resp_shared")
            assert found.response["output"][0]["content"][0]["text"] == "hi"
            with pytest.raises(NotFound):
                await b.load("key-2", "resp_shared")
            assert (await b.delete("key-1", "resp_shared"))["deleted"] is True
            with pytest.raises(NotFound):
                await a.load("key-1", "resp_shared")
            await Conversations(short, 1 << 20).save(a_record("key-1", "resp_brief"))
            assert await one.get("resp_brief") is not None
            await asyncio.sleep(1.0)  # PX 300 ms: Redis has dropped it
            assert await one.get("resp_brief") is None
        finally:
            for store in (one, two, short):
                await store.close()

    asyncio.run(scenario())


def test_unreachable_redis_is_a_503() -> None:
    async def scenario() -> None:
        store = RedisResponses(f"redis://127.0.0.1:{free_port()}/0", 60, prefix="x", timeout_s=0.2)
        try:
            with pytest.raises(ServiceUnavailable):
                await Conversations(store, 1 << 20).load("key-1", "resp_1")
            with pytest.raises(ServiceUnavailable):
                await store.put("resp_1", b"{}")
        finally:
            await store.close()

    asyncio.run(scenario())
