"""Stored responses on the embedded store: TTL, byte budget, the owner rule, paging of input items."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import BadRequest, NotFound
from gateway.frontdoors.conversations import Conversations, MemoryResponses, StoredResponse
from gateway.frontdoors.responses_output import from_chat
from gateway.frontdoors.responses_request import read_request
from gateway.frontdoors.wire import new_id, secret_id
from tests.spec import SpecValidator, spec_validator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def record(
    owner: str, rid: str, n_items: int = 3, history: list[dict[str, Any]] | None = None
) -> StoredResponse:
    call = read_request(
        {"model": "m", "input": [{"role": "user", "content": f"m{i}"} for i in range(n_items)]}
    )
    answer = {"model": "m", "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}]}
    return StoredResponse(owner, from_chat(call, rid, 1, answer), call.items, history or [])


def test_memory_store_expires_and_evicts_oldest_first() -> None:
    clock = Clock()
    store = MemoryResponses(ttl_s=10, max_bytes=10, clock=clock)
    run(store.put("a", b"12345"))
    run(store.put("b", b"12345"))
    assert run(store.get("a")) == b"12345"
    run(store.put("c", b"1"))  # 11 bytes: the oldest goes
    assert run(store.get("a")) is None and run(store.get("b")) == b"12345"
    clock.now += 11
    assert run(store.get("b")) is None and run(store.get("c")) is None
    assert run(store.delete("b")) is False


def test_only_the_owner_reads_continues_lists_or_deletes() -> None:
    conv = Conversations(MemoryResponses(60, 1 << 20), max_record_bytes=1 << 20)
    rec = record("key-1", "resp_1")
    run(conv.save(rec))
    assert run(conv.load("key-1", "resp_1")).response["id"] == "resp_1"
    for action in (
        conv.load("key-2", "resp_1"),
        conv.delete("key-2", "resp_1"),
        conv.input_items("key-2", "resp_1"),
    ):
        with pytest.raises(NotFound):
            run(action)
    assert run(conv.delete("key-1", "resp_1")) == {"id": "resp_1", "object": "response", "deleted": True}
    with pytest.raises(NotFound):
        run(conv.load("key-1", "resp_1"))


def test_context_is_history_then_input_then_output() -> None:
    first = record("o", "resp_1", 1)
    second = record("o", "resp_2", 1, history=first.context())
    kinds = [(i["type"], i["role"]) for i in second.context()]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]


def test_input_items_pages(spec: SpecValidator) -> None:
    conv = Conversations(MemoryResponses(60, 1 << 20), max_record_bytes=1 << 20)
    rec = record("o", "resp_1", 5)
    run(conv.save(rec))
    ids = [i["id"] for i in rec.items]
    page = run(conv.input_items("o", "resp_1", limit=2))
    spec.validate("ResponseItemList", page)
    assert [i["id"] for i in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    page = run(conv.input_items("o", "resp_1", limit=2, order="asc", after=ids[2]))
    assert [i["id"] for i in page["data"]] == ids[3:] and page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (ids[3], ids[4])
    for bad in ({"limit": 0}, {"order": "up"}, {"after": "nope"}):
        with pytest.raises(BadRequest):
            run(conv.input_items("o", "resp_1", **bad))


def test_a_conversation_too_large_to_store_is_refused_up_front() -> None:
    conv = Conversations(MemoryResponses(60, 1 << 20), max_record_bytes=200)
    rec = record("o", "resp_1", 1)
    conv.check_size([], rec.items)
    with pytest.raises(BadRequest) as info:
        conv.check_size(rec.context() * 5, rec.items)
    assert info.value.code == "conversation_too_large"


def test_damaged_blobs_and_odd_ids_are_simply_not_found() -> None:
    store = MemoryResponses(60, 1 << 20)
    conv = Conversations(store, max_record_bytes=1 << 20)
    run(store.put("resp_x", b"{not json"))
    for rid in ("resp_x", "", "x" * 200, "resp\n1"):
        with pytest.raises(NotFound):
            run(conv.load("o", rid))


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


def test_response_ids_cannot_be_guessed_from_one_another() -> None:
    """Message ids count up; a stored response's id is a keyed hash (no key, no neighbour)."""
    a, b = secret_id("resp"), secret_id("resp")
    assert a.startswith("resp_") and len(a) == len(b) and a != b
    assert a[:-32] == b[:-32] and sum(x != y for x, y in zip(a[-32:], b[-32:], strict=True)) > 8
    m1, m2 = new_id("msg"), new_id("msg")
    assert int(m2[-12:], 16) > int(m1[-12:], 16)
